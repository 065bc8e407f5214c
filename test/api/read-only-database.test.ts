// PostgreSQL answering but refusing every write (a hot standby during a failover, or default_transaction_read_only):
// the webapi keeps serving reads, answers writes 503 with Retry-After (not 500), and says why in /health.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { openDatabase } from '../../src/infrastructure/persistence/database.ts';
import { createPostgresDatabase } from '../support/databases.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { silentLogger } from '../support/logger.ts';
import { POSTGRES_URL, needsPostgres } from '../support/services.ts';
import { startWebApi } from '../support/webapi.ts';

test(
  'a read-only database: writes are 503 with Retry-After, reads work, /health says Degraded and why',
  await needsPostgres(),
  async () => {
    const created = await createPostgresDatabase();
    const name = new URL(created.url).pathname.slice(1);
    try {
      const migrating = await openDatabase(created.url, silentLogger);
      await migrating.migrate();
      await migrating.close();
      const admin = new pg.Client({ connectionString: POSTGRES_URL });
      await admin.connect();
      await admin.query(`alter database ${name} set default_transaction_read_only = on`);
      await admin.end();

      const database = await openDatabase(created.url, silentLogger);
      const api = await startWebApi(database);
      try {
        const created = await fetch(`${api.url}/api/students`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' }),
        });
        assert.equal(created.status, 503);
        assert.ok(created.headers.get('retry-after'), 'says when to try again');
        assert.equal(((await created.json()) as { code: string }).code, 'DEPENDENCY.UNAVAILABLE');
        assert.equal((await fetch(`${api.url}/api/students`)).status, 200, 'reads are served');

        const health = (await (await fetch(`${api.url}/health`)).json()) as HealthBody;
        assert.equal(health.status, 'Degraded');
        assert.equal(checkNamed(health, 'database')?.status, 'Degraded');
        assert.match(checkNamed(health, 'database')?.description ?? '', /^read-only: /);
      } finally {
        await api.stop();
        await database.close();
      }
    } finally {
      await created.drop();
    }
  },
);
