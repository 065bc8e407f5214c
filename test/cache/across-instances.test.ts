// Two webapi instances (each with its own L1) on one Redis and one PostgreSQL; then Redis "down" behind a proxy.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, mock, test } from 'node:test';
import { Redis } from 'ioredis';
import { sha256 } from '../../src/apps/webapi/plugins/caller.ts';
import { openTestDatabase, studentsTableLock, type TestDatabase } from '../support/databases.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { startRole } from '../support/role-process.ts';
import { deleteRedisKeys, needsPostgres, needsRedis, REDIS_URL, uniqueName } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { countingQueries, startCachedApi, type CachedApi } from './support.ts';

const jsonHeaders = { 'content-type': 'application/json' };

/** PUT /api/students/:id with new details, through `api`. */
const putStudent = (
  api: { readonly url: string },
  id: string,
  details: { firstName: string; lastName: string; email: string },
) =>
  fetch(`${api.url}/api/students/${id}`, {
    method: 'PUT',
    headers: jsonHeaders,
    body: JSON.stringify(details),
  });
const requirements = { skip: (await needsPostgres()).skip ?? (await needsRedis()).skip };

describe('cache, deduplication and idempotency across instances', requirements, () => {
  let testDb: TestDatabase;
  let a: CachedApi;
  let b: CachedApi;
  let readsViaA: ReturnType<typeof countingQueries>;
  const keyPrefix = `${uniqueName('tbe_cache')}:student:`;

  before(async () => {
    testDb = await openTestDatabase('postgres');
    readsViaA = countingQueries(testDb.database);
    a = await startCachedApi(testDb.database, { redisUrl: REDIS_URL, keyPrefix, queries: readsViaA });
    b = await startCachedApi(testDb.database, { redisUrl: REDIS_URL, keyPrefix });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await testDb?.dispose();
    await deleteRedisKeys(keyPrefix);
  });

  const create = async (api: { readonly url: string }, headers: Record<string, string> = {}, body = '{}') =>
    fetch(`${api.url}/api/students`, { method: 'POST', headers: { ...jsonHeaders, ...headers }, body });

  /** A webapi process of its own, to be killed mid-request; its key lease is 1 s. */
  const startDoomedWebApi = () =>
    startRole('src/apps/webapi/main.ts', {
      DATABASE_URL: testDb.url,
      REDIS_URL,
      CACHE_KEY_PREFIX: keyPrefix,
      API_PORT: '0',
      IDEMPOTENCY_LEASE_SECONDS: '1',
    });

  test('GET via A, PUT via B, GET via A returns the new data at once', async () => {
    const { id } = (await (await create(a)).json()) as { id: string };
    await fetch(`${a.url}/api/students/${id}`);
    const replayed = await fetch(`${a.url}/api/students/${id}`);
    assert.equal(replayed.headers.get('x-deduplicated'), 'true', 'A holds a deduplicated copy');
    const put = await putStudent(b, id, {
      firstName: 'Katherine',
      lastName: 'Johnson',
      email: 'kj@example.com',
    });
    assert.equal(put.status, 200);
    const read = await fetch(`${a.url}/api/students/${id}`);
    const body = (await read.json()) as { firstName: string; version: number };
    assert.equal(body.firstName, 'Katherine');
    assert.equal(body.version, 2);
    assert.equal(read.headers.get('etag'), '"2"');
  });

  test("a PUT via A is replayed to its retry via B; after another PUT via B, A's answer is no longer replayed via A", async () => {
    const { id } = (await (await create(a)).json()) as { id: string };
    const ada = { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' };
    const first = await putStudent(a, id, ada);
    assert.equal(first.status, 200);
    const retried = await putStudent(b, id, ada);
    assert.equal(retried.headers.get('x-deduplicated'), 'true', 'B replays what A stored in Redis');
    assert.equal(await retried.text(), await first.text());
    assert.equal((await putStudent(b, id, { ...ada, firstName: 'Augusta' })).status, 200);
    const again = await putStudent(a, id, ada);
    assert.equal(again.headers.get('x-deduplicated'), null, "B's write dropped A's copy too (bus)");
    assert.equal(again.headers.get('etag'), '"4"');
  });

  test("a PUT's answer goes out only once it is stored in Redis, even when storing it is slow: its retry via B, sent the moment it arrives, is replayed, not run again", async () => {
    const { id } = (await (await create(a)).json()) as { id: string };
    const ada = { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' };
    // A's stored answers take 200 ms to reach Redis.
    const put = a.cache.responses.put.bind(a.cache.responses);
    const slow = mock.method(a.cache.responses, 'put', async (...args: Parameters<typeof put>) => {
      await sleep(200);
      await put(...args);
    });
    try {
      const first = await putStudent(a, id, ada);
      assert.equal(first.status, 200);
      const retried = await putStudent(b, id, ada);
      assert.equal(retried.headers.get('x-deduplicated'), 'true', 'B replays what A stored in Redis');
      assert.equal(retried.headers.get('etag'), first.headers.get('etag'), 'the write ran once');
    } finally {
      slow.mock.restore();
    }
    assert.ok(slow.mock.callCount() >= 1, "A stored its PUT's answer");
  });

  test("a PUT's answer goes out only once every instance has dropped the PUT answers it made stale, however slow Redis is", async () => {
    const { id } = (await (await create(a)).json()) as { id: string };
    const ada = { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' };
    assert.equal((await putStudent(a, id, ada)).status, 200);
    assert.equal((await putStudent(a, id, ada)).headers.get('x-deduplicated'), 'true', 'A holds its answer');
    // B's invalidations take 200 ms to reach Redis.
    const invalidate = b.cache.responses.invalidate.bind(b.cache.responses);
    const slow = mock.method(b.cache.responses, 'invalidate', async (group: string, at: number) => {
      await sleep(200);
      await invalidate(group, at);
    });
    try {
      assert.equal((await putStudent(b, id, { ...ada, firstName: 'Augusta' })).status, 200);
    } finally {
      slow.mock.restore();
    }
    assert.ok(slow.mock.callCount() >= 1, "B's PUT invalidated its student's PUT answers");
    const again = await putStudent(a, id, ada);
    assert.equal(again.headers.get('x-deduplicated'), null, "not A's answer from before B's PUT");
    assert.equal(again.headers.get('etag'), '"4"');
  });

  test('what B writes reaches Redis (L2) and drops the copy in A (bus): A reads it without the database', async () => {
    const { id } = (await (await create(b)).json()) as { id: string };
    const redis = new Redis(REDIS_URL);
    try {
      // CACHE_TTL_SECONDS (15 min), jittered by a tenth either way, less the moments since it was written.
      const ttl = await redis.pttl(`${keyPrefix}${id}`);
      const configured = 15 * 60 * 1_000;
      assert.ok(
        ttl >= configured * 0.9 - 10_000 && ttl <= configured * 1.1,
        `an L2 entry with the cache TTL (${ttl} ms)`,
      );
      // Written together, they do not all expire together.
      const others = await Promise.all(
        [1, 2, 3, 4].map(async () => ((await (await create(b)).json()) as { id: string }).id),
      );
      const ttls = await Promise.all(others.map((other) => redis.pttl(`${keyPrefix}${other}`)));
      assert.ok(Math.max(...ttls) - Math.min(...ttls) > 1_000, `jittered: ${ttls.join(', ')} ms`);
    } finally {
      redis.disconnect();
    }
    const readsBefore = readsViaA.findByIdCalls;
    const first = await fetch(`${a.url}/api/students/${id}`, { headers: { 'cache-control': 'no-cache' } });
    assert.equal(first.status, 200);
    assert.equal(readsViaA.findByIdCalls - readsBefore, 1, 'no-cache reads the database');
    const put = await putStudent(b, id, {
      firstName: 'Dorothy',
      lastName: 'Vaughan',
      email: 'dv@example.com',
    });
    assert.equal(put.status, 200);
    // The first read fills A's L1 from Redis, the second (another caller: no deduplication replay) reads that L1.
    for (const authorization of ['Bearer first', 'Bearer second']) {
      const read = await fetch(`${a.url}/api/students/${id}`, { headers: { authorization } });
      assert.equal(read.status, 200);
      assert.equal(((await read.json()) as { firstName: string }).firstName, 'Dorothy');
    }
    assert.equal(readsViaA.findByIdCalls - readsBefore, 1, "A's reads were cache hits on what B wrote");
  });

  test('a create is announced to no instance (none can hold anything about it); A still reads it from Redis', async () => {
    const listener = new Redis(REDIS_URL);
    const heard: string[] = [];
    try {
      // Not the copies for instances older than versions in messages (the invalidation channel of before).
      listener.on('pmessage', (_pattern: string, channel: string, message: string) => {
        if (!channel.endsWith('invalidations')) heard.push(message);
      });
      await listener.psubscribe('*');
      const { id } = (await (await create(b)).json()) as { id: string };
      const readsBefore = readsViaA.findByIdCalls;
      const read = await fetch(`${a.url}/api/students/${id}`);
      assert.equal(read.status, 200);
      assert.equal(readsViaA.findByIdCalls - readsBefore, 0, 'read from L2, not the database');
      const about = () => heard.filter((message) => message.includes(id));
      assert.deepEqual(about(), [], 'nothing was published about the new student');

      // An update is announced (bentocache's bus, and the invalidation channel for the student's GETs and for its
      // PUTs' stored answers): what the check above would see.
      const put = await putStudent(b, id, {
        firstName: 'Annie',
        lastName: 'Easley',
        email: 'ae@example.com',
      });
      assert.equal(put.status, 200);
      for (let waited = 0; about().length < 3 && waited < 2_000; waited += 20) await sleep(20);
      assert.equal(about().length, 3, `heard: ${about().join(' | ')}`);
    } finally {
      listener.disconnect();
    }
  });

  test('a delete via B is seen via A at once', async () => {
    const { id } = (await (await create(b)).json()) as { id: string };
    assert.equal((await fetch(`${a.url}/api/students/${id}`)).status, 200);
    assert.equal((await fetch(`${b.url}/api/students/${id}`, { method: 'DELETE' })).status, 204);
    assert.equal((await fetch(`${a.url}/api/students/${id}`)).status, 404);
  });

  test('the same Idempotency-Key POSTed 50 times concurrently, to both instances, creates one student', async () => {
    const key = uniqueName('key');
    const body = JSON.stringify({ firstName: 'Mary', lastName: 'Jackson', email: 'mj@example.com' });
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) => create(i % 2 ? a : b, { 'idempotency-key': key }, body)),
    );
    const created = responses.filter((response) => response.status === 201);
    assert.ok(
      responses.every((response) => response.status === 201 || response.status === 409),
      `statuses: ${responses.map((response) => response.status).join(',')}`,
    );
    const ids = new Set(
      await Promise.all(created.map(async (response) => ((await response.json()) as { id: string }).id)),
    );
    assert.equal(ids.size, 1, 'never two different students');
    const [id] = ids;
    const rows = await testDb.database.db.execute(
      `select count(*)::int as n from students where email = 'mj@example.com'`,
    );
    assert.equal((rows as unknown as { rows: { n: number }[] }).rows[0]?.n, 1, 'exactly one row');

    const replay = await create(a, { 'idempotency-key': key }, body);
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get('location'), `/api/students/${id}`);
    assert.equal(replay.headers.get('etag'), '"1"');
    assert.equal(replay.headers.get('x-deduplicated'), 'true');
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
  });

  test('a key whose webapi died mid-request is free again once its lease runs out; a running request keeps it', async () => {
    const key = uniqueName('key');
    const body = JSON.stringify({ firstName: 'Dorothy', lastName: 'Vaughan', email: `${key}@example.com` });
    const lock = await studentsTableLock(testDb.url);
    try {
      await lock.whileLocked(async () => {
        const doomed = await startDoomedWebApi();
        const pending = create(doomed, { 'idempotency-key': key }, body).catch(() => undefined);
        await lock.waiting();
        assert.equal((await create(a, { 'idempotency-key': key }, body)).status, 409, 'in progress');
        await doomed.kill();
        // Its write dies with it (a backend waiting on a lock notices its client is gone only once it runs).
        for (const pid of await lock.waiting())
          await lock.client.query('select pg_terminate_backend($1)', [pid]);
        await pending;
      });
      await sleep(1_200);
      const retried = await create(a, { 'idempotency-key': key }, body);
      assert.equal(retried.status, 201, 'the key was freed when its lease ran out, not after a day');

      // A request that outlives its lease renews it: the key stays in progress, then replays its answer.
      const slow = await startCachedApi(testDb.database, {
        redisUrl: REDIS_URL,
        keyPrefix,
        env: { IDEMPOTENCY_LEASE_SECONDS: '1' },
      });
      const key2 = uniqueName('key');
      try {
        let pending!: Promise<Response>;
        await lock.whileLocked(async () => {
          pending = create(slow, { 'idempotency-key': key2 }, body);
          await lock.waiting();
          await sleep(2_500);
          // Were the key free, this request would run and wait on the lock too: time it out rather than hang.
          const again = await Promise.race([create(a, { 'idempotency-key': key2 }, body), sleep(3_000)]);
          assert.equal(again?.status, 409, 'still in progress');
        });
        const first = await pending;
        assert.equal(first.status, 201);
        const replay = await create(a, { 'idempotency-key': key2 }, body);
        assert.equal(replay.headers.get('idempotent-replayed'), 'true');
        assert.equal(replay.headers.get('location'), first.headers.get('location'));
      } finally {
        await slow.stop();
      }
    } finally {
      await lock.end();
    }
  });

  test('a keyed create answered while its webapi had no Redis: once Redis is back, a retry gets that answer, not 409 for a lease', async () => {
    const key = uniqueName('key');
    const body = JSON.stringify({ firstName: 'Mary', lastName: 'Jackson', email: `${key}@example.com` });
    const target = new URL(REDIS_URL);
    const proxy = await TcpProxy.start(target.hostname, Number(target.port || 6379));
    const cut = await startCachedApi(testDb.database, {
      redisUrl: `redis://127.0.0.1:${proxy.port}`,
      keyPrefix,
      halfOpenAfterMs: 300,
    });
    const lock = await studentsTableLock(testDb.url);
    try {
      let pending!: Promise<Response>;
      await lock.whileLocked(async () => {
        pending = create(cut, { 'idempotency-key': key }, body);
        await lock.waiting();
        // The key is claimed in Redis; its answer cannot be recorded there.
        await proxy.pause();
        await sleep(100);
      });
      const first = await pending;
      assert.equal(first.status, 201);
      await proxy.resume();
      // Recovery takes a reconnection and a PING; the key's lease (30 s) is far longer.
      let retried = await create(b, { 'idempotency-key': key }, body);
      for (let attempt = 0; retried.status === 409 && attempt < 30; attempt++) {
        await sleep(100);
        retried = await create(b, { 'idempotency-key': key }, body);
      }
      assert.equal(retried.status, 201, 'the request was answered long ago: not in progress');
      assert.equal(retried.headers.get('idempotent-replayed'), 'true');
      assert.equal(retried.headers.get('location'), first.headers.get('location'));
    } finally {
      await lock.end();
      await cut.stop();
      await proxy.stop();
    }
  });

  test('a create that commits after its webapi died is never run twice: the key commits with the write or not at all', async () => {
    const key = uniqueName('key');
    const body = JSON.stringify({ firstName: 'Christine', lastName: 'Darden', email: `${key}@example.com` });
    const lock = await studentsTableLock(testDb.url);
    try {
      let blocked: number[] = [];
      await lock.whileLocked(async () => {
        const doomed = await startDoomedWebApi();
        const pending = create(doomed, { 'idempotency-key': key }, body).catch(() => undefined);
        blocked = await lock.waiting();
        await doomed.kill();
        await pending;
      });
      // Its database session outlived it and went on once the lock was released: whatever it could still commit, it
      // did. Its response is stored nowhere.
      while (
        (await lock.client.query('select 1 from pg_stat_activity where pid = any($1)', [blocked])).rowCount
      )
        await sleep(20);
      await sleep(1_200); // the lease runs out
      const retried = await create(a, { 'idempotency-key': key }, body);
      assert.equal(retried.status, 201);
      const stored = await lock.client.query('select id from students where email = $1', [
        `${key}@example.com`,
      ]);
      assert.equal(stored.rowCount, 1, 'one student, not one per attempt');
      assert.equal(retried.headers.get('location'), `/api/students/${stored.rows[0].id}`);
    } finally {
      await lock.end();
    }
  });

  test('a committed write whose stored response Redis lost: a retry gets that write back from the database', async () => {
    const key = uniqueName('key');
    const body = JSON.stringify({ firstName: 'Annie', lastName: 'Easley', email: `${key}@example.com` });
    const first = await create(a, { 'idempotency-key': key }, body);
    assert.equal(first.status, 201);
    const firstBody = await first.text();
    await deleteRedisKeys(keyPrefix);

    const retried = await create(b, { 'idempotency-key': key }, body);
    assert.equal(retried.status, 201);
    assert.equal(retried.headers.get('idempotent-replayed'), 'true');
    assert.equal(retried.headers.get('location'), first.headers.get('location'));
    assert.equal(retried.headers.get('etag'), first.headers.get('etag'));
    assert.deepEqual(JSON.parse(await retried.text()), JSON.parse(firstBody));
    await deleteRedisKeys(keyPrefix);
    const reused = await create(b, { 'idempotency-key': key }, '{"firstName":"Other"}');
    assert.equal(reused.status, 422);
    assert.equal(((await reused.json()) as { code: string }).code, 'IDEMPOTENCY.KEY_REUSED');
    const original = await create(a, { 'idempotency-key': key }, body);
    assert.equal(original.status, 201, 'the 422 was not kept as the answer to the key');
    assert.equal(original.headers.get('location'), first.headers.get('location'));
    const rows = await testDb.database.db.execute(
      `select count(*)::int as n from students where email = '${key}@example.com'`,
    );
    assert.equal((rows as unknown as { rows: { n: number }[] }).rows[0]?.n, 1);
  });

  test('a committed keyed write whose process died before storing its answer: a retry gets that write at once, not 409 until the lease ends', async () => {
    const key = uniqueName('key');
    const body = JSON.stringify({ firstName: 'Melba', lastName: 'Roy', email: `${key}@example.com` });
    const first = await create(a, { 'idempotency-key': key }, body);
    assert.equal(first.status, 201);
    // What a process that died between its commit and storing the answer leaves in Redis: its claim, on its lease.
    const redis = new Redis(REDIS_URL);
    try {
      const [stored] = await redis.keys(`${keyPrefix}idempotency:*:${sha256(key)}`);
      assert.ok(stored, 'the answer is stored');
      const { fingerprint } = JSON.parse((await redis.get(stored))!) as { fingerprint: string };
      await redis.set(stored, JSON.stringify({ fingerprint }), 'PX', 30_000);
    } finally {
      redis.disconnect();
    }

    const retried = await create(b, { 'idempotency-key': key }, body);
    assert.equal(retried.status, 201, 'the write is done: not in progress');
    assert.equal(retried.headers.get('idempotent-replayed'), 'true');
    assert.equal(retried.headers.get('location'), first.headers.get('location'));
    const reused = await create(b, { 'idempotency-key': key }, '{"firstName":"Other"}');
    assert.equal(reused.status, 422, 'another request under the key is still refused');

    // A request still running (its transaction not committed) is in progress, as before.
    const running = uniqueName('key');
    const lock = await studentsTableLock(testDb.url);
    try {
      let pending!: Promise<Response>;
      await lock.whileLocked(async () => {
        pending = create(a, { 'idempotency-key': running }, body.replace(key, running));
        await lock.waiting();
        const again = await create(b, { 'idempotency-key': running }, body.replace(key, running));
        assert.equal(again.status, 409);
      });
      assert.equal((await pending).status, 201);
    } finally {
      await lock.end();
    }
  });

  test('a keyed write retried after Redis lost its answer and the version fence caches nothing old: a deleted student stays deleted, an update at its newest version, on every instance', async () => {
    const key = uniqueName('key');
    const created = await create(a, { 'idempotency-key': `${key}-create` });
    const { id } = (await created.json()) as { id: string };
    const bob = { firstName: 'Bob', lastName: 'Lovelace', email: 'bob@example.com' };
    const keyedPut = (api: CachedApi) =>
      fetch(`${api.url}/api/students/${id}`, {
        method: 'PUT',
        headers: { ...jsonHeaders, 'idempotency-key': `${key}-put` },
        body: JSON.stringify(bob),
      });
    assert.equal((await keyedPut(a)).status, 200);
    assert.equal((await putStudent(b, id, { ...bob, firstName: 'Cy' })).status, 200);
    // As after a Redis restart without persistence, or once the fence expired (twice the cache TTL).
    await deleteRedisKeys(keyPrefix);

    const retriedPut = await keyedPut(b);
    assert.equal(retriedPut.headers.get('idempotent-replayed'), 'true');
    assert.equal(retriedPut.headers.get('etag'), '"2"', "the first attempt's answer");
    for (const api of [a, b]) {
      const read = await fetch(`${api.url}/api/students/${id}`);
      assert.equal(
        read.headers.get('etag'),
        '"3"',
        'the newest version, not the one the retry answered with',
      );
    }

    assert.equal((await fetch(`${a.url}/api/students/${id}`, { method: 'DELETE' })).status, 204);
    await deleteRedisKeys(keyPrefix);
    const retriedPost = await create(b, { 'idempotency-key': `${key}-create` });
    assert.equal(retriedPost.status, 201);
    assert.equal(retriedPost.headers.get('idempotent-replayed'), 'true');
    for (const api of [a, b])
      assert.equal(
        (await fetch(`${api.url}/api/students/${id}`)).status,
        404,
        'the deleted student stays deleted',
      );
  });

  test('Idempotency-Key: another body is 422, an invalid key 400 naming the header', async () => {
    const key = `"${uniqueName('key')}"`;
    assert.equal((await create(a, { 'idempotency-key': key }, '{"firstName":"One"}')).status, 201);
    const reused = await create(b, { 'idempotency-key': key }, '{"firstName":"Two"}');
    assert.equal(reused.status, 422);
    assert.match(reused.headers.get('content-type') ?? '', /problem\+json/);
    // Another body that parses to the same value is still another body (the draft fingerprints the payload).
    const respelled = await create(b, { 'idempotency-key': key }, '{"firstName":"\\u004fne"}');
    assert.equal(respelled.status, 422);
    for (const invalid of ['""', 'x'.repeat(256)]) {
      const response = await create(a, { 'idempotency-key': invalid });
      assert.equal(response.status, 400);
      const problem = (await response.json()) as { errors: { field: string }[] };
      assert.equal(problem.errors[0]?.field, 'Idempotency-Key');
    }
    const other = await create(
      a,
      { 'idempotency-key': key, authorization: 'Bearer someone-else' },
      '{"firstName":"Two"}',
    );
    assert.equal(other.status, 201, 'keys are scoped per caller');
  });

  test('Idempotency-Key is a quoted string or a bare key: anything else is a 400 saying why; an escape is its character', async () => {
    const reasons = new Map<string, string>();
    for (const invalid of ['"abc', '"a"b"', '"a\\q"', '"', 'é', '"é"', 'a\tb', '"a\tb"', 'a"b', 'a\\b']) {
      const response = await create(a, { 'idempotency-key': invalid });
      assert.equal(response.status, 400, JSON.stringify(invalid));
      assert.match(response.headers.get('content-type') ?? '', /problem\+json/);
      const problem = (await response.json()) as { errors: { field: string; reason: string }[] };
      assert.equal(problem.errors[0]?.field, 'Idempotency-Key', JSON.stringify(invalid));
      reasons.set(invalid, problem.errors[0]?.reason ?? '');
    }
    const tooLong = (await (await create(a, { 'idempotency-key': 'x'.repeat(256) })).json()) as {
      errors: { reason: string }[];
    };
    for (const [invalid, reason] of reasons)
      assert.notEqual(
        reason,
        tooLong.errors[0]?.reason,
        `${JSON.stringify(invalid)} is refused for its syntax`,
      );

    // The key is the string's content, unescaped: 255 characters however many escapes spell them.
    const name = uniqueName('key');
    const escaped = `"${name}${'\\"'.repeat(255 - name.length)}"`;
    const body = JSON.stringify({ firstName: 'Gladys', lastName: 'West', email: `${name}@example.com` });
    assert.equal((await create(a, { 'idempotency-key': escaped }, body)).status, 201);
    const retried = await create(b, { 'idempotency-key': escaped }, body);
    assert.equal(retried.status, 201);
    assert.equal(retried.headers.get('idempotent-replayed'), 'true');
    const oneMore = `"${name}${'\\\\'.repeat(256 - name.length)}"`;
    assert.equal((await create(a, { 'idempotency-key': oneMore }, body)).status, 400, '256 characters');
    // A bare key and the same key quoted are one key.
    const bare = uniqueName('key');
    assert.equal((await create(a, { 'idempotency-key': bare }, body)).status, 201);
    const quoted = await create(b, { 'idempotency-key': `"${bare}"` }, body);
    assert.equal(quoted.headers.get('idempotent-replayed'), 'true');
  });

  test('Idempotency-Key: the same body under other preconditions is 422, never the first answer replayed', async () => {
    const { id } = (await (await create(a)).json()) as { id: string };
    const body = JSON.stringify({ firstName: 'Evelyn', lastName: 'Boyd', email: 'eb@example.com' });
    const put = (api: CachedApi, key: string, preconditions: Record<string, string>) =>
      fetch(`${api.url}/api/students/${id}`, {
        method: 'PUT',
        headers: { ...jsonHeaders, 'idempotency-key': key, ...preconditions },
        body,
      });
    const assertReused = async (response: Response, what: string) => {
      assert.equal(response.status, 422, what);
      assert.equal(response.headers.get('idempotent-replayed'), null, what);
      assert.equal(((await response.json()) as { code: string }).code, 'IDEMPOTENCY.KEY_REUSED', what);
    };

    // A condition that held, then one that does not: the second must not be told it succeeded.
    const held = uniqueName('key');
    assert.equal((await put(a, held, { 'if-match': '"1"' })).status, 200);
    await assertReused(await put(b, held, { 'if-match': '"99"' }), 'another If-Match');
    await assertReused(
      await put(b, held, { 'if-match': '"1"', 'if-none-match': '"7"' }),
      'an If-None-Match added',
    );
    // Redis lost the stored 200: the write's key in the database says the same.
    await deleteRedisKeys(keyPrefix);
    await assertReused(await put(b, held, { 'if-match': '"99"' }), 'another If-Match, from the database');

    // A stale condition, then the corrected one: the retry is not answered the 412 for the key's whole life.
    const stale = uniqueName('key');
    assert.equal((await put(a, stale, { 'if-match': '"1"' })).status, 412);
    await assertReused(await put(b, stale, { 'if-match': '"2"' }), 'the corrected If-Match');
    const current = await fetch(`${a.url}/api/students/${id}`, { headers: { 'cache-control': 'no-cache' } });
    assert.equal(current.headers.get('etag'), '"2"', 'neither retry wrote');
  });
});

