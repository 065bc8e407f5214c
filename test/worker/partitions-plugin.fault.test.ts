// Partition queues need RabbitMQ's consistent-hash exchange plugin: on a broker without it (a private node, no
// plugins) the worker and the notifications service say so at start and exit; with one queue, the default, no plugin
// is needed.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import {
  privateServersAndPostgres,
  startPrivateRabbitMq,
  type PrivateServer,
} from '../support/private-servers.ts';
import { startRole } from '../support/role-process.ts';

const servers = await privateServersAndPostgres();

describe('worker partitions on a RabbitMQ without the consistent-hash exchange plugin', servers, () => {
  let rabbitMq: PrivateServer;
  let database: TestDatabase;
  before(async () => {
    [rabbitMq, database] = await Promise.all([startPrivateRabbitMq(), openTestDatabase('postgres')]);
  });
  after(async () => {
    await Promise.all([rabbitMq?.dispose(), database?.dispose()]);
  });

  const env = (partitions: string) => ({
    DATABASE_URL: database.url,
    AMQP_URL: rabbitMq.url,
    WORKER_PORT: '0',
    WORKER_PARTITIONS: partitions,
  });

  test('with WORKER_PARTITIONS=4 the worker exits at start, saying which plugin to enable and how', async () => {
    await assert.rejects(startRole('src/apps/worker/main.ts', env('4')), (error: Error) => {
      assert.match(error.message, /exited with 1 before it was ready/);
      assert.match(
        error.message,
        /RabbitMQ does not know the exchange type 'x-consistent-hash' of exchange 'students\.partitions': enable its plugin on every RabbitMQ node: rabbitmq-plugins enable rabbitmq_consistent_hash_exchange/,
      );
      return true;
    });
  });

  test('so does the notifications service alone, which has no relay to declare before it', async () => {
    // It waits for a broker that does not answer; this one answers and refuses, closing the connection.
    await assert.rejects(
      startRole('src/apps/notifications/main.ts', {
        ...env('4'),
        NOTIFICATIONS_PORT: '0',
        REDIS_URL: 'memory:',
      }),
      (error: Error) => {
        assert.match(error.message, /exited with 1 before it was ready/);
        assert.match(error.message, /enable its plugin on every RabbitMQ node/);
        return true;
      },
    );
  });

  test('so does the webapi alone: a broker that answers and refuses the topology stops its start', async () => {
    // Started, it would take writes its relay could never publish.
    await assert.rejects(
      startRole('src/apps/webapi/main.ts', { ...env('4'), API_PORT: '0', REDIS_URL: 'memory:' }),
      (error: Error) => {
        assert.match(error.message, /exited with 1 before it was ready/);
        assert.match(error.message, /enable its plugin on every RabbitMQ node/);
        return true;
      },
    );
  });

  test('with one queue (the default) it starts: no plugin is needed', async () => {
    const worker = await startRole('src/apps/worker/main.ts', env('1'));
    try {
      assert.equal((await fetch(`${worker.url}/health/ready`)).status, 200);
    } finally {
      assert.equal(await worker.stop(), 0, worker.output());
    }
  });
});
