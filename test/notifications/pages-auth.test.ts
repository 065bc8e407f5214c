// The test pages with auth on, in headless Chromium: a token typed into the page reaches the stream, the hub
// and the API (all roles embedded in this process).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { AllRolesUrls } from '../../src/all-roles.ts';
import { embeddedRoles } from '../support/all-roles.ts';
import { authEnv, tokenFor } from '../support/auth.ts';
import { cspViolations, launchChromium } from '../support/browser.ts';

describe('the test pages with auth on', () => {
  const roles = embeddedRoles(authEnv);
  let urls: AllRolesUrls;

  before(async () => {
    urls = await roles.start();
  });
  after(() => roles.stop());

  test("with a writer's token in the field, both pages connect, create, update and delete through the API and show the notifications", async () => {
    const writer = await tokenFor('writer', { subject: 'page-user' });
    const browser = await launchChromium();
    try {
      for (const path of ['/sse-test.html', '/signalr-test.html']) {
        const page = await browser.newPage();
        const blocked = cspViolations(page);
        await page.goto(`${urls.pages}${path}?api=${encodeURIComponent(urls.api)}`);
        // Without a token the automatic connection is refused, and so is a write, which says why.
        await page.locator('#status.off').waitFor();
        await page.locator('#connect:not([disabled])').waitFor();
        assert.ok(await page.isDisabled('#disconnect'), 'nothing to disconnect');
        // The refusal is shown (the SSE page asks the server why, since an EventSource is told no reason).
        await page.locator('#log', { hasText: /401/ }).waitFor();
        assert.ok(await page.isDisabled('#update'), 'nothing to update yet');
        await page.click('#create');
        // The refused connection logs a 401 of its own (the hub's negotiate): wait for the write's line.
        await page.locator('#log', { hasText: /POST \/api\/students → 401 \w+/ }).waitFor();
        assert.equal(await page.textContent('#student-id'), '–', 'a problem is not a student');
        assert.ok(await page.isDisabled('#update'));
        await page.fill('#token', ` ${writer} `); // pasted with the spaces around it
        await page.dispatchEvent('#token', 'change');
        await page.click('#connect');
        await page.locator('#status.on').waitFor();
        assert.ok(await page.isDisabled('#connect'), 'connected once only');
        assert.ok(await page.isEnabled('#disconnect'));
        await page.locator('#client-id', { hasNotText: '–' }).waitFor();

        await page.click('#create');
        await page.locator('#student-id', { hasNotText: '–' }).waitFor();
        const id = (await page.textContent('#student-id'))!;
        await page.waitForSelector(`#events li[data-student-id="${id}"][data-type="StudentCached"]`);
        assert.match((await page.textContent('#log')) ?? '', /POST \/api\/students → 201/, path);
        assert.match((await page.textContent('#events')) ?? '', /"createdBy": "page-user"/, path);
        assert.equal(
          await page.evaluate(`sessionStorage.getItem("tbe.token ${new URL(urls.api).origin}")`),
          writer,
          'kept for this tab and this API',
        );

        // The buttons act on the page's student: update, then delete it.
        await page.click('#update');
        await page.waitForSelector(`#events li[data-student-id="${id}"][data-type="StudentUpdated"]`);
        assert.match((await page.textContent('#log')) ?? '', /PUT \/api\/students\/\S+ → 200/, path);
        await page.click('#delete');
        await page.waitForSelector(`#events li[data-student-id="${id}"][data-type="StudentDeleted"]`);
        assert.match((await page.textContent('#log')) ?? '', /DELETE \/api\/students\/\S+ → 204$/, path);
        await page.locator('#student-id', { hasText: '–' }).waitFor();
        assert.ok(await page.isDisabled('#delete'), 'nothing left to delete');

        // A student written elsewhere becomes the page's student when its notification arrives.
        const created = await fetch(`${urls.api}/api/students`, {
          method: 'POST',
          headers: { authorization: `Bearer ${writer}` },
        });
        const elsewhere = ((await created.json()) as { id: string }).id;
        await page.locator('#student-id', { hasText: elsewhere }).waitFor();
        assert.ok(await page.isEnabled('#update'));
        // Deleted elsewhere, it is the page's student no more.
        const deleted = await fetch(`${urls.api}/api/students/${elsewhere}`, {
          method: 'DELETE',
          headers: { authorization: `Bearer ${writer}` },
        });
        assert.equal(deleted.status, 204);
        await page.locator('#student-id', { hasText: '–' }).waitFor();
        assert.ok(await page.isDisabled('#update'));
        assert.deepEqual(blocked, [], path);
        await mkdir('test-artifacts', { recursive: true });
        await page.screenshot({
          path: `test-artifacts/auth-${path.slice(1).replace('.html', '.png')}`,
          fullPage: true,
        });
        // A reload keeps the token (for this tab): the page connects by itself.
        await page.reload();
        await page.locator('#status.on').waitFor();
        await page.locator('#client-id', { hasNotText: '–' }).waitFor();
        await page.close();
      }
    } finally {
      await browser.close();
    }
  });

  test("a link to the page with another API's ?api= does not send that API the token typed for this one", async () => {
    const writer = await tokenFor('writer', { subject: 'page-user' });
    const seen: string[] = [];
    // Whoever a crafted link names: it answers CORS as any API would, and records what it is sent.
    const elsewhere = createServer((request, response) => {
      seen.push(request.headers.authorization ?? '');
      response.writeHead(request.method === 'OPTIONS' ? 204 : 201, {
        'access-control-allow-origin': '*',
        'access-control-allow-headers': 'authorization, content-type',
        'content-type': 'application/json',
      });
      response.end(request.method === 'OPTIONS' ? '' : '{}');
    }).listen(0, '127.0.0.1');
    await once(elsewhere, 'listening');
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`${urls.pages}/sse-test.html?api=${encodeURIComponent(urls.api)}`);
      await page.fill('#token', writer);
      await page.dispatchEvent('#token', 'change');
      // The same tab follows a link (its sessionStorage goes along).
      const other = `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}`;
      await page.goto(`${urls.pages}/sse-test.html?api=${encodeURIComponent(other)}`);
      assert.equal(await page.inputValue('#token'), '', 'no token for an API it was not typed for');
      await page.click('#create');
      await page.locator('#log', { hasText: /POST \/api\/students → 201/ }).waitFor();
      assert.ok(seen.length > 0, 'the page did call the other API');
      assert.ok(!seen.some((authorization) => authorization.includes(writer)), 'the token stayed here');
      // Back at this API, the token is there again.
      await page.goto(`${urls.pages}/sse-test.html?api=${encodeURIComponent(urls.api)}`);
      assert.equal(await page.inputValue('#token'), writer);
    } finally {
      await browser.close();
      elsewhere.close();
    }
  });
});
