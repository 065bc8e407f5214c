// The test pages across a dropped connection, in headless Chromium (all roles embedded in this process): the SSE page
// resumes with Last-Event-ID, also when a person clicks Disconnect and Connect; the SignalR page reconnects as the
// same connection (stateful reconnect) and the hub resends what it sent meanwhile.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EventSource } from 'eventsource';
import type { AllRolesUrls } from '../../src/all-roles.ts';
import { embeddedRoles } from '../support/all-roles.ts';
import { launchChromium } from '../support/browser.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';

describe('the test pages when their connection drops', () => {
  const roles = embeddedRoles();
  let urls: AllRolesUrls;
  let proxy: TcpProxy;
  // A client that stays connected tells when a student's notifications have gone out.
  let watcher: EventSource;
  const cached = new Set<string>();
  const sent = async (id: string) => {
    while (!cached.has(id)) await new Promise((resolve) => setTimeout(resolve, 20));
  };

  before(async () => {
    urls = await roles.start();
    proxy = await TcpProxy.start('127.0.0.1', Number(new URL(urls.pages).port));
    watcher = new EventSource(`${urls.pages}/api/notifications/stream`);
    watcher.addEventListener('StudentCached', (event) => {
      cached.add((JSON.parse(event.data) as { student: { id: string } }).student.id);
    });
  });
  after(async () => {
    watcher.close();
    await proxy.stop();
    await roles.stop();
  });

  const create = async () => {
    const response = await fetch(`${urls.api}/api/students`, { method: 'POST' });
    assert.equal(response.status, 201);
    return ((await response.json()) as { id: string }).id;
  };

  test('/sse-test.html: Connect after Disconnect shows what was written meanwhile, once', async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`${urls.pages}/sse-test.html?api=${encodeURIComponent(urls.api)}`);
      await page.locator('#status.on').waitFor();
      const before = await create();
      await page.waitForSelector(`#events li[data-student-id="${before}"][data-type="StudentCached"]`);
      await page.click('#disconnect');
      await page.locator('#status.off').waitFor();
      const during = await create();
      // Its notifications are out before the page reconnects: they can only come from the log.
      await sent(during);
      await page.click('#connect');
      await page.waitForSelector(`#events li[data-student-id="${during}"][data-type="StudentCached"]`);
      assert.equal(
        await page.locator('#events li').count(),
        4,
        'the two students, each Created and Cached once',
      );
    } finally {
      await browser.close();
    }
  });

  for (const { path, sameConnection } of [
    { path: '/sse-test.html', sameConnection: false },
    { path: '/signalr-test.html', sameConnection: true },
  ])
    test(`${path}: what was sent while the network was down arrives when it is back, exactly once`, async () => {
      const browser = await launchChromium();
      try {
        const page = await browser.newPage();
        await page.goto(`http://127.0.0.1:${proxy.port}${path}?api=${encodeURIComponent(urls.api)}`);
        await page.locator('#status.on').waitFor();
        const clientId = await page.locator('#client-id', { hasNotText: '–' }).textContent();
        const before = await create();
        await page.waitForSelector(`#events li[data-student-id="${before}"][data-type="StudentCached"]`);

        proxy.hold();
        const during = await create();
        await sent(during);
        proxy.release();

        await page.waitForSelector(`#events li[data-student-id="${during}"][data-type="StudentCached"]`, {
          timeout: 15_000,
        });
        for (const id of [before, during])
          for (const type of ['StudentCreated', 'StudentCached'])
            assert.equal(
              await page.locator(`#events li[data-student-id="${id}"][data-type="${type}"]`).count(),
              1,
              `${type} ${id}`,
            );
        assert.equal(await page.textContent('#count-total'), '4');
        if (sameConnection)
          assert.equal(await page.textContent('#client-id'), clientId, 'the same connection');
      } finally {
        await browser.close();
      }
    });
});
