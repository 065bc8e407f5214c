// One contract suite for the persistence port, run against PGlite and real PostgreSQL.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { SpanStatusCode } from '@opentelemetry/api';
import { desc, eq } from 'drizzle-orm';
import pg from 'pg';
import type { KeyedRequest } from '../../src/application/ports/idempotency-keys.ts';
import { writeOnce } from '../../src/application/students/write-once.ts';
import { err, ok } from '../../src/domain/result.ts';
import { Student } from '../../src/domain/student.ts';
import { SqlStudentQueries } from '../../src/infrastructure/persistence/sql-student-queries.ts';
import { DependencyUnavailableError } from '../../src/application/errors.ts';
import { guardDatabase } from '../../src/infrastructure/persistence/database-errors.ts';
import { openDatabase, type Database } from '../../src/infrastructure/persistence/database.ts';
import { sqlStatement, type SqlExecutor } from '../../src/infrastructure/persistence/sql.ts';
import { SqlUnitOfWork } from '../../src/infrastructure/persistence/sql-unit-of-work.ts';
import { pruneIdempotencyKeys } from '../../src/infrastructure/persistence/retention.ts';
import { idempotencyKeys, outbox, students } from '../../src/infrastructure/persistence/schema.ts';
import { uuidV7Generator } from '../../src/infrastructure/system/uuid-v7-generator.ts';
import {
  createPostgresDatabase,
  openTestDatabase,
  studentsTableLock,
  type TestDatabase,
} from '../support/databases.ts';
import { silentLogger } from '../support/logger.ts';
import { until } from '../support/until.ts';
import { needsPostgres } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { recordSpans } from '../support/tracing.ts';

// Traced, as a role is with an OTLP endpoint: what a trace backend shows of a failed transaction is asserted below.
const spans = recordSpans();

const now = new Date('2026-01-02T03:04:05.000Z');
const uniqueKey = () => `key-${uuidV7Generator.next()}`;

function newStudent(firstName = 'Ada', id = uuidV7Generator.next()): Student {
  const created = Student.create({
    id,
    details: { firstName, lastName: 'Lovelace', email: `${firstName.toLowerCase()}@example.com` },
    actor: 'tester',
    now,
  });
  assert.ok(created.ok);
  return created.value;
}

