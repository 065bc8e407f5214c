import { SpanKind } from '@opentelemetry/api';
import type { IdGenerator } from '../../application/ports/id-generator.ts';
import type { IdempotencyKeys, UsedKey } from '../../application/ports/idempotency-keys.ts';
import type { Inbox } from '../../application/ports/inbox.ts';
import type { OutboxMessage, OutboxWriter } from '../../application/ports/outbox.ts';
import type {
  StudentRepository,
  TransactionScope,
  UnitOfWork,
} from '../../application/ports/student-repository.ts';
import { studentEventMessage } from '../../application/students/student-event-messages.ts';
import { Student, type StudentSnapshot } from '../../domain/student.ts';
import { startCreateSpan } from '../observability/messaging-spans.ts';
import { inSpan, recordFailure } from '../observability/tracing.ts';
import type { Database, TransactionOptions } from './database.ts';
import { guardDatabase } from './database-errors.ts';
import { sqlStatement, STUDENT_COLUMNS, type SqlExecutor, type SqlStatement } from './sql.ts';

/** The LISTEN/NOTIFY channel that wakes the outbox relay. */
export const OUTBOX_CHANNEL = 'outbox';

const statements = {
  // Answers with the positions of the ids it added, not the ids: PGlite drops a leading U+FEFF from text it returns,
  // and an id that came back changed would read as seen before, and its message be skipped.
  markProcessed: sqlStatement(
    'inbox_mark_processed',
    `with given as (select id, position from unnest($1::text[]) with ordinality as given(id, position)),
     added as (
       insert into inbox (message_id, consumer, processed_at) select id, $2, $3 from given
       on conflict do nothing returning message_id
     )
     select given.position::int as position from given join added on added.message_id = given.id`,
  ),
  // An expired key is taken over as if it were new. A key another transaction is claiming is waited for (its
  // unique index entry): claimed here if that one rolls back, used (nothing returned) if it commits.
  claimKey: sqlStatement(
    'idempotency_claim',
    `insert into idempotency_keys (key, fingerprint, expires_at)
     values ($1, $2, now() + $3::double precision * interval '1 second')
     on conflict (key) do update set fingerprint = excluded.fingerprint, outcome = null,
       expires_at = excluded.expires_at
       where idempotency_keys.expires_at <= now()
     returning 1`,
  ),
  // The outcome was stored as the snapshot's JSON: read back as a snapshot, dates as dates.
  usedKey: sqlStatement(
    'idempotency_used',
    `select used.fingerprint, outcome.* from idempotency_keys used,
       jsonb_to_record(used.outcome) as outcome(id uuid, "firstName" text, "lastName" text, email text,
         updates int, created timestamptz, "createdBy" text, "lastModified" timestamptz, "lastModifiedBy" text,
         version int)
     where used.key = $1`,
  ),
  completeKey: sqlStatement(
    'idempotency_complete',
    'update idempotency_keys set outcome = $2 where key = $1',
  ),
  releaseKey: sqlStatement('idempotency_release', 'delete from idempotency_keys where key = $1'),
  // Outside any transaction: a claim not yet committed is not seen, nor waited for.
  keyUsed: sqlStatement(
    'idempotency_key_used',
    'select 1 from idempotency_keys where key = $1 and outcome is not null and expires_at > now()',
  ),
  // In id order, so two transactions locking overlapping sets cannot deadlock.
  findManyForUpdate: sqlStatement(
    'students_find_many_for_update',
    `select ${STUDENT_COLUMNS} from students where id = any($1::uuid[]) order by id for update`,
  ),
  /**
   * Every change of one transaction in one statement, so a commit costs one round trip whatever it changed.
   * Each part takes arrays (empty when there is nothing of its kind); data-modifying WITH parts always run.
   */
  flush: sqlStatement(
    'unit_of_work_flush',
    `with added as (
       insert into students (id, first_name, last_name, email, updates, created, created_by, last_modified,
         last_modified_by, version)
       select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[],
         $7::text[], $8::timestamptz[], $9::text[], $10::int[])
     ), updated as (
       update students set first_name = changed.first_name, last_name = changed.last_name,
         email = changed.email, updates = changed.updates, last_modified = changed.last_modified,
         last_modified_by = changed.last_modified_by, version = changed.version
       from unnest($11::uuid[], $12::text[], $13::text[], $14::text[], $15::int[], $16::timestamptz[],
         $17::text[], $18::int[], $19::int[])
         as changed(id, first_name, last_name, email, updates, last_modified, last_modified_by, version,
           loaded_version)
       where students.id = changed.id and students.version = changed.loaded_version
       returning students.id
     ), removed as (
       delete from students where id = any($20::uuid[])
     ), appended as (
       insert into outbox (id, exchange, routing_key, type, subject, payload, headers, occurred_at)
       select id, exchange, routing_key, type, subject, payload, headers, occurred_at
       from unnest($21::uuid[], $22::text[], $23::text[], $24::text[], $25::text[], $26::jsonb[],
         $27::jsonb[], $28::timestamptz[]) with ordinality
         as message(id, exchange, routing_key, type, subject, payload, headers, occurred_at, position)
       order by position
     )
     select count(*)::int as updated from updated`,
  ),
};

