import type { Logger } from '../logging/logger.ts';
import type { CacheConnection } from './redis-cache-connection.ts';

/**
 * How many groups' invalidation times to remember: those heard matter only for reads racing a write (milliseconds);
 * those not yet published, until Redis is back.
 */
const REMEMBERED = 10_000;

/**
 * Tells every instance that something about one student changed, so each drops its local copies of responses
 * derived from it. Over Redis pub/sub when Redis is configured, in-process otherwise. Each message carries the
 * writer's instant on the shared clock (`sharedNow`, Redis's), so a read that started before the write can tell its
 * result is already stale.
 */
export class InvalidationBus {
  readonly #connection: CacheConnection;
  readonly #channel: string;
  readonly #listeners: ((group: string) => void)[] = [];
  readonly #invalidatedAt = new Map<string, number>();
  /**
   * Invalidations Redis did not take (it was away), published once it is back: the other instances' connections may
   * never have dropped, and nothing else tells them that what they keep of these groups is stale.
   */
  readonly #unpublished = new Map<string, number>();
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
      const separator = message.indexOf(' ');
      this.#received(message.slice(separator + 1), Number(message.slice(0, separator)));
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
    return this.#invalidatedAt.get(group) ?? 0;
  }

  /**
   * Invalidates locally at once, then on every other instance; throws DependencyUnavailableError if Redis is down.
   * `at`: when the change was made (what was read before it is stale).
   */
  async invalidate(group: string, at: number): Promise<void> {
    this.#received(group, at);
    if (this.#connection.isMemory) return;
    try {
      await this.#publish(group, at);
    } catch (error) {
      keepLatest(this.#unpublished, group, at);
      throw error;
    }
  }

  #publish(group: string, at: number): Promise<unknown> {
    return this.#connection.run((redis) =>
      redis.multi().del(this.#derivedKey(group)).publish(this.#channel, `${at} ${group}`).exec(),
    );
  }

  async #publishMissed(): Promise<void> {
    const missed = [...this.#unpublished];
    this.#unpublished.clear();
    for (const [group, at] of missed)
      await this.#publish(group, at).catch(() => keepLatest(this.#unpublished, group, at));
  }

  #received(group: string, at: number): void {
    keepLatest(this.#invalidatedAt, group, at);
    for (const listener of this.#listeners) listener(group);
  }
}

/** Records `group`'s latest invalidation; past REMEMBERED groups, the one invalidated longest ago is forgotten. */
function keepLatest(invalidatedAt: Map<string, number>, group: string, at: number): void {
  const previous = invalidatedAt.get(group) ?? 0;
  // Re-inserted so the map's order is recency and the oldest entry goes first.
  invalidatedAt.delete(group);
  invalidatedAt.set(group, Math.max(at, previous));
  if (invalidatedAt.size > REMEMBERED) invalidatedAt.delete(invalidatedAt.keys().next().value!);
}