function persistenceContract(kind: 'postgres' | 'pglite') {
  let testDb: TestDatabase;
  let unitOfWork: SqlUnitOfWork;
  let queries: SqlStudentQueries;

  before(async () => {
    testDb = await openTestDatabase(kind);
    unitOfWork = new SqlUnitOfWork(testDb.database, uuidV7Generator);
    queries = new SqlStudentQueries(testDb.database.sql);
  });
  after(() => testDb?.dispose());

  const createOnce = (request: KeyedRequest, student: Student) =>
    writeOnce(unitOfWork, request, async ({ students }) => {
      await students.add(student);
      return ok(student.snapshot());
    });
  const countStudents = async (firstName: string) =>
    (await testDb.database.db.select().from(students).where(eq(students.firstName, firstName))).length;

  const outboxFor = (studentId: string) =>
    testDb.database.db
      .select()
      .from(outbox)
      .orderBy(desc(outbox.seq))
      .then((rows) => rows.filter((row) => row.subject === studentId).reverse());

  test('a created student is stored with one StudentCreated outbox row in the same transaction', async () => {
    const student = newStudent();
    await unitOfWork.transaction(({ students }) => students.add(student));

    const stored = await queries.findById(student.id);
    assert.deepEqual(stored, student.snapshot());
    const rows = await outboxFor(student.id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.type, 'StudentCreated');
    assert.equal(rows[0]?.exchange, 'students');
    assert.equal(rows[0]?.routingKey, 'student.created');
    assert.equal(rows[0]?.sentAt, null);
    assert.deepEqual(rows[0]?.payload, {
      actor: 'tester',
      student: { ...stored, created: now.toISOString(), lastModified: null },
    });
  });

  test('findByIds reads many students at once: those that exist, as stored', async () => {
    const [first, second] = [newStudent(), newStudent()];
    await unitOfWork.transaction(async ({ students }) => {
      await students.add(first);
      await students.add(second);
    });
    const missing = '01a00000-0000-7000-8000-00000000dead';
    const found = await queries.findByIds([second.id, missing, first.id]);
    assert.deepEqual(
      found.sort((a, b) => a.id.localeCompare(b.id)),
      [first.snapshot(), second.snapshot()].sort((a, b) => a.id.localeCompare(b.id)),
    );
    assert.deepEqual(await queries.findByIds([]), []);
  });

  test('when the transaction fails, neither the student nor its outbox row is written', async () => {
    const student = newStudent();
    await assert.rejects(
      unitOfWork.transaction(async ({ students }) => {
        await students.add(student);
        throw new Error('boom after the insert');
      }),
      /boom/,
    );
    assert.equal(await queries.findById(student.id), undefined);
    assert.deepEqual(await outboxFor(student.id), []);
  });

  test('a unit of work that reads nothing is one statement, without BEGIN and COMMIT; one that reads is a transaction', async () => {
    let transactions = 0;
    const counted: Database = Object.assign(Object.create(testDb.database) as Database, {
      transaction: <T>(work: (tx: SqlExecutor) => Promise<T>) => {
        transactions++;
        return testDb.database.transaction(work);
      },
    });
    const counting = new SqlUnitOfWork(counted, uuidV7Generator);
    const student = newStudent('Single');
    await counting.transaction(({ students }) => students.add(student));
    assert.equal(transactions, 0);
    assert.deepEqual(await queries.findById(student.id), student.snapshot());
    assert.deepEqual(
      (await outboxFor(student.id)).map((row) => row.type),
      ['StudentCreated'],
    );

    await counting.transaction(async ({ students }) => {
      const loaded = await students.findByIdForUpdate(student.id);
      assert.ok(loaded);
      loaded.recordBackgroundProcessing({ actor: 'worker', now });
      await students.update(loaded, 1);
    });
    assert.equal(transactions, 1);
    assert.equal((await queries.findById(student.id))?.updates, 1);
  });

  test('when the one statement fails (an id taken), none of it is written', async () => {
    const student = newStudent('Taken');
    await unitOfWork.transaction(({ students }) => students.add(student));
    const again = newStudent('Again', student.id);
    await assert.rejects(unitOfWork.transaction(({ students }) => students.add(again)));
    assert.equal((await queries.findById(student.id))?.firstName, 'Taken');
    assert.deepEqual(
      (await outboxFor(student.id)).map((row) => row.type),
      ['StudentCreated'],
    );
  });

  test("a transaction the database refuses ends its span, and its message's create span, as errors with the database's reason", async () => {
    const student = newStudent('Refused');
    await unitOfWork.transaction(({ students }) => students.add(student));
    const again = newStudent('Again', student.id);
    spans.reset();
    const refusal = await unitOfWork
      .transaction(({ students }) => students.add(again))
      .then(
        () => assert.fail('the database took a second student with the same id'),
        (error: unknown) => error as Error,
      );
    assert.match(refusal.message, /duplicate key value violates unique constraint/);
    // What a trace backend shows: the failed transaction and why, not only that something failed.
    for (const name of ['transaction', 'create students']) {
      const span = spans.getFinishedSpans().find((each) => each.name === name);
      assert.deepEqual(span?.status, { code: SpanStatusCode.ERROR, message: refusal.message }, name);
    }
  });

  test('a unit of work failing after a read rolls back and releases its row locks', async () => {
    const student = newStudent('Locked');
    await unitOfWork.transaction(({ students }) => students.add(student));
    await assert.rejects(
      unitOfWork.transaction(async ({ students }) => {
        const loaded = await students.findByIdForUpdate(student.id);
        assert.ok(loaded);
        loaded.recordBackgroundProcessing({ actor: 'worker', now });
        await students.update(loaded, 1);
        throw new Error('boom after the read');
      }),
      /boom after the read/,
    );
    // Still locked, this would wait for ever (the test's timeout).
    await unitOfWork.transaction(async ({ students }) => {
      const loaded = await students.findByIdForUpdate(student.id);
      assert.ok(loaded);
      assert.equal(loaded.snapshot().updates, 0);
    });
    assert.deepEqual(
      (await outboxFor(student.id)).map((row) => row.type),
      ['StudentCreated'],
    );
  });

  test('an update bumps the version and appends StudentUpdated after StudentCreated', async () => {
    const student = newStudent();
    await unitOfWork.transaction(({ students }) => students.add(student));
    await unitOfWork.transaction(async ({ students }) => {
      const loaded = await students.findByIdForUpdate(student.id);
      assert.ok(loaded);
      const result = loaded.update({
        details: { firstName: 'Grace', lastName: 'Hopper', email: 'grace@example.com' },
        actor: 'editor',
        now,
      });
      assert.ok(result.ok);
      await students.update(loaded, 1);
    });
    const stored = await queries.findById(student.id);
    assert.equal(stored?.firstName, 'Grace');
    assert.equal(stored?.version, 2);
    assert.equal(stored?.lastModifiedBy, 'editor');
    const rows = await outboxFor(student.id);
    assert.deepEqual(
      rows.map((row) => row.type),
      ['StudentCreated', 'StudentUpdated'],
    );
  });

  test('concurrent updates of one student queue on the row lock: none is lost', async () => {
    const student = newStudent();
    await unitOfWork.transaction(({ students }) => students.add(student));
    await Promise.all(
      Array.from({ length: 5 }, () =>
        unitOfWork.transaction(async ({ students }) => {
          const loaded = await students.findByIdForUpdate(student.id);
          assert.ok(loaded);
          const version = loaded.version;
          loaded.recordBackgroundProcessing({ actor: 'worker', now });
          await students.update(loaded, version);
        }),
      ),
    );
    const stored = await queries.findById(student.id);
    assert.equal(stored?.updates, 5);
    assert.equal(stored?.version, 6);
  });

  test('a removed student is gone and leaves a StudentDeleted outbox row', async () => {
    const student = newStudent();
    await unitOfWork.transaction(({ students }) => students.add(student));
    await unitOfWork.transaction(async ({ students }) => {
      const loaded = await students.findByIdForUpdate(student.id);
      assert.ok(loaded);
      loaded.delete({ actor: 'remover', now });
      await students.remove(loaded);
    });
    assert.equal(await queries.findById(student.id), undefined);
    assert.deepEqual(
      (await outboxFor(student.id)).map((row) => row.type),
      ['StudentCreated', 'StudentDeleted'],
    );
  });

  test('several students are loaded and locked at once; ids that do not exist are left out', async () => {
    const [first, second] = [newStudent('Many1'), newStudent('Many2')];
    await unitOfWork.transaction(async ({ students }) => {
      await students.add(first);
      await students.add(second);
    });
    const missing = uuidV7Generator.next();
    const loaded = await unitOfWork.transaction(({ students }) =>
      students.findManyForUpdate([second.id, missing, first.id]),
    );
    assert.deepEqual([...loaded.keys()].sort(), [first.id, second.id].sort());
    assert.deepEqual(loaded.get(first.id)?.snapshot(), first.snapshot());
  });

  test('a student added and then changed in one transaction is stored as last saved, with every event in order', async () => {
    const student = newStudent('Twice');
    await unitOfWork.transaction(async ({ students }) => {
      await students.add(student);
      student.recordBackgroundProcessing({ actor: 'worker', now });
      const renamed = student.update({
        details: { firstName: 'Twice', lastName: 'Renamed', email: 'twice@example.com' },
        actor: 'editor',
        now,
      });
      assert.ok(renamed.ok);
      await students.update(student, 1);
    });
    const stored = await queries.findById(student.id);
    assert.equal(stored?.lastName, 'Renamed');
    assert.equal(stored?.updates, 1);
    assert.equal(stored?.version, 3);
    assert.deepEqual(
      (await outboxFor(student.id)).map((row) => row.type),
      ['StudentCreated', 'StudentUpdated'],
    );
  });

  test('a stored student updated twice in one transaction is written once, at its last state, with both events', async () => {
    const student = newStudent('Stored');
    await unitOfWork.transaction(({ students }) => students.add(student));
    await unitOfWork.transaction(async ({ students }) => {
      const loaded = await students.findByIdForUpdate(student.id);
      assert.ok(loaded);
      for (const lastName of ['First', 'Second']) {
        const version = loaded.version;
        assert.ok(
          loaded.update({
            details: { firstName: 'Stored', lastName, email: 'stored@example.com' },
            actor: 'editor',
            now,
          }).ok,
        );
        await students.update(loaded, version);
      }
    });
    const stored = await queries.findById(student.id);
    assert.equal(stored?.lastName, 'Second');
    assert.equal(stored?.version, 3);
    assert.deepEqual(
      (await outboxFor(student.id)).map((row) => row.type),
      ['StudentCreated', 'StudentUpdated', 'StudentUpdated'],
    );
  });

  for (const readFirst of [true, false])
    test(`an update saved over a version the row has moved past is refused, and nothing of its transaction is written (${readFirst ? 'after a locking read' : 'without a read first'})`, async () => {
      const student = newStudent('Stale');
      await unitOfWork.transaction(({ students }) => students.add(student));
      const stale = Student.rehydrate(student.snapshot());
      await unitOfWork.transaction(async ({ students }) => {
        const loaded = await students.findByIdForUpdate(student.id);
        assert.ok(loaded);
        loaded.recordBackgroundProcessing({ actor: 'worker', now });
        await students.update(loaded, 1);
      });
      await assert.rejects(
        unitOfWork.transaction(async ({ students, outbox: writer }) => {
          // Locked at its current version, as every write locks what it saves; saved from a copy read earlier. Without
          // a read, the unit's one statement runs alone: its check must still undo it.
          if (readFirst) assert.equal((await students.findByIdForUpdate(student.id))?.version, 2);
          assert.ok(
            stale.update({
              details: { firstName: 'Stale', lastName: 'Over', email: 'stale@example.com' },
              actor: 'late',
              now,
            }).ok,
          );
          await students.update(stale, 1);
          await writer.append([
            {
              id: uuidV7Generator.next(),
              exchange: 'notifications',
              routingKey: 'student.updated',
              type: 'StudentUpdated',
              subject: student.id,
              payload: {},
              occurredAt: now,
            },
          ]);
        }),
        /not locked at their version/,
      );
      const stored = await queries.findById(student.id);
      assert.equal(stored?.lastName, 'Lovelace', 'the newer version is kept');
      assert.equal(stored?.updates, 1);
      assert.equal(stored?.version, 2);
      assert.deepEqual(
        (await outboxFor(student.id)).map((row) => row.type),
        ['StudentCreated'],
      );
    });

  test('the inbox reports only the messages it has not seen, also when one repeats within a call', async () => {
    const [a, b, c] = [uuidV7Generator.next(), uuidV7Generator.next(), uuidV7Generator.next()];
    const first = await unitOfWork.transaction(({ inbox }) =>
      inbox.markProcessed([a, b, a], 'contract-test'),
    );
    assert.deepEqual([...first].sort(), [a, b].sort());
    const second = await unitOfWork.transaction(({ inbox }) => inbox.markProcessed([b, c], 'contract-test'));
    assert.deepEqual([...second], [c]);
    const otherConsumer = await unitOfWork.transaction(({ inbox }) => inbox.markProcessed([a], 'another'));
    assert.deepEqual([...otherConsumer], [a]);
    // Any text is an id: one with a leading byte order mark is new, and its twin without the mark is another id.
    const marked = `\uFEFF${c}`;
    const withMark = await unitOfWork.transaction(({ inbox }) =>
      inbox.markProcessed([marked, `\uFEFF`], 'contract-test'),
    );
    assert.deepEqual([...withMark].sort(), [marked, '\uFEFF'].sort());
  });

  test('a write under an idempotency key runs once: a retry gets its outcome back, dates as dates', async () => {
    const request = { key: uniqueKey(), fingerprint: 'one', ttlSeconds: 60 };
    const student = newStudent('Keyed');
    const first = await createOnce(request, student);
    assert.deepEqual(first, { ok: true, value: student.snapshot() });
    const retry = await createOnce(request, newStudent('Keyed'));
    assert.deepEqual(retry, { ok: true, value: student.snapshot(), replayed: true });
    assert.equal(await countStudents('Keyed'), 1);
    await assert.rejects(createOnce({ ...request, fingerprint: 'two' }, newStudent('Keyed')), {
      name: 'IdempotencyKeyReusedError',
    });
    assert.equal(await countStudents('Keyed'), 1);
  });

  test('a refused or failed write leaves its key unused; an expired key is new again and then pruned', async () => {
    const request = { key: uniqueKey(), fingerprint: 'one', ttlSeconds: 60 };
    const missing = uuidV7Generator.next();
    const refused = await writeOnce(unitOfWork, request, async ({ students }) => {
      const loaded = await students.findByIdForUpdate(missing);
      return loaded ? ok(loaded.snapshot()) : err({ code: 'STUDENT.NOT_FOUND' as const, message: 'gone' });
    });
    assert.equal(refused.ok, false);
    await assert.rejects(
      writeOnce(unitOfWork, request, async () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    const student = newStudent('Freed');
    assert.deepEqual(await createOnce(request, student), { ok: true, value: student.snapshot() });

    const expiring = { key: uniqueKey(), fingerprint: 'one', ttlSeconds: 0 };
    await createOnce(expiring, newStudent('Expired'));
    const again = newStudent('Expired');
    assert.deepEqual(await createOnce({ ...expiring, fingerprint: 'two' }, again), {
      ok: true,
      value: again.snapshot(),
    });
    assert.equal(await countStudents('Expired'), 2);
    assert.ok((await pruneIdempotencyKeys(testDb.database, new Date(Date.now() + 1_000))) >= 1);
    const kept = await testDb.database.db.select().from(idempotencyKeys);
    assert.ok(kept.some((row) => row.key === request.key));
    assert.ok(!kept.some((row) => row.key === expiring.key));
  });

  test('the same key in two transactions at once: one writes, the other waits for it and gets its outcome', async () => {
    const request = { key: uniqueKey(), fingerprint: 'one', ttlSeconds: 60 };
    const results = await Promise.all([
      createOnce(request, newStudent('Raced')),
      createOnce(request, newStudent('Raced')),
    ]);
    assert.equal(await countStudents('Raced'), 1);
    assert.equal(results.filter((result) => result.replayed).length, 1);
    assert.ok(results[0].ok && results[1].ok);
    assert.deepEqual(results[0].value, results[1].value);
  });

  test('keyset pages walk every student once, in creation order', async () => {
    const created: string[] = [];
    for (let i = 0; i < 7; i++) {
      const student = newStudent(`Page${i}`);
      await unitOfWork.transaction(({ students }) => students.add(student));
      created.push(student.id);
    }
    const seen: string[] = [];
    let afterId: string | undefined;
    for (;;) {
      const page = await queries.list({ limit: 3, ...(afterId ? { afterId } : {}) });
      seen.push(...page.items.map((item) => item.id));
      if (!page.lastId) break;
      afterId = page.lastId;
    }
    assert.deepEqual(
      seen.filter((id) => created.includes(id)),
      created,
    );
    assert.equal(new Set(seen).size, seen.length);
  });

  test('a page holds at most its limit; only a page with students after it names the last one to go on from', async () => {
    for (let i = 0; i < 3; i++) {
      const student = newStudent(`Sized${i}`);
      await unitOfWork.transaction(({ students }) => students.add(student));
    }
    const total = (await testDb.database.db.select().from(students)).length;
    const all = await queries.list({ limit: total });
    assert.equal(all.items.length, total);
    assert.equal(all.lastId, null, 'a page that holds exactly every student is the last');

    const short = await queries.list({ limit: total - 1 });
    assert.equal(short.items.length, total - 1);
    assert.equal(short.lastId, short.items.at(-1)?.id);

    const [firstId] = all.items.map((item) => item.id);
    const rest = await queries.list({ limit: total - 1, afterId: firstId });
    assert.deepEqual(
      rest.items.map((item) => item.id),
      all.items.slice(1).map((item) => item.id),
    );
    assert.equal(rest.lastId, null, 'a page after a cursor that holds exactly the rest is the last');
    const middle = await queries.list({ limit: 1, afterId: firstId });
    assert.deepEqual(
      middle.items.map((item) => item.id),
      [all.items[1]?.id],
    );
    assert.equal(middle.lastId, all.items[1]?.id);
  });

  test('tryLead gives a key to one holder at a time, and heldLeadLocks lists the held keys of a range', async () => {
    // Far from the application's own keys, so a process of another suite on this database cannot interfere.
    const base = 900_000_000;
    const { database } = testDb;
    const first = await database.tryLead(base + 1);
    const third = await database.tryLead(base + 3);
    try {
      assert.ok(first && third);
      assert.equal(await database.tryLead(base + 1), undefined, 'a held key is not given twice');
      assert.deepEqual(await database.heldLeadLocks(base, base + 9), [base + 1, base + 3]);
      assert.deepEqual(await database.heldLeadLocks(base + 2, base + 9), [base + 3]);
      await first.release();
      assert.deepEqual(await database.heldLeadLocks(base, base + 9), [base + 3]);
      if (kind === 'postgres') {
        // Advisory locks are per database: another database on the same server does not see these.
        const other = await openTestDatabase('postgres');
        try {
          assert.deepEqual(await other.database.heldLeadLocks(base, base + 9), []);
        } finally {
          await other.dispose();
        }
      }
    } finally {
      await first?.release();
      await third?.release();
    }
    assert.deepEqual(await database.heldLeadLocks(base, base + 9), []);
  });

  test('migrations applied twice change nothing', async () => {
    await testDb.database.migrate();
    await testDb.database.migrate();
    assert.ok(Array.isArray(await queries.list({ limit: 1 }).then((page) => page.items)));
  });
}

describe('persistence on PGlite', () => persistenceContract('pglite'));
describe('persistence on PostgreSQL', await needsPostgres(), () => persistenceContract('postgres'));

describe('leadership on PostgreSQL', await needsPostgres(), () => {
  test('a holder whose network goes silent loses its leadership within seconds, not the OS keepalive hours', async () => {
    const target = await openTestDatabase('postgres');
    const address = new URL(target.url);
    const proxy = await TcpProxy.start(address.hostname, Number(address.port || 5432));
    address.host = `127.0.0.1:${proxy.port}`;
    const database = await openDatabase(address.toString(), silentLogger);
    try {
      const leadership = await database.tryLead(900_000_100);
      assert.ok(leadership);
      proxy.silence();
      const startedAt = Date.now();
      const gaveUp = await Promise.race([
        leadership.lost.then(() => true),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), 15_000).unref()),
      ]);
      assert.ok(gaveUp, 'leadership still held 15 s after its network went silent');
      assert.ok(Date.now() - startedAt < 10_000, `lost after ${Date.now() - startedAt} ms`);
      await proxy.stop();
      await leadership.release();
    } finally {
      await proxy.stop();
      await database.close();
      await target.dispose();
    }
  });
  test('a holder that is alive but frozen (SIGSTOP, a long pause) loses its lock within seconds: another process takes it', async () => {
    const target = await openTestDatabase('postgres');
    const holder = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/support/hold-lead-lock.ts', target.url, '900000101'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const database = await openDatabase(target.url, silentLogger);
    try {
      const [said] = (await once(holder.stdout, 'data')) as [Buffer];
      assert.equal(said.toString().trim(), 'held');
      assert.equal(await database.tryLead(900_000_101), undefined, 'held by the other process');
      // Its kernel still answers TCP keepalive probes: only the session's idle limit can free the lock.
      holder.kill('SIGSTOP');
      const frozenAt = Date.now();
      let taken: Awaited<ReturnType<Database['tryLead']>>;
      await until(
        async () => (taken = await database.tryLead(900_000_101)) !== undefined,
        'the lock taken over',
        30_000,
        500,
      );
      assert.ok(Date.now() - frozenAt < 20_000, `taken over after ${Date.now() - frozenAt} ms`);
      await taken?.release();
    } finally {
      holder.kill('SIGCONT');
      holder.kill('SIGKILL');
      await database.close();
      await target.dispose();
    }
  });
});

