// SSE requests that arrive while the replay log is slow to answer (a Redis round trip that takes its time): whatever
// happens meanwhile to the client or the server, no stream is left behind.
import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, test } from 'node:test';
import type { ReplayLog, ReplayLogRetention } from '../../src/application/ports/replay-log.ts';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { silentLogger } from '../support/logger.ts';
import { until } from '../support/until.ts';

/** A memory ring whose `retention()` waits, once held, until released. */
class HeldRetentionLog extends MemoryRingReplayLog {
  #held: Promise<void> | undefined;
  #release = () => {};
  waiting = 0;

  hold(): void {
    this.#held = new Promise((resolve) => (this.#release = resolve));
  }

  release(): void {
    this.#held = undefined;
    this.#release();
  }

  override async retention(): Promise<ReplayLogRetention> {
    const held = this.#held;
    if (held) {
      this.waiting++;
      await held;
      this.waiting--;
    }
    return super.retention();
  }
}

async function started(
  log: ReplayLog,
): Promise<{ notifications: Notifications; url: string; bus: InProcessMessageBus }> {
  const bus = new InProcessMessageBus();
  const notifications = await createNotifications({
    config: parseConfig({ NOTIFICATIONS_PORT: '0' }),
    logger: silentLogger,
    bus,
    replayLog: log,
  });
  return { notifications, url: await notifications.start(), bus };
}

/** A raw stream request: what arrives, and whether the server ended it. */
function openStream(url: string) {
  const result = { body: '', ended: false, request: undefined as unknown as http.ClientRequest };
  result.request = http.get(`${url}/api/notifications/stream`, (response) => {
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => (result.body += chunk));
    response.on('end', () => (result.ended = true));
  });
  result.request.on('error', () => undefined);
  return result;
}

async function sseClientsCounted(url: string): Promise<number> {
  const health = (await (await fetch(`${url}/health`)).json()) as {
    checks: { clients: { data: { sse: number } } };
  };
  return health.checks.clients.data.sse;
}

describe('an SSE request waiting for a slow replay log', () => {
  test('whose client leaves meanwhile leaves no stream behind', async () => {
    const log = new HeldRetentionLog({ maxEntries: 100 });
    const { notifications, url, bus } = await started(log);
    try {
      log.hold();
      const streams = [openStream(url), openStream(url), openStream(url)];
      await until(() => log.waiting === 3, 'the three requests waiting for the log');
      for (const stream of streams) stream.request.destroy();
      // The server sees the connections close before the log answers.
      await new Promise((resolve) => setTimeout(resolve, 100));
      log.release();
      await until(() => log.waiting === 0, 'the log answered');
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(await sseClientsCounted(url), 0, 'no stream is kept for a client that is gone');
    } finally {
      log.release();
      await notifications.stop();
      await bus.close();
      await log.close();
    }
  });

  test('while the server closes is told to retry, like the streams it had, and does not hold the close', async () => {
    const log = new HeldRetentionLog({ maxEntries: 100 });
    const { notifications, url, bus } = await started(log);
    log.hold();
    const stream = openStream(url);
    let stopped: Promise<void> | undefined;
    try {
      await until(() => log.waiting === 1, 'the request waiting for the log');
      stopped = notifications.stop();
      await new Promise((resolve) => setTimeout(resolve, 100));
      log.release();
      await until(() => stream.ended, 'the stream ended');
      assert.match(stream.body, /^retry: \d+\n\n$/, 'a reconnect hint, and no stream');
    } finally {
      log.release();
      stream.request.destroy();
      await (stopped ?? notifications.stop());
      await bus.close();
      await log.close();
    }
  });
});
