import { ExpiringMap } from './expiring-map.ts';
import type { CacheConnection } from './redis-cache-connection.ts';

/** The version a delete records: higher than any a student can have, so nothing written after it stays cached. */
export const DELETED_VERSION = Number.MAX_SAFE_INTEGER;

const MAX_LOCAL = 100_000;

// Raises the recorded version, never lowers it; answers the newest recorded.
const ADVANCE = `local newest = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > newest then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return tostring(newest)`;

interface FenceScripts {
  advanceVersion(key: string, version: number, ttlMs: number): Promise<string>;
}

/**
 * The newest version of each student any instance has written to the cache, in Redis (in memory when embedded).
 * The cache library writes last-writer-wins, so a write that lands late (a create's entry stalled past the
 * worker's update, a load that read the row before a write) could leave an older student cached until its TTL.
 * An update or delete advances the fence first and skips its write when a newer version is recorded; after
 * writing, every writer (and a load that cached its row) looks again and drops the entry if a newer version arrived
 * meanwhile, which it may have overwritten. The fence is kept longer than any cache entry lives.
 */
export class VersionFence {
  readonly #connection: CacheConnection;
  readonly #prefix: string;
  readonly #ttlMs: number;
  /** The embedded mode's fence. */
  readonly #local = new ExpiringMap<number>(MAX_LOCAL);

  constructor(connection: CacheConnection, keyPrefix: string, ttlMs: number) {
    this.#connection = connection;
    this.#prefix = keyPrefix;
    this.#ttlMs = ttlMs;
    connection.redis?.defineCommand('advanceVersion', { numberOfKeys: 1, lua: ADVANCE });
  }

  /** Records that `version` of `id` is being written; resolves with the newest recorded (higher: this write is late). */
  async advance(id: string, version: number): Promise<number> {
    if (this.#connection.isMemory) {
      const newest = this.#local.get(id) ?? 0;
      if (version <= newest) return newest;
      this.#local.set(id, version, this.#ttlMs);
      return version;
    }
    const newest = await this.#connection.run((redis) =>
      (redis as typeof redis & FenceScripts).advanceVersion(this.#prefix + id, version, this.#ttlMs),
    );
    return Number(newest);
  }

  /** The newest version recorded for `id`; 0 when none is. */
  async newest(id: string): Promise<number> {
    if (this.#connection.isMemory) return this.#local.get(id) ?? 0;
    return Number((await this.#connection.run((redis) => redis.get(this.#prefix + id))) ?? 0);
  }
}
