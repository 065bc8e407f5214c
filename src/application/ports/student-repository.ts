import type { Student } from '../../domain/student.ts';
import type { IdempotencyKeys } from './idempotency-keys.ts';
import type { Inbox } from './inbox.ts';
import type { OutboxWriter } from './outbox.ts';

/**
 * Write-side access to students inside a transaction. Saving a student also stores the domain events it
 * recorded, as outbox rows, in the same transaction. Saves may be deferred to the commit (written together,
 * in one round trip); reads always see the database.
 */
export interface StudentRepository {
  /** Loads and locks the row until the transaction ends, so concurrent writers queue instead of losing updates. */
  findByIdForUpdate(id: string): Promise<Student | undefined>;
  /** Loads and locks several rows at once; ids that do not exist are absent from the map. */
  findManyForUpdate(ids: readonly string[]): Promise<ReadonlyMap<string, Student>>;
  add(student: Student): Promise<void>;
  /** Stores a student loaded in this transaction at `loadedVersion`. */
  update(student: Student, loadedVersion: number): Promise<void>;
  remove(student: Student): Promise<void>;
}

export interface TransactionScope {
  readonly students: StudentRepository;
  readonly inbox: Inbox;
  /** For messages that are not a student's own domain events (e.g. the worker's notifications). */
  readonly outbox: OutboxWriter;
  readonly idempotencyKeys: IdempotencyKeys;
}

export interface UnitOfWork {
  /** Runs `work` in one database transaction: all of its writes commit together, or none do. */
  transaction<T>(work: (scope: TransactionScope) => Promise<T>): Promise<T>;
}
