import type { InvalidationBus } from './invalidation-bus.ts';
import type { CacheConnection } from './redis-cache-connection.ts';

/** An HTTP response as it went out, to be replayed byte for byte. */
export interface StoredResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** A stored response as L2 holds it. */
interface Entry {
  readonly response: StoredResponse;
  readonly expiresAt: number;
  /** When the state it shows was read; an invalidation of its group after that makes it stale. */
  readonly at: number;
}

/** A stored response in L1: with its group (its key alone finds it) and what it counts against the budget. */
interface Kept extends Entry {
  readonly group: string;
  readonly size: number;
}

// Any client can fill L1 (each caller, URL and body is an entry): 18,000 to 31,000 of this API's responses, a small,
// fixed share of the heap.
const MAX_BYTES = 32 * 1024 * 1024;
// The heap around an entry's strings (its objects, headers, map slots), and a group's set of keys: measured, so that
// the heap held stays under the budget (27-31 MiB at 32 MiB, one to 100 entries a group).
const ENTRY_OVERHEAD = 768;
const GROUP_OVERHEAD = 768;
// Also bounds what dropping a group costs (a write to it).
const MAX_PER_GROUP = 100;
// Expired entries are removed this often, not on the hot path; the budget bounds them meanwhile.
const SWEEP_EVERY_MS = 5_000;

export interface ResponseReplayStoreOptions {
  /** What L1 holds at most: groups, keys and bodies (their lengths), ENTRY_OVERHEAD each, GROUP_OVERHEAD a group. */
  readonly maxBytes?: number;
  readonly sweepEveryMs?: number;
}

/**
 * Responses kept for request deduplication, grouped by what they show (a student id), so a write drops every
 * response about that student on every instance. L1 in memory, bounded in bytes (the oldest go first); L2 one
 * Redis hash per group when Redis is configured, so instances replay each other's responses.
 */
export class ResponseReplayStore {
  readonly #connection: CacheConnection;
  readonly #invalidations: InvalidationBus;
  readonly #redisKey: (group: string) => string;
  /** By request key, oldest first (a Map keeps insertion order; a put re-inserts). */
  readonly #local = new Map<string, Kept>();
  /** Each group's keys, oldest first. */
  readonly #groups = new Map<string, Set<string>>();
  readonly #maxBytes: number;
  readonly #sweepEveryMs: number;
  #bytes = 0;
  #sweeping: NodeJS.Timeout | undefined;

