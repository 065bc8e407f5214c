// `npm start` restarted after a crash: the in-process bus's queues died with the process, so what the worker had
// not handled yet must still get handled, once; the memory that held idempotent responses died too, so a retried
// keyed write must still not run twice.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createWebApiOver } from '../../src/apps/webapi/main.ts';
import { parseConfig } from '../../src/config.ts';
import { openProcessResources } from '../../src/infrastructure/runtime/process-resources.ts';
import { until } from '../notifications/support.ts';
import { embeddedRoles } from '../support/all-roles.ts';
import { silentLogger } from '../support/logger.ts';

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