// PGlite is PostgreSQL too (compiled to WebAssembly): the same SQL, the same semantics.
const DB_ATTRIBUTES = { 'db.system.name': 'postgresql' };

/**
 * The write side in hand-written SQL, the same on PostgreSQL and PGlite. Reads run at once; saves are collected
 * and written with the outbox rows in one statement at commit. It runs once per request and per batch of events
 * in the worker, so its statements are prepared once per connection (docs/adr/008-hot-path-sql.md).
 */
export class SqlUnitOfWork implements UnitOfWork {
  readonly #database: Database;
  readonly #ids: IdGenerator;
  readonly #options: TransactionOptions;

  /**
   * `options.lockTimeoutMs`: for a caller that is waiting (an API request), a transaction behind another session's
   * lock gives up after that long. Background work (the worker) leaves it out and waits, up to the statement timeout.
   */
  constructor(database: Database, ids: IdGenerator, options: TransactionOptions = {}) {
    this.#database = database;
    this.#ids = ids;
    this.#options = options;
  }

  async transaction<T>(work: (scope: TransactionScope) => Promise<T>): Promise<T> {
    const changes = new PendingChanges();
    const result = await inSpan('transaction', { kind: SpanKind.CLIENT, attributes: DB_ATTRIBUTES }, () =>
      guardDatabase(async () => {
        const tx = new TransactionOnDemand(this.#database, this.#options);
        const outbox: OutboxWriter = {
          append: async (messages) => changes.append(messages),
        };
        const students = new SqlStudentRepository(tx, this.#ids, changes);
        let value: T;
        try {
          value = await work({
            students,
            inbox: sqlInbox(tx),
            outbox,
            idempotencyKeys: sqlIdempotencyKeys(tx),
          });
        } catch (error) {
          await tx.rollBack(error);
          throw error;
        }
        await tx.commitWith((executor) => changes.flush(executor), changes.checked);
        return value;
      }),
    );
    // After commit: the relay must find the rows it is woken for.
    if (changes.appended) this.#database.notify(OUTBOX_CHANNEL);
    return result;
  }
}

/**
 * A transaction begun by the first statement run in it. A unit of work that reads nothing (a create) has one
 * statement, its flush, which is atomic on its own: it runs without BEGIN and COMMIT, two round trips fewer.
 */
class TransactionOnDemand implements SqlExecutor {
  readonly #database: Database;
  #begun: Promise<SqlExecutor> | undefined;
  /** Settles the transaction callback: resolved commits, rejected rolls back. */
  #settle: ((failure?: { readonly error: unknown }) => void) | undefined;
  /** The transaction itself: settles after COMMIT or ROLLBACK, rejects when BEGIN, the work or COMMIT failed. */
  #ended: Promise<void> | undefined;

  readonly #options: TransactionOptions;

  constructor(database: Database, options: TransactionOptions) {
    this.#database = database;
    this.#options = options;
  }

  query<Row>(statement: SqlStatement, params: readonly unknown[]): Promise<Row[]> {
    return this.#begin().then((tx) => tx.query<Row>(statement, params));
  }

  /**
   * Runs the unit's last statement (inside the transaction if one was begun, else on its own) and commits. One whose
   * result is `checked` after it ran runs in a transaction even so, for a failed check to undo it.
   */
  async commitWith(last: (executor: SqlExecutor) => Promise<void>, checked: boolean): Promise<void> {
    if (!this.#begun && !checked) return last(this.#database.sql);
    try {
      await last(await this.#begin());
    } catch (error) {
      await this.rollBack(error);
      throw error;
    }
    this.#settle!();
    await this.#ended;
  }

  /** Ends a begun transaction without its changes, because of `error`; nothing to do when none was begun. */
  async rollBack(error: unknown): Promise<void> {
    if (!this.#begun) return;
    // A transaction that could not begin has nothing to end (its failure reached the statement that asked).
    const begun = await this.#begun.then(
      () => true,
      () => false,
    );
    if (!begun) return;
    this.#settle!({ error });
    await this.#ended!.catch(() => undefined);
  }

  #begin(): Promise<SqlExecutor> {
    this.#begun ??= new Promise((resolve, reject) => {
      this.#ended = this.#database.transaction(
        (tx) =>
          new Promise<void>((commit, rollBack) => {
            this.#settle = (failure) => (failure ? rollBack(failure.error) : commit());
            resolve(tx);
          }),
        this.#options,
      );
      this.#ended.catch(reject);
    });
    return this.#begun;
  }
}

