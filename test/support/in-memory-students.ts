import type { UsedKey } from '../../src/application/ports/idempotency-keys.ts';
import type { OutboxMessage } from '../../src/application/ports/outbox.ts';
import type { TransactionScope, UnitOfWork } from '../../src/application/ports/student-repository.ts';
import { studentEventMessage } from '../../src/application/students/student-event-messages.ts';
import { Student, type StudentSnapshot } from '../../src/domain/student.ts';

/** In-memory unit of work for use-case tests: commits on success, discards everything on failure. */
export class InMemoryStudents implements UnitOfWork {
  rows = new Map<string, StudentSnapshot>();
  outbox: OutboxMessage[] = [];
  #nextId = 0;

  processed = new Set<string>();
  /** Idempotency keys by key; they do not expire here. */
  keys = new Map<string, UsedKey | { readonly fingerprint: string }>();

  async transaction<T>(work: (scope: TransactionScope) => Promise<T>): Promise<T> {
    const rows = new Map(this.rows);
    const outbox = [...this.outbox];
    const processed = new Set(this.processed);
    const keys = new Map(this.keys);
    const store = (student: Student) => {
      for (const event of student.pullDomainEvents())
        outbox.push(studentEventMessage(event, `msg-${this.#nextId++}`));
    };
    const load = (id: string) => {
      const row = rows.get(id);
      return row ? Student.rehydrate(row) : undefined;
    };
    const result = await work({
      students: {
        findByIdForUpdate: async (id) => load(id),
        findManyForUpdate: async (ids) =>
          new Map(ids.flatMap((id) => (rows.has(id) ? [[id, load(id)!] as const] : []))),
        add: async (student) => {
          rows.set(student.id, student.snapshot());
          store(student);
        },
        update: async (student, loadedVersion) => {
          if (rows.get(student.id)?.version !== loadedVersion) throw new Error('not locked at that version');
          rows.set(student.id, student.snapshot());
          store(student);
        },
        remove: async (student) => {
          rows.delete(student.id);
          store(student);
        },
      },
      inbox: {
        markProcessed: async (messageIds, consumer) => {
          const fresh = new Set<string>();
          for (const messageId of messageIds) {
            const key = `${consumer}:${messageId}`;
            if (processed.has(key)) continue;
            processed.add(key);
            fresh.add(messageId);
          }
          return fresh;
        },
      },
      outbox: {
        append: async (messages) => {
          outbox.push(...messages);
        },
      },
      idempotencyKeys: {
        claim: async ({ key, fingerprint }) => {
          const used = keys.get(key);
          if (used && 'outcome' in used) return used;
          keys.set(key, { fingerprint });
          return undefined;
        },
        complete: async ({ key, fingerprint }, outcome) => {
          keys.set(key, { fingerprint, outcome });
        },
        release: async ({ key }) => {
          keys.delete(key);
        },
      },
    });
    this.rows = rows;
    this.outbox = outbox;
    this.processed = processed;
    this.keys = keys;
    return result;
  }
}
