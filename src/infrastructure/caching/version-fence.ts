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
 * A writer advances the fence first and skips its write when a newer version is recorded; after writing it looks
 * again and drops the entry if a newer version arrived meanwhile, which it may have overwritten. Entries outlive
 * neither: the fence is kept longer than any cache entry.
 */
export class VersionFence {
  readonly #connection: CacheConnection;
  readonly #prefix: string;
  readonly #ttlMs: number;
  /** Embedded mode; insertion-ordered, so the oldest go first past MAX_LOCAL. */
  readonly #local = new Map<string, { version: number; expiresAt: number }>();

  constructor(connection: CacheConnection, keyPrefix: string, ttlMs: number) {
    this.#connection = connection;
    this.#prefix = keyPrefix;
    this.#ttlMs = ttlMs;
    connection.redis?.defineCommand('advanceVersion', { numberOfKeys: 1, lua: ADVANCE });
  }

  /** Records that `version` of `id` is being written; resolves with the newest recorded (higher: this write is late). */
  async advance(id: string, version: number): Promise<number> {
    if (this.#connection.isMemory) {
      const newest = this.#localVersion(id);
      if (version <= newest) return newest;
      this.#local.delete(id);
      this.#local.set(id, { version, expiresAt: Date.now() + this.#ttlMs });
      if (this.#local.size > MAX_LOCAL) this.#local.delete(this.#local.keys().next().value as string);
      return version;
    }
    const newest = await this.#connection.run((redis) =>
      (redis as typeof redis & FenceScripts).advanceVersion(this.#prefix + id, version, this.#ttlMs),
    );
    return Number(newest);
  }

  /** The newest version recorded for `id`; 0 when none is. */
  async newest(id: string): Promise<number> {
    if (this.#connection.isMemory) return this.#localVersion(id);
    return Number((await this.#connection.run((redis) => redis.get(this.#prefix + id))) ?? 0);
  }

  #localVersion(id: string): number {
    const recorded = this.#local.get(id);
    return recorded && recorded.expiresAt > Date.now() ? recorded.version : 0;
  }
}
