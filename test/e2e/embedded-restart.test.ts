// `npm start` restarted after a crash: the in-process bus's queues died with the process, so what the worker had
// not handled yet must still get handled, once, and what it dead-lettered must stay dead-lettered, on record; the
// memory that held idempotent responses died too, so a retried keyed write must still not run twice.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { eq } from 'drizzle-orm';
import { createWebApiOver } from '../../src/apps/webapi/main.ts';
import { createWorkerOver } from '../../src/apps/worker/main.ts';
import { parseConfig } from '../../src/config.ts';
import { DEATH_REASON_HEADER, Exchanges, Queues, StudentRoutingKeys } from '../../src/contracts/messaging.ts';
import { StudentEventTypes } from '../../src/contracts/students.ts';
import type { Database } from '../../src/infrastructure/persistence/database.ts';
import { deadLetters, outbox } from '../../src/infrastructure/persistence/schema.ts';
import { openProcessResources, type WithBus } from '../../src/infrastructure/runtime/process-resources.ts';
import { until } from '../support/until.ts';
import { embeddedRoles } from '../support/all-roles.ts';
import { recordingLogger, silentLogger } from '../support/logger.ts';
import { addStudent, counted } from '../worker/worker-harness.ts';

/** A student's `updates` as the database has it. */
async function updatesOf(api: string, id: string): Promise<number> {
  const response = await fetch(`${api}/api/students/${id}`, { headers: { 'cache-control': 'no-cache' } });
  return ((await response.json()) as { updates: number }).updates;
}

/** An Idempotency-Key of this test run. */
const keyed = (n: number) => ({ 'idempotency-key': `embedded-restart-${process.pid}-${n}` });

test('events the relay handed to the in-process bus before a crash are handled after the restart, once; a keyed write retried after it is not run again', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'tbe-restart-'));
  const env = { DATABASE_URL: `pglite://${dataDir}`, API_PORT: '0', LOG_LEVEL: 'silent' };
  try {
    // The process before the crash: the relay publishes, but the worker never gets to the events.
    const config = parseConfig(env);
    const resources = await openProcessResources(config, silentLogger, {
      connectionName: 'before',
      bus: true,
    });
    const webApi = await createWebApiOver(resources, { config, logger: silentLogger });
    const api = await webApi.start();
    const ids: string[] = [];
    for (let n = 0; n < 3; n++) {
      const created = await fetch(`${api}/api/students`, { method: 'POST', headers: keyed(n) });
      ids.push(((await created.json()) as { id: string }).id);
    }
    await until(async () => (await resources.relay.backlog()) === 0, 'the relay to publish');
    await webApi.stop();
    await resources.close();

    const restarted = embeddedRoles(env);
    try {
      const { api: restartedApi } = await restarted.start();
      for (const id of ids)
        await until(async () => (await updatesOf(restartedApi, id)) > 0, `the worker to process ${id}`);
      for (const id of ids) assert.equal(await updatesOf(restartedApi, id), 1);
      // The memory that held the keys' responses died too; the database still knows each keyed write.
      const retried = await fetch(`${restartedApi}/api/students`, { method: 'POST', headers: keyed(0) });
      assert.equal(retried.status, 201);
      assert.equal(retried.headers.get('idempotent-replayed'), 'true');
      assert.equal(((await retried.json()) as { id: string }).id, ids[0], 'the same student, not a new one');
    } finally {
      await restarted.stop();
    }

    // A second restart changes nothing: each event is in the worker's inbox now.
    const again = embeddedRoles(env);
    try {
      const { api: againApi } = await again.start();
      await new Promise((resolve) => setTimeout(resolve, 500));
      for (const id of ids) assert.equal(await updatesOf(againApi, id), 1);
    } finally {
      await again.stop();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});

