// DATABASE_POOL_SIZE: the most connections one process opens to PostgreSQL. Statements beyond it wait for a
// connection, not in the database: with the students table locked, only that many sessions wait on the lock, and all
// statements are answered once it is released.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/infrastructure/persistence/database.ts';
import { sqlStatement } from '../../src/infrastructure/persistence/sql.ts';
import { createPostgresDatabase, studentsTableLock } from '../support/databases.ts';
import { silentLogger } from '../support/logger.ts';
import { needsPostgres } from '../support/services.ts';

const LOCKING_READ = sqlStatement('pool_size_locking_read', 'select id from students for update');

test(
  'DATABASE_POOL_SIZE=2: four statements held by a lock take two connections; all four are answered',
  await needsPostgres(),
  async () => {
    const created = await createPostgresDatabase();
    const { databasePoolSize } = parseConfig({ DATABASE_URL: created.url, DATABASE_POOL_SIZE: '2' });
    const database = await openDatabase(created.url, silentLogger, { poolSize: databasePoolSize });
    await database.migrate();
    const lock = await studentsTableLock(created.url);
    try {
      const statements = await lock.whileLocked(async () => {
        const waiting = Array.from({ length: 4 }, () => database.sql.query(LOCKING_READ, []));
        await lock.waiting();
        // Time for the other two to take connections, were there any.
        await sleep(500);
        assert.equal((await lock.waiting()).length, 2);
        return waiting;
      });
      assert.equal((await Promise.all(statements)).length, 4);
    } finally {
      await lock.end();
      await database.close();
      await created.drop();
    }
  },
);
