// A write behind a lock another session holds (a hot row, an operator's open transaction) gives up after
// DATABASE_LOCK_TIMEOUT_MS with 503 and Retry-After, instead of holding its request and its pooled connection up to the
// statement timeout (30 s); nothing of it is written, and the same write goes through once the lock is gone. The
// worker, which nobody waits on, keeps waiting for the lock.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DependencyBusyError } from '../../src/application/errors.ts';
import { openDatabase, type Database } from '../../src/infrastructure/persistence/database.ts';
import { SqlUnitOfWork } from '../../src/infrastructure/persistence/sql-unit-of-work.ts';
import { uuidV7Generator } from '../../src/infrastructure/system/uuid-v7-generator.ts';
import { createPostgresDatabase, studentsTableLock } from '../support/databases.ts';
import { silentLogger } from '../support/logger.ts';
import { needsPostgres } from '../support/services.ts';
import { json, startWebApi, type RunningWebApi } from '../support/webapi.ts';

describe('a lock held by another session', await needsPostgres(), () => {
  let created: Awaited<ReturnType<typeof createPostgresDatabase>>;
  let database: Database;
  let api: RunningWebApi;
  let lock: Awaited<ReturnType<typeof studentsTableLock>>;
  let studentUrl: string;
  let studentId: string;

  before(async () => {
    created = await createPostgresDatabase();
    database = await openDatabase(created.url, silentLogger);
    await database.migrate();
    api = await startWebApi(database, { DATABASE_LOCK_TIMEOUT_MS: '300' });
    lock = await studentsTableLock(created.url);
    const student = await json(
      await fetch(`${api.url}/api/students`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' }),
      }),
    );
    studentId = String(student.id);
    studentUrl = `${api.url}/api/students/${studentId}`;
  });
  after(async () => {
    await lock?.end();
    await api?.stop();
    await database?.close();
    await created?.drop();
  });

  test('a PUT waiting on it is 503 with Retry-After after the lock timeout; nothing is written; it succeeds later', async () => {
    const update = () =>
      fetch(studentUrl, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', 'cache-control': 'no-cache' },
        body: JSON.stringify({ firstName: 'Grace', lastName: 'Hopper', email: 'grace@example.com' }),
      });
    const outboxRows = async () =>
      (await lock.client.query<{ n: number }>('select count(*)::int as n from outbox')).rows[0]!.n;
    const rowsBefore = await outboxRows();

    await lock.whileLocked(async () => {
      const started = Date.now();
      const refused = await update();
      // Answered while the lock is still held: the statement timeout (30 s) would have taken the test's lock too.
      assert.ok(Date.now() - started < 10_000, `answered after ${Date.now() - started} ms`);
      assert.equal(refused.status, 503);
      assert.ok(refused.headers.get('retry-after'), 'says when to try again');
      assert.match(refused.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal((await json(refused)).code, 'DEPENDENCY.UNAVAILABLE');
    });

    const unchanged = await json(await fetch(studentUrl, { headers: { 'cache-control': 'no-cache' } }));
    assert.equal(unchanged.firstName, 'Ada', 'the refused write changed nothing');
    assert.equal(await outboxRows(), rowsBefore, 'and published nothing');

    const retried = await update();
    assert.equal(retried.status, 200);
    assert.equal((await json(retried)).firstName, 'Grace');
  });

  test("the worker's unit of work (no lock timeout) waits for the lock and goes on once it is released", async () => {
    const worker = new SqlUnitOfWork(database, uuidV7Generator);
    const timed = new SqlUnitOfWork(database, uuidV7Generator, { lockTimeoutMs: 300 });
    const read = (unitOfWork: SqlUnitOfWork) =>
      unitOfWork.transaction(async ({ students }) => (await students.findByIdForUpdate(studentId))?.id);
    let waited: Promise<string | undefined> | undefined;
    await lock.whileLocked(async () => {
      await assert.rejects(read(timed), DependencyBusyError);
      waited = read(worker);
      // Past the other's lock timeout, still waiting.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      assert.equal((await lock.waiting()).length, 1);
    });
    assert.equal(await waited, studentId);
  });
});
