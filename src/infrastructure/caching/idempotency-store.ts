import { ExpiringMap } from './expiring-map.ts';
import type { StoredResponse } from './response-replay-store.ts';
import type { CacheConnection } from './redis-cache-connection.ts';

/** What is known about an idempotency key: the request it was first used with, and its response once done. */
export interface IdempotencyRecord {
  /** Hash of the request (method, path, body) the key was first used with. */
  readonly fingerprint: string;
  /** Undefined while that request is still running. */
  readonly response?: StoredResponse;
}

const MAX_LOCAL = 100_000;

// The claim is extended only while it is still the one `begin` wrote: never a response, never another claim.
const EXTEND_CLAIM = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

interface IdempotencyScripts {
  extendIdempotencyClaim(key: string, claim: string, leaseMs: number): Promise<number>;
}

/**
 * Idempotency keys in Redis (SET NX, so one instance wins a race), or in memory in the embedded mode. A running
 * request holds its key on a lease it keeps extending: if its process dies, the key is free again once the lease
 * runs out, instead of answering "in progress" until it expires.
 */
export class IdempotencyStore {
  readonly #connection: CacheConnection;
  readonly #prefix: string;
  readonly #local = new ExpiringMap<IdempotencyRecord>(MAX_LOCAL);

  constructor(connection: CacheConnection, keyPrefix: string) {
    this.#connection = connection;
    this.#prefix = keyPrefix;
    connection.redis?.defineCommand('extendIdempotencyClaim', { numberOfKeys: 1, lua: EXTEND_CLAIM });
  }

  /**
   * Claims `key` for a new request for `leaseMs` (keep it with `extend` while the request runs); returns the
   * existing record instead when the key is taken.
   */
  async begin(key: string, fingerprint: string, leaseMs: number): Promise<IdempotencyRecord | undefined> {
    const claim: IdempotencyRecord = { fingerprint };
    if (this.#connection.isMemory) {
      const existing = this.#local.get(key);
      if (existing) return existing;
      this.#local.set(key, claim, leaseMs);
      return undefined;
    }
    return this.#connection.run(async (redis) => {
      const claimed = await redis.set(this.#prefix + key, JSON.stringify(claim), 'PX', leaseMs, 'NX');
      if (claimed) return undefined;
      const existing = await redis.get(this.#prefix + key);
      // Expired between the two commands: rare enough to ask the client to retry.
      return existing ? (JSON.parse(existing) as IdempotencyRecord) : claim;
    });
  }

  /** Renews the lease of a claim `begin` made, while its request still runs. */
  async extend(key: string, fingerprint: string, leaseMs: number): Promise<void> {
    if (this.#connection.isMemory) {
      const held = this.#local.get(key);
      if (held && !held.response && held.fingerprint === fingerprint) this.#local.set(key, held, leaseMs);
      return;
    }
    const claim = JSON.stringify({ fingerprint } satisfies IdempotencyRecord);
    await this.#connection.run((redis) =>
      (redis as typeof redis & IdempotencyScripts).extendIdempotencyClaim(this.#prefix + key, claim, leaseMs),
    );
  }

  async complete(key: string, record: IdempotencyRecord, ttlMs: number): Promise<void> {
    if (this.#connection.isMemory) return this.#local.set(key, record, ttlMs);
    await this.#connection.run((redis) => redis.set(this.#prefix + key, JSON.stringify(record), 'PX', ttlMs));
  }

  /** Frees the key after a failure, so the client may retry it. */
  async release(key: string): Promise<void> {
    if (this.#connection.isMemory) {
      this.#local.delete(key);
      return;
    }
    await this.#connection.run((redis) => redis.del(this.#prefix + key));
  }
}
