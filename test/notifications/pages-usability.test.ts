// The test pages as a person uses them, in headless Chromium (all roles embedded in this process): what a failed
// write says, a name the Update button cannot make too long, ids that copy whole, a readable status and what a
// screen reader is told.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { AllRolesUrls } from '../../src/all-roles.ts';
import { embeddedRoles } from '../support/all-roles.ts';
import { launchChromium } from '../support/browser.ts';
import { freePort } from '../support/free-port.ts';

describe('the test pages, as a person uses them', () => {
  const roles = embeddedRoles();
  let urls: AllRolesUrls;
  let browser: Browser;

  before(async () => {
    urls = await roles.start();
    browser = await launchChromium();
  });
  after(async () => {
    await browser.close();
    await roles.stop();
  });

  const open = async (path: string): Promise<Page> => {
    const page = await browser.newPage();
    await page.goto(`${urls.pages}${path}`);
    await page.locator('#status.on').waitFor();
    return page;
  };

  test('a write the webapi does not answer (down, or refused by CORS) says where it went and why it may have failed', async () => {
    const nobody = `http://127.0.0.1:${await freePort()}`;
    const page = await browser.newPage();
    await page.goto(`${urls.pages}/sse-test.html?api=${encodeURIComponent(nobody)}`);
    await page.locator('#status.on').waitFor();
    await page.click('#create');
    const log = page.locator('#log', { hasText: 'POST /api/students' });
    await log.waitFor();
    const text = (await log.textContent()) ?? '';
    assert.match(text, new RegExp(`no answer from the webapi at ${nobody.replaceAll('.', '\\.')}`), text);
    assert.match(text, /CORS_ORIGINS/, text);
    assert.ok(text.includes(new URL(urls.pages).origin), text);
    await page.close();
  });

  test("a refused write lists the problem's fields", async () => {
    const page = await open('/sse-test.html');
    await page.route('**/api/students', (route) =>
      route.fulfill({
        status: 400,
        contentType: 'application/problem+json',
        headers: { 'access-control-allow-origin': '*' },
        body: JSON.stringify({
          title: 'The request is not valid',
          detail: 'The request body failed validation.',
          errors: [{ field: 'firstName', reason: 'must be at most 100 characters' }],
        }),
      }),
    );
    await page.click('#create');
    await page.locator('#log', { hasText: 'firstName must be at most 100 characters' }).waitFor();
    await page.close();
  });

  test('Update the last one works on a student whose name is as long as allowed, again and again', async () => {
    const page = await open('/sse-test.html');
    const response = await fetch(`${urls.api}/api/students`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ firstName: 'W'.repeat(100), lastName: 'Long', email: 'long@example.com' }),
    });
    assert.equal(response.status, 201);
    const { id } = (await response.json()) as { id: string };
    // Its notification makes it the page's student.
    await page.locator('#student-id', { hasText: id }).waitFor();
    for (let round = 1; round <= 3; round++) {
      await page.click('#update');
      await page.locator('#log', { hasText: new RegExp(`PUT /api/students/${id} → 200$`) }).waitFor();
      await page.evaluate("document.getElementById('log').textContent = ''");
    }
    await page.close();
  });

  for (const selector of ['#student-id', '#client-id'])
    test(`a double-click on ${selector} selects the whole id, ready to copy`, async () => {
      const page = await open('/sse-test.html');
      await page.click('#create');
      await page.locator('#student-id', { hasNotText: '–' }).waitFor();
      await page.locator('#client-id', { hasNotText: '–' }).waitFor();
      await page.dblclick(selector);
      assert.equal(await page.evaluate('String(window.getSelection())'), await page.textContent(selector));
      await page.close();
    });

  test('the connection status is readable (WCAG AA contrast) and announced, and so is what a button did', async () => {
    const page = await open('/signalr-test.html');
    const luminance = (color: string) => {
      const [r, g, b] = color
        .match(/\d+/g)!
        .slice(0, 3)
        .map((value) => {
          const c = Number(value) / 255;
          return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
        });
      return 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
    };
    const contrast = async () => {
      const [color, background] = (await page.evaluate(
        "[getComputedStyle(document.getElementById('status')).color, getComputedStyle(document.getElementById('status')).backgroundColor]",
      )) as [string, string];
      const [a, b] = [luminance(color), luminance(background)];
      return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    };
    assert.ok((await contrast()) >= 4.5, `connected: ${await contrast()}`);
    await page.click('#disconnect');
    await page.locator('#status.off').waitFor();
    assert.ok((await contrast()) >= 4.5, `disconnected: ${await contrast()}`);
    assert.equal(await page.getAttribute('#status', 'role'), 'status');
    assert.equal(await page.getAttribute('#log', 'aria-live'), 'polite');
    await page.close();
  });
});
