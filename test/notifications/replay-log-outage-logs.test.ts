// What an operator reads in the notifications service's log when its Redis replay log goes away and comes back
// (a private redis-server, stopped and started), or comes back without the log.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { consumeNotifications } from '../../src/apps/notifications/notifications.consumer.ts';
import { parseConfig } from '../../src/config.ts';
import { messagingTopology } from '../../src/contracts/messaging.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { RedisStreamReplayLog } from '../../src/infrastructure/replay-log/redis-stream-replay-log.ts';
import { recordingLogger, silentLogger } from '../support/logger.ts';
import {
  privateServersAvailable,
  startPrivateRedis,
  type PrivateServer,
} from '../support/private-servers.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { until } from '../support/until.ts';
import { notificationMessage, sseClient } from './support.ts';

interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

const WARN = 40;
const INFO = 30;

const lines = (logged: string): LogLine[] =>
  logged
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as LogLine);

describe(
  'the notifications service log while its Redis replay log is away',
  privateServersAvailable(),
  () => {
    let redis: PrivateServer;
    before(async () => {
      redis = await startPrivateRedis();
    });
    after(async () => {
      await redis?.dispose();
    });

    test('appends failing: one warning that Redis is unavailable and messages are held, one line when they succeed again', async () => {
      const bus = new InProcessMessageBus();
      await bus.declareTopology(messagingTopology(1));
      const log = new RedisStreamReplayLog(
        { url: redis.url, keyPrefix: `${randomUUID()}:`, maxEntries: 100, dedupTtlSeconds: 600 },
        silentLogger,
      );
      await log.connected();
      const { logger, logged } = recordingLogger();
      const consumer = await consumeNotifications({
        bus,
        log,
        instanceId: 'instance-a',
        prefetch: 10,
        logger,
      });
      const held = 3;
      try {
        await bus.publish([notificationMessage('StudentCreated')]);
        await until(async () => (await log.retention()).length === 1, 'the first notification appended');

        await redis.stop();
        // Several messages in flight (other students), each retried several times: one outage, not a line each.
        await bus.publish(Array.from({ length: held }, () => notificationMessage('StudentUpdated')));
        await sleep(3_000);
        await redis.start();
        await until(
          async () => (await log.retention().catch(() => ({ length: 0 }))).length === 1 + held,
          'the held notifications appended',
        );

        const said = lines(logged());
        const warnings = said.filter((line) => line.level >= WARN);
        assert.equal(warnings.length, 1, logged());
        const [unavailable] = warnings;
        assert.match(unavailable?.msg ?? '', /replay log unavailable/);
        assert.match(unavailable?.msg ?? '', /held and their appends retried, none is lost/);
        assert.equal(unavailable?.err, undefined, 'no stack for an expected outage');
        assert.equal(typeof unavailable?.reason, 'string');
        assert.doesNotMatch(String(unavailable?.reason), /maxRetriesPerRequest|enableOfflineQueue/);
        assert.match(String(unavailable?.reason), /Redis unreachable/);

        const back = said.filter(
          (line) => line.level === INFO && /replay log available again/.test(line.msg),
        );
        assert.equal(back.length, 1, logged());
        assert.equal(back[0]?.held, held);
        assert.ok(Number(back[0]?.downMs) >= 2_500, `downMs ${String(back[0]?.downMs)}`);
      } finally {
        await consumer.stop();
        await bus.close();
        await log.close();
      }
    });
  },
);

// The least REPLAY_LOG_MAX_ENTRIES takes.
const KEPT_ENTRIES = 100;
const WRITER = 'the-other-instance';

