// What HTTP caches may do with the webapi's answers (RFC 9111): a read is the caller's own and revalidated before
// every use; nothing else is stored. Without a Cache-Control, a cache may give a 200 or a 404 a heuristic lifetime
// (§4.2.2) and serve it after a write it never saw, or (a shared one keyed on the URL) to another caller.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { json, startWebApi, type RunningWebApi } from '../support/webapi.ts';

describe('Cache-Control on the webapi answers', () => {
  let testDb: TestDatabase;
  let api: RunningWebApi;

  before(async () => {
    testDb = await openTestDatabase('pglite');
    api = await startWebApi(testDb.database, {});
  });
  after(async () => {
    await api?.stop();
    await testDb?.dispose();
  });

  const cacheControl = (response: Response) => response.headers.get('cache-control');

  test('a read that succeeded is private and revalidated, on its 304 and its replay too', async () => {
    const created = await fetch(`${api.url}/api/students`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(created.status, 201);
    assert.equal(cacheControl(created), 'no-store', 'a write answer');
    const path = `${api.url}/api/students/${(await json(created)).id as string}`;
    const read = await fetch(path);
    assert.equal(read.status, 200);
    assert.equal(cacheControl(read), 'private, no-cache');
    const replayed = await fetch(path);
    assert.equal(replayed.headers.get('x-deduplicated'), 'true');
    assert.equal(cacheControl(replayed), 'private, no-cache', 'a replayed read');
    const head = await fetch(path, { method: 'HEAD' });
    assert.equal(cacheControl(head), 'private, no-cache', 'HEAD as GET');
    // RFC 9110 §15.4.5: a 304 carries the Cache-Control its 200 would.
    const notModified = await fetch(path, { headers: { 'if-none-match': read.headers.get('etag')! } });
    assert.equal(notModified.status, 304);
    assert.equal(cacheControl(notModified), 'private, no-cache');
    const page = await fetch(`${api.url}/api/students?limit=5`);
    assert.equal(cacheControl(page), 'private, no-cache', 'a page of the list');
  });

  test('a failed read is revalidated too (a 404 is heuristically cacheable); a write answer is not stored', async () => {
    const missing = await fetch(`${api.url}/api/students/01a25255-9d09-743f-8f41-000000000000`);
    assert.equal(missing.status, 404);
    assert.equal(cacheControl(missing), 'private, no-cache');
    const stale = await fetch(`${api.url}/api/students/01a25255-9d09-743f-8f41-000000000000`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'if-match': '"1"' },
      body: '{}',
    });
    assert.equal(stale.status, 404);
    assert.equal(cacheControl(stale), 'no-store');
  });
});