describe(
  'Redis down: reads and writes use the database, /health says Degraded, caching resumes',
  await needsRedis(),
  () => {
    let testDb: TestDatabase;
    let proxy: TcpProxy;
    let api: CachedApi;
    const keyPrefix = `${uniqueName('tbe_cache')}:student:`;

    before(async () => {
      testDb = await openTestDatabase('pglite');
      const target = new URL(REDIS_URL);
      proxy = await TcpProxy.start(target.hostname, Number(target.port || 6379));
      api = await startCachedApi(testDb.database, {
        redisUrl: `redis://127.0.0.1:${proxy.port}`,
        keyPrefix,
        halfOpenAfterMs: 300,
      });
    });
    after(async () => {
      await api?.stop();
      await proxy?.stop();
      await testDb?.dispose();
      await deleteRedisKeys(keyPrefix);
    });

    const redisHealth = async () => {
      const health = (await (await fetch(`${api.url}/health`)).json()) as HealthBody;
      return checkNamed(health, 'redis')?.status;
    };
    const get = (id: string) => fetch(`${api.url}/api/students/${id}`);

    test('while paused every request works (Idempotency-Key too); after resume the cache is used again, no restart', async () => {
      const { id } = (await (
        await fetch(`${api.url}/api/students`, { method: 'POST', headers: jsonHeaders, body: '{}' })
      ).json()) as { id: string };
      assert.equal(await redisHealth(), 'Healthy');
      await proxy.pause();
      await sleep(100);

      assert.equal(await redisHealth(), 'Degraded');
      assert.equal((await get(id)).status, 200);
      const put = await putStudent(api, id, {
        firstName: 'Dorothy',
        lastName: 'Vaughan',
        email: 'dv@example.com',
      });
      assert.equal(put.status, 200);
      const during = await get(id);
      assert.equal(((await during.json()) as { firstName: string }).firstName, 'Dorothy');
      assert.equal(
        during.headers.get('x-deduplicated'),
        null,
        'no replay while invalidations cannot be heard',
      );
      // The database alone keeps a keyed write to one run.
      const keyed = { ...jsonHeaders, 'idempotency-key': uniqueName('key') };
      const post = () => fetch(`${api.url}/api/students`, { method: 'POST', headers: keyed, body: '{}' });
      const created = await post();
      assert.equal(created.status, 201);
      const again = await post();
      assert.equal(again.status, 201);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.equal(again.headers.get('location'), created.headers.get('location'));
      const hitsDuring = (await api.cache.metrics.cacheHits.get()).values[0]?.value ?? 0;
      await get(id);
      assert.equal(
        (await api.cache.metrics.cacheHits.get()).values[0]?.value ?? 0,
        hitsDuring,
        'no cache reads',
      );

      await proxy.resume();
      for (let attempt = 0; attempt < 50 && (await redisHealth()) !== 'Healthy'; attempt++) await sleep(100);
      assert.equal(await redisHealth(), 'Healthy');
      const first = await get(id);
      assert.equal(
        ((await first.json()) as { firstName: string }).firstName,
        'Dorothy',
        'not the pre-outage copy',
      );
      const second = await get(id);
      assert.equal(second.headers.get('x-deduplicated'), 'true', 'deduplication is back');
      const hitsBefore = (await api.cache.metrics.cacheHits.get()).values[0]?.value ?? 0;
      await fetch(`${api.url}/api/students/${id}`, { headers: { authorization: 'Bearer another' } });
      assert.equal(
        (await api.cache.metrics.cacheHits.get()).values[0]?.value,
        hitsBefore + 1,
        'served by the cache',
      );
    });
  },
);
