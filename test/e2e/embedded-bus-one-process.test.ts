// `npm start` (every role on the in-process bus) on PostgreSQL: its bus connects the roles of its own process only,
// so a second such process on the same database would lose events and notifications. It is refused at start-up, for
// as long as the first one runs.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { IN_PROCESS_BUS_LOCK_KEY } from '../../src/infrastructure/runtime/in-process-bus-lock.ts';
import { startAllRoles } from '../support/all-roles.ts';
import { createPostgresDatabase } from '../support/databases.ts';
import { POSTGRES_URL, needsPostgres } from '../support/services.ts';
import { eventually } from '../worker/worker-harness.ts';

const postgres = await needsPostgres();

/** The backend holding the in-process bus's lock on the database `client` is connected to, if one does. */
async function lockHolder(client: pg.Client): Promise<number | undefined> {
  const { rows } = await client.query<{ pid: number }>(
    `select pid from pg_locks where locktype = 'advisory' and granted and objid = $1
       and database = (select oid from pg_database where datname = current_database())`,
    [IN_PROCESS_BUS_LOCK_KEY],
  );
  return rows[0]?.pid;
}

/** Runs `npm start` twice on one database: the second must exit at once, saying why and what to do. */
async function assertSecondRefused(env: Record<string, string>): Promise<void> {
  const second = startAllRoles(env);
  if (
    await second.ready.then(
      () => true,
      () => false,
    )
  ) {
    second.child.kill('SIGKILL');
    assert.fail('a second process started on the database');
  }
  assert.equal(await second.exited, 1, second.output());
  assert.match(second.output(), /Another process already runs on this database with AMQP_URL=memory:/);
  assert.match(second.output(), /one process per database with AMQP_URL=memory:.*AMQP_URL=amqp:\/\//);
}

describe('npm start with AMQP_URL=memory: on a PostgreSQL database', { skip: postgres.skip }, () => {
  test('a second process on the same database exits at start-up saying why; the first keeps working, and once it is gone another may start', async () => {
    const database = await createPostgresDatabase();
    const env = { DATABASE_URL: database.url, AMQP_URL: 'memory:', REDIS_URL: 'memory:' };
    const first = startAllRoles(env);
    try {
      const { api } = await first.ready;
      await assertSecondRefused(env);

      const created = await fetch(`${api}/api/students`, { method: 'POST' });
      const { id } = (await created.json()) as { id: string };
      await eventually('the first process handled its write', async () => {
        const response = await fetch(`${api}/api/students/${id}`, {
          headers: { 'cache-control': 'no-cache' },
        });
        return ((await response.json()) as { updates: number }).updates === 1;
      });
      first.child.kill('SIGTERM');
      assert.equal(await first.exited, 0, first.output());

      const next = startAllRoles(env);
      try {
        await next.ready;
      } finally {
        next.child.kill('SIGTERM');
        await next.exited;
      }
    } finally {
      first.child.kill('SIGKILL');
      await database.drop();
    }
  });

  test('the lock is taken again after its connection is lost, so a second process is still refused', async () => {
    const database = await createPostgresDatabase();
    const env = { DATABASE_URL: database.url, AMQP_URL: 'memory:', REDIS_URL: 'memory:' };
    const admin = new pg.Client({ connectionString: database.url });
    const first = startAllRoles(env);
    try {
      await first.ready;
      await admin.connect();
      const holder = await lockHolder(admin);
      assert.ok(holder, 'the running process holds the lock');
      await admin.query('select pg_terminate_backend($1)', [holder]);
      await eventually(
        'the lock is held again',
        async () => ![undefined, holder].includes(await lockHolder(admin)),
      );

      await assertSecondRefused(env);
    } finally {
      first.child.kill('SIGKILL');
      await admin.end();
      await database.drop();
    }
  });

  test('a lost lock that another session took meanwhile is reported, and taken again once that session lets go', async () => {
    const database = await createPostgresDatabase();
    const env = { DATABASE_URL: database.url, AMQP_URL: 'memory:', REDIS_URL: 'memory:' };
    const other = new pg.Client({ connectionString: database.url });
    const first = startAllRoles(env);
    try {
      await first.ready;
      await other.connect();
      const holder = await lockHolder(other);
      assert.ok(holder, 'the running process holds the lock');
      await other.query('select pg_terminate_backend($1)', [holder]);
      // Another session takes the freed lock before the process takes it again, as a second process starting then would.
      await eventually(
        'the other session holds the lock',
        async () =>
          (
            await other.query<{ locked: boolean }>('select pg_try_advisory_lock($1) as locked', [
              IN_PROCESS_BUS_LOCK_KEY,
            ])
          ).rows[0]?.locked === true,
      );
      await eventually('the process says events will be lost', () =>
        /another process with AMQP_URL=memory: started on this database while the lock was lost/.test(
          first.output(),
        ),
      );

      await other.query('select pg_advisory_unlock_all()');
      const otherPid = (await other.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid;
      await eventually(
        'the process holds the lock again',
        async () => ![undefined, holder, otherPid].includes(await lockHolder(other)),
      );
    } finally {
      first.child.kill('SIGKILL');
      await other.end();
      await database.drop();
    }
  });

  test('a lock lost while the database refuses connections is taken again once it accepts them', async () => {
    const database = await createPostgresDatabase();
    const env = { DATABASE_URL: database.url, AMQP_URL: 'memory:', REDIS_URL: 'memory:' };
    const admin = new pg.Client({ connectionString: database.url });
    // A database cannot refuse connections by a session of its own.
    const server = new pg.Client({ connectionString: POSTGRES_URL });
    const refuseConnections = (refuse: boolean) =>
      server.query(
        `alter database ${pg.escapeIdentifier(new URL(database.url).pathname.slice(1))} allow_connections ${!refuse}`,
      );
    const first = startAllRoles(env);
    let refusing = false;
    try {
      await first.ready;
      await Promise.all([admin.connect(), server.connect()]);
      const holder = await lockHolder(admin);
      assert.ok(holder, 'the running process holds the lock');
      // An outage of the database (a restart, say): the lock's session ends, and for a while no new one opens.
      await refuseConnections(true);
      refusing = true;
      await admin.query('select pg_terminate_backend($1)', [holder]);
      await new Promise((resolve) => setTimeout(resolve, 5_000)); // the outage: longer than a retry's wait
      await refuseConnections(false);
      refusing = false;
      await eventually(
        'the lock is held again',
        async () => ![undefined, holder].includes(await lockHolder(admin)),
      );
    } finally {
      first.child.kill('SIGKILL');
      if (refusing) await refuseConnections(false);
      await Promise.all([admin.end(), server.end()]);
      await database.drop();
    }
  });
});
