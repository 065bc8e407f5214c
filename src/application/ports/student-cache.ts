import type { StudentSnapshot } from '../../domain/student.ts';

/** A student as the API serves it, kept serialized so a cache hit costs no serialization. */
export interface CachedStudent {
  readonly json: string;
  readonly version: number;
  /**
   * When the state shown was current, if it came from the cache: the instant of the entry (its write, or the start of
   * the load that filled it). A read that began after a write's invalidation may still have got the entry from before
   * that write (the writer replaces it a moment later): what it answers is as old as the entry, not as the read.
   */
  readonly at?: number;
}

/**
 * Read-through cache of students, shared by every instance. Never fails because of the cache itself: when the
 * cache cannot be reached, reads go to `load` and writes are dropped (and retried once it is back). A write or load
 * that lands late (after a newer version of the student, or after its delete) does not stay cached.
 */
export interface StudentCache {
  /** A hit skips `load`; concurrent misses on one id in one process share one `load`. */
  getOrLoad(id: string, load: () => Promise<StudentSnapshot | undefined>): Promise<CachedStudent | undefined>;
  /**
   * After a committed create: stores it. Nothing anywhere can hold anything about a student that did not exist
   * (the create made its id), so no other instance is told.
   */
  add(student: StudentSnapshot): Promise<void>;
  /** After a committed update (webapi or worker): stores it and invalidates what was derived from it. */
  set(student: StudentSnapshot): Promise<void>;
  /** After a committed delete: drops it, and everything derived from it, on every instance. */
  evict(id: string): Promise<void>;
  /**
   * When what a write returned may be older than the student now (a write replayed under its Idempotency-Key): drops
   * it, and everything derived from it, on every instance, so the next read loads the student as it is.
   */
  invalidate(id: string): Promise<void>;
}
