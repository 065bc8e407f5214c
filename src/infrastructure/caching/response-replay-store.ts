import type { InvalidationBus } from './invalidation-bus.ts';
import type { CacheConnection } from './redis-cache-connection.ts';

/** An HTTP response as it went out, to be replayed byte for byte. */
export interface StoredResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

interface Entry {
  readonly response: StoredResponse;
  readonly expiresAt: number;
  /** When the state it shows was read; an invalidation of its group after that makes it stale. */
  readonly at: number;
}

const MAX_GROUPS = 10_000;
const MAX_PER_GROUP = 100;

/**
 * Responses kept for request deduplication, grouped by what they show (a student id), so a write drops every
 * response about that student on every instance. L1 in memory; L2 one Redis hash per group when Redis is
 * configured, so instances replay each other's responses.
 */
export class ResponseReplayStore {
  readonly #connection: CacheConnection;
  readonly #invalidations: InvalidationBus;
  readonly #redisKey: (group: string) => string;
  readonly #local = new Map<string, Map<string, Entry>>();

  constructor(
    connection: CacheConnection,
    invalidations: InvalidationBus,
    redisKey: (group: string) => string,
  ) {
    this.#connection = connection;
    this.#invalidations = invalidations;
    this.#redisKey = redisKey;
    invalidations.onInvalidate((group) => this.#local.delete(group));
    // Invalidations may have been missed while Redis was away.
    connection.onRecovered(() => this.#local.clear());
  }

  /** Whether replaying is safe now: not while Redis is away, since other instances' writes would go unheard. */
  get available(): boolean {
    return this.#connection.available;
  }

  /** The local copy only: synchronous, for the hot path. */
  peek(group: string, key: string): StoredResponse | undefined {
    const entry = this.#local.get(group)?.get(key);
    return entry && this.#fresh(group, entry) ? entry.response : undefined;
  }

  /** The local copy, else the shared one (which is then kept locally). */
  async get(group: string, key: string): Promise<StoredResponse | undefined> {
    const local = this.peek(group, key);
    if (local || this.#connection.isMemory) return local;
    const stored = await this.#connection.run((redis) => redis.hget(this.#redisKey(group), key));
    if (!stored) return undefined;
    const entry = JSON.parse(stored) as Entry;
    if (!this.#fresh(group, entry)) return undefined;
    this.#keep(group, key, entry);
    return entry.response;
  }

  /** `at`: when the shown state was read (the request's start for reads, now for writes). */
  async put(
    group: string,
    key: string,
    response: StoredResponse,
    windowMs: number,
    at: number,
  ): Promise<void> {
    const entry: Entry = { response, expiresAt: Date.now() + windowMs, at };
    if (!this.#fresh(group, entry)) return;
    this.#keep(group, key, entry);
    if (this.#connection.isMemory) return;
    const redisKey = this.#redisKey(group);
    await this.#connection.run(async (redis) => {
      // The hash lives as long as its longest entry; each entry's own expiry is checked on read.
      const ttl = await redis.pttl(redisKey);
      const multi = redis.multi().hset(redisKey, key, JSON.stringify(entry));
      await (ttl < windowMs ? multi.pexpire(redisKey, windowMs) : multi).exec();
    });
  }

  /** Whether a state of `group` read at `readAt` is still current: nothing wrote to it (or went unheard) since. */
  isCurrent(group: string, readAt: number): boolean {
    return readAt >= this.#invalidations.invalidatedAt(group) && readAt >= this.#connection.staleBefore;
  }

  #fresh(group: string, entry: Entry): boolean {
    return entry.expiresAt > Date.now() && this.isCurrent(group, entry.at);
  }

  #keep(group: string, key: string, entry: Entry): void {
    let entries = this.#local.get(group);
    if (!entries) {
      if (this.#local.size >= MAX_GROUPS) this.#local.delete(this.#local.keys().next().value!);
      entries = new Map();
      this.#local.set(group, entries);
    }
    entries.delete(key);
    if (entries.size >= MAX_PER_GROUP) entries.delete(entries.keys().next().value!);
    entries.set(key, entry);
  }
}
