// Memory per SSE client is bounded: a client that stops reading is cut off, live or while catching up.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { OutgoingMessage } from '../../src/application/ports/message-bus.ts';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { silentLogger } from '../support/logger.ts';
import { notificationMessage, sseClient } from './support.ts';
import { until } from '../support/until.ts';

const MAX_BUFFERED_BYTES = 1024 * 1024;
const BATCH = 32;
// More than loopback's kernel buffers (a few MB each way) can hide, so the server side has to hold the rest.
const NOTIFICATIONS = 2_000;
const PAD_BYTES = 16 * 1024;

/** Large notifications, so that a few MB go by quickly. */
function paddedMessages(count: number): OutgoingMessage[] {
  return Array.from({ length: count }, () => {
    const message = notificationMessage('StudentCreated');
    const event = JSON.parse(message.body.toString()) as { data: { student: Record<string, unknown> } };
    event.data.student.pad = 'x'.repeat(PAD_BYTES);
    return { ...message, body: JSON.stringify(event) };
  });
}

/** Publishes in small batches, each once the healthy client has it: a burst would overrun any client's limit. */
async function publishPaced(bus: InProcessMessageBus, healthy: { received: unknown[] }, count: number) {
  const target = healthy.received.length + count;
  for (let sent = 0; sent < count; sent += BATCH) {
    const batch = Math.min(BATCH, count - sent);
    await bus.publish(paddedMessages(batch));
    const expected = healthy.received.length + batch;
    await until(() => healthy.received.length >= expected, 'a batch to the healthy client');
  }
  assert.equal(healthy.received.length, target);
}

/** Opens the stream on a raw socket and never reads from it. */
async function stalledClient(url: string, lastEventId?: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port) });
  socket.on('error', () => undefined); // the server's cut-off may arrive as a reset
  socket.pause();
  await new Promise((resolve) => socket.once('connect', resolve));
  const resume = lastEventId ? `Last-Event-ID: ${lastEventId}\r\n` : '';
  socket.write(`GET /api/notifications/stream HTTP/1.1\r\nHost: ${hostname}\r\n${resume}\r\n`);
  return socket;
}

describe('slow SSE clients (embedded adapters)', () => {
  const bus = new InProcessMessageBus();
  const replayLog = new MemoryRingReplayLog({ maxEntries: 3 * NOTIFICATIONS });
  const config = parseConfig({ NOTIFICATIONS_PORT: '0', CORS_ORIGINS: '*' });
  let notifications: Notifications;
  let url: string;
  // A stalled stream must not pile up listeners, one pair per notification (Node warns past ten).
  const warnings: string[] = [];
  const onWarning = (warning: Error) => void warnings.push(`${warning.name}: ${warning.message}`);

  const sseCount = async () => {
    const health = (await (await fetch(`${url}/health`)).json()) as HealthBody;
    return checkNamed<{ sse: number }>(health, 'clients')?.data.sse;
  };

  before(async () => {
    process.on('warning', onWarning);
    notifications = await createNotifications({
      config,
      logger: silentLogger,
      bus,
      replayLog,
      maxBufferedBytes: MAX_BUFFERED_BYTES,
    });
    url = await notifications.start();
  });
  after(async () => {
    await notifications.stop();
    await bus.close();
    await replayLog.close();
    process.off('warning', onWarning);
  });

  test('a live client that stops reading is cut off once its buffer passes the limit; another gets every notification', async () => {
    const healthy = sseClient(url);
    const stalled = await stalledClient(url);
    try {
      await until(async () => healthy.control.length > 0 && (await sseCount()) === 2, 'both connected');
      await publishPaced(bus, healthy, NOTIFICATIONS);
      await until(async () => (await sseCount()) === 1, 'the stalled client cut off');
      assert.deepEqual(warnings, []);
    } finally {
      healthy.close();
      stalled.destroy();
    }
  });

  test('a client that stops reading while it catches up from Last-Event-ID is cut off once live ones pile up', async () => {
    const { lastId: before } = await replayLog.retention();
    await bus.publish(paddedMessages(NOTIFICATIONS));
    await until(async () => (await replayLog.retention()).length >= 2 * NOTIFICATIONS, 'the backlog logged');
    const healthy = sseClient(url);
    // Its replay blocks on the full socket, so the live notifications below have to wait in memory.
    const stalled = await stalledClient(url, before);
    try {
      await until(async () => healthy.control.length > 0 && (await sseCount()) === 2, 'both connected');
      const live = Math.ceil((2 * MAX_BUFFERED_BYTES) / PAD_BYTES);
      await publishPaced(bus, healthy, live);
      await until(async () => (await sseCount()) === 1, 'the stalled client cut off');
      assert.deepEqual(warnings, []);
    } finally {
      healthy.close();
      stalled.destroy();
    }
  });
});