test('a restart says how many unhandled events it sends again, also when it is one, and nothing when there are none', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'tbe-restart-'));
  const config = parseConfig({ DATABASE_URL: `pglite://${dataDir}`, LOG_LEVEL: 'silent' });
  /** The lines a start of the process's adapters (the webapi's and the relay's, no worker) logs about resending. */
  const resentLines = async (work?: (resources: WithBus) => Promise<void>) => {
    const { logger, logged } = recordingLogger();
    const resources = await openProcessResources(config, logger, { connectionName: 'restart', bus: true });
    try {
      await work?.(resources);
    } finally {
      await resources.close();
    }
    return logged()
      .split('\n')
      .filter((line) => line.includes('sent again'))
      .map((line) => JSON.parse(line) as { resent: number; msg: string });
  };
  try {
    assert.deepEqual(await resentLines(), [], 'a first start has nothing to send again');
    // One event the relay hands to the in-process bus, with no worker to handle it before the process goes.
    const before = await resentLines(async (resources) => {
      await addStudent(resources.database);
      await until(async () => (await resources.relay.backlog()) === 0, 'the relay to publish');
    });
    assert.deepEqual(before, []);
    const restarted = await resentLines();
    assert.equal(restarted.length, 1, JSON.stringify(restarted));
    assert.equal(restarted[0]?.resent, 1);
    assert.match(
      restarted[0]?.msg ?? '',
      /events the worker had not handled before the restart are sent again/,
    );
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});

/** A new student's id; its `student.created` goes through the outbox behind everything written before it. */
async function createdStudent(api: string): Promise<string> {
  const created = await fetch(`${api}/api/students`, { method: 'POST' });
  return ((await created.json()) as { id: string }).id;
}

function deadLettersOf(database: Database, messageId: string) {
  return database.db.select().from(deadLetters).where(eq(deadLetters.messageId, messageId));
}

test('an event the worker dead-lettered is kept in dead_letters with its reason through a restart, and is not sent to the worker again', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'tbe-restart-'));
  const config = parseConfig({
    DATABASE_URL: `pglite://${dataDir}`,
    API_PORT: '0',
    WORKER_PORT: '0',
    LOG_LEVEL: 'silent',
  });
  /** The webapi and the worker of one `npm start`, on the in-process bus. */
  const start = async (connectionName: string) => {
    const resources = await openProcessResources(config, silentLogger, { connectionName, bus: true });
    const worker = createWorkerOver(resources, { config, logger: silentLogger });
    await worker.start();
    const webApi = await createWebApiOver(resources, { config, logger: silentLogger });
    return {
      resources,
      api: await webApi.start(),
      async stop() {
        await webApi.stop();
        await worker.stop();
        await resources.close();
      },
    };
  };
  const poison = randomUUID();
  try {
    const before = await start('before');
    try {
      // An outbox row as a write stores its event, but with a payload that is no student: the worker dead-letters it.
      await before.resources.database.db.insert(outbox).values({
        id: poison,
        exchange: Exchanges.students,
        routingKey: StudentRoutingKeys.updated,
        type: StudentEventTypes.updated,
        subject: randomUUID(),
        payload: {},
        occurredAt: new Date(),
      });
      await until(
        async () => (await deadLettersOf(before.resources.database, poison)).length > 0,
        'the dead letter to be recorded',
      );
      const later = await createdStudent(before.api);
      await until(
        async () => (await updatesOf(before.api, later)) === 1,
        'the worker to process a later event',
      );
    } finally {
      await before.stop();
    }

    const after = await start('after');
    try {
      // Sent again, the dead-lettered event would reach the worker before this one, in outbox order.
      const id = await createdStudent(after.api);
      await until(async () => (await updatesOf(after.api, id)) === 1, 'the worker to process a new event');
      assert.equal(await counted(after.resources.registry, 'dead_lettered'), 0, 'dead-lettered again');
      const kept = await deadLettersOf(after.resources.database, poison);
      assert.equal(kept.length, 1);
      const [row] = kept;
      assert.equal(row?.queue, Queues.studentsWorker);
      assert.match(row?.reason ?? '', /^not a student CloudEvent: data\.student/);
      assert.equal(row?.headers[DEATH_REASON_HEADER], row?.reason);
      assert.equal((JSON.parse(Buffer.from(row!.body).toString('utf8')) as { id: string }).id, poison);
    } finally {
      await after.stop();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
