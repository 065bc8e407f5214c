// The writer lease changing hands on real RabbitMQ and Redis while the old holder still has a student's notification
// in hand (its Redis cut off): the new holder must not append that student's later notifications before it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { consumeNotifications } from '../../src/apps/notifications/notifications.consumer.ts';
import { messagingTopology } from '../../src/contracts/messaging.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { RedisStreamReplayLog } from '../../src/infrastructure/replay-log/redis-stream-replay-log.ts';
import { silentLogger } from '../support/logger.ts';
import { createTestVhost } from '../support/rabbitmq-vhost.ts';
import { REDIS_URL, deleteRedisKeys, needsRabbitMq, needsRedis, uniqueName } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { until } from '../support/until.ts';
import { notificationMessage } from './support.ts';

const servers = [await needsRabbitMq(), await needsRedis()].find((requirement) => requirement.skip) ?? {};

const LEASE_MS = 3_000;
const TYPES = [
  'StudentCreated',
  'StudentCached',
  'StudentUpdated',
  'StudentCached',
  'StudentUpdated',
  'StudentCached',
] as const;

test(
  "an instance cut off from Redis with a notification in hand hands it on before the student's later ones",
  servers,
  async () => {
    const vhost = await createTestVhost('lease_handover');
    const keyPrefix = `${uniqueName('lease_handover')}:`;
    const redis = new URL(REDIS_URL);
    // Instance A reaches Redis through a proxy the test cuts; B directly.
    const proxy = await TcpProxy.start(redis.hostname, Number(redis.port || 6379));
    const logOptions = { keyPrefix, maxEntries: 1_000, dedupTtlSeconds: 86_400 };
    const instances = [
      { id: 'instance-a', redisUrl: `redis://127.0.0.1:${proxy.port}` },
      { id: 'instance-b', redisUrl: REDIS_URL },
    ].map(({ id, redisUrl }) => ({
      id,
      bus: new RabbitMqMessageBus({ url: vhost.url, connectionName: id }),
      log: new RedisStreamReplayLog({ ...logOptions, url: redisUrl }, silentLogger),
    }));
    const [a, b] = instances as [(typeof instances)[0], (typeof instances)[0]];
    const start = ({ bus, log, id }: typeof a) =>
      consumeNotifications({
        bus,
        log,
        instanceId: id,
        prefetch: 50,
        logger: silentLogger,
        leaseMs: LEASE_MS,
      });
    const consumers: Awaited<ReturnType<typeof start>>[] = [];
    try {
      for (const { bus, log } of instances) {
        await bus.declareTopology(messagingTopology(1));
        await log.connected();
      }
      consumers.push(await start(a));
      await until(() => consumers[0]!.state === 'consuming', 'instance-a consuming');
      consumers.push(await start(b));
      assert.equal(consumers[1]!.state, 'standby');

      const student = randomUUID();
      proxy.hold();
      // In instance-a's hands, unappendable; instance-b takes the lease over once it lapsed.
      await b.bus.publish([notificationMessage(TYPES[0], student, 0)]);
      await until(() => consumers[1]!.state === 'consuming', 'instance-b holding the lease', 30_000);
      for (const [updates, type] of TYPES.entries())
        if (updates > 0) await b.bus.publish([notificationMessage(type, student, updates)]);

      const studentEntries = async () =>
        (await b.log.readAfter('0-0', 100)).filter((entry) => entry.subject === student);
      await until(
        async () => (await studentEntries()).length === TYPES.length,
        "the student's notifications appended",
        30_000,
      );
      assert.deepEqual(
        (await studentEntries()).map((entry) => {
          const { student: appended } = JSON.parse(entry.data) as { student: { updates: number } };
          return `${appended.updates} ${entry.type}`;
        }),
        TYPES.map((type, updates) => `${updates} ${type}`),
        'in the order published',
      );
    } finally {
      proxy.release();
      for (const consumer of consumers) await consumer.stop().catch(() => undefined);
      for (const { bus, log } of instances) {
        await bus.close();
        await log.close();
      }
      await proxy.stop();
      await vhost.delete();
      await deleteRedisKeys(keyPrefix);
    }
  },
);
