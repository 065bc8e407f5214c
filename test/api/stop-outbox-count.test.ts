// The webapi's process (with its outbox relay) on SIGTERM: its `stopped` line counts the outbox rows left for the next
// start, and leaves the count out, rather than wait for it, when the database does not answer.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  privateServersAndPostgres,
  startPrivatePostgres,
  type PrivateServer,
} from '../support/private-servers.ts';
import { createTestVhost, type TestVhost } from '../support/rabbitmq-vhost.ts';
import { rolesOn, startRole, type RoleProcess } from '../support/role-process.ts';
import { needsRabbitMq } from '../support/services.ts';

const ENTRY = 'src/apps/webapi/main.ts';

function stoppedLine(output: string): Record<string, unknown> {
  const line = output.split('\n').find((text) => text.includes('"msg":"stopped"'));
  assert.ok(line, `no "stopped" line in:\n${output}`);
  return JSON.parse(line) as Record<string, unknown>;
}

const requirement = [await privateServersAndPostgres(), await needsRabbitMq()].find((r) => r.skip) ?? {};

describe('the webapi stopped by SIGTERM', requirement, () => {
  let postgres: PrivateServer;
  let vhost: TestVhost;
  let env: Record<string, string>;
  before(async () => {
    [postgres, vhost] = await Promise.all([startPrivatePostgres(), createTestVhost('stop_outbox_count')]);
    env = rolesOn({ database: postgres.url, amqp: vhost.url, redis: 'memory:' });
  });
  after(async () => {
    await postgres?.dispose();
    await vhost?.delete();
  });

  test('says how many outbox rows it leaves unsent, and that no request was in flight', async () => {
    const webapi: RoleProcess = await startRole(ENTRY, env);
    try {
      assert.equal((await fetch(`${webapi.url}/api/students`, { method: 'POST' })).status, 201);
      assert.equal(await webapi.stop(), 0, webapi.output());
      const stopped = stoppedLine(webapi.output());
      assert.equal(typeof stopped.outboxUnsent, 'number', JSON.stringify(stopped));
      assert.deepEqual(stopped.webapi, { requestsInFlight: 0, requestsAnswered: 0 });
      assert.equal(typeof stopped.durationMs, 'number');
    } finally {
      await webapi.kill();
    }
  });

  test('with the database down, leaves the outbox count out and stops promptly', async () => {
    const webapi: RoleProcess = await startRole(ENTRY, env);
    try {
      await postgres.stop();
      assert.equal(await webapi.stop(), 0, webapi.output());
      const stopped = stoppedLine(webapi.output());
      assert.equal('outboxUnsent' in stopped, false, JSON.stringify(stopped));
      assert.ok((stopped.durationMs as number) < 5_000, JSON.stringify(stopped));
    } finally {
      await webapi.kill();
      await postgres.start();
    }
  });
});
