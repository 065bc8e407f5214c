// The webapi as a real process while RabbitMQ is down (a TCP proxy refuses every connection): it starts and takes
// writes, which wait in the outbox; they flow once the broker is back, and a SIGTERM meanwhile stops it in time.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Connection } from 'rabbitmq-client';
import { outcome, type ReceivedMessage } from '../../src/application/ports/message-bus.ts';
import { Queues } from '../../src/contracts/messaging.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { createPostgresDatabase } from '../support/databases.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { createProxiedVhost, createTestVhost } from '../support/rabbitmq-vhost.ts';
import { startRole } from '../support/role-process.ts';
import { needsPostgres, needsRabbitMq } from '../support/services.ts';
import { until } from '../support/until.ts';

describe('the webapi process while RabbitMQ is down', await needsPostgres(), async () => {
  const rabbit = await needsRabbitMq();
  let created: Awaited<ReturnType<typeof createPostgresDatabase>>;
  let broker: Awaited<ReturnType<typeof createProxiedVhost>>;

  before(async () => {
    if (rabbit.skip) return;
    created = await createPostgresDatabase();
    broker = await createProxiedVhost('webapi_broker_down');
  });
  after(async () => {
    await broker?.delete();
    await created?.drop();
  });

  const startWebApi = () =>
    startRole('src/apps/webapi/main.ts', {
      DATABASE_URL: created.url,
      AMQP_URL: broker.url,
      REDIS_URL: 'memory:',
      API_PORT: '0',
      SHUTDOWN_TIMEOUT_MS: '5000',
    });
  const createStudent = async (url: string) => {
    const response = await fetch(`${url}/api/students`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(response.status, 201);
    return ((await response.json()) as { id: string }).id;
  };
  const unsentRows = async () => {
    const client = new pg.Client({ connectionString: created.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ count: number }>(
        'select count(*)::int as count from outbox where sent_at is null',
      );
      return rows[0]?.count ?? 0;
    } finally {
      await client.end();
    }
  };

  test(
    'SIGTERM during the outage stops it in time (exit 0); its write stays in the outbox',
    rabbit,
    async () => {
      await broker.proxy.pause();
      const webapi = await startWebApi();
      await createStudent(webapi.url);
      await sleep(500); // the relay is waiting on the broker
      assert.equal(await webapi.stop(), 0, webapi.output());
      assert.equal(await unsentRows(), 1);
    },
  );

  test(
    'it starts and takes writes; once the broker is back, its relay declares the topology and the events flow',
    rabbit,
    async () => {
      await broker.proxy.pause();
      const webapi = await startWebApi();
      const id = await createStudent(webapi.url);
      const health = (await (await fetch(`${webapi.url}/health`)).json()) as HealthBody;
      assert.equal(checkNamed(health, 'rabbitmq')?.status, 'Degraded');

      await broker.proxy.resume();
      // Nothing else declares in this vhost: the worker's queue exists once the webapi's relay declared it.
      const observer = new RabbitMqMessageBus({ url: broker.vhost.url });
      try {
        await until(
          async () => (await observer.inspectQueue(Queues.studentsWorker)) !== undefined,
          'the queue',
          30_000,
          100,
        );
        const received: ReceivedMessage[] = [];
        const subscription = await observer.consume(Queues.studentsWorker, {
          prefetch: 10,
          handler: (message) => (received.push(message), outcome.ack()),
        });
        await until(
          () => received.some((message) => message.headers['cloudEvents:subject'] === id),
          'the event',
          30_000,
          100,
        );
        await subscription.close();
        await until(async () => (await unsentRows()) === 0, 'the outbox drained', 30_000, 100);
      } finally {
        await observer.close();
      }
      assert.equal(await webapi.stop(), 0, webapi.output());
    },
  );

  test(
    'a broker that stops answering, its connection still open, is Degraded in /health within the limit, and SIGTERM still exits 0 in time',
    rabbit,
    async () => {
      // After the test above, which brought the broker back.
      const webapi = await startWebApi();
      const brokerHealth = async () =>
        checkNamed((await (await fetch(`${webapi.url}/health`)).json()) as HealthBody, 'rabbitmq');
      try {
        await until(async () => (await brokerHealth())?.status === 'Healthy', 'the relay connected');
        assert.ok(broker.proxy.silence() > 0, 'the connections silenced');
        const silent = await brokerHealth();
        assert.equal(silent?.status, 'Degraded');
        assert.equal(silent?.description, 'the broker did not answer within 1000 ms');
      } finally {
        // A stop waited for the broker's close-ok until SHUTDOWN_TIMEOUT_MS ran out (exit 1).
        assert.equal(await webapi.stop(), 0, webapi.output());
      }
    },
  );
});

describe('the webapi process on a broker that refuses its topology', await needsPostgres(), async () => {
  const rabbit = await needsRabbitMq();

  test(
    'does not start, and says why: a configuration that cannot work fails at start-up, an unreachable broker does not',
    rabbit,
    async () => {
      const database = await createPostgresDatabase();
      const vhost = await createTestVhost('webapi_topology_refused');
      // The worker's queue, declared otherwise (classic, not quorum) by someone else.
      const other = new Connection(vhost.url);
      try {
        await other.queueDeclare({ queue: Queues.studentsWorker, durable: true });
        await assert.rejects(
          startRole('src/apps/webapi/main.ts', {
            DATABASE_URL: database.url,
            AMQP_URL: vhost.url,
            REDIS_URL: 'memory:',
            API_PORT: '0',
          }),
          /exited with 1 before it was ready[\s\S]*PRECONDITION_FAILED/,
        );
      } finally {
        await other.close();
        await vhost.delete();
        await database.drop();
      }
    },
  );
});
