// The worker and the notifications service as real processes, started while RabbitMQ is down (a TCP proxy refuses
// every connection), as when a whole stack starts before its broker has booted: each waits for the broker, saying
// so and serving /health meanwhile, and starts consuming once it answers; a SIGTERM meanwhile stops it at once.
// Losing the broker later, each says so again in its consumer check until it is back.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Queues } from '../../src/contracts/messaging.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { createPostgresDatabase } from '../support/databases.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { createProxiedVhost } from '../support/rabbitmq-vhost.ts';
import { freePort } from '../support/free-port.ts';
import { startRole, type RoleProcess } from '../support/role-process.ts';
import { needsPostgres, needsRabbitMq } from '../support/services.ts';
import { until } from '../support/until.ts';

/** /health/ready's status code, and /health's detail. */
async function readiness(url: string): Promise<{ code: number; health: HealthBody }> {
  const { status: code } = await fetch(`${url}/health/ready`);
  return { code, health: (await (await fetch(`${url}/health`)).json()) as HealthBody };
}

/** The `consumer` check of a /health body. */
const consumerOf = (health: HealthBody) =>
  checkNamed<{ state?: string; partitions?: { waiting: number[] } }>(health, 'consumer');

describe('the consuming roles started while RabbitMQ is down', await needsPostgres(), async () => {
  const rabbit = await needsRabbitMq();
  let created: Awaited<ReturnType<typeof createPostgresDatabase>>;
  let broker: Awaited<ReturnType<typeof createProxiedVhost>>;

  before(async () => {
    if (rabbit.skip) return;
    created = await createPostgresDatabase();
    broker = await createProxiedVhost('broker_down_at_start');
  });
  after(async () => {
    await broker?.delete();
    await created?.drop();
  });

  const roles = {
    worker: (env: Record<string, string> = {}) =>
      startRole('src/apps/worker/main.ts', {
        DATABASE_URL: created.url,
        AMQP_URL: broker.url,
        REDIS_URL: 'memory:',
        WORKER_PORT: '0',
        SHUTDOWN_TIMEOUT_MS: '5000',
        ...env,
      }),
    notifications: (env: Record<string, string> = {}) =>
      startRole('src/apps/notifications/main.ts', {
        AMQP_URL: broker.url,
        REDIS_URL: 'memory:',
        NOTIFICATIONS_PORT: '0',
        SHUTDOWN_TIMEOUT_MS: '5000',
        ...env,
      }),
  };
  // What each consumes from, and how its readiness says it is not consuming yet.
  const consumes = { worker: Queues.studentsWorker, notifications: Queues.notifications };

  const named = { worker: 'worker', notifications: 'notifications service' };
  for (const role of ['worker', 'notifications'] as const) {
    test(`the ${named[role]} waits, saying why; it consumes once the broker answers`, rabbit, async () => {
      await broker.proxy.pause();
      let paused = true;
      let process: RoleProcess | undefined;
      try {
        // Its URL comes with the warning: the role serves while it waits.
        process = await roles[role]();
        assert.equal(
          process.output().match(/broker unreachable/g)?.length,
          1,
          `said once: ${process.output()}`,
        );
        assert.equal((await fetch(`${process.url}/health/live`)).status, 200);
        const waiting = await readiness(process.url);
        assert.equal(waiting.code, 503);
        assert.equal(checkNamed(waiting.health, 'rabbitmq')?.status, 'Unhealthy');
        assert.equal(consumerOf(waiting.health)?.status, 'Unhealthy');
        assert.equal(consumerOf(waiting.health)?.data.state, 'waiting for the broker');

        await broker.proxy.resume();
        paused = false;
        await until(async () => (await readiness(process!.url)).code === 200, 'ready', 30_000, 100);
        const observer = new RabbitMqMessageBus({ url: broker.vhost.url });
        try {
          assert.equal((await observer.inspectQueue(consumes[role]))?.consumers, 1);
        } finally {
          await observer.close();
        }
        assert.equal(await process.stop(), 0, process.output());
      } finally {
        await process?.kill();
        if (paused) await broker.proxy.resume();
      }
    });

    test(
      `the ${named[role]} refused by the broker (a wrong password) says why it waits`,
      rabbit,
      async () => {
        const refused = new URL(broker.vhost.url);
        refused.password = 'not-the-password';
        let process: RoleProcess | undefined;
        try {
          process = await roles[role]({ AMQP_URL: refused.toString() });
          const warning = process
            .output()
            .split('\n')
            .find((line) => line.includes('broker unreachable'));
          assert.match(warning ?? '', /"reason":"ACCESS_REFUSED - Login was refused/, process.output());
          assert.equal(await process.stop(), 0, process.output());
        } finally {
          await process?.kill();
        }
      },
    );

    // Exit 0: it stopped within SHUTDOWN_TIMEOUT_MS (past it, the process exits 1), and its start failed nothing.
    test(`a SIGTERM while the ${named[role]} waits stops it, exit 0`, rabbit, async () => {
      await broker.proxy.pause();
      let process: RoleProcess | undefined;
      try {
        process = await roles[role]();
        assert.equal(await process.stop(), 0, process.output());
        assert.doesNotMatch(process.output(), /could not start/);
      } finally {
        await process?.kill();
        await broker.proxy.resume();
      }
    });
  }

  const losing = {
    worker: () => roles.worker(),
    'worker over two partitions': () => roles.worker({ WORKER_PARTITIONS: '2' }),
    'notifications service': roles.notifications,
  };
  for (const [name, start] of Object.entries(losing))
    test(
      `the ${name}, consuming, loses the broker: its consumer check says it waits, until the broker is back`,
      rabbit,
      async () => {
        let paused = false;
        let process: RoleProcess | undefined;
        try {
          process = await start();
          await until(async () => (await readiness(process!.url)).code === 200, 'ready', 30_000, 100);
          assert.equal(consumerOf((await readiness(process.url)).health)?.data.state, 'consuming');

          await broker.proxy.pause();
          paused = true;
          await until(
            async () =>
              consumerOf((await readiness(process!.url)).health)?.data.state === 'waiting for the broker',
            'the consumer check says it waits for the broker',
            10_000,
            50,
          );
          const waiting = await readiness(process.url);
          assert.equal(waiting.code, 503);
          assert.equal(consumerOf(waiting.health)?.status, 'Unhealthy');
          const partitions = consumerOf(waiting.health)?.data.partitions;
          // Only a worker over partitions reports them; there, both wait.
          assert.deepEqual(
            partitions?.waiting,
            name === 'worker over two partitions' ? [0, 1] : undefined,
            'the partitions that wait',
          );

          await broker.proxy.resume();
          paused = false;
          await until(async () => (await readiness(process!.url)).code === 200, 'ready again', 30_000, 100);
          assert.equal(consumerOf((await readiness(process.url)).health)?.data.state, 'consuming');
          assert.equal(await process.stop(), 0, process.output());
        } finally {
          await process?.kill();
          if (paused) await broker.proxy.resume();
        }
      },
    );

  test(
    'npm start (every role in one process) takes writes while it waits, and handles them once the broker answers',
    rabbit,
    async () => {
      await broker.proxy.pause();
      let paused = true;
      let process: RoleProcess | undefined;
      const api = `http://127.0.0.1:${await freePort()}`;
      try {
        process = await startRole('src/main.ts', {
          DATABASE_URL: created.url,
          AMQP_URL: broker.url,
          REDIS_URL: 'memory:',
          API_PORT: new URL(api).port,
          NOTIFICATIONS_PORT: '0',
          WORKER_PORT: '0',
          SHUTDOWN_TIMEOUT_MS: '5000',
        });
        const write = await fetch(`${api}/api/students`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{}',
        });
        assert.equal(write.status, 201, process.output());
        const { id } = (await write.json()) as { id: string };

        await broker.proxy.resume();
        paused = false;
        const updates = async () =>
          (
            (await (
              await fetch(`${api}/api/students/${id}`, { headers: { 'cache-control': 'no-cache' } })
            ).json()) as { updates: number }
          ).updates;
        await until(async () => (await updates()) === 1, 'the worker handled the write', 30_000, 200);
        // Said once the worker and the notifications service have both started, which can be a moment after the
        // worker's first message (its start also looks for queues of another layout).
        await until(() => /all roles running/.test(process!.output()), 'all roles running', 10_000);
        assert.equal(await process.stop(), 0, process.output());
      } finally {
        await process?.kill();
        if (paused) await broker.proxy.resume();
      }
    },
  );
});
