import { ExpiringMap } from './expiring-map.ts';
import type { StoredResponse } from './response-replay-store.ts';
import type { CacheConnection } from './redis-cache-connection.ts';

/** What is known about an idempotency key: the request it was first used with, and its response once done. */
export interface IdempotencyRecord {
  /** Hash of the request the key was first used with: method, route and parameters, query, body, If-Match / If-None-Match. */
  readonly fingerprint: string;
  /** Undefined while that request is still running. */
  readonly response?: StoredResponse;
}

const MAX_LOCAL = 100_000;

// The claim is extended only while it is still the one `begin` wrote: never a response, never another claim.
const EXTEND_CLAIM = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

// A response recorded late (Redis was away when its request ended) goes over that request's own claim, or where the
// key is free again: never over another request's claim or response.
const COMPLETE_CLAIM = `local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 0`;

// A key freed late (Redis was away when its request failed): only while it still holds that request's claim.
const RELEASE_CLAIM = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** A running request's claim as stored: what the scripts compare to tell it from another request's claim or a response. */
const claimOf = (fingerprint: string): string => JSON.stringify({ fingerprint } satisfies IdempotencyRecord);

interface IdempotencyScripts {
  extendIdempotencyClaim(key: string, claim: string, leaseMs: number): Promise<number>;
  completeIdempotencyClaim(key: string, claim: string, record: string, ttlMs: number): Promise<unknown>;
  releaseIdempotencyClaim(key: string, claim: string): Promise<unknown>;
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
  /**
   * How requests ended that Redis could not be told of (it was away): the answer to record, or none to free the key.
   * Settled once it is back: until then the key holds its request's claim, and a retry would hear "in progress"
   * (409) about a request long over.
   */
  readonly #unsettled = new ExpiringMap<{ fingerprint: string; record?: IdempotencyRecord }>(MAX_LOCAL);

  constructor(connection: CacheConnection, keyPrefix: string) {
    this.#connection = connection;
    this.#prefix = keyPrefix;
    connection.redis?.defineCommand('extendIdempotencyClaim', { numberOfKeys: 1, lua: EXTEND_CLAIM });
    connection.redis?.defineCommand('completeIdempotencyClaim', { numberOfKeys: 1, lua: COMPLETE_CLAIM });
    connection.redis?.defineCommand('releaseIdempotencyClaim', { numberOfKeys: 1, lua: RELEASE_CLAIM });
    connection.onRecovered(() => void this.#settleMissed());
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
      const claimed = await redis.set(this.#prefix + key, claimOf(fingerprint), 'PX', leaseMs, 'NX');
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
    await this.#connection.run((redis) =>
      (redis as typeof redis & IdempotencyScripts).extendIdempotencyClaim(
        this.#prefix + key,
        claimOf(fingerprint),
        leaseMs,
      ),
    );
  }

  async complete(key: string, record: IdempotencyRecord, ttlMs: number): Promise<void> {
    if (this.#connection.isMemory) return this.#local.set(key, record, ttlMs);
    try {
      await this.#connection.run((redis) =>
        redis.set(this.#prefix + key, JSON.stringify(record), 'PX', ttlMs),
      );
    } catch (error) {
      this.#unsettled.set(key, { fingerprint: record.fingerprint, record }, ttlMs);
      throw error;
    }
  }

  /** Frees the key after its request failed, so the client may retry it. */
  async release(key: string, claim: { fingerprint: string; leaseMs: number }): Promise<void> {
    if (this.#connection.isMemory) {
      this.#local.delete(key);
      return;
    }
    try {
      await this.#connection.run((redis) => redis.del(this.#prefix + key));
    } catch (error) {
      this.#unsettled.set(key, { fingerprint: claim.fingerprint }, claim.leaseMs);
      throw error;
    }
  }

  async #settleMissed(): Promise<void> {
    for (const [key, ending, ttlMs] of this.#unsettled.drain()) {
      const claim = claimOf(ending.fingerprint);
      await this.#connection
        .run((redis) => {
          const scripts = redis as typeof redis & IdempotencyScripts;
          return ending.record
            ? scripts.completeIdempotencyClaim(
                this.#prefix + key,
                claim,
                JSON.stringify(ending.record),
                ttlMs,
              )
            : scripts.releaseIdempotencyClaim(this.#prefix + key, claim);
        })
        .catch(() => this.#unsettled.set(key, ending, ttlMs));
    }
  }
}