describe(
  'the notifications service log when its tail finds a gap in the replay log',
  privateServersAvailable(),
  () => {
    const bus = new InProcessMessageBus();
    const keyPrefix = `${randomUUID()}:`;
    const recording = recordingLogger();
    let redis: PrivateServer;
    let admin: Redis;
    let proxy: TcpProxy;
    // Another instance, straight to Redis, holding the writer lease: it appends while this one's tail is cut off.
    let writer: RedisStreamReplayLog;
    let notifications: Notifications;
    let url: string;

    before(async () => {
      redis = await startPrivateRedis();
      admin = new Redis(redis.url);
      let proxyUrl: string;
      ({ proxy, url: proxyUrl } = await TcpProxy.inFrontOf(redis.url, 6379));
      writer = new RedisStreamReplayLog(
        { url: redis.url, keyPrefix, maxEntries: KEPT_ENTRIES, dedupTtlSeconds: 600 },
        silentLogger,
      );
      assert.equal(await writer.claimWriter(WRITER, 120_000), true);
      notifications = await createNotifications({
        config: parseConfig({
          NOTIFICATIONS_PORT: '0',
          REDIS_URL: proxyUrl,
          REPLAY_LOG_KEY_PREFIX: keyPrefix,
          REPLAY_LOG_MAX_ENTRIES: String(KEPT_ENTRIES),
        }),
        logger: recording.logger,
        bus,
      });
      url = await notifications.start();
    });
    after(async () => {
      await notifications?.stop();
      await bus.close();
      await writer?.close();
      await admin?.quit();
      await proxy?.stop();
      await redis?.dispose();
    });

    const append = async () =>
      (
        await writer.append(
          {
            messageId: randomUUID(),
            type: 'StudentUpdated',
            subject: 'student-1',
            data: JSON.stringify({ student: { id: 'student-1' } }),
          },
          WRITER,
        )
      ).id;
    /** The lines about a gap the tail found, said since `from` lines had been logged. */
    const gapLines = (from: number) =>
      lines(recording.logged())
        .slice(from)
        .filter((line) => /^replay log (lost|trimmed)/.test(line.msg));

    test('entries trimmed while the tail was cut off: said as trimmed, not as a lost log', async () => {
      const client = sseClient(url);
      try {
        await until(() => client.control.length === 1, 'connected');
        await append();
        await until(() => client.received.length === 1, 'the first notification');
        const from = lines(recording.logged()).length;

        await proxy.pause();
        for (let n = 0; n < 2 * KEPT_ENTRIES; n++) await append();
        await proxy.resume();
        await until(() => client.control.some((event) => event.type === 'reset'), 'told to reload');

        const said = gapLines(from);
        assert.equal(said.length, 1, recording.logged());
        assert.equal(said[0]?.level, WARN);
        assert.match(said[0]?.msg ?? '', /^replay log trimmed past where this instance last read/);
        assert.equal(typeof said[0]?.trimmedThrough, 'string');
      } finally {
        client.close();
      }
    });

    test('the log lost (Redis flushed): said as lost and begun again, not as entries trimmed past a reader', async () => {
      const client = sseClient(url);
      try {
        await until(() => client.control.length === 1, 'connected');
        const before = await append();
        await until(() => client.received.at(-1)?.id === before, 'a notification of the log to be lost');
        const from = lines(recording.logged()).length;

        // What a restart without persistence leaves: nothing; the writer holds its lease again at once.
        await admin.multi().flushall().set(`${keyPrefix}writer`, WRITER, 'PX', 120_000).exec();
        const first = await append();
        await until(() => client.control.some((event) => event.type === 'reset'), 'told to reload');

        const said = gapLines(from);
        assert.equal(said.length, 1, recording.logged());
        assert.equal(said[0]?.level, WARN);
        assert.match(said[0]?.msg ?? '', /^replay log lost and begun again/);
        assert.equal(said[0]?.after, before);
        assert.equal(said[0]?.firstId, first);
      } finally {
        client.close();
      }
    });
    test('the log lost: SSE clients get `reset`, then the new log from its first notification, live or resuming', async () => {
      const live = sseClient(url);
      let resuming: ReturnType<typeof sseClient> | undefined;
      try {
        await until(() => live.control.length === 1, 'connected');
        const lost = await append();
        await until(() => live.received.at(-1)?.id === lost, 'a notification of the log to be lost');

        await admin.multi().flushall().set(`${keyPrefix}writer`, WRITER, 'PX', 120_000).exec();
        const first = await append();
        await until(() => live.received.at(-1)?.id === first, 'live: the first notification of the new log');
        resuming = sseClient(url, { lastEventId: lost });
        await until(
          () => resuming!.received.at(-1)?.id === first,
          'resuming: the first notification of the new log',
        );

        for (const client of [live, resuming]) {
          const reset = client.control.find((event) => event.type === 'reset');
          assert.deepEqual((reset?.data as { oldestId: string | null }).oldestId, first);
          assert.deepEqual(
            client.received.map(({ id }) => id).filter((id) => id !== lost),
            [first],
          );
        }
      } finally {
        live.close();
        resuming?.close();
      }
    });
  },
);