  constructor(
    connection: CacheConnection,
    invalidations: InvalidationBus,
    redisKey: (group: string) => string,
    options: ResponseReplayStoreOptions = {},
  ) {
    this.#connection = connection;
    this.#invalidations = invalidations;
    this.#redisKey = redisKey;
    this.#maxBytes = options.maxBytes ?? MAX_BYTES;
    this.#sweepEveryMs = options.sweepEveryMs ?? SWEEP_EVERY_MS;
    invalidations.onInvalidate((group) => this.#dropGroup(group));
    // Invalidations may have been missed while Redis was away.
    connection.onRecovered(() => this.#clear());
  }

  /** What L1 holds: entries, and the bytes they count against its budget. */
  get held(): { readonly entries: number; readonly bytes: number } {
    return { entries: this.#local.size, bytes: this.#bytes };
  }

  /** Whether replaying is safe now: not while Redis is away, since other instances' writes would go unheard. */
  get available(): boolean {
    return this.#connection.available;
  }

  /** The local copy only: synchronous, for the hot path. */
  peek(group: string, key: string): StoredResponse | undefined {
    const entry = this.#local.get(key);
    return entry && entry.group === group && this.#fresh(group, entry) ? entry.response : undefined;
  }

  /** The local copy, else the shared one (which is then kept locally). */
  async get(group: string, key: string): Promise<StoredResponse | undefined> {
    const local = this.peek(group, key);
    if (local || this.#connection.isMemory) return local;
    const stored = await this.#connection.run((redis) => redis.hget(this.#redisKey(group), key));
    if (!stored) return undefined;
    const entry = JSON.parse(stored) as Entry;
    if (!this.#fresh(group, entry)) return undefined;
    this.#keep(group, key, entry.response, entry.expiresAt, entry.at);
    return entry.response;
  }

  /**
   * `at`: when the shown state was read (the request's start for reads, now for writes), from `orderedNow()`;
   * `mark`: for a read, `mark()` at its start.
   */
  async put(
    group: string,
    key: string,
    response: StoredResponse,
    windowMs: number,
    at: number,
    mark?: number,
  ): Promise<void> {
    const entry: Entry = { response, expiresAt: Date.now() + windowMs, at };
    if (!this.#fresh(group, entry, mark)) return;
    this.#keep(group, key, response, entry.expiresAt, at);
    if (this.#connection.isMemory) return;
    const redisKey = this.#redisKey(group);
    await this.#connection.run(async (redis) => {
      // The hash lives as long as its longest entry; each entry's own expiry is checked on read.
      const ttl = await redis.pttl(redisKey);
      const multi = redis.multi().hset(redisKey, key, JSON.stringify(entry));
      await (ttl < windowMs ? multi.pexpire(redisKey, windowMs) : multi).exec();
    });
  }

  /**
   * Drops what `group` holds, here at once and then on every instance, as of `at`: what was stored from before it is
   * stale. Throws DependencyUnavailableError when Redis is down (this instance has dropped it already).
   */
  invalidate(group: string, at: number): Promise<void> {
    return this.#invalidations.invalidate(group, at);
  }

  /** A mark of the invalidations heard so far, taken as a read starts (see `isCurrent`). */
  mark(): number {
    return this.#invalidations.mark();
  }

  /**
   * Whether a state of `group` read at `readAt` (an `orderedNow()` instant) is still current: nothing wrote to it (or
   * went unheard) since. Strictly after: an invalidation is stamped once its write committed, so a read stamped at the
   * same instant (which only another instance's clock can give) may have read the state from before the write. With
   * the read's `mark`: nor was a write to it heard here while it ran, whatever its instant (a cache entry a late
   * writer stamped after a newer write's invalidation shows the state from before it).
   */
  isCurrent(group: string, readAt: number, mark?: number): boolean {
    return (
      readAt > this.#invalidations.invalidatedAt(group) &&
      readAt > this.#connection.staleBefore &&
      (mark === undefined || !this.#invalidations.heardSince(group, mark))
    );
  }

  #fresh(group: string, entry: Entry, mark?: number): boolean {
    return entry.expiresAt > Date.now() && this.isCurrent(group, entry.at, mark);
  }

  #keep(group: string, key: string, response: StoredResponse, expiresAt: number, at: number): void {
    this.#remove(key);
    const size = ENTRY_OVERHEAD + group.length + key.length + response.body.length;
    if (size + GROUP_OVERHEAD > this.#maxBytes) return;
    let keys = this.#groups.get(group);
    if (!keys) {
      keys = new Set();
      this.#groups.set(group, keys);
      this.#bytes += GROUP_OVERHEAD;
    } else if (keys.size >= MAX_PER_GROUP) this.#remove(keys.values().next().value!);
    keys.add(key);
    this.#local.set(key, { response, expiresAt, at, group, size });
    this.#bytes += size;
    while (this.#bytes > this.#maxBytes) this.#remove(this.#local.keys().next().value!);
    if (this.#sweeping === undefined)
      this.#sweeping = setTimeout(this.#sweepExpired, this.#sweepEveryMs).unref();
  }

  /** Removes what can no longer be replayed; runs while L1 holds anything (so an abandoned store is let go). */
  readonly #sweepExpired = (): void => {
    this.#sweeping = undefined;
    for (const [key, entry] of this.#local) if (!this.#fresh(entry.group, entry)) this.#remove(key);
    if (this.#local.size > 0) this.#sweeping = setTimeout(this.#sweepExpired, this.#sweepEveryMs).unref();
  };

  #remove(key: string): void {
    const entry = this.#local.get(key);
    if (!entry) return;
    this.#local.delete(key);
    this.#bytes -= entry.size;
    const keys = this.#groups.get(entry.group)!;
    keys.delete(key);
    if (keys.size > 0) return;
    this.#groups.delete(entry.group);
    this.#bytes -= GROUP_OVERHEAD;
  }

  #dropGroup(group: string): void {
    const keys = this.#groups.get(group);
    if (!keys) return;
    this.#groups.delete(group);
    this.#bytes -= GROUP_OVERHEAD;
    for (const key of keys) {
      this.#bytes -= this.#local.get(key)!.size;
      this.#local.delete(key);
    }
  }

  #clear(): void {
    this.#local.clear();
    this.#groups.clear();
    this.#bytes = 0;
  }
}
