import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/infrastructure/persistence/database.ts';
import { silentLogger } from './logger.ts';
import { POSTGRES_URL, uniqueName } from './services.ts';

export interface TestDatabase {
  readonly url: string;
  readonly database: Database;
  /** Closes the connection and drops the database (PostgreSQL) so runs leave nothing behind. */
  dispose(): Promise<void>;
}

/** A fresh PostgreSQL database with a unique name, created on the test server. */
export async function createPostgresDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = uniqueName('tbe_test');
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`drop database if exists ${name} with (force)`);
      await client.end();
    },
  };
}

export async function openTestDatabase(kind: 'postgres' | 'pglite'): Promise<TestDatabase> {
  if (kind === 'pglite') {
    const database = await openDatabase('pglite://memory', silentLogger);
    await database.migrate();
    return { url: 'pglite://memory', database, dispose: () => database.close() };
  }
  const created = await createPostgresDatabase();
  const database = await openDatabase(created.url, silentLogger);
  await database.migrate();
  return {
    url: created.url,
    database,
    async dispose() {
      await database.close();
      await created.drop();
    },
  };
}

/** A session that can hold `students` locked, and tell which sessions wait on a lock meanwhile. */
export async function studentsTableLock(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return {
    client,
    /** The sessions waiting on a lock, once there is one; fails, rather than hangs, when none comes. */
    async waiting(timeoutMs = 30_000): Promise<number[]> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        // Inside whileLocked's transaction PostgreSQL shows the sessions as they were at its first look, until told
        // to look again: without this, a session that starts waiting after that first look is never seen.
        await client.query('select pg_stat_clear_snapshot()');
        const { rows } = await client.query<{ pid: number }>(
          `select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
        );
        if (rows.length > 0) return rows.map(({ pid }) => pid);
        if (Date.now() > deadline) throw new Error(`no session waited on a lock within ${timeoutMs} ms`);
        await sleep(20);
      }
    },
    async whileLocked<T>(work: () => Promise<T>): Promise<T> {
      await client.query('begin');
      await client.query('lock table students in exclusive mode');
      try {
        return await work();
      } finally {
        await client.query('commit');
      }
    },
    end: () => client.end(),
  };
}
