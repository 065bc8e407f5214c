// A write behind a lock another session holds (a hot row, an operator's open transaction) gives up after
// DATABASE_LOCK_TIMEOUT_MS with 503 and Retry-After, instead of holding its request and its pooled connection up to the
// statement timeout (30 s); nothing of it is written, and the same write goes through once the lock is gone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/infrastructure/persistence/database.ts';
import { createPostgresDatabase, studentsTableLock } from '../support/databases.ts';
import { silentLogger } from '../support/logger.ts';
import { needsPostgres } from '../support/services.ts';
import { json, startWebApi } from '../support/webapi.ts';

const LOCK_TIMEOUT = { DATABASE_LOCK_TIMEOUT_MS: '300' };

test(
  'a PUT waiting on a locked row is 503 with Retry-After after the lock timeout; nothing is written; it succeeds later',
  await needsPostgres(),
  async () => {
    const created = await createPostgresDatabase();
    const { databaseLockTimeoutMs } = parseConfig({ DATABASE_URL: created.url, ...LOCK_TIMEOUT });
    const database = await openDatabase(created.url, silentLogger, { lockTimeoutMs: databaseLockTimeoutMs });
    await database.migrate();
    const api = await startWebApi(database, LOCK_TIMEOUT);
    const lock = await studentsTableLock(created.url);
    try {
      const student = await json(
        await fetch(`${api.url}/api/students`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' }),
        }),
      );
      const studentUrl = `${api.url}/api/students/${String(student.id)}`;
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
    } finally {
      await lock.end();
      await api.stop();
      await database.close();
      await created.drop();
    }
  },
);
