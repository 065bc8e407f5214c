// The test pages with auth on, in headless Chromium: a token typed into the page reaches the stream, the hub
// and the API (all roles embedded in this process).
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { createAllRoles, type AllRolesUrls } from '../../src/all-roles.ts';
import { parseConfig } from '../../src/config.ts';
import { authEnv, tokenFor } from '../support/auth.ts';
import { cspViolations, launchChromium } from '../support/browser.ts';
import { silentLogger } from '../support/logger.ts';

describe('the test pages with auth on', () => {
  const roles = createAllRoles({
    config: parseConfig({
      DATABASE_URL: 'pglite://memory',
      API_PORT: '0',
      NOTIFICATIONS_PORT: '0',
      WORKER_PORT: '0',
      LOG_LEVEL: 'silent',
      ...authEnv,
    }),
    logger: silentLogger,
  });
  let urls: AllRolesUrls;

  before(async () => {
    urls = await roles.start();
  });
  after(() => roles.stop());

  test("with a writer's token in the field, both pages connect, write through the API and show the notifications", async () => {
    const writer = await tokenFor('writer', { subject: 'page-user' });
    const browser = await launchChromium();
    try {
      for (const path of ['/sse-test.html', '/signalr-test.html']) {
        const page = await browser.newPage();
        const blocked = cspViolations(page);
        await page.goto(`${urls.pages}${path}?api=${encodeURIComponent(urls.api)}`);
        // Without a token the automatic connection is refused.
        await page.locator('#status.off').waitFor();
        await page.locator('#connect:not([disabled])').waitFor();
        await page.fill('#token', writer);
        await page.dispatchEvent('#token', 'change');
        await page.click('#connect');
        await page.locator('#status.on').waitFor();
        await page.locator('#client-id', { hasNotText: '–' }).waitFor();

        await page.click('#create');
        await page.locator('#student-id', { hasNotText: '–' }).waitFor();
        const id = (await page.textContent('#student-id'))!;
        await page.waitForSelector(`#events li[data-student-id="${id}"][data-type="StudentCached"]`);
        assert.match((await page.textContent('#log')) ?? '', /POST \/api\/students → 201/, path);
        assert.match((await page.textContent('#events')) ?? '', /"createdBy": "page-user"/, path);
        assert.equal(await page.evaluate('sessionStorage.getItem("tbe.token")'), writer, 'kept for this tab');
        assert.deepEqual(blocked, [], path);
        await mkdir('test-artifacts', { recursive: true });
        await page.screenshot({
          path: `test-artifacts/auth-${path.slice(1).replace('.html', '.png')}`,
          fullPage: true,
        });
        await page.close();
      }
    } finally {
      await browser.close();
    }
  });
});
