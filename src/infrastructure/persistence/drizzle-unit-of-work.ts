import { SpanKind } from '@opentelemetry/api';
import { and, eq, sql } from 'drizzle-orm';
import type { IdGenerator } from '../../application/ports/id-generator.ts';
import type { OutboxMessage } from '../../application/ports/outbox.ts';
import type {
  StudentRepository,
  TransactionScope,
  UnitOfWork,
} from '../../application/ports/student-repository.ts';
import { studentEventMessage } from '../../application/students/student-event-messages.ts';
import { Student } from '../../domain/student.ts';
import { startCreateSpan } from '../observability/messaging-spans.ts';
import { inSpan, recordFailure } from '../observability/tracing.ts';
import type { Db } from './database.ts';
import { guardDatabase } from './database-errors.ts';
import { inbox, outbox, students } from './schema.ts';

/** The LISTEN/NOTIFY channel that wakes the outbox relay. */
export const OUTBOX_CHANNEL = 'outbox';

type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];

// PGlite is PostgreSQL too (compiled to WebAssembly): the same SQL, the same semantics.
const DB_ATTRIBUTES = { 'db.system.name': 'postgresql' };

/** The same drizzle code serves PostgreSQL and PGlite: only the driver under `db` differs. */
export class DrizzleUnitOfWork implements UnitOfWork {
  readonly #db: Db;
  readonly #ids: IdGenerator;
  #notifying = false;
  #notifyAgain = false;

  constructor(db: Db, ids: IdGenerator) {
    this.#db = db;
    this.#ids = ids;
  }

  async transaction<T>(work: (scope: TransactionScope) => Promise<T>): Promise<T> {
    let appended = false;
    const append = async (tx: Tx, messages: readonly OutboxMessage[]) => {
      appended ||= messages.length > 0;
      await appendToOutbox(tx, messages);
    };
    const result = await inSpan('transaction', { kind: SpanKind.CLIENT, attributes: DB_ATTRIBUTES }, () =>
      guardDatabase(() =>
        this.#db.transaction((tx) =>
          work({
            students: new DrizzleStudentRepository(tx, this.#ids, (messages) => append(tx, messages)),
            inbox: {
              async markProcessed(messageId, consumer) {
                const inserted = await tx
                  .insert(inbox)
                  .values({ messageId, consumer, processedAt: new Date() })
                  .onConflictDoNothing()
                  .returning({ messageId: inbox.messageId });
                return inserted.length === 1;
              },
            },
            outbox: { append: (messages) => append(tx, messages) },
          }),
        ),
      ),
    );
    if (appended) this.#wakeRelay();
    return result;
  }

  /**
   * NOTIFY after commit, not inside the transaction: a NOTIFY takes a database-wide lock held through commit,
   * which would serialize every writer's commit (and its fsync). At most one is in flight per process; a
   * missed one only delays the relay until its next poll.
   */
  #wakeRelay(): void {
    if (this.#notifying) {
      this.#notifyAgain = true;
      return;
    }
    this.#notifying = true;
    void this.#db
      .execute(sql`select pg_notify(${OUTBOX_CHANNEL}, '')`)
      .catch(() => undefined)
      .finally(() => {
        this.#notifying = false;
        if (this.#notifyAgain) {
          this.#notifyAgain = false;
          this.#wakeRelay();
        }
      });
  }
}

class DrizzleStudentRepository implements StudentRepository {
  readonly #tx: Tx;
  readonly #ids: IdGenerator;
  readonly #appendToOutbox: (messages: readonly OutboxMessage[]) => Promise<void>;

  constructor(
    tx: Tx,
    ids: IdGenerator,
    appendToOutbox: (messages: readonly OutboxMessage[]) => Promise<void>,
  ) {
    this.#tx = tx;
    this.#ids = ids;
    this.#appendToOutbox = appendToOutbox;
  }

  async findByIdForUpdate(id: string): Promise<Student | undefined> {
    const [row] = await this.#tx.select().from(students).where(eq(students.id, id)).for('update');
    return row ? Student.rehydrate(row) : undefined;
  }

  async add(student: Student): Promise<void> {
    await this.#tx.insert(students).values(student.snapshot());
    await this.#storeEvents(student);
  }

  async update(student: Student, loadedVersion: number): Promise<void> {
    const { id: _id, created: _created, createdBy: _createdBy, ...changes } = student.snapshot();
    const updated = await this.#tx
      .update(students)
      .set(changes)
      .where(and(eq(students.id, student.id), eq(students.version, loadedVersion)))
      .returning({ id: students.id });
    // The row was locked when loaded, so a miss here is a bug in the caller, not a race.
    if (updated.length !== 1)
      throw new Error(`student ${student.id} at version ${loadedVersion} was not locked`);
    await this.#storeEvents(student);
  }

  async remove(student: Student): Promise<void> {
    await this.#tx.delete(students).where(eq(students.id, student.id));
    await this.#storeEvents(student);
  }

  async #storeEvents(student: Student): Promise<void> {
    const messages = student.pullDomainEvents().map((event) => studentEventMessage(event, this.#ids.next()));
    await this.#appendToOutbox(messages);
  }
}

async function appendToOutbox(tx: Tx, messages: readonly OutboxMessage[]): Promise<void> {
  if (messages.length === 0) return;
  // Each row keeps its message's creation context (W3C traceparent) for the relay and the consumers to continue.
  const created = messages.map((message) =>
    startCreateSpan({ messageId: message.id, exchange: message.exchange, routingKey: message.routingKey }),
  );
  try {
    await tx.insert(outbox).values(
      messages.map((message, index) => ({
        id: message.id,
        exchange: message.exchange,
        routingKey: message.routingKey,
        type: message.type,
        subject: message.subject,
        payload: message.payload,
        headers: created[index]?.headers ?? {},
        occurredAt: message.occurredAt,
      })),
    );
  } catch (error) {
    for (const { span } of created) recordFailure(span, error);
    throw error;
  } finally {
    for (const { span } of created) span.end();
  }
}
