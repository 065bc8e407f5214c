// Every pooled connection busy (slow requests, or requests queued behind a lock another session holds): the database
// still answers, so the health probe must say so rather than wait in the pool's queue and report it unreachable,
// which would take a merely busy instance (every instance, behind one hot row) out of rotation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { openDatabase } from '../../src/infrastructure/persistence/database.ts';
import { databaseCheck, runHealthChecks } from '../../src/infrastructure/health/health.ts';
import { createPostgresDatabase } from '../support/databases.ts';
import { checkNamed } from '../support/health.ts';
import { silentLogger } from '../support/logger.ts';
import { needsPostgres } from '../support/services.ts';

const LOCK_KEY = 917_003;

test(
  'the database check answers while every pooled connection waits on a lock',
  await needsPostgres(),
  async () => {
    const created = await createPostgresDatabase();
    const holder = new pg.Client({ connectionString: created.url });
    const database = await openDatabase(created.url, silentLogger);
    let blocked: Promise<unknown>[] = [];
    try {
      await holder.connect();
      await holder.query('select pg_advisory_lock($1)', [LOCK_KEY]);
      // More statements than the pool has connections, all waiting for the holder's lock.
      blocked = Array.from({ length: 12 }, () =>
        database.sql
          .query({ name: 'wait_for_lock', text: 'select pg_advisory_xact_lock($1)' }, [LOCK_KEY])
          .catch(() => undefined),
      );
      // Until every connection is taken, waiting on the lock.
      for (let i = 0; i < 100; i++) {
        const { rows } = await holder.query<{ n: number }>(
          `select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted and objid = $1`,
          [LOCK_KEY],
        );
        if (rows[0]!.n >= 10) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const report = await runHealthChecks([
        databaseCheck(database, { status: 'Degraded', whatIsOff: 'writes' }),
      ]);
      const check = checkNamed(report, 'database');
      assert.equal(check?.status, 'Healthy', JSON.stringify(check));
    } finally {
      await holder.end().catch(() => undefined);
      await Promise.all(blocked);
      await database.close();
      await created.drop();
    }
  },
);
