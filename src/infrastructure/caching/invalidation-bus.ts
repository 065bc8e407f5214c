import type { Logger } from '../logging/logger.ts';
import type { CacheConnection } from './redis-cache-connection.ts';

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

/**
 * Tells every instance that something about one student changed, so each drops its local copies of responses
 * derived from it. Over Redis pub/sub when Redis is configured, in-process otherwise. Each message carries the
 * writer's instant on the shared clock (`sharedNow`, Redis's), so a read that started before the write can tell its
 * result is already stale, and the version written, if any: an entry of an older version is stale whatever its
 * instant (a write that lands late takes its instant after a newer one's).
 */
export class InvalidationBus {
  readonly #connection: CacheConnection;
  readonly #channel: string;
  readonly #listeners: ((group: string) => void)[] = [];
  readonly #heard = new Map<string, Invalidation>();
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
    const channel = options.channel;
    this.#channel = channel;
    this.#derivedKey = options.derivedKey;
    connection.onRecovered(() => void this.#publishMissed());
    const subscriber = connection.subscriber;
    if (!subscriber) {
      this.#ready = Promise.resolve();
      return;
    }
    subscriber.on('message', (channelName: string, message: string) => {
      if (channelName !== channel) return;
      // `${at} ${version} ${group}`
      const first = message.indexOf(' ');
      const second = message.indexOf(' ', first + 1);
      this.#received(message.slice(second + 1), {
        at: Number(message.slice(0, first)),
        version: Number(message.slice(first + 1, second)),
      });
    });
    const subscribe = () =>
      subscriber.subscribe(channel).then(
        () => undefined,
        (error: unknown) => logger.warn({ err: error }, 'cannot subscribe to cache invalidations yet'),
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
      redis.multi().del(this.#derivedKey(group)).publish(this.#channel, `${at} ${version} ${group}`).exec(),
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
    keepLatest(this.#heard, group, invalidation);
    for (const listener of this.#listeners) listener(group);
  }
}

/** Records `group`'s latest invalidation; past REMEMBERED groups, the one invalidated longest ago is forgotten. */
function keepLatest(heard: Map<string, Invalidation>, group: string, { at, version }: Invalidation): void {
  const previous = heard.get(group);
  // Re-inserted so the map's order is recency and the oldest entry goes first.
  heard.delete(group);
  heard.set(group, {
    at: Math.max(at, previous?.at ?? 0),
    version: Math.max(version, previous?.version ?? 0),
  });
  if (heard.size > REMEMBERED) heard.delete(heard.keys().next().value!);
}
