import { randomBytes } from 'node:crypto';
import type { Logger } from '../logging/logger.ts';
import type { CacheConnection } from './redis-cache-connection.ts';
import { expectedFailure } from '../logging/expected-failure.ts';

/**
 * How many groups' invalidations to remember: those heard matter only for reads racing a write (milliseconds);
 * those not yet published, until Redis is back.
 */
const REMEMBERED = 10_000;

/** A group's latest invalidation: when, and the newest version a write announced (0: none did). */
interface Invalidation {
  readonly at: number;
  readonly version: number;
}

/** As heard here: also the count of invalidations this instance had heard by then (see `heardSince`). */
interface Heard extends Invalidation {
  readonly heard: number;
}

/**
 * Tells every instance that something about one student changed, so each drops its local copies of responses
 * derived from it. Over Redis pub/sub when Redis is configured, in-process otherwise. Each message carries the
 * writer's clock, so a read that started before the write can tell its
 * result is already stale, and the version written, if any: an entry of an older version is stale whatever its
 * instant (a write that lands late takes its instant after a newer one's).
 */
export class InvalidationBus {
  readonly #connection: CacheConnection;
  /** Where this version's messages (`at version origin group`) go. */
  readonly #channel: string;
  /**
   * The channel of before, where every message also goes as `at group`, the only format an instance older than
   * versions in messages reads right (it takes everything after the first space as the group): during a rolling
   * upgrade it would otherwise drop nothing a newer instance's write made stale, and replay or coalesce it. The copy
   * can go (expand, then contract) in a release that no longer has to run beside those.
   */
  readonly #legacyChannel: string;
  /**
   * The instant of each group's latest message heard on `#channel` (this instance's own echoed too): its copy on the
   * legacy one, which comes right after it, is skipped once.
   */
  readonly #latestCurrent = new Map<string, number>();
  readonly #listeners: ((group: string) => void)[] = [];
  readonly #heard = new Map<string, Heard>();
  /** Invalidations heard so far, of any group. */
  #heardCount = 0;
  /** Names this instance in its messages: it has heard its own when it sent them, and Redis echoes them back. */
  readonly #origin = randomBytes(9).toString('base64url');
  /**
   * Invalidations Redis did not take (it was away), published once it is back: the other instances' connections may
   * never have dropped, and nothing else tells them that what they keep of these groups is stale.
   */
  readonly #unpublished = new Map<string, Invalidation>();
  readonly #ready: Promise<void>;

  readonly #derivedKey: (group: string) => string;

