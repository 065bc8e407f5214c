// Writes per client per minute (RATE_LIMIT_WRITES_PER_MINUTE): 429 problem+json with Retry-After; reads are free.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startCachedApi, type CachedApi } from '../cache/support.ts';
import { authEnv, bearer, tokenFor } from '../support/auth.ts';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { deleteRedisKeys, needsRedis, REDIS_URL, uniqueName } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { json, startWebApi, type RunningWebApi } from '../support/webapi.ts';

const post = (url: string, headers: Record<string, string> = {}) =>
  fetch(`${url}/api/students`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: '{}',
  });

describe('the write rate limit (in memory)', () => {
  let testDb: TestDatabase;
  const apis: RunningWebApi[] = [];

  before(async () => {
    testDb = await openTestDatabase('pglite');
  });
  after(async () => {
    await Promise.all(apis.map((api) => api.stop()));
    await testDb?.dispose();
  });

  async function start(env: Record<string, string>): Promise<string> {
    const api = await startWebApi(testDb.database, env);
    apis.push(api);
    return api.url;
  }

  test('past the limit a write is 429 problem+json with Retry-After; reads go on', async () => {
    const url = await start({ RATE_LIMIT_WRITES_PER_MINUTE: '3' });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const created = await post(url);
      assert.equal(created.status, 201);
      assert.equal(created.headers.get('x-ratelimit-remaining'), String(2 - i));
      // A page on another origin may read them too.
      assert.match(created.headers.get('access-control-expose-headers') ?? '', /X-RateLimit-Remaining/i);
      ids.push(String((await json(created)).id));
    }
    const limited = await post(url);
    assert.equal(limited.status, 429);
    assert.match(limited.headers.get('content-type') ?? '', /^application\/problem\+json/);
    // The budget is a minute's: it fills again a minute after the first write, which this test is far from.
    const retryAfter = Number(limited.headers.get('retry-after'));
    assert.ok(retryAfter > 30 && retryAfter <= 60, `Retry-After: ${retryAfter}`);
    const problem = await json(limited);
    assert.equal(problem.status, 429);
    assert.equal(problem.title, 'Too Many Requests');
    assert.equal(problem.code, 'RATE_LIMIT.EXCEEDED');
    assert.match(String(problem.detail), /At most 3 writes per minute/);
    const removal = await fetch(`${url}/api/students/${ids[0]}`, { method: 'DELETE' });
    assert.equal(removal.status, 429, 'every write counts: POST, PUT, DELETE');
    for (let i = 0; i < 5; i++) {
      const read = await fetch(`${url}/api/students/${ids[0]}`);
      assert.equal(read.status, 200);
      assert.equal(read.headers.get('x-ratelimit-limit'), null, 'reads are not even counted');
    }
  });

  test('HEAD and OPTIONS are reads: past the limit they still answer, and are not counted', async () => {
    const url = await start({ RATE_LIMIT_WRITES_PER_MINUTE: '1' });
    const created = await post(url);
    assert.equal(created.status, 201);
    const id = String((await json(created)).id);
    assert.equal((await post(url)).status, 429, 'the budget is spent');
    for (const method of ['HEAD', 'OPTIONS'])
      for (let i = 0; i < 3; i++) {
        const read = await fetch(`${url}/api/students/${id}`, { method });
        assert.ok(read.status < 300, `${method}: ${read.status}`);
        assert.equal(read.headers.get('x-ratelimit-limit'), null, `${method} is not counted`);
      }
  });

  test('with auth on each verified subject has its own budget, whatever its address', async () => {
    const url = await start({ RATE_LIMIT_WRITES_PER_MINUTE: '2', ...authEnv });
    const alice = bearer(await tokenFor('writer', { subject: 'alice' }));
    const bob = bearer(await tokenFor('writer', { subject: 'bob' }));
    assert.deepEqual(
      [(await post(url, alice)).status, (await post(url, alice)).status, (await post(url, alice)).status],
      [201, 201, 429],
    );
    assert.equal((await post(url, bob)).status, 201, 'bob, from the same address, is not limited by alice');
  });

  test('behind a proxy listed in TRUST_PROXY each client has its own budget, by its X-Forwarded-For', async () => {
    const url = await start({ RATE_LIMIT_WRITES_PER_MINUTE: '1', TRUST_PROXY: '127.0.0.1,::1' });
    const from = (address: string) => ({ 'x-forwarded-for': address });
    assert.equal((await post(url, from('203.0.113.1'))).status, 201);
    assert.equal((await post(url, from('203.0.113.1'))).status, 429);
    assert.equal((await post(url, from('203.0.113.2'))).status, 201, 'another client behind the same proxy');
    // A client that forges the header in front of the proxy's own entry is still the address the proxy saw.
    assert.equal((await post(url, from('198.51.100.7, 203.0.113.2'))).status, 429);
  });

  test('from an address not listed in TRUST_PROXY, X-Forwarded-For is ignored: it cannot buy a new budget', async () => {
    for (const env of [{}, { TRUST_PROXY: '10.0.0.0/8' }] as Record<string, string>[]) {
      const url = await start({ RATE_LIMIT_WRITES_PER_MINUTE: '1', ...env });
      assert.equal((await post(url, { 'x-forwarded-for': '203.0.113.1' })).status, 201);
      assert.equal((await post(url, { 'x-forwarded-for': '203.0.113.2' })).status, 429, JSON.stringify(env));
    }
  });

  test('0 turns the limit off', async () => {
    const url = await start({ RATE_LIMIT_WRITES_PER_MINUTE: '0' });
    const created = await post(url);
    assert.equal(created.status, 201);
    assert.equal(created.headers.get('x-ratelimit-limit'), null);
  });
});

