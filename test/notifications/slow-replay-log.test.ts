// SSE requests that arrive while the replay log is slow to answer (a Redis round trip that takes its time): whatever
// happens meanwhile to the client or the server, no stream is left behind. And requests the log fails, or that come
// before this instance tails the log again: the client is told to retry, and misses nothing.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { describe, test } from 'node:test';
import type {
  ReplayLog,
  ReplayLogEntry,
  ReplayLogRetention,
} from '../../src/application/ports/replay-log.ts';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { silentLogger } from '../support/logger.ts';
import { until } from '../support/until.ts';
import { notificationMessage, sseClient } from './support.ts';

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

/** A memory ring that refuses its first `refusals` calls to `retention()` (Redis away when the instance started). */
class LateLog extends MemoryRingReplayLog {
  refused = 0;

  constructor(readonly refusals: number) {
    super({ maxEntries: 100 });
  }

  override async retention(): Promise<ReplayLogRetention> {
    if (this.refused < this.refusals) {
      this.refused++;
      throw new Error('connect ECONNREFUSED');
    }
    return super.retention();
  }
}

/** A memory ring whose next page read fails (Redis lost in the middle of a catch-up). */
class FailingReadLog extends MemoryRingReplayLog {
  failNextRead = false;

  override async readAfter(afterId: string, limit: number): Promise<readonly ReplayLogEntry[]> {
    if (this.failNextRead) {
      this.failNextRead = false;
      throw new Error('connection lost');
    }
    return super.readAfter(afterId, limit);
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
function openStream(url: string, lastEventId?: string) {
  const result = { body: '', ended: false, request: undefined as unknown as http.ClientRequest };
  const headers = lastEventId === undefined ? {} : { 'last-event-id': lastEventId };
  result.request = http.get(`${url}/api/notifications/stream`, { headers }, (response) => {
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => (result.body += chunk));
    response.on('end', () => (result.ended = true));
  });
  result.request.on('error', () => undefined);
  return result;
}

async function sseClientsCounted(url: string): Promise<number> {
  const health = (await (await fetch(`${url}/health`)).json()) as HealthBody;
  const clients = checkNamed<{ sse: number }>(health, 'clients');
  assert.ok(clients, 'a clients check');
  return clients.data.sse;
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
    let stopped: Promise<unknown> | undefined;
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

describe('an SSE request while the replay log has just come back', () => {
  test('is told to retry until the instance tails the log again, not given a stream with no position', async () => {
    // The instance's tail retries with back-off: after the sixth refusal it waits 3.2 s, while the log answers.
    const log = new LateLog(6);
    const { notifications, url, bus } = await started(log);
    try {
      await until(() => log.refused === log.refusals, 'the tail refused six times');
      const stream = openStream(url);
      await until(() => stream.ended, 'the stream ended');
      assert.match(stream.body, /^retry: \d+\n\n$/, 'a reconnect hint, and no stream');
      // Once the instance tails the log again, a stream starts.
      let again = openStream(url);
      await until(() => {
        if (again.body.includes('event: connected')) return true;
        if (again.ended) again = openStream(url);
        return false;
      }, 'a stream once the log is tailed');
      again.request.destroy();
    } finally {
      await notifications.stop();
      await bus.close();
      await log.close();
    }
  });
});

describe('an SSE catch-up whose read of the log fails', () => {
  test('ends the stream with a retry hint: the client comes back and gets what it missed', async () => {
    const log = new FailingReadLog({ maxEntries: 100 });
    const { notifications, url, bus } = await started(log);
    try {
      const first = sseClient(url);
      await until(() => first.control.length > 0, 'connected');
      const lastEventId = first.control[0]?.id;
      first.close();
      const student = randomUUID();
      await bus.publish([notificationMessage('StudentCreated', student)]);
      await until(async () => (await log.retention()).length === 1, 'the notification in the log');
      log.failNextRead = true;
      const failed = openStream(url, lastEventId);
      await until(() => failed.ended, 'the failed catch-up ended');
      assert.equal(log.failNextRead, false, 'the catch-up failed');
      assert.match(failed.body, /\nretry: \d+\n\n$/, 'ended with a reconnect hint');
      // The client comes back, as EventSource does after the hint.
      const resumed = sseClient(url, { lastEventId });
      try {
        await resumed.arrived('StudentCreated', student);
      } finally {
        resumed.close();
      }
    } finally {
      await notifications.stop();
      await bus.close();
      await log.close();
    }
  });
});
