// `npm run db:migrate` on real PostgreSQL: it applies the migrations and exits 0, or says in one fatal line why it
// could not, and exits 1.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { valueWithoutUrlPassword } from '../../src/infrastructure/logging/url-password.ts';
import { createPostgresDatabase } from '../support/databases.ts';
import { spawnRole } from '../support/role-process.ts';
import { POSTGRES_URL, needsPostgres, uniqueName } from '../support/services.ts';

const ENTRY = 'src/apps/db-migrate/main.ts';
const FATAL = 60;

interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly err?: { message: string };
  readonly databaseUrl?: string;
}

function logLines(output: string): LogLine[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);
}

describe('npm run db:migrate', await needsPostgres(), () => {
  test('applies the migrations to DATABASE_URL and exits 0', async () => {
    const database = await createPostgresDatabase();
    try {
      const migrate = spawnRole(ENTRY, { DATABASE_URL: database.url });
      assert.equal(await migrate.exited, 0, migrate.output());
      const applied = logLines(migrate.output()).find((line) => line.msg === 'migrations applied');
      // The URL as every log line shows one: its password (if TEST_POSTGRES_URL has one) masked.
      assert.equal(
        applied?.databaseUrl,
        valueWithoutUrlPassword(database.url),
        'names the database it migrated',
      );
      const password = new URL(database.url).password;
      if (password)
        assert.ok(!migrate.output().includes(`:${password}@`), 'no URL in the output holds the password');
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      try {
        const { rows } = await client.query<{ name: string }>(
          "select to_regclass('public.students')::text as name",
        );
        assert.equal(rows[0]?.name, 'students');
      } finally {
        await client.end();
      }
    } finally {
      await database.drop();
    }
  });

  test('a database that does not exist is one fatal line saying so, and exit 1', async () => {
    const url = new URL(POSTGRES_URL);
    url.pathname = `/${uniqueName('tbe_missing')}`;
    const migrate = spawnRole(ENTRY, { DATABASE_URL: url.toString() });
    assert.equal(await migrate.exited, 1, migrate.output());
    const lines = logLines(migrate.output());
    const fatal = lines.find((line) => line.level === FATAL);
    assert.match(fatal?.msg ?? '', /^migrations not applied$/, migrate.output());
    assert.match(fatal?.err?.message ?? '', /does not exist/);
    assert.doesNotMatch(migrate.output(), /^\s+at /m, 'no uncaught stack on stderr');
  });
});
