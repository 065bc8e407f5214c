// The notifications service on a real Redis replay log reached through a proxy, so the test can take Redis away.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { outcome, type ReceivedMessage } from '../../src/application/ports/message-bus.ts';
import { compareLogIds } from '../../src/application/ports/replay-log.ts';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { deadLetterNames } from '../../src/contracts/messaging.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { silentLogger } from '../support/logger.ts';
import { REDIS_URL, deleteRedisKeys, needsRedis, uniqueName } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { notificationMessage, sseClient } from './support.ts';
import { until } from '../support/until.ts';

describe('the notifications service while Redis is down', await needsRedis(), () => {
  const bus = new InProcessMessageBus();
  const keyPrefix = `${uniqueName('tbe_replay_outage_test')}:`;
  let proxy: TcpProxy;
  let notifications: Notifications;
  let url: string;

  const replayLogHealth = async () => {
    const health = (await (await fetch(`${url}/health`)).json()) as HealthBody;
    const check = checkNamed(health, 'replay-log');
    assert.ok(check, 'a replay-log check');
    const { status, description } = check;
    if (status !== 'Healthy') assert.match(description ?? '', /^replay log unreachable: /);
    return status;
  };

  before(async () => {
    const target = new URL(REDIS_URL);
    proxy = await TcpProxy.start(target.hostname, Number(target.port || 6379));
    const config = parseConfig({
      NOTIFICATIONS_PORT: '0',
      REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
      REPLAY_LOG_KEY_PREFIX: keyPrefix,
    });
    notifications = await createNotifications({ config, logger: silentLogger, bus });
    url = await notifications.start();
  });
  after(async () => {
    await notifications.stop();
    await bus.close();
    await proxy.stop();
    await deleteRedisKeys(keyPrefix);
  });

  test('a client resuming with Last-Event-ID is told to retry, not given an error status; it resumes once Redis is back', async () => {
    const first = sseClient(url);
    await until(() => first.control.length > 0, 'connected');
    await bus.publish([notificationMessage('StudentCreated')]);
    await until(() => first.received.length === 1, 'the first notification');
    const lastEventId = first.lastEventId;
    first.close();

    await proxy.pause();
    // A notification that arrives while Redis is down waits in the consumer; it is not dead-lettered, nor lost.
    const outageStudent = randomUUID();
    const duringOutage = notificationMessage('StudentDeleted', outageStudent);
    const pausedAt = Date.now();
    await bus.publish([duringOutage]);
    let resumed: ReturnType<typeof sseClient> | undefined;
    try {
      const response = await fetch(`${url}/api/notifications/stream`, {
        headers: { 'last-event-id': lastEventId ?? '' },
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('content-type'), 'text/event-stream');
      assert.match(await response.text(), /^retry: \d+\n\n$/);
      // An error status would end EventSource's reconnecting for good.
      resumed = sseClient(url, { lastEventId });
      await until(() => resumed!.failures.length > 0, 'a failed attempt');
      assert.deepEqual(resumed.failures, [undefined]);
      assert.equal(await replayLogHealth(), 'Unhealthy');
      // Long enough for its append to fail (the replay log's command timeout is 2 s).
      await sleep(Math.max(0, 3_000 - (Date.now() - pausedAt)));
    } finally {
      await proxy.resume();
    }
    try {
      await until(
        () => resumed.control.some((event) => event.type === 'connected'),
        'connected again',
        10_000,
      );
      await until(() => resumed.received.length === 1, 'the notification sent during the outage', 10_000);
      await bus.publish([notificationMessage('StudentUpdated')]);
      await until(() => resumed.received.length === 2, 'the notification after the outage');
      assert.deepEqual(
        resumed.received.map((entry) => entry.type),
        ['StudentDeleted', 'StudentUpdated'],
        'the one from the outage first, each once',
      );
      assert.equal(resumed.received[0]?.data.student.id, outageStudent);
      // Each attempt during the outage was told to retry (the outage lasted long enough for more than one).
      assert.ok(resumed.failures.length > 0 && resumed.failures.every((status) => status === undefined));
      assert.equal(await replayLogHealth(), 'Healthy');
    } finally {
      resumed.close();
    }
  });

  test('notifications of many students waiting out an outage at once: no listener leak warning, all delivered once it ends', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    const client = sseClient(url);
    try {
      await until(() => client.control.length > 0, 'connected');
      await proxy.pause();
      try {
        // Twenty students, none queued behind another: all their appends wait to retry at once, more than ten.
        await bus.publish(Array.from({ length: 20 }, () => notificationMessage('StudentCreated')));
        // Long enough for their appends to fail (the replay log's command timeout is 2 s) and their waits to start.
        await sleep(3_000);
      } finally {
        await proxy.resume();
      }
      await until(() => client.received.length === 20, 'all 20 notifications', 15_000);
      assert.deepEqual(
        warnings.filter((warning) => warning.startsWith('MaxListenersExceededWarning')),
        [],
      );
    } finally {
      process.off('warning', onWarning);
      client.close();
    }
  });

  test('the writer lease vanishing from Redis (a restart without persistence, eviction) dead-letters nothing', async () => {
    const deadLettered: ReceivedMessage[] = [];
    await bus.consume(deadLetterNames('notifications').queue, {
      prefetch: 10,
      handler: (message) => (deadLettered.push(message), outcome.ack()),
    });
    const client = sseClient(url);
    await until(() => client.control.length > 0, 'connected');
    const redis = new Redis(REDIS_URL);
    try {
      for (let index = 0; index < 50; index++) {
        if (index === 10) await redis.del(`${keyPrefix}writer`);
        await bus.publish([notificationMessage('StudentCreated')]);
      }
      await until(() => client.received.length === 50, 'all 50 notifications', 10_000);
      assert.equal(deadLettered.length, 0);
    } finally {
      client.close();
      await redis.quit();
    }
  });

  test('a new client without Last-Event-ID after Redis lost the log (a restart without persistence) gets no `reset`', async () => {
    const earlier = sseClient(url);
    await until(() => earlier.control.length > 0, 'connected');
    await bus.publish([notificationMessage('StudentCreated')]);
    await until(() => earlier.received.length === 1, 'a notification in the log that will be lost');
    earlier.close();

    // What a restart without persistence looks like: the connections drop, and every key is gone.
    const redis = new Redis(REDIS_URL);
    let fresh: ReturnType<typeof sseClient> | undefined;
    try {
      await proxy.pause();
      await deleteRedisKeys(keyPrefix, redis);
      await proxy.resume();
      await until(async () => (await replayLogHealth()) === 'Healthy', 'the log reachable again');

      fresh = sseClient(url);
      await until(() => fresh!.control.length > 0, 'connected');
      const begins = await redis.get(`${keyPrefix}trimmed`);
      assert.ok(begins, 'the new log has begun');
      assert.ok(
        compareLogIds(fresh.control[0]?.id ?? '0-0', begins) >= 0,
        `connected's id ${fresh.control[0]?.id} is in the new log (begins at ${begins})`,
      );
      await bus.publish([notificationMessage('StudentUpdated')]);
      await until(() => fresh!.received.length === 1, 'the notification after the loss');
      assert.deepEqual(
        fresh.control.map((event) => event.type),
        ['connected'],
      );
    } finally {
      fresh?.close();
      await redis.quit();
    }
  });
});

