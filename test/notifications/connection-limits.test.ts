// NOTIFICATIONS_MAX_CONNECTIONS and NOTIFICATIONS_MAX_CONNECTIONS_PER_USER: SSE streams and hub connections share one
// count, so a client cannot open them until the process runs out of sockets.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpTransportType } from '@microsoft/signalr';
import { createNotifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { authEnv, bearer, tokenFor } from '../support/auth.ts';
import { silentLogger } from '../support/logger.ts';
import { parseExposition } from '../support/prometheus-text.ts';
import { until } from '../support/until.ts';
import { hubClient } from './support.ts';

async function withNotifications(env: Record<string, string>, body: (url: string) => Promise<void>) {
  const bus = new InProcessMessageBus();
  const replayLog = new MemoryRingReplayLog({ maxEntries: 100 });
  const config = parseConfig({ NOTIFICATIONS_PORT: '0', ...env });
  const notifications = await createNotifications({ config, logger: silentLogger, bus, replayLog });
  try {
    await body(await notifications.start());
  } finally {
    await notifications.stop();
    await bus.close();
    await replayLog.close();
  }
}

/** An SSE stream held open until `close()`: its status, and (once it ends) what it sent. */
async function openStream(url: string, headers: Record<string, string> = {}) {
  const aborted = new AbortController();
  const response = await fetch(`${url}/api/notifications/stream`, { headers, signal: aborted.signal });
  return { response, close: () => aborted.abort() };
}

async function refusedConnections(url: string, reason: string): Promise<number> {
  const metrics = parseExposition(await (await fetch(`${url}/metrics`)).text());
  return metrics.sum('notifications_refused_connections_total', { reason });
}

test("a user's SSE streams and hub connections together are capped: the next gets 429, another user's still opens", async () => {
  await withNotifications({ ...authEnv, NOTIFICATIONS_MAX_CONNECTIONS_PER_USER: '2' }, async (url) => {
    const alice = await tokenFor('reader', { subject: 'alice' });
    const stream = await openStream(url, bearer(alice));
    assert.equal(stream.response.status, 200);
    const hub = await hubClient(url, HttpTransportType.WebSockets, { accessToken: alice });

    const refused = await fetch(`${url}/api/notifications/stream`, { headers: bearer(alice) });
    assert.equal(refused.status, 429);
    const problem = (await refused.json()) as { code: string; detail: string };
    assert.equal(problem.code, 'NOTIFICATIONS.TOO_MANY_CONNECTIONS');
    assert.match(problem.detail, /has 2 connections open already/);
    await assert.rejects(hubClient(url, HttpTransportType.WebSockets, { accessToken: alice }), /429/);

    assert.equal(await refusedConnections(url, 'user'), 2, 'counted: the stream and the hub connection');

    const bob = await openStream(url, bearer(await tokenFor('reader', { subject: 'bob' })));
    assert.equal(bob.response.status, 200, 'another user is not held back');
    bob.close();

    // A connection that ends gives its place back.
    stream.close();
    await until(async () => {
      const again = await openStream(url, bearer(alice));
      again.close();
      return again.response.status === 200;
    }, 'a stream again, once one has closed');
    await hub.close();
  });
});

test('a full instance tells an SSE client to retry later (EventSource would give up on an error) and a hub client 503', async () => {
  await withNotifications({ NOTIFICATIONS_MAX_CONNECTIONS: '1' }, async (url) => {
    const stream = await openStream(url);
    assert.equal(stream.response.status, 200);
    const turnedAway = await fetch(`${url}/api/notifications/stream`);
    assert.equal(turnedAway.status, 200);
    assert.match(await turnedAway.text(), /^retry: \d+\n\n$/);
    const negotiate = await fetch(`${url}/hubs/notifications/negotiate?negotiateVersion=1`, {
      method: 'POST',
    });
    assert.equal(negotiate.status, 503);
    assert.equal(
      await negotiate.text(),
      'This instance holds as many connections as it may; try again later.',
    );
    assert.equal(await refusedConnections(url, 'instance'), 2, 'a 200 that says retry is counted too');

    // A connection that ends gives its place back, whichever kind it was: the stream's goes to a hub client...
    stream.close();
    let hub: Awaited<ReturnType<typeof hubClient>> | undefined;
    await until(async () => {
      hub = await hubClient(url).catch(() => undefined);
      return hub !== undefined;
    }, 'a hub connection once the stream has closed');
    assert.equal(await admitted(url), false, 'the hub connection holds the one place');
    // ...and the hub client's to the next stream.
    await hub!.close();
    await until(() => admitted(url), 'a stream once the hub connection has closed');
  });
});

test('negotiates never followed up take a tenth of the slots at most: the rest stay open to real clients', async () => {
  await withNotifications({ NOTIFICATIONS_MAX_CONNECTIONS: '20' }, async (url) => {
    for (let i = 0; i < 100; i++) {
      const negotiate = await fetch(`${url}/hubs/notifications/negotiate?negotiateVersion=1`, {
        method: 'POST',
      });
      assert.equal(negotiate.status, 200);
      await negotiate.arrayBuffer();
    }
    assert.equal(await admitted(url), true, 'an SSE stream still opens');
    const hub = await hubClient(url);
    await hub.close();
    assert.equal(await refusedConnections(url, 'instance'), 0);
  });
});

/** Whether a new SSE stream is opened (`connected`) rather than told to retry; it is closed again at once. */
async function admitted(url: string): Promise<boolean> {
  const stream = await openStream(url);
  try {
    const reader = stream.response.body!.getReader();
    let text = '';
    while (!/\n\n/.test(text)) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    return /^event: connected$/m.test(text);
  } finally {
    stream.close();
  }
}
