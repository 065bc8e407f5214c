// The notifications service's CORS and security headers reach the SSE stream and the hub, which write their own
// responses (hijacked from Fastify).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { silentLogger } from '../support/logger.ts';

describe('the notifications service with CORS_ORIGINS listed', () => {
  const bus = new InProcessMessageBus();
  const replayLog = new MemoryRingReplayLog({ maxEntries: 100 });
  const pages = 'http://pages.example';
  let notifications: Notifications;
  let url: string;

  before(async () => {
    const config = parseConfig({ NOTIFICATIONS_PORT: '0', CORS_ORIGINS: pages });
    notifications = await createNotifications({ config, logger: silentLogger, bus, replayLog });
    url = await notifications.start();
  });
  after(async () => {
    await notifications.stop();
    await bus.close();
    await replayLog.close();
  });

  test('the SSE stream answers a listed origin with credentials and carries the security headers', async () => {
    const controller = new AbortController();
    try {
      const listed = await fetch(`${url}/api/notifications/stream`, {
        headers: { origin: pages },
        signal: controller.signal,
      });
      assert.equal(listed.status, 200);
      assert.equal(listed.headers.get('access-control-allow-origin'), pages);
      assert.equal(listed.headers.get('access-control-allow-credentials'), 'true');
      assert.equal(listed.headers.get('x-content-type-options'), 'nosniff');
      assert.match(listed.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
      const other = await fetch(`${url}/api/notifications/stream`, {
        headers: { origin: 'http://evil.example' },
        signal: controller.signal,
      });
      assert.equal(other.headers.get('access-control-allow-origin'), null);
    } finally {
      controller.abort();
    }
  });

  test("the hub's negotiate takes a browser's preflight and answers with CORS and security headers", async () => {
    const preflight = await fetch(`${url}/hubs/notifications/negotiate?negotiateVersion=1`, {
      method: 'OPTIONS',
      headers: {
        origin: pages,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, x-requested-with, x-signalr-user-agent',
      },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), pages);
    assert.equal(preflight.headers.get('access-control-allow-credentials'), 'true');
    const negotiate = await fetch(`${url}/hubs/notifications/negotiate?negotiateVersion=1`, {
      method: 'POST',
      headers: { origin: pages },
    });
    assert.equal(negotiate.status, 200);
    assert.equal(negotiate.headers.get('access-control-allow-origin'), pages);
    assert.equal(negotiate.headers.get('x-frame-options'), 'DENY');
  });

  test("a long-polling client's stop (DELETE on the hub) passes a browser's preflight", async () => {
    const preflight = await fetch(`${url}/hubs/notifications?id=any`, {
      method: 'OPTIONS',
      headers: { origin: pages, 'access-control-request-method': 'DELETE' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), pages);
    assert.match(preflight.headers.get('access-control-allow-methods') ?? '', /\bDELETE\b/);
  });

  test("the hub's paths say truly which methods they take: negotiate POST, the hub GET, POST and DELETE", async () => {
    for (const [path, methods] of [
      ['/hubs/notifications/negotiate', 'OPTIONS, POST'],
      ['/hubs/notifications', 'DELETE, GET, OPTIONS, POST'],
    ] as const) {
      assert.equal((await fetch(`${url}${path}`, { method: 'OPTIONS' })).headers.get('allow'), methods, path);
      for (const method of [
        'PUT',
        'PATCH',
        'HEAD',
        ...(path.endsWith('negotiate') ? ['GET', 'DELETE'] : []),
      ]) {
        const refused = await fetch(`${url}${path}`, { method });
        assert.equal(refused.status, 405, `${method} ${path}`);
        assert.equal(refused.headers.get('allow'), methods, `${method} ${path}`);
      }
    }
  });

  test('the pages allow connections to the webapi on another origin (CSP connect-src)', async () => {
    const csp = (await fetch(`${url}/sse-test.html`)).headers.get('content-security-policy') ?? '';
    assert.match(csp, /connect-src 'self' http: https:/);
    assert.match(csp, /script-src 'self'/);
  });
});