describe('the statement timeout on PostgreSQL', await needsPostgres(), () => {
  test('a statement past it is cancelled by the server, not only given up on, and is a 503', async () => {
    const created = await createPostgresDatabase();
    const database = await openDatabase(created.url, silentLogger, { statementTimeoutMs: 500 });
    const slow = sqlStatement('test_slow_statement', "select pg_sleep(3), 'slow statement marker'");
    try {
      await assert.rejects(
        guardDatabase(() => database.sql.query(slow, [])),
        DependencyUnavailableError,
      );
      const [running] = await database.sql.query<{ count: number }>(
        sqlStatement(
          'test_still_running',
          `select count(*)::int as count from pg_stat_activity
           where query like '%slow statement marker%' and state = 'active' and pid <> pg_backend_pid()`,
        ),
        [],
      );
      assert.equal(running?.count, 0, 'the server no longer runs it');
    } finally {
      await database.close();
      await created.drop();
    }
  });
});

describe('a database closed to connections', await needsPostgres(), () => {
  test('is unavailable (a 503), not an error of the request (a 500)', async () => {
    const created = await createPostgresDatabase();
    const database = await openDatabase(created.url, silentLogger);
    const admin = new pg.Client({ connectionString: created.url.replace(/\/[^/]+$/, '/postgres') });
    const name = new URL(created.url).pathname.slice(1);
    try {
      await admin.connect();
      await admin.query(`alter database "${name}" allow_connections false`);
      await assert.rejects(
        guardDatabase(() => database.sql.query(sqlStatement('test_closed', 'select 1'), [])),
        DependencyUnavailableError,
      );
    } finally {
      await admin.query(`alter database "${name}" allow_connections true`);
      await admin.end();
      await database.close();
      await created.drop();
    }
  });
});

