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

/** Idempotency keys in Redis (SET NX, so one instance wins a race), or in memory in the embedded mode. */
export class IdempotencyStore {
  readonly #connection: CacheConnection;
  readonly #prefix: string;
  readonly #local = new Map<string, { record: IdempotencyRecord; expiresAt: number }>();

  constructor(connection: CacheConnection, keyPrefix: string) {
    this.#connection = connection;
    this.#prefix = keyPrefix;
  }

  /** Claims `key` for a new request; returns the existing record instead when the key was used before. */
  async begin(key: string, fingerprint: string, ttlMs: number): Promise<IdempotencyRecord | undefined> {
    const record: IdempotencyRecord = { fingerprint };
    if (this.#connection.isMemory) {
      const existing = this.#local.get(key);
      if (existing && existing.expiresAt > Date.now()) return existing.record;
      this.#setLocal(key, record, ttlMs);
      return undefined;
    }
    return this.#connection.run(async (redis) => {
      const claimed = await redis.set(this.#prefix + key, JSON.stringify(record), 'PX', ttlMs, 'NX');
      if (claimed) return undefined;
      const existing = await redis.get(this.#prefix + key);
      // Expired between the two commands: rare enough to ask the client to retry.
      return existing ? (JSON.parse(existing) as IdempotencyRecord) : { fingerprint };
    });
  }

  async complete(key: string, record: IdempotencyRecord, ttlMs: number): Promise<void> {
    if (this.#connection.isMemory) return this.#setLocal(key, record, ttlMs);
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

  #setLocal(key: string, record: IdempotencyRecord, ttlMs: number): void {
    this.#local.delete(key);
    if (this.#local.size >= MAX_LOCAL) this.#local.delete(this.#local.keys().next().value!);
    this.#local.set(key, { record, expiresAt: Date.now() + ttlMs });
  }
}
