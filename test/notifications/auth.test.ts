// The notifications service with auth on: the SSE stream and the hub need a reader's token; the pages stay public.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { HttpTransportType } from '@microsoft/signalr';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { authEnv, bearer, sign, signingKey, tokenFor, unreachableKeySet } from '../support/auth.ts';
import { recordingLogger, silentLogger } from '../support/logger.ts';
import { exchange } from '../support/raw-http.ts';
import { hubClient, notificationMessage, sseClient } from './support.ts';
import { until } from '../support/until.ts';

describe('the notifications service with auth on (AUTH_JWT_SECRET)', () => {
  const bus = new InProcessMessageBus();
  const replayLog = new MemoryRingReplayLog({ maxEntries: 100 });
  const config = parseConfig({ NOTIFICATIONS_PORT: '0', ...authEnv });
  const { logger, logged } = recordingLogger();
  let notifications: Notifications;
  let url: string;
  let reader: string;

  before(async () => {
    notifications = await createNotifications({ config, logger, bus, replayLog });
    url = await notifications.start();
    reader = await tokenFor('reader');
  });
  after(async () => {
    await notifications.stop();
    await bus.close();
    await replayLog.close();
  });

  /** An SSE client until it is connected and has received one notification published after that. */
  async function receivesNotifications(client: ReturnType<typeof sseClient>): Promise<void> {
    try {
      await until(() => client.control.length > 0, 'connected');
      await bus.publish([notificationMessage('StudentCreated', randomUUID())]);
      await until(() => client.received.length === 1, 'a notification');
    } finally {
      client.close();
    }
  }

  test('an anonymous SSE stream is refused with 401 problem+json and WWW-Authenticate: Bearer', async () => {
    const response = await fetch(`${url}/api/notifications/stream`);
    assert.equal(response.status, 401);
    assert.equal(response.headers.get('www-authenticate'), 'Bearer');
    assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(((await response.json()) as { code: string }).code, 'AUTH.UNAUTHENTICATED');
    // Only the cookie of that very name carries the token.
    const otherCookie = await fetch(`${url}/api/notifications/stream`, {
      headers: { cookie: `old_access_token=${reader}` },
    });
    assert.equal(otherCookie.status, 401);
    await otherCookie.body?.cancel();

    const client = sseClient(url);
    try {
      await until(() => client.failures.length > 0, 'the refusal');
      assert.deepEqual(client.failures, [401]);
      assert.equal(client.control.length, 0, 'never connected');
    } finally {
      client.close();
    }
  });

  test("a reader's SSE stream works with the token in the query (EventSource), the header or a cookie", async () => {
    await receivesNotifications(sseClient(url, { query: `?access_token=${reader}` }));
    await receivesNotifications(sseClient(url, { headers: bearer(reader) }));
    await receivesNotifications(
      sseClient(url, { headers: { cookie: `theme=dark; access_token=${reader}` } }),
    );
  });

  test('a stream refused for a bad query does not echo the token it was sent in the query', async () => {
    // The query parser decodes the name: `access%5Ftoken` is `access_token` too.
    for (const name of ['access_token', 'access%5Ftoken']) {
      const response = await fetch(`${url}/api/notifications/stream?${name}=${reader}&types=Nope`);
      assert.equal(response.status, 400);
      const body = await response.text();
      assert.equal(body.includes(reader), false, body);
      assert.ok(body.includes(`${name}=[redacted]&types=Nope`), body);
    }
  });

  test('a mistyped or undecodable stream path, or a method the stream does not take, does not echo the token sent in the query', async () => {
    for (const [method, path, status, more = ''] of [
      ['GET', '/api/notifications/strem', 404],
      // The router's own message quotes the whole target; `$&` in a replacement would put it back.
      ['GET', '/api/notifications/stream%E0%A4%A', 400],
      ['GET', '/api/notifications/stream%E0%A4%A', 400, '&q=$&'],
      ['POST', '/api/notifications/stream', 405],
    ] as const) {
      const response = await fetch(`${url}${path}?access_token=${reader}${more}`, { method });
      assert.equal(response.status, status, `${method} ${path}`);
      const body = await response.text();
      assert.equal(body.includes(reader), false, body);
    }
    // In absolute form (as to a proxy), which the router quotes without its origin.
    const absolute = await exchange(
      new URL(url).port,
      `GET http://x/api/notifications/stream%E0%A4%A?access_token=${reader} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    assert.match(absolute, /^HTTP\/1.1 400 /);
    assert.equal(absolute.includes(reader), false, absolute);
  });

  test('a stream opened with the token under a percent-encoded name (access%5Ftoken) does not log the token', async () => {
    await receivesNotifications(sseClient(url, { query: `?access%5Ftoken=${reader}&types=StudentCreated` }));
    await until(() => /access%5Ftoken=[^&"]*&types=StudentCreated"/.test(logged()), 'the request logged');
    assert.equal(logged().includes(reader), false, 'the token reached the logs');
  });

  test('an expired or forged token is 401 on the stream; a token without a known role is 403', async () => {
    const expired = await tokenFor('reader', { expires: '-5m' });
    const forged = await tokenFor('reader', { secret: 'not-the-secret-of-this-service-at-all' });
    for (const token of [expired, forged])
      assert.equal((await fetch(`${url}/api/notifications/stream?access_token=${token}`)).status, 401);
    const nobody = await tokenFor('guest');
    const refused = await fetch(`${url}/api/notifications/students/stream`, { headers: bearer(nobody) });
    assert.equal(refused.status, 403);
    assert.equal(((await refused.json()) as { code: string }).code, 'AUTH.FORBIDDEN');
  });

  test('access_token given twice in the query is a 400 that says so, as two Authorization lines are, not "no token"', async () => {
    const response = await fetch(
      `${url}/api/notifications/stream?access_token=${reader}&access_token=${reader}`,
    );
    assert.equal(response.status, 400);
    assert.equal(response.headers.get('www-authenticate'), 'Bearer error="invalid_request"');
    const problem = (await response.json()) as { errors: unknown };
    assert.deepEqual(problem.errors, [{ field: 'access_token', reason: 'must be sent once' }]);
  });

  test("anonymous hub connections are refused (401); a reader's work over every transport", async () => {
    await assert.rejects(hubClient(url), /Status code '401'/);
    for (const transport of [
      HttpTransportType.WebSockets,
      HttpTransportType.ServerSentEvents,
      HttpTransportType.LongPolling,
    ]) {
      const client = await hubClient(url, transport, { accessToken: reader });
      try {
        await until(() => client.connected.length === 1, 'Connected');
        await bus.publish([notificationMessage('StudentUpdated', randomUUID())]);
        await until(
          () => client.received.length === 1,
          `a notification over ${HttpTransportType[transport]}`,
        );
      } finally {
        await client.close();
      }
    }
  });

  test('a hub connection with an expired token is 401; with a token without a known role 403', async () => {
    const expired = await tokenFor('reader', { expires: '-5m' });
    await assert.rejects(hubClient(url, HttpTransportType.WebSockets, { accessToken: expired }), /'401'/);
    const nobody = await tokenFor('guest');
    await assert.rejects(hubClient(url, HttpTransportType.WebSockets, { accessToken: nobody }), /'403'/);
  });

  test('the pages, their script and the health endpoints stay public', async () => {
    for (const path of [
      '/',
      '/sse-test.html',
      '/signalr-test.html',
      '/test-page.js',
      '/lib/signalr.min.js',
    ]) {
      assert.equal((await fetch(`${url}${path}`)).status, 200, path);
    }
    for (const path of ['/health', '/health/live'])
      assert.equal((await fetch(`${url}${path}`)).status, 200, path);
  });
});

test('with an unreachable key set (AUTH_JWKS_URL) a hub connection gets 503, not 401: the token is fine', async () => {
  const bus = new InProcessMessageBus();
  const replayLog = new MemoryRingReplayLog({ maxEntries: 100 });
  const config = parseConfig({
    NOTIFICATIONS_PORT: '0',
    AUTH_JWKS_URL: await unreachableKeySet(),
    AUTH_ISSUER: 'https://idp.test',
    AUTH_AUDIENCE: 'student-api',
  });
  const notifications = await createNotifications({ config, logger: silentLogger, bus, replayLog });
  try {
    const url = await notifications.start();
    const reader = await sign(await signingKey('ES256', 'k'), { sub: 'viewer', role: 'reader' });
    await assert.rejects(hubClient(url, HttpTransportType.WebSockets, { accessToken: reader }), /'503'/);
  } finally {
    await notifications.stop();
    await bus.close();
    await replayLog.close();
  }
});

test('an SSE stream ends once its token is no longer taken: the client comes back with it and is refused', async () => {
  const bus = new InProcessMessageBus();
  const replayLog = new MemoryRingReplayLog({ maxEntries: 100 });
  const config = parseConfig({ NOTIFICATIONS_PORT: '0', SSE_HEARTBEAT_SECONDS: '1', ...authEnv });
  const notifications = await createNotifications({ config, logger: silentLogger, bus, replayLog });
  try {
    const url = await notifications.start();
    // Taken for 3 s more: the verifier allows 60 s for the issuer's clock.
    const expiring = await tokenFor('reader', { expires: '-57s' });
    const lasting = await tokenFor('reader');
    const ending = sseClient(url, { query: `?access_token=${expiring}` });
    const staying = sseClient(url, { query: `?access_token=${lasting}` });
    try {
      await until(() => ending.control.length > 0 && staying.control.length > 0, 'both connected');
      await until(() => ending.failures.includes(401), 'the expired token refused on reconnecting', 15_000);
      await bus.publish([notificationMessage('StudentCreated', randomUUID())]);
      await until(() => staying.received.length === 1, 'a notification on the lasting stream');
      assert.equal(ending.received.length, 0, 'nothing reaches the expired token');
      assert.equal(ending.control.length, 1, 'not reconnected');
    } finally {
      ending.close();
      staying.close();
    }
  } finally {
    await notifications.stop();
    await bus.close();
    await replayLog.close();
  }
});
