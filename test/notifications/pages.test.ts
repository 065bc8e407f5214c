// The test pages in headless Chromium, all roles embedded in this process. Across a dropped connection the SSE page
// resumes with Last-Event-ID, also when a person clicks Disconnect and Connect; the SignalR page reconnects as the
// same connection (stateful reconnect) and the hub resends what it sent meanwhile. The SignalR page can also follow
// one student (its hub group `student:<id>`).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import type { AllRolesUrls } from '../../src/all-roles.ts';
import { embeddedRoles } from '../support/all-roles.ts';
import { launchChromium } from '../support/browser.ts';
import { parseExposition } from '../support/prometheus-text.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { until } from '../support/until.ts';
import { sseClient } from './support.ts';

describe('the test pages (all roles embedded)', () => {
  const roles = embeddedRoles();
  let urls: AllRolesUrls;
  let proxy: TcpProxy;
  // A client that stays connected tells when a student's notifications have gone out.
  let watcher: ReturnType<typeof sseClient>;
  let browser: Browser;
  /**
   * A page, in a tab of its own, writing through the webapi; returned once it is connected. No `?api=`: the pages
   * find the webapi by themselves, on whatever port it bound (API_PORT is 0 here).
   */
  const open = async (pageUrl: string) => {
    const page = await browser.newPage();
    await page.goto(pageUrl);
    await page.locator('#status.on').waitFor();
    return page;
  };

  before(async () => {
    urls = await roles.start();
    proxy = await TcpProxy.start('127.0.0.1', Number(new URL(urls.pages).port));
    watcher = sseClient(urls.pages);
    browser = await launchChromium();
  });
  after(async () => {
    await browser.close();
    watcher.close();
    await proxy.stop();
    await roles.stop();
  });

  const write = async (method: 'POST' | 'PUT', path = '') => {
    const response = await fetch(`${urls.api}/api/students${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    assert.ok(response.ok, `${method} ${path}: ${response.status}`);
    return ((await response.json()) as { id: string }).id;
  };
  const create = () => write('POST');
  const sseClients = async () =>
    parseExposition(await (await fetch(`${urls.pages}/metrics`)).text()).value(
      'notifications_connected_clients',
      { transport: 'sse' },
    );
  const shown = (id: string, type = 'StudentCached') =>
    `#events li[data-student-id="${id}"][data-type="${type}"]`;

  test('the pages, stylesheet and scripts have their content types and are revalidated on every load', async () => {
    const served = {
      '/': 'text/html; charset=utf-8',
      '/sse-test.html': 'text/html; charset=utf-8',
      '/signalr-test.html': 'text/html; charset=utf-8',
      '/app.css': 'text/css; charset=utf-8',
      '/test-page.js': 'text/javascript; charset=utf-8',
      '/config.js': 'text/javascript; charset=utf-8',
    };
    for (const [path, type] of Object.entries(served)) {
      const response = await fetch(`${urls.pages}${path}`);
      assert.equal(response.status, 200, path);
      assert.equal(response.headers.get('content-type'), type, path);
      // A new version of a page or script is seen at once, not after some cache expires.
      assert.equal(response.headers.get('cache-control'), 'no-cache', path);
    }
    const library = await fetch(`${urls.pages}/lib/signalr.min.js`);
    assert.equal(library.headers.get('content-type'), 'text/javascript; charset=utf-8');
    const html = await (await fetch(`${urls.pages}/signalr-test.html`)).text();
    assert.match(html, /<title>SignalR test<\/title>[\s\S]*<h1>SignalR test<\/h1>/);
    assert.doesNotMatch(html, /\{\{/, 'every placeholder filled in');
  });

  test('?api= points a page at another webapi', async () => {
    const page = await browser.newPage();
    await page.goto(`${urls.pages}/sse-test.html?api=${encodeURIComponent('http://api.example:8080')}`);
    assert.equal(await page.locator('#api-url').textContent(), 'http://api.example:8080');
    await page.close();
  });

  test('/sse-test.html: Connect after Disconnect shows what was written meanwhile, once', async () => {
    const page = await open(`${urls.pages}/sse-test.html`);
    const before = await create();
    await page.waitForSelector(shown(before));
    await page.click('#disconnect');
    await page.locator('#status.off').waitFor();
    await until(
      async () => (await sseClients()) === 1,
      "the page's stream closed: only the watcher's is left",
    );
    const during = await create();
    // Its notifications are out before the page reconnects: they can only come from the log.
    await watcher.arrived('StudentCached', during);
    await page.click('#connect');
    await page.waitForSelector(shown(during));
    assert.equal(
      await page.locator('#events li').count(),
      4,
      'the two students, each Created and Cached once',
    );
  });

  test('/sse-test.html: Connect after Disconnect, with nothing received before, still shows what was written meanwhile', async () => {
    const page = await open(`${urls.pages}/sse-test.html`);
    await page.click('#disconnect');
    await page.locator('#status.off').waitFor();
    const during = await create();
    await watcher.arrived('StudentCached', during);
    // Where the page resumes is where its stream began (the `connected` event's id).
    await page.click('#connect');
    await page.waitForSelector(shown(during));
    await page.close();
  });

  test('/sse-test.html: a stream that cannot resume where the page left off says so, in the list where the gap is', async () => {
    const page = await open(`${urls.pages}/sse-test.html`);
    await page.click('#disconnect');
    await page.locator('#status.off').waitFor();
    // As after a restart that lost the replay log: the id the page resumes from is one the log never had.
    await page.route('**/api/notifications/stream?*', (route) => {
      const url = new URL(route.request().url());
      url.searchParams.set('lastEventId', `${Date.now() + 86_400_000}-0`);
      return route.continue({ url: url.toString() });
    });
    await page.click('#connect');
    await page
      .locator('#log', { hasText: 'Missed notifications: fetch what you show again from the API.' })
      .waitFor();
    // The gap stays in the list, with the server's reason, after the next action has replaced #log.
    await page.locator('#events li.gap', { hasText: 'Last-Event-ID is not in the replay log' }).waitFor();
    await page.close();
  });

  test('/signalr-test.html: Connect after Disconnect is a new connection, and the list says that what was sent meanwhile is not shown', async () => {
    const page = await open(`${urls.pages}/signalr-test.html`);
    await page.click('#disconnect');
    await page.locator('#status.off').waitFor();
    const during = await create();
    await watcher.arrived('StudentCached', during);
    await page.click('#connect');
    await page.locator('#status.on').waitFor();
    await page
      .locator('#events li.gap', { hasText: 'notifications sent while disconnected are not shown' })
      .waitFor();
    const after = await create();
    await page.waitForSelector(shown(after));
    assert.equal(await page.locator(shown(during)).count(), 0, 'a new hub connection starts from now');
    await page.close();
  });

  for (const path of ['/sse-test.html', '/signalr-test.html'])
    test(`${path}: its buttons create, update and delete through the webapi it finds by itself`, async () => {
      const page = await open(`${urls.pages}${path}`);
      assert.equal(await page.locator('#api-url').textContent(), urls.api, 'the port the webapi bound');
      assert.equal(await page.isVisible('#follow'), path === '/signalr-test.html', 'Follow: SignalR only');
      await page.click('#create');
      await page.locator('#update:enabled').waitFor();
      const id = (await page.locator('#student-id').textContent()) ?? '';
      assert.match(id, /^[0-9a-f-]{36}$/, (await page.locator('#log').textContent()) ?? '');
      await page.waitForSelector(shown(id, 'StudentCached'));
      await page.click('#update');
      await page.waitForSelector(shown(id, 'StudentUpdated'));
      await page.click('#delete');
      await page.waitForSelector(shown(id, 'StudentDeleted'));
      await page.close();
    });

  for (const { path, sameConnection } of [
    { path: '/sse-test.html', sameConnection: false },
    { path: '/signalr-test.html', sameConnection: true },
  ])
    test(`${path}: what was sent while the network was down arrives when it is back, exactly once`, async () => {
      const page = await open(`http://127.0.0.1:${proxy.port}${path}`);
      const clientId = await page.locator('#client-id', { hasNotText: '–' }).textContent();
      const before = await create();
      await page.waitForSelector(shown(before));

      proxy.hold();
      // The EventSource says it tries again (a stateful SignalR reconnect goes unseen by the page).
      if (!sameConnection) {
        await page.locator('#status.off', { hasText: 'reconnecting…' }).waitFor();
        // A second connection beside the one that comes back would show every event twice.
        assert.ok(await page.isDisabled('#connect'), 'no Connect while it reconnects');
        assert.ok(await page.isEnabled('#disconnect'), 'Disconnect still stops it');
      }
      const during = await create();
      await watcher.arrived('StudentCached', during);
      proxy.release();

      await page.waitForSelector(shown(during), { timeout: 15_000 });
      for (const id of [before, during])
        for (const type of ['StudentCreated', 'StudentCached'])
          assert.equal(await page.locator(shown(id, type)).count(), 1, `${type} ${id}`);
      assert.equal(await page.textContent('#count-total'), '4');
      if (sameConnection) assert.equal(await page.textContent('#client-id'), clientId, 'the same connection');
    });

  test('/signalr-test.html: a server away longer than the SignalR client would wait by default is found again within seconds of its return', async () => {
    const page = await open(`http://127.0.0.1:${proxy.port}/signalr-test.html`);
    await proxy.pause();
    try {
      await page.locator('#status.off', { hasText: 'reconnecting…' }).waitFor();
      // The client's default tries at 0, 2 and 10 s, then only 30 s later, and then gives up.
      await new Promise((resolve) => setTimeout(resolve, 13_000));
    } finally {
      await proxy.resume();
    }
    // The client's default would try next at 42 s, 29 s after the return.
    await page.locator('#status.on').waitFor({ timeout: 15_000 });
    const id = await create();
    await page.waitForSelector(shown(id));
    await page.close();
  });

  test('/signalr-test.html: once the student it follows is deleted, it follows every student again', async () => {
    const page = await open(`${urls.pages}/signalr-test.html`);
    const followed = await create();
    await page.waitForSelector(shown(followed));
    await page.click('#follow');
    await page.locator('#follow', { hasText: 'Follow all students' }).waitFor();
    const deleted = await fetch(`${urls.api}/api/students/${followed}`, { method: 'DELETE' });
    assert.equal(deleted.status, 204);
    await page.waitForSelector(shown(followed, 'StudentDeleted'));
    await page.locator('#follow', { hasText: 'Follow only the last one' }).waitFor();
    // Still in the deleted student's group alone, it would show nothing more.
    const next = await create();
    await page.waitForSelector(shown(next));
    await page.close();
  });

  test('every page fits a phone screen (375 px): nothing is cut off at its right edge', async () => {
    const page = await browser.newPage({ viewport: { width: 375, height: 740 } });
    try {
      for (const path of ['/', '/sse-test.html', '/signalr-test.html']) {
        await page.goto(`${urls.pages}${path}`);
        if (path !== '/') {
          await page.locator('#status.on').waitFor();
          // Long unbreakable text: a client id, a student's JSON.
          await page.locator('#client-id', { hasNotText: '–' }).waitFor();
          await page.waitForSelector(shown(await create()));
        }
        assert.equal(await page.evaluate('document.documentElement.scrollWidth'), 375, path);
      }
    } finally {
      await page.close();
    }
  });

  test('/signalr-test.html: following one student shows only its notifications, until it follows all again', async () => {
    const page = await open(`${urls.pages}/signalr-test.html`);
    assert.ok(await page.isDisabled('#follow'), 'no student to follow yet');
    const followed = await create();
    await page.waitForSelector(shown(followed));
    await page.click('#follow');
    await page.locator('#follow', { hasText: 'Follow all students' }).waitFor();

    const other = await create();
    await watcher.arrived('StudentCached', other);
    await write('PUT', `/${followed}`);
    await page.waitForSelector(shown(followed, 'StudentUpdated'));
    assert.equal(await page.locator(`#events li[data-student-id="${other}"]`).count(), 0, 'not followed');

    await page.click('#follow');
    await page.locator('#follow', { hasText: 'Follow only the last one' }).waitFor();
    const next = await create();
    await page.waitForSelector(shown(next));
    assert.equal(await page.locator(shown(followed, 'StudentUpdated')).count(), 1);
  });
});