describe('migrations on PostgreSQL', await needsPostgres(), () => {
  test('a migrator waits for another one however long that takes, past the statement timeout', async () => {
    const created = await createPostgresDatabase();
    const database = await openDatabase(created.url, silentLogger, { statementTimeoutMs: 1_000 });
    const other = new pg.Client({ connectionString: created.url });
    try {
      await database.migrate();
      await other.connect();
      // Another migrator's transaction, applying a migration for longer than a statement may take.
      await other.query('begin');
      await other.query('lock table drizzle.__drizzle_migrations in access exclusive mode');
      const migrating = database.migrate();
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await other.query('commit');
      await migrating;
      assert.ok(
        Array.isArray(
          await new SqlStudentQueries(database.sql).list({ limit: 1 }).then((page) => page.items),
        ),
      );
    } finally {
      await other.end();
      await database.close();
      await created.drop();
    }
  });

  test('processes migrating a new database at the same time take turns: both start, each migration is applied once', async () => {
    const created = await createPostgresDatabase();
    const first = await openDatabase(created.url, silentLogger);
    const second = await openDatabase(created.url, silentLogger);
    const other = new pg.Client({ connectionString: created.url });
    try {
      await other.connect();
      // Holds the migrations' schema back until both migrators wait, so they would run together without a turn.
      await other.query('begin');
      await other.query('create schema drizzle');
      const migrating = [first.migrate(), second.migrate()].map((migration) =>
        migration.then(
          () => undefined,
          (error: unknown) => error,
        ),
      );
      for (;;) {
        // Statistics are read once per transaction unless cleared: each poll looks again.
        await other.query('select pg_stat_clear_snapshot()');
        const { rows } = await other.query<{ waiting: number }>(
          `select count(*)::int as waiting from pg_stat_activity
           where datname = current_database() and wait_event_type = 'Lock'`,
        );
        if (rows[0]!.waiting >= 2) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await other.query('rollback');
      assert.deepEqual(await Promise.all(migrating), [undefined, undefined], 'neither migrator failed');
      const { rows } = await other.query<{ applied: number; hashes: number }>(
        'select count(*)::int as applied, count(distinct hash)::int as hashes from drizzle.__drizzle_migrations',
      );
      assert.equal(rows[0]!.applied, rows[0]!.hashes);
    } finally {
      await other.end();
      await first.close();
      await second.close();
      await created.drop();
    }
  });
});

describe('retention on PostgreSQL', await needsPostgres(), () => {
  test('pruning leaves an expired key that a write takes over meanwhile: a retry still gets its outcome', async () => {
    const testDb = await openTestDatabase('postgres');
    const unitOfWork = new SqlUnitOfWork(testDb.database, uuidV7Generator);
    const createOnce = (request: KeyedRequest, student: Student, beforeWrite?: () => Promise<void>) =>
      writeOnce(unitOfWork, request, async ({ students }) => {
        await beforeWrite?.();
        await students.add(student);
        return ok(student.snapshot());
      });
    const locks = await studentsTableLock(testDb.url);
    try {
      const expired = { key: uniqueKey(), fingerprint: 'one', ttlSeconds: 0 };
      await createOnce(expired, newStudent('Retaken'));
      const takeover = { ...expired, fingerprint: 'two', ttlSeconds: 60 };
      let pruning: Promise<number> | undefined;
      const student = newStudent('Retaken');
      // The key is claimed (its row locked) when the write begins; it commits once the pruner waits on that row.
      const written = await createOnce(takeover, student, async () => {
        pruning = pruneIdempotencyKeys(testDb.database, new Date(Date.now() + 1_000));
        await locks.waiting();
      });
      assert.ok(written.ok && !written.replayed);
      await pruning;
      const retried = await createOnce(takeover, newStudent('Retaken'));
      assert.deepEqual(retried, { ok: true, value: student.snapshot(), replayed: true });
    } finally {
      await locks.end();
      await testDb.dispose();
    }
  });
});
