// `npm start` stopped while work is under way, on PostgreSQL (whose locks let a test hold that work in place): the
// front doors close first, so nothing new is taken while the worker finishes; and the shared adapters close in the
// reverse of their opening, so the outbox relay is done before the database it marks rows in goes; and tracing
// shuts down after them all, so the spans of what was still in flight are exported too.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { outbox } from '../../src/infrastructure/persistence/schema.ts';
import { startAllRoles } from '../support/all-roles.ts';
import { openTestDatabase, studentsTableLock } from '../support/databases.ts';
import { startOtlpReceiver } from '../support/otlp-receiver.ts';
import { needsPostgres } from '../support/services.ts';
import { until } from '../support/until.ts';
import { addStudent, updatesOf } from '../worker/worker-harness.ts';

/** npm start on `databaseUrl`, with the in-process bus and cache. */
const npmStart = (databaseUrl: string, env: Record<string, string> = {}) =>
  startAllRoles({
    DATABASE_URL: databaseUrl,
    AMQP_URL: 'memory:',
    REDIS_URL: 'memory:',
    SHUTDOWN_TIMEOUT_MS: '20000',
    ...env,
  });

/** Whether the API takes a write now. */
const takesWrites = (api: string) =>
  fetch(`${api}/api/students`, { method: 'POST' }).then(
    (response) => response.status === 201,
    () => false,
  );

interface LogLine {
  readonly level: number;
  readonly msg: string;
}

/** The JSON lines a process wrote from its "stopping" line on. */
function linesOfTheStop(output: string): LogLine[] {
  const lines = output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);
  return lines.slice(lines.findIndex((line) => line.msg === 'stopping'));
}

describe('npm start stopped while work is under way', await needsPostgres(), () => {
  test('SIGTERM while the worker handles an event: the API stops taking writes at once, and the event still completes', async () => {
    const database = await openTestDatabase('postgres');
    const lock = await studentsTableLock(database.url);
    const roles = npmStart(database.url);
    try {
      const { api } = await roles.ready;
      // The worker's transaction begins with its inbox: held there, the event stays in its hands.
      await lock.client.query('begin');
      await lock.client.query('lock table inbox in exclusive mode');
      const created = await fetch(`${api}/api/students`, { method: 'POST' });
      assert.equal(created.status, 201);
      const { id } = (await created.json()) as { id: string };
      await lock.waiting();

      roles.child.kill('SIGTERM');
      await until(async () => !(await takesWrites(api)), 'the API to stop taking writes', 5_000);
      assert.equal(roles.child.exitCode, null, 'the worker is still finishing its event');

      await lock.client.query('commit');
      assert.equal(await roles.exited, 0, roles.output());
      assert.equal((await updatesOf(database.database, [id])).get(id), 1, 'the event in hand was handled');
    } finally {
      roles.child.kill('SIGKILL');
      await lock.end();
      await database.dispose();
    }
  });

  test('SIGTERM while the outbox relay marks a batch sent: the relay finishes before the database closes, and the stop logs no failure', async () => {
    const database = await openTestDatabase('postgres');
    // A write waiting for a relay, whose row the relay cannot mark sent until the test lets it.
    const student = await addStudent(database.database);
    const [created] = await database.database.db.select().from(outbox).where(eq(outbox.subject, student.id));
    assert.ok(created);
    const lock = await studentsTableLock(database.url);
    await lock.client.query('begin');
    await lock.client.query('select id from outbox where id = $1 for update', [created.id]);
    const roles = npmStart(database.url);
    try {
      await roles.ready;
      const workerHealth = /"worker":"(http:[^"]+)"/.exec(roles.output())?.[1];
      assert.ok(workerHealth);
      await lock.waiting();

      roles.child.kill('SIGTERM');
      // The worker's server closes last of the roles; then the stop is on to the shared adapters.
      await until(
        () =>
          fetch(workerHealth).then(
            () => false,
            () => true,
          ),
        'the roles to stop',
      );
      await sleep(200);
      await lock.client.query('commit');

      assert.equal(await roles.exited, 0, roles.output());
      const trouble = linesOfTheStop(roles.output()).filter((line) => line.level >= 40);
      assert.deepEqual(trouble, [], 'nothing failed while stopping');
      const [row] = await database.database.db.select().from(outbox).where(eq(outbox.id, created.id));
      assert.notEqual(row?.sentAt, null, 'the batch it published is marked sent, not sent again later');
    } finally {
      roles.child.kill('SIGKILL');
      await lock.end();
      await database.dispose();
    }
  });

  test('SIGTERM while a request is in flight: the request is answered, and its span is exported before the exit', async () => {
    const database = await openTestDatabase('postgres');
    const receiver = await startOtlpReceiver();
    const lock = await studentsTableLock(database.url);
    const roles = npmStart(database.url, {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      // Nothing goes out on schedule: what the receiver gets, the stop sent.
      OTEL_BSP_SCHEDULE_DELAY: '600000',
    });
    try {
      const { api } = await roles.ready;
      await lock.client.query('begin');
      await lock.client.query('lock table students in exclusive mode');
      const inFlight = fetch(`${api}/api/students`, { method: 'POST' });
      await lock.waiting();

      roles.child.kill('SIGTERM');
      // The API turns new requests away once the stop has begun (503, or no connection; a read, which the lock lets
      // through, says when); the one in flight goes on.
      await until(
        () =>
          fetch(`${api}/api/students/${randomUUID()}`).then(
            (response) => response.status === 503,
            () => true,
          ),
        'the API to turn requests away',
        5_000,
      );
      await lock.client.query('commit');

      assert.equal((await inFlight).status, 201);
      assert.equal(await roles.exited, 0, roles.output());
      const span = receiver.spans.find(
        (received) =>
          received.name === 'POST /api/students' && received.attributes['http.response.status_code'] === 201,
      );
      assert.ok(span, `the in-flight request's span was exported:\n${roles.output()}`);
    } finally {
      roles.child.kill('SIGKILL');
      await lock.end();
      await receiver.close();
      await database.dispose();
    }
  });
});