function sqlInbox(tx: SqlExecutor): Inbox {
  return {
    async markProcessed(messageIds, consumer) {
      if (messageIds.length === 0) return new Set();
      const added = await tx.query<{ position: number }>(statements.markProcessed, [
        messageIds,
        consumer,
        new Date(),
      ]);
      return new Set(added.map((row) => messageIds[row.position - 1]!));
    },
  };
}

function sqlIdempotencyKeys(tx: SqlExecutor): IdempotencyKeys {
  return {
    async claim({ key, fingerprint, ttlSeconds }) {
      for (;;) {
        const claimed = await tx.query(statements.claimKey, [key, fingerprint, ttlSeconds]);
        if (claimed.length > 0) return undefined;
        // A statement of its own: it sees the row of the transaction the claim waited for, committed meanwhile.
        const [used] = await tx.query<UsedKey['outcome'] & { fingerprint: string }>(statements.usedKey, [
          key,
        ]);
        if (!used) continue; // expired and deleted in between: claim it again
        const { fingerprint: usedWith, ...outcome } = used;
        return { fingerprint: usedWith, outcome };
      }
    },
    async complete({ key }, outcome) {
      await tx.query(statements.completeKey, [key, JSON.stringify(outcome)]);
    },
    async release({ key }) {
      await tx.query(statements.releaseKey, [key]);
    },
  };
}

/**
 * Whether a committed write used `key` (a `KeyedRequest`'s) and it has not expired: a retry of that write would get
 * its outcome back, not run, and need not wait for the first attempt's answer.
 */
export async function isKeyUsed(sql: SqlExecutor, key: string): Promise<boolean> {
  return (await sql.query(statements.keyUsed, [key])).length > 0;
}

type PendingChange =
  | { readonly kind: 'add'; readonly student: StudentSnapshot }
  | { readonly kind: 'update'; readonly student: StudentSnapshot; readonly loadedVersion: number }
  | { readonly kind: 'remove'; readonly id: string };

/** The saves and outbox rows of one transaction, merged per student, waiting for the commit. */
class PendingChanges {
  readonly #students = new Map<string, PendingChange>();
  readonly #outbox: OutboxMessage[] = [];

  get appended(): boolean {
    return this.#outbox.length > 0;
  }

  /** Whether the flush checks what it wrote (an update's version), and must be undone when that fails. */
  get checked(): boolean {
    return [...this.#students.values()].some((change) => change.kind === 'update');
  }

  add(student: StudentSnapshot): void {
    this.#students.set(student.id, { kind: 'add', student });
  }

  /** A student added earlier in this transaction is inserted as it is now; one updated twice, once. */
  update(student: StudentSnapshot, loadedVersion: number): void {
    const earlier = this.#students.get(student.id);
    if (earlier?.kind === 'remove') throw new Error(`student ${student.id} was removed in this transaction`);
    this.#students.set(
      student.id,
      earlier?.kind === 'add'
        ? { kind: 'add', student }
        : { kind: 'update', student, loadedVersion: earlier?.loadedVersion ?? loadedVersion },
    );
  }

