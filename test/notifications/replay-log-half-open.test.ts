// An instance whose Redis connections go half-open: the Redis host vanished without closing TCP (a power cut, a
// dropped NAT/conntrack entry), so its open connections pass nothing while new ones work. Instance A reaches Redis
// directly and holds the writer lease; instance B reaches it through a proxy that the test silences.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { silentLogger } from '../support/logger.ts';
import { REDIS_URL, deleteRedisKeys, needsRedis, uniqueName } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { notificationMessage, sseClient } from './support.ts';
import { until } from '../support/until.ts';

/** How long an instance may take to notice a dead connection and be back on a new one. */
const RECOVERY_MS = 15_000;

describe('the notifications service when its Redis connections go half-open', await needsRedis(), () => {
  const bus = new InProcessMessageBus();
  const keyPrefix = `${uniqueName('tbe_replay_half_open_test')}:`;
  let proxy: TcpProxy;
  let direct: Notifications;
  let halfOpen: Notifications;
  let urlDirect: string;
  let urlHalfOpen: string;

  before(async () => {
    const target = new URL(REDIS_URL);
    proxy = await TcpProxy.start(target.hostname, Number(target.port || 6379));
    const base = { NOTIFICATIONS_PORT: '0', REPLAY_LOG_KEY_PREFIX: keyPrefix };
    // Started first, the direct instance takes the writer lease: appends keep working while B's connections are dead.
    direct = await createNotifications({
      config: parseConfig({ ...base, REDIS_URL }),
      logger: silentLogger,
      bus,
    });
    urlDirect = await direct.start();
    halfOpen = await createNotifications({
      config: parseConfig({ ...base, REDIS_URL: `redis://127.0.0.1:${proxy.port}` }),
      logger: silentLogger,
      bus,
    });
    urlHalfOpen = await halfOpen.start();
  });
  after(async () => {
    await Promise.all([direct.stop(), halfOpen.stop()]);
    await bus.close();
    await proxy.stop();
    await deleteRedisKeys(keyPrefix);
  });

  test('notifications published after the connections went silent still reach its live SSE clients', async () => {
    const onDirect = sseClient(urlDirect);
    const onHalfOpen = sseClient(urlHalfOpen);
    try {
      await until(() => onDirect.control.length > 0 && onHalfOpen.control.length > 0, 'both connected');
      await bus.publish([notificationMessage('StudentCreated')]);
      await until(() => onHalfOpen.received.length === 1, 'the first notification on B');

      proxy.silence();
      for (let index = 0; index < 5; index++) await bus.publish([notificationMessage('StudentUpdated')]);
      await until(() => onDirect.received.length === 6, 'the five notifications on A');
      await until(() => onHalfOpen.received.length === 6, 'the five notifications on B', RECOVERY_MS);
      assert.deepEqual(
        onHalfOpen.received.map((entry) => entry.id),
        onDirect.received.map((entry) => entry.id),
      );
      assert.deepEqual(
        onHalfOpen.control.map((event) => event.type),
        ['connected'],
      );
    } finally {
      onDirect.close();
      onHalfOpen.close();
    }
  });

  test('a client resuming with Last-Event-ID after the connections went silent gets what it missed', async () => {
    const first = sseClient(urlHalfOpen);
    await until(() => first.control.length > 0, 'connected');
    await bus.publish([notificationMessage('StudentCreated')]);
    await until(() => first.received.length === 1, 'the first notification');
    const lastEventId = first.lastEventId;
    first.close();

    proxy.silence();
    for (let index = 0; index < 3; index++) await bus.publish([notificationMessage('StudentUpdated')]);
    const resumed = sseClient(urlHalfOpen, { lastEventId });
    try {
      // While the dead connection is being replaced the stream may end with a `retry:` hint; EventSource comes back.
      await until(() => resumed.received.length === 3, 'the three missed notifications', RECOVERY_MS);
      assert.ok(resumed.control.every((event) => event.type === 'connected'));
    } finally {
      resumed.close();
    }
  });
});