describe('the write rate limit on Redis', await needsRedis(), () => {
  let testDb: TestDatabase;
  const apis: CachedApi[] = [];
  const keyPrefix = `${uniqueName('tbe_rate')}:`;

  before(async () => {
    testDb = await openTestDatabase('pglite');
    for (let i = 0; i < 2; i++)
      apis.push(
        await startCachedApi(testDb.database, {
          redisUrl: REDIS_URL,
          keyPrefix,
          env: { RATE_LIMIT_WRITES_PER_MINUTE: '3' },
        }),
      );
  });
  after(async () => {
    await Promise.all(apis.map((api) => api.stop()));
    await testDb?.dispose();
    await deleteRedisKeys(keyPrefix);
  });

  test('with Redis gone, writes go through rather than fail: the limit is a guard, not a guarantee', async () => {
    const { proxy, url: redisUrl } = await TcpProxy.inFrontOf(REDIS_URL, 6379);
    // A budget of its own: the other instances' is not spent here.
    const ownPrefix = `${uniqueName('tbe_rate_gone')}:`;
    const api = await startCachedApi(testDb.database, {
      redisUrl,
      keyPrefix: ownPrefix,
      env: { RATE_LIMIT_WRITES_PER_MINUTE: '1' },
    });
    try {
      assert.equal((await post(api.url)).status, 201, 'counted in Redis');
      await proxy.pause();
      for (let i = 0; i < 3; i++)
        assert.equal((await post(api.url)).status, 201, `write ${i + 1} without Redis`);
    } finally {
      await api.stop();
      await proxy.stop();
      await deleteRedisKeys(ownPrefix);
    }
  });

  test('every instance counts against one budget per client', async () => {
    const [a, b] = apis;
    assert.equal((await post(a!.url)).status, 201);
    assert.equal((await post(a!.url)).status, 201);
    assert.equal((await post(b!.url)).status, 201);
    assert.equal((await post(b!.url)).status, 429, 'the fourth write, on the other instance');
    assert.equal((await post(a!.url)).status, 429);
  });
});