  remove(id: string): void {
    if (this.#students.get(id)?.kind === 'add') this.#students.delete(id);
    else this.#students.set(id, { kind: 'remove', id });
  }

  append(messages: readonly OutboxMessage[]): void {
    this.#outbox.push(...messages);
  }

  async flush(tx: SqlExecutor): Promise<void> {
    const changes = [...this.#students.values()];
    if (changes.length === 0 && this.#outbox.length === 0) return;
    // Each row keeps its message's creation context (W3C traceparent) for the relay and the consumers to continue.
    const created = this.#outbox.map((message) => startCreateSpan({ ...message, messageId: message.id }));
    try {
      await this.#write(
        tx,
        changes,
        created.map(({ headers }) => headers),
      );
    } catch (error) {
      for (const { span } of created) recordFailure(span, error);
      throw error;
    } finally {
      for (const { span } of created) span.end();
    }
  }

  async #write(
    tx: SqlExecutor,
    changes: readonly PendingChange[],
    outboxHeaders: readonly Record<string, string>[],
  ): Promise<void> {
    const added = changes.flatMap((change) => (change.kind === 'add' ? [change.student] : []));
    const updated = changes.flatMap((change) => (change.kind === 'update' ? [change] : []));
    const removed = changes.flatMap((change) => (change.kind === 'remove' ? [change.id] : []));
    const [result] = await tx.query<{ updated: number }>(statements.flush, [
      added.map((s) => s.id),
      added.map((s) => s.firstName),
      added.map((s) => s.lastName),
      added.map((s) => s.email),
      added.map((s) => s.updates),
      added.map((s) => s.created),
      added.map((s) => s.createdBy),
      added.map((s) => s.lastModified),
      added.map((s) => s.lastModifiedBy),
      added.map((s) => s.version),
      updated.map((u) => u.student.id),
      updated.map((u) => u.student.firstName),
      updated.map((u) => u.student.lastName),
      updated.map((u) => u.student.email),
      updated.map((u) => u.student.updates),
      updated.map((u) => u.student.lastModified),
      updated.map((u) => u.student.lastModifiedBy),
      updated.map((u) => u.student.version),
      updated.map((u) => u.loadedVersion),
      removed,
      this.#outbox.map((m) => m.id),
      this.#outbox.map((m) => m.exchange),
      this.#outbox.map((m) => m.routingKey),
      this.#outbox.map((m) => m.type),
      this.#outbox.map((m) => m.subject),
      this.#outbox.map((m) => JSON.stringify(m.payload)),
      outboxHeaders.map((headers) => JSON.stringify(headers)),
      this.#outbox.map((m) => m.occurredAt),
    ]);
    // The rows were locked when loaded, so a miss here is a bug in the caller, not a race.
    if (result?.updated !== updated.length)
      throw new Error(
        `${updated.length - (result?.updated ?? 0)} updated student(s) were not locked at their version`,
      );
  }
}

class SqlStudentRepository implements StudentRepository {
  readonly #tx: SqlExecutor;
  readonly #ids: IdGenerator;
  readonly #changes: PendingChanges;

  constructor(tx: SqlExecutor, ids: IdGenerator, changes: PendingChanges) {
    this.#tx = tx;
    this.#ids = ids;
    this.#changes = changes;
  }

  async findByIdForUpdate(id: string): Promise<Student | undefined> {
    return (await this.findManyForUpdate([id])).get(id);
  }

  async findManyForUpdate(ids: readonly string[]): Promise<ReadonlyMap<string, Student>> {
    if (ids.length === 0) return new Map();
    const rows = await this.#tx.query<StudentSnapshot>(statements.findManyForUpdate, [ids]);
    return new Map(rows.map((row) => [row.id, Student.rehydrate(row)]));
  }

  async add(student: Student): Promise<void> {
    this.#changes.add(student.snapshot());
    this.#storeEvents(student);
  }

  async update(student: Student, loadedVersion: number): Promise<void> {
    this.#changes.update(student.snapshot(), loadedVersion);
    this.#storeEvents(student);
  }

  async remove(student: Student): Promise<void> {
    this.#changes.remove(student.id);
    this.#storeEvents(student);
  }

  #storeEvents(student: Student): void {
    this.#changes.append(
      student.pullDomainEvents().map((event) => studentEventMessage(event, this.#ids.next())),
    );
  }
}
