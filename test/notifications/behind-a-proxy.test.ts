// What a reverse proxy in front of the notifications service (nginx: response buffering on, 60 s read timeout) needs
// from it: event streams it passes on at once, and no connection quiet for longer than a heartbeat.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { silentLogger } from '../support/logger.ts';

const HUB = '/hubs/notifications';
const RECORD_SEPARATOR = '\u001e';

describe('the notifications service behind a reverse proxy', () => {
  const bus = new InProcessMessageBus();
  const replayLog = new MemoryRingReplayLog({ maxEntries: 100 });
  let notifications: Notifications;
  let url: string;

  before(async () => {
    const config = parseConfig({ NOTIFICATIONS_PORT: '0', SSE_HEARTBEAT_SECONDS: '1' });
    notifications = await createNotifications({ config, logger: silentLogger, bus, replayLog });
    url = await notifications.start();
  });
  after(async () => {
    await notifications.stop();
    await bus.close();
    await replayLog.close();
  });

  test('an SSE stream tells a buffering proxy to pass its events on at once, and not to store or alter them', async () => {
    const stream = await fetch(`${url}/api/notifications/stream`);
    try {
      assert.equal(stream.headers.get('x-accel-buffering'), 'no');
      assert.equal(stream.headers.get('cache-control'), 'no-cache, no-transform');
    } finally {
      await stream.body?.cancel();
    }
  });

  test('a quiet SignalR long poll is answered within SSE_HEARTBEAT_SECONDS, before a proxy times it out', async () => {
    const negotiated = await fetch(`${url}${HUB}/negotiate?negotiateVersion=1`, { method: 'POST' });
    const { connectionToken } = (await negotiated.json()) as { connectionToken: string };
    const connection = `${url}${HUB}?id=${encodeURIComponent(connectionToken)}`;
    const poll = async () => {
      const started = performance.now();
      // Far short of the 90 s ASP.NET holds a poll, far past the heartbeat.
      const answer = await fetch(connection, { signal: AbortSignal.timeout(10_000) });
      return { status: answer.status, body: await answer.text(), ms: performance.now() - started };
    };
    try {
      assert.equal((await poll()).status, 200, 'the first poll, which attaches the transport');
      const handshake = await fetch(connection, {
        method: 'POST',
        body: `{"protocol":"json","version":1}${RECORD_SEPARATOR}`,
      });
      assert.equal(handshake.status, 200);
      // The handshake's answer and the Connected message, in one poll or two; then nothing is sent.
      let quiet = await poll();
      while (quiet.body !== '') quiet = await poll();
      assert.equal(quiet.status, 200);
      assert.ok(quiet.ms >= 500 && quiet.ms < 3_000, `held ${Math.round(quiet.ms)} ms`);
    } finally {
      await fetch(connection, { method: 'DELETE' });
    }
  });
});
