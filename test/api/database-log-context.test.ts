// A pooled PostgreSQL connection is opened inside whatever request or message first needed it, and its socket keeps
// that trace context: when the server later drops the idle connection, the warning must not claim to be part of that
// long-finished request's trace.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { inSpan } from '../../src/infrastructure/observability/tracing.ts';
import { openDatabase } from '../../src/infrastructure/persistence/database.ts';
import { sqlStatement } from '../../src/infrastructure/persistence/sql.ts';
import { createPostgresDatabase } from '../support/databases.ts';
import { recordingLogger } from '../support/logger.ts';
import { needsPostgres } from '../support/services.ts';
import { recordSpans } from '../support/tracing.ts';
import { until } from '../support/until.ts';

recordSpans();

describe('PostgreSQL connection loss in the log', await needsPostgres(), () => {
  test('an idle connection dropped by the server is logged outside the trace it was opened in', async () => {
    const { logger, logged } = recordingLogger({ traced: true });
    const created = await createPostgresDatabase();
    const database = await openDatabase(created.url, logger);
    try {
      // The pool's only connection is opened inside a span, as a request's or a message's would be.
      const pid = await inSpan('request', {}, async () => {
        const [row] = await database.sql.query<{ pid: number }>(
          sqlStatement('backend_pid', 'select pg_backend_pid() as pid'),
          [],
        );
        return row!.pid;
      });
      const admin = new pg.Client({ connectionString: created.url });
      await admin.connect();
      await admin.query('select pg_terminate_backend($1)', [pid]);
      await admin.end();
      await until(() => logged().includes('idle PostgreSQL connection lost'), 'the warning');
      const line = logged()
        .split('\n')
        .find((logged) => logged.includes('idle PostgreSQL connection lost'))!;
      assert.doesNotMatch(line, /"trace_id"/, line);
    } finally {
      await database.close();
      await created.drop();
    }
  });
});