  /** `derivedKey`: the Redis key holding what is derived from a group; deleted with the same round trip. */
  constructor(
    connection: CacheConnection,
    options: { channel: string; derivedKey: (group: string) => string },
    logger: Logger,
  ) {
    this.#connection = connection;
    const legacyChannel = options.channel;
    const channel = `${legacyChannel}:v2`;
    this.#legacyChannel = legacyChannel;
    this.#channel = channel;
    this.#derivedKey = options.derivedKey;
    connection.onRecovered(() => void this.#publishMissed());
    const subscriber = connection.subscriber;
    if (!subscriber) {
      this.#ready = Promise.resolve();
      return;
    }
    // Redis delivers one connection's messages in the order they were published, and a message's legacy copy is
    // published after it: by then its (group, instant) is known here, and the copy is skipped.
    subscriber.on('message', (channelName: string, message: string) => {
      if (channelName !== channel && channelName !== legacyChannel) return;
      const { origin, group, invalidation } = parseMessage(message);
      if (channelName === channel) remember(this.#latestCurrent, group, invalidation.at);
      else if (this.#latestCurrent.get(group) === invalidation.at) {
        // Its one copy: an older instance's message of the same group and instant after it is a write of its own.
        this.#latestCurrent.delete(group);
        return;
      }
      if (origin !== this.#origin) this.#received(group, invalidation);
    });
    const subscribe = () =>
      subscriber.subscribe(channel, legacyChannel).then(
        () => undefined,
        (error: unknown) =>
          logger.warn(expectedFailure(error), 'cannot subscribe to cache invalidations yet'),
      );
    // Also on every reconnection: ioredis only resubscribes channels whose first subscribe succeeded. Messages sent
    // while the subscriber was away are lost: the connection marks everything read before its return as stale.
    subscriber.on('ready', () => void subscribe());
    this.#ready = subscribe();
  }

  /** Resolves once this instance hears invalidations (at once in memory mode). */
  ready(): Promise<void> {
    return this.#ready;
  }

  onInvalidate(listener: (group: string) => void): void {
    this.#listeners.push(listener);
  }

  /** When `group` was last invalidated, as far as this instance heard; 0 when not recently. */
  invalidatedAt(group: string): number {
    return this.#heard.get(group)?.at ?? 0;
  }

  /**
   * A mark of what this instance has heard so far, for `heardSince`: a read under way when a write to what it shows
   * is heard may show the state from before it, whatever the instants say (a writer's is taken on its own host).
   */
  mark(): number {
    return this.#heardCount;
  }

  /** Whether an invalidation of `group` was heard here after `mark`. */
  heardSince(group: string, mark: number): boolean {
    return (this.#heard.get(group)?.heard ?? 0) > mark;
  }

  /** The newest version of `group` a write announced, as far as this instance heard; 0 when none recently. */
  newestVersion(group: string): number {
    return this.#heard.get(group)?.version ?? 0;
  }

  /**
   * Invalidates locally at once, then on every other instance; throws DependencyUnavailableError if Redis is down.
   * `at`: when the change was made (what was read before it is stale); `version`: the one it wrote, if any.
   */
  async invalidate(group: string, at: number, version = 0): Promise<void> {
    const invalidation = { at, version };
    this.#received(group, invalidation);
    if (this.#connection.isMemory) return;
    try {
      await this.#publish(group, invalidation);
    } catch (error) {
      keepLatest(this.#unpublished, group, invalidation);
      throw error;
    }
  }

  #publish(group: string, { at, version }: Invalidation): Promise<unknown> {
    return this.#connection.run((redis) =>
      redis
        .multi()
        .del(this.#derivedKey(group))
        .publish(this.#channel, `${at} ${version} ${this.#origin} ${group}`)
        .publish(this.#legacyChannel, `${at} ${group}`)
        .exec(),
    );
  }

  async #publishMissed(): Promise<void> {
    const missed = [...this.#unpublished];
    this.#unpublished.clear();
    for (const [group, invalidation] of missed)
      await this.#publish(group, invalidation).catch(() =>
        keepLatest(this.#unpublished, group, invalidation),
      );
  }

  #received(group: string, invalidation: Invalidation): void {
    keepLatest(this.#heard, group, { ...invalidation, heard: ++this.#heardCount });
    for (const listener of this.#listeners) listener(group);
  }
}

/**
 * `${at} ${version} ${origin} ${group}`; or `${at} ${group}`, from an instance older than versions in messages (a
 * rolling upgrade): it announced no version. A number that does not parse counts as none (0), never as NaN, which
 * would stick as the group's newest.
 */
function parseMessage(message: string): { origin?: string; group: string; invalidation: Invalidation } {
  const parts = message.split(' ');
  const number = (text: string | undefined) => {
    const value = Number(text);
    return Number.isFinite(value) ? value : 0;
  };
  if (parts.length < 4)
    return { group: parts.slice(1).join(' '), invalidation: { at: number(parts[0]), version: 0 } };
  return {
    origin: parts[2],
    group: parts.slice(3).join(' '),
    invalidation: { at: number(parts[0]), version: number(parts[1]) },
  };
}

/** Sets `group`'s entry as the most recent; past REMEMBERED groups, the one set longest ago is forgotten. */
function remember<T>(entries: Map<string, T>, group: string, value: T): void {
  // Re-inserted so the map's order is recency and the oldest entry goes first.
  entries.delete(group);
  entries.set(group, value);
  if (entries.size > REMEMBERED) entries.delete(entries.keys().next().value!);
}

/** Records `group`'s latest invalidation (the latest instant and the newest version it heard of). */
function keepLatest<T extends Invalidation>(invalidations: Map<string, T>, group: string, latest: T): void {
  const previous = invalidations.get(group);
  remember(invalidations, group, {
    ...latest,
    at: Math.max(latest.at, previous?.at ?? 0),
    version: Math.max(latest.version, previous?.version ?? 0),
  });
}
