// An instance cut off from Redis for longer than the replay log keeps entries: another instance (here a log of its
// own, straight to Redis) holds the writer lease and goes on appending, so the log trims past where this instance's
// tail stopped reading. Its live SSE and SignalR clients must be told they missed notifications, not skip them
// silently.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { HubNames, type ResetMessage } from '../../src/contracts/notifications.ts';
import { parseConfig } from '../../src/config.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { RedisStreamReplayLog } from '../../src/infrastructure/replay-log/redis-stream-replay-log.ts';
import { silentLogger } from '../support/logger.ts';
import { REDIS_URL, deleteRedisKeys, needsRedis, uniqueName } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { hubClient, sseClient } from './support.ts';
import { until } from '../support/until.ts';

// The least REPLAY_LOG_MAX_ENTRIES takes.
const KEPT_ENTRIES = 100;
const WRITER = 'the-other-instance';

describe(
  'an instance whose tail was cut off while the replay log trimmed past it',
  await needsRedis(),
  () => {
    const bus = new InProcessMessageBus();
    const keyPrefix = `${uniqueName('tbe_replay_gap_test')}:`;
    let proxy: TcpProxy;
    let writer: RedisStreamReplayLog;
    let notifications: Notifications;
    let url: string;

    before(async () => {
      const target = new URL(REDIS_URL);
      proxy = await TcpProxy.start(target.hostname, Number(target.port || 6379));
      writer = new RedisStreamReplayLog(
        { url: REDIS_URL, keyPrefix, maxEntries: KEPT_ENTRIES, dedupTtlSeconds: 600 },
        silentLogger,
      );
      assert.equal(await writer.claimWriter(WRITER, 120_000), true);
      notifications = await createNotifications({
        config: parseConfig({
          NOTIFICATIONS_PORT: '0',
          REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
          REPLAY_LOG_KEY_PREFIX: keyPrefix,
          REPLAY_LOG_MAX_ENTRIES: String(KEPT_ENTRIES),
        }),
        logger: silentLogger,
        bus,
      });
      url = await notifications.start();
    });
    after(async () => {
      await notifications?.stop();
      await bus.close();
      await writer.close();
      await proxy.stop();
      await deleteRedisKeys(keyPrefix);
    });

    const append = async (n: number) =>
      (
        await writer.append(
          {
            messageId: randomUUID(),
            type: 'StudentUpdated',
            subject: 'student-1',
            data: JSON.stringify({ student: { id: 'student-1' }, n }),
          },
          WRITER,
        )
      ).id;

    test('its live SSE clients get `reset`, then the notifications the log still holds, then live ones', async () => {
      const client = sseClient(url);
      try {
        await until(() => client.control.length === 1, 'connected');
        const before = [await append(1), await append(2)];
        await until(() => client.received.length === 2, 'the first two notifications');

        await proxy.pause();
        const cutOff: string[] = [];
        for (let n = 3; n < 3 + 2 * KEPT_ENTRIES; n++) cutOff.push(await append(n));
        // Where the log resumes, before the next append trims it again.
        const { trimmedThrough } = await writer.retention();
        await proxy.resume();
        await until(
          () => client.received.some((entry) => entry.id === cutOff.at(-1)),
          'what the log still holds',
        );
        const later = await append(99);
        await until(
          () => client.received.some((entry) => entry.id === later),
          'the notification after the cut',
        );

        const reset = client.control.find((event) => event.type === 'reset');
        assert.ok(reset, 'told it missed notifications');
        assert.equal(reset.id, trimmedThrough, 'its next Last-Event-ID is where the log resumes');
        assert.deepEqual(
          client.received.map((entry) => entry.id),
          [...before, ...cutOff.slice(-KEPT_ENTRIES), later],
          'then what the log still holds after that, in order, once',
        );
      } finally {
        client.close();
      }
    });

    test('its SignalR clients get `Reset` first, following any group, then what the log still holds, then live ones', async () => {
      const everyStudent = await hubClient(url);
      const oneStudent = await hubClient(url);
      // What each got, in order: a notification's `n`, or the reset.
      const seen = (client: typeof everyStudent) => {
        const order: (number | 'Reset')[] = [];
        client.connection.on(HubNames.reset, (message: ResetMessage) => {
          order.push('Reset');
          resets.push(message);
        });
        client.connection.on('StudentUpdated', (data: { n: number }) => order.push(data.n));
        return order;
      };
      const resets: ResetMessage[] = [];
      try {
        await oneStudent.connection.invoke(HubNames.joinGroup, HubNames.studentGroup('student-1'));
        await oneStudent.connection.invoke(HubNames.leaveGroup, HubNames.studentsGroup);
        const orders = [seen(everyStudent), seen(oneStudent)];
        await append(1);
        await until(() => orders.every((order) => order.length === 1), 'the first notification');

        await proxy.pause();
        const cutOff: number[] = [];
        for (let n = 2; n < 2 + 2 * KEPT_ENTRIES; n++) {
          await append(n);
          cutOff.push(n);
        }
        const { firstId } = await writer.retention();
        await proxy.resume();
        await until(
          () => orders.every((order) => order.at(-1) === cutOff.at(-1)),
          'what the log still holds',
        );
        await append(999);
        await until(() => orders.every((order) => order.at(-1) === 999), 'the notification after the cut');

        for (const order of orders)
          assert.deepEqual(order, [1, 'Reset', ...cutOff.slice(-KEPT_ENTRIES), 999]);
        assert.equal(resets.length, 2);
        for (const reset of resets) {
          assert.match(reset.reason, /left the replay log/);
          assert.equal(reset.oldestId, firstId, 'the oldest entry the log still holds');
        }
      } finally {
        await everyStudent.close();
        await oneStudent.close();
      }
    });
  },
);