describe('a notifications instance started while Redis is down', await needsRedis(), () => {
  test('starts, tells SSE clients to retry, and serves them once Redis is back', async () => {
    const bus = new InProcessMessageBus();
    const keyPrefix = `${uniqueName('tbe_replay_start_outage_test')}:`;
    const target = new URL(REDIS_URL);
    const proxy = await TcpProxy.start(target.hostname, Number(target.port || 6379));
    await proxy.pause();
    let notifications: Notifications | undefined;
    let client: ReturnType<typeof sseClient> | undefined;
    try {
      notifications = await createNotifications({
        config: parseConfig({
          NOTIFICATIONS_PORT: '0',
          REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
          REPLAY_LOG_KEY_PREFIX: keyPrefix,
        }),
        logger: silentLogger,
        bus,
      });
      const url = await notifications.start();
      const response = await fetch(`${url}/api/notifications/stream`);
      assert.equal(response.status, 200);
      assert.match(await response.text(), /^retry: \d+\n\n$/);

      await proxy.resume();
      client = sseClient(url);
      await until(() => client!.control.some((event) => event.type === 'connected'), 'connected', 15_000);
      await bus.publish([notificationMessage('StudentCreated')]);
      await until(() => client!.received.length === 1, 'the notification');
    } finally {
      client?.close();
      await notifications?.stop();
      await bus.close();
      await proxy.stop();
      await deleteRedisKeys(keyPrefix);
    }
  });
});
