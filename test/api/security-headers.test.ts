// Security headers, size limits and CORS of the HTTP servers, and the interactive docs working under their CSP.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { cspViolations, launchChromium } from '../support/browser.ts';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { startWebApi, type RunningWebApi } from '../support/webapi.ts';

/** A raw GET, since fetch would refuse to send a header this large or hide the status of a closed socket. */
function getWithHeader(url: string, name: string, value: string): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const outgoing = request(url, { headers: { [name]: value } }, (response) => {
      response.resume();
      resolve(response.statusCode);
    });
    outgoing.on('error', reject);
    outgoing.end();
  });
}

describe('HTTP security of the webapi', () => {
  let testDb: TestDatabase;
  let api: RunningWebApi;
  let listed: RunningWebApi;

  before(async () => {
    testDb = await openTestDatabase('pglite');
    api = await startWebApi(testDb.database, { HTTP_MAX_HEADER_BYTES: '4096' });
    listed = await startWebApi(testDb.database, {
      CORS_ORIGINS: 'http://pages.example, http://other.example',
    });
  });
  after(async () => {
    await api?.stop();
    await listed?.stop();
    await testDb?.dispose();
  });

  test('every response carries the API security headers; HTML pages get the document policies, not forcing https', async () => {
    // The last two are turned away by the router itself, before any hook.
    for (const path of [
      '/api/students',
      '/health/live',
      '/no-such-route',
      '/api/students/%E0%A4%A',
      `/api/students/${'a'.repeat(101)}`,
    ]) {
      const response = await fetch(`${api.url}${path}`);
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff', path);
      assert.equal(response.headers.get('x-frame-options'), 'DENY', path);
      assert.equal(response.headers.get('cross-origin-resource-policy'), 'same-origin', path);
      assert.match(response.headers.get('strict-transport-security') ?? '', /max-age=\d+/, path);
      assert.equal(
        response.headers.get('content-security-policy'),
        "default-src 'none'; frame-ancestors 'none'",
        path,
      );
    }
    const page = await fetch(`${api.url}/docs/`);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(page.headers.get('x-frame-options'), 'SAMEORIGIN');
    assert.equal(page.headers.get('referrer-policy'), 'no-referrer');
    const csp = page.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /frame-ancestors 'self'/);
    assert.doesNotMatch(csp, /upgrade-insecure-requests/);
  });

  test('a request head over HTTP_MAX_HEADER_BYTES is refused with 431', async () => {
    assert.equal(await getWithHeader(`${api.url}/health/live`, 'x-padding', 'x'.repeat(2_000)), 200);
    assert.equal(await getWithHeader(`${api.url}/health/live`, 'x-padding', 'x'.repeat(8_000)), 431);
  });

  test('with CORS_ORIGINS listed, only those origins are allowed, with credentials', async () => {
    const preflight = (origin: string) =>
      fetch(`${listed.url}/api/students`, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization, content-type',
        },
      });
    const allowed = await preflight('http://pages.example');
    assert.equal(allowed.headers.get('access-control-allow-origin'), 'http://pages.example');
    assert.equal(allowed.headers.get('access-control-allow-credentials'), 'true');
    assert.match(allowed.headers.get('access-control-allow-headers') ?? '', /authorization/i);
    assert.match(allowed.headers.get('vary') ?? '', /origin/i);
    const other = await preflight('http://evil.example');
    assert.equal(other.headers.get('access-control-allow-origin'), null);
    // A request the router turns away: a page may read its problem (and request id) like any other answer.
    const undecodable = (origin: string) =>
      fetch(`${listed.url}/api/students/%E0%A4%A`, { headers: { origin } });
    const readable = await undecodable('http://pages.example');
    assert.equal(readable.status, 400);
    assert.equal(readable.headers.get('access-control-allow-origin'), 'http://pages.example');
    assert.equal(readable.headers.get('access-control-allow-credentials'), 'true');
    assert.match(readable.headers.get('access-control-expose-headers') ?? '', /x-request-id/i);
    assert.match(readable.headers.get('x-request-id') ?? '', /^[\w-]{36}$/);
    assert.match(readable.headers.get('vary') ?? '', /origin/i);
    const unlisted = await undecodable('http://evil.example');
    assert.equal(unlisted.headers.get('access-control-allow-origin'), null);
    // The answer depends on the origin: a shared cache must not hand this one to a listed origin's page.
    assert.match(unlisted.headers.get('vary') ?? '', /origin/i);
  });

  test('the interactive docs render in Chromium under their CSP', async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const blocked = cspViolations(page);
      await page.goto(`${api.url}/docs/`);
      await page.locator('.opblock-summary-path', { hasText: '/api/students/{id}' }).first().waitFor();
      assert.match((await page.textContent('.info .title')) ?? '', /Student API/);
      assert.deepEqual(blocked, []);
    } finally {
      await browser.close();
    }
  });
});
