import type { StudentSnapshot } from '../../domain/student.ts';

/** A write request sent with an `Idempotency-Key`. */
export interface KeyedRequest {
  /** The key, scoped to its caller; opaque here. */
  readonly key: string;
  /** Hash of what was asked (method, target, body, preconditions): the same key with another request is refused. */
  readonly fingerprint: string;
  /** How long the key is kept once used; after that it is free again. */
  readonly ttlSeconds: number;
}

/** A key already used by a committed write. */
export interface UsedKey {
  readonly fingerprint: string;
  /** The student as that write left it (as it was deleted, for a delete). */
  readonly outcome: StudentSnapshot;
}

/**
 * The keys of keyed writes, inside the write's own transaction: the key commits with the write or not at all, so a
 * retry can never run a committed write again, whenever its first attempt died.
 */
export interface IdempotencyKeys {
  /**
   * Claims the key for this transaction, or resolves with the write that used it before (within the retention).
   * A transaction claiming the same key at the same time is waited for: then its write is the one that used it.
   */
  claim(request: KeyedRequest): Promise<UsedKey | undefined>;
  /** Stores the claimed key's outcome; it commits with the transaction. */
  complete(request: KeyedRequest, outcome: StudentSnapshot): Promise<void>;
  /** Gives the claimed key up: this transaction writes nothing under it. */
  release(request: KeyedRequest): Promise<void>;
}
