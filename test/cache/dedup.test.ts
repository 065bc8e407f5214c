// Request deduplication and the student cache, through HTTP, in the embedded (memory) mode and on Redis.
import assert from 'node:assert/strict';
import { after, before, describe, mock, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { deleteRedisKeys, needsRedis, REDIS_URL, uniqueName } from '../support/services.ts';
import { countingQueries, startCachedApi, type CachedApi } from './support.ts';

const jsonHeaders = { 'content-type': 'application/json' };

for (const mode of ['memory', 'redis'] as const) {
  describe(`deduplication and cache (${mode})`, mode === 'redis' ? await needsRedis() : {}, () => {
    let testDb: TestDatabase;
    let api: CachedApi;
    let queries: ReturnType<typeof countingQueries>;
    const keyPrefix = `${uniqueName('tbe_cache')}:student:`;

    before(async () => {
      testDb = await openTestDatabase('pglite');
      queries = countingQueries(testDb.database);
      api = await startCachedApi(testDb.database, {
        redisUrl: mode === 'redis' ? REDIS_URL : 'memory:',
        keyPrefix,
        queries,
      });
    });
    after(async () => {
      await api?.stop();
      await testDb?.dispose();
      if (mode === 'redis') await deleteRedisKeys(keyPrefix);
    });

    const create = async () => {
      const response = await fetch(`${api.url}/api/students`, {
        method: 'POST',
        headers: jsonHeaders,
        body: '{}',
      });
      assert.equal(response.status, 201);
      return ((await response.json()) as { id: string }).id;
    };

    test('1,000 concurrent GETs of an uncached student read the database once; 999 are deduplicated', async () => {
      const id = await create();
      await api.cache.students.evict(id);
      const readsBefore = queries.findByIdCalls;
      const dedupHits = async () =>
        (await api.cache.metrics.dedupHits.get()).values.reduce((sum, { value }) => sum + value, 0);
      const hitsBefore = await dedupHits();
      const responses = await Promise.all(
        Array.from({ length: 1_000 }, () => fetch(`${api.url}/api/students/${id}`)),
      );
      const bodies = await Promise.all(responses.map((response) => response.text()));
      assert.equal(queries.findByIdCalls - readsBefore, 1, 'exactly one database read');
      assert.ok(responses.every((response) => response.status === 200));
      const deduplicated = responses.filter((response) => response.headers.get('x-deduplicated') === 'true');
      assert.equal(deduplicated.length, 999);
      assert.equal((await dedupHits()) - hitsBefore, 999, 'http_dedup_hits_total counts each of them');
      assert.equal(new Set(bodies).size, 1, 'identical bodies');
      assert.equal((JSON.parse(bodies[0]!) as { id: string }).id, id);
      assert.ok(responses.every((response) => response.headers.get('etag') === '"1"'));
    });

    test('concurrent GETs of an uncached student by many callers read the database once, also when that read outlasts the wait for the cache', async () => {
      const id = await create();
      // Dropped, not deleted: evict() would mark the student deleted, and nothing loaded for it would stay cached.
      await api.cache.students.invalidate(id);
      const readsBefore = queries.findByIdCalls;
      let release!: () => void;
      queries.holdNextRead(new Promise<void>((resolve) => (release = resolve)));
      // Other callers: no deduplication between them, only the cache's own stampede protection.
      const responses = Promise.all(
        Array.from({ length: 50 }, (_, caller) =>
          fetch(`${api.url}/api/students/${id}`, { headers: { authorization: `Bearer caller-${caller}` } }),
        ),
      );
      // Past the 1.5 s a read waits for the cache before it reads the database itself.
      await sleep(2_000);
      release();
      const answered = await responses;
      assert.ok(answered.every((response) => response.status === 200));
      assert.equal(queries.findByIdCalls - readsBefore, 1, 'one database read for 50 concurrent misses');
    });

    test('a response is never replayed to a different caller', async () => {
      const id = await create();
      const get = (authorization?: string) =>
        fetch(`${api.url}/api/students/${id}`, { headers: authorization ? { authorization } : {} });
      await get('Bearer alice');
      assert.equal(
        (await get('Bearer alice')).headers.get('x-deduplicated'),
        'true',
        'same caller: replayed',
      );
      assert.equal(
        (await get('Bearer bob')).headers.get('x-deduplicated'),
        null,
        'other caller: not replayed',
      );
      assert.equal((await get()).headers.get('x-deduplicated'), null, 'anonymous: not replayed');
    });

    test('a write invalidates the deduplicated GETs: the writer reads its own write', async () => {
      const id = await create();
      await fetch(`${api.url}/api/students/${id}`);
      assert.equal((await fetch(`${api.url}/api/students/${id}`)).headers.get('x-deduplicated'), 'true');
      const put = await fetch(`${api.url}/api/students/${id}`, {
        method: 'PUT',
        headers: jsonHeaders,
        body: JSON.stringify({ firstName: 'Grace', lastName: 'Hopper', email: 'grace@example.com' }),
      });
      assert.equal(put.status, 200);
      const read = await fetch(`${api.url}/api/students/${id}`);
      assert.equal(read.headers.get('x-deduplicated'), null);
      assert.equal(((await read.json()) as { firstName: string }).firstName, 'Grace');
    });

    test("a read under way when a write to its student is heard is neither joined nor stored, whatever the write's instant", async () => {
      const id = await create();
      const url = `${api.url}/api/students/${id}`;
      /** A GET whose database read is held until the write is heard (an instant before the read began, as another
       * instance's whose host's clock is behind); then `meanwhile`, then the read is let go. */
      const readAcrossAWrite = async (meanwhile: () => Promise<Response> | undefined) => {
        // Dropped, not deleted: evict() would mark the student deleted.
        await api.cache.students.invalidate(id);
        let release!: () => void;
        queries.holdNextRead(new Promise<void>((resolve) => (release = resolve)));
        const reads = queries.findByIdCalls;
        const first = fetch(url);
        while (queries.findByIdCalls === reads) await sleep(5);
        await api.cache.responses.invalidate(id, 0);
        const other = meanwhile();
        await sleep(50);
        release();
        assert.equal((await first).status, 200);
        return other;
      };
      await readAcrossAWrite(() => undefined);
      assert.equal((await fetch(url)).headers.get('x-deduplicated'), null, 'not stored');
      const sentAfter = await readAcrossAWrite(() => fetch(url));
      assert.equal(sentAfter?.headers.get('x-deduplicated'), null, 'not joined');
    });

    test('a GET sent after a write never joins a read that began before it', async () => {
      const id = await create();
      await api.cache.students.evict(id);
      let release!: () => void;
      queries.holdNextRead(new Promise((resolve) => (release = resolve)));
      const readsBefore = queries.findByIdCalls;
      const before = fetch(`${api.url}/api/students/${id}`);
      while (queries.findByIdCalls === readsBefore) await new Promise((resolve) => setTimeout(resolve, 5));
      const put = await fetch(`${api.url}/api/students/${id}`, {
        method: 'PUT',
        headers: jsonHeaders,
        body: JSON.stringify({ firstName: 'Mary', lastName: 'Golda Ross', email: 'mgr@example.com' }),
      });
      assert.equal(put.status, 200);
      const after = fetch(`${api.url}/api/students/${id}`);
      // Time to join the read in flight, had it been allowed to.
      await new Promise((resolve) => setTimeout(resolve, 50));
      release();
      const read = await after;
      assert.equal(read.headers.get('etag'), '"2"');
      assert.equal(((await read.json()) as { firstName: string }).firstName, 'Mary');
      assert.equal((await before).status, 200);
    });

    test('a GET that began in the same millisecond as a write, and read the row from before it, is not replayed after the write', async () => {
      const id = await create();
      await api.cache.students.evict(id);
      let release!: () => void;
      queries.holdNextRead(new Promise((resolve) => (release = resolve)));
      const readsBefore = queries.findByIdCalls;
      // Every instant from here to the write's answer is one millisecond: a fast database, or a writer whose clock
      // is a little behind the reader's.
      const instant = Date.now();
      const clock = mock.method(Date, 'now', () => instant);
      try {
        const before = fetch(`${api.url}/api/students/${id}`);
        while (queries.findByIdCalls === readsBefore) await new Promise((resolve) => setTimeout(resolve, 5));
        const put = await fetch(`${api.url}/api/students/${id}`, {
          method: 'PUT',
          headers: jsonHeaders,
          body: JSON.stringify({ firstName: 'Evelyn', lastName: 'Boyd Granville', email: 'ebg@example.com' }),
        });
        assert.equal(put.status, 200);
        release();
        assert.equal((await before).headers.get('etag'), '"1"', 'it read the row from before the write');
      } finally {
        clock.mock.restore();
      }
      const read = await fetch(`${api.url}/api/students/${id}`);
      assert.equal(read.headers.get('x-deduplicated'), null, 'not the answer of the read that began before');
      assert.equal(read.headers.get('etag'), '"2"');
    });

    test('identical PUTs within the window run once; Cache-Control: no-cache bypasses cache and replay', async () => {
      const id = await create();
      const put = () =>
        fetch(`${api.url}/api/students/${id}`, {
          method: 'PUT',
          headers: jsonHeaders,
          body: JSON.stringify({ firstName: 'Alan', lastName: 'Turing', email: 'alan@example.com' }),
        });
      const first = await put();
      const second = await put();
      assert.equal(second.headers.get('x-deduplicated'), 'true');
      assert.equal(await second.text(), await first.text(), 'the same version, not applied twice');

      await fetch(`${api.url}/api/students/${id}`);
      // Directives are case-insensitive (RFC 9111 §5.2), and may come with others.
      for (const cacheControl of ['no-cache', 'No-Cache', 'max-age=0, NO-CACHE']) {
        const readsBefore = queries.findByIdCalls;
        const fresh = await fetch(`${api.url}/api/students/${id}`, {
          headers: { 'cache-control': cacheControl },
        });
        assert.equal(fresh.headers.get('x-deduplicated'), null, cacheControl);
        assert.equal(queries.findByIdCalls - readsBefore, 1, `${cacheControl}: read from the database`);
      }
      const replayed = await fetch(`${api.url}/api/students/${id}`, {
        headers: { 'cache-control': 'no-cache-please' },
      });
      assert.equal(replayed.headers.get('x-deduplicated'), 'true', 'not a no-cache directive');
    });

    test('a PUT repeated after a later write to the student runs again: PUT A, PUT B, PUT A leaves A; after a DELETE, 404', async () => {
      const id = await create();
      const put = (firstName: string) =>
        fetch(`${api.url}/api/students/${id}`, {
          method: 'PUT',
          headers: jsonHeaders,
          body: JSON.stringify({ firstName, lastName: 'Hopper', email: 'grace@example.com' }),
        });
      assert.equal((await put('Grace')).status, 200);
      assert.equal((await put('Amazing Grace')).status, 200);
      const again = await put('Grace');
      assert.equal(
        again.headers.get('x-deduplicated'),
        null,
        'not the first answer, which claims a state now gone',
      );
      assert.equal(again.headers.get('etag'), '"4"');
      const now = await fetch(`${api.url}/api/students/${id}`, { headers: { 'cache-control': 'no-cache' } });
      assert.equal(((await now.json()) as { firstName: string }).firstName, 'Grace');
      assert.equal((await fetch(`${api.url}/api/students/${id}`, { method: 'DELETE' })).status, 204);
      assert.equal((await put('Grace')).status, 404, 'no answer from before the delete');
    });

    test('PUTs are identical only with the same body bytes and media type: `1e400` does not get the answer to `null`', async () => {
      const id = await create();
      const put = (body: string) =>
        fetch(`${api.url}/api/students/${id}`, { method: 'PUT', headers: jsonHeaders, body });
      // Both parse to values that serialize as `null`; one is a body the API takes, the other is not.
      const first = await put('null');
      const second = await put('1e400');
      assert.equal(second.headers.get('x-deduplicated'), null, `not a replay of ${first.status}`);
      assert.equal(second.status, 400);
      assert.match(second.headers.get('content-type') ?? '', /problem\+json/);
      // No body, then no body declared as text: the second is refused, not handed the first one's 200.
      assert.equal((await fetch(`${api.url}/api/students/${id}`, { method: 'PUT' })).status, 200);
      const typed = await fetch(`${api.url}/api/students/${id}`, {
        method: 'PUT',
        headers: { 'content-type': 'text/plain' },
      });
      assert.equal(typed.headers.get('x-deduplicated'), null);
      assert.ok(typed.status >= 400 && typed.status < 500, `refused: ${typed.status}`);
    });

    test('a query string on a route that takes none is refused, never replayed: ?junk=N is a 400, stored nowhere', async () => {
      const missing = `${api.url}/api/students/0190a3c4-5b6d-7e8f-9a0b-${Date.now().toString().slice(-12)}`;
      assert.equal((await fetch(missing)).status, 404);
      const held = api.cache.responses.held.entries;
      for (let i = 1; i <= 20; i++) {
        const again = await fetch(`${missing}?junk=${i}`);
        assert.equal(again.status, 400, `?junk=${i}`);
        assert.equal(again.headers.get('x-deduplicated'), null, `?junk=${i}`);
      }
      assert.equal(api.cache.responses.held.entries, held, 'no entry per query string');
      assert.equal((await fetch(missing)).headers.get('x-deduplicated'), 'true', 'the 404 was held');
    });

    test('a keyed write that failed with a 5xx frees its Idempotency-Key: the retry runs and creates the student', async () => {
      const key = { ...jsonHeaders, 'idempotency-key': uniqueName('failed-write') };
      const body = JSON.stringify({ firstName: 'Retried', lastName: 'Write', email: 'retried@example.com' });
      const failing = mock.method(testDb.database, 'transaction', () =>
        Promise.reject(new Error('database gone')),
      );
      try {
        const failed = await fetch(`${api.url}/api/students`, { method: 'POST', headers: key, body });
        await failed.arrayBuffer();
        assert.ok(failed.status >= 500, `a failed write is a 5xx, got ${failed.status}`);
        assert.ok(failing.mock.callCount() >= 1, 'the failure came from the write');
      } finally {
        failing.mock.restore();
      }
      const retried = await fetch(`${api.url}/api/students`, { method: 'POST', headers: key, body });
      assert.equal(retried.status, 201, "the retry runs: the 5xx is not the key's answer");
      assert.equal(retried.headers.get('x-deduplicated'), null);
      const created = (await retried.json()) as { id: string; firstName: string };
      assert.equal(created.firstName, 'Retried');
      const again = await fetch(`${api.url}/api/students`, { method: 'POST', headers: key, body });
      assert.equal(again.status, 201);
      assert.equal(again.headers.get('x-deduplicated'), 'true', 'from then on the 201 is the answer');
      assert.equal(((await again.json()) as { id: string }).id, created.id);
    });

    test('a keyed write its schema refuses (400) leaves the key free: the corrected request under it runs', async () => {
      const key = { ...jsonHeaders, 'idempotency-key': uniqueName('refused-write') };
      const refused = await fetch(`${api.url}/api/students`, {
        method: 'POST',
        headers: key,
        body: JSON.stringify({ firstName: 42 }),
      });
      assert.equal(refused.status, 400);
      await refused.arrayBuffer();
      const body = JSON.stringify({
        firstName: 'Corrected',
        lastName: 'Write',
        email: 'corrected@example.com',
      });
      const corrected = await fetch(`${api.url}/api/students`, { method: 'POST', headers: key, body });
      assert.equal(corrected.status, 201, "the refusal is not the key's answer: nothing ran");
      const created = (await corrected.json()) as { id: string };
      const again = await fetch(`${api.url}/api/students`, { method: 'POST', headers: key, body });
      assert.equal(again.status, 201);
      assert.equal(again.headers.get('idempotent-replayed'), 'true', 'from then on the 201 is the answer');
      assert.equal(((await again.json()) as { id: string }).id, created.id);
    });

    test('404 is replayed, 5xx never', async () => {
      const missing = `${api.url}/api/students/0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b`;
      assert.equal((await fetch(missing)).status, 404);
      const again = await fetch(missing);
      assert.equal(again.status, 404);
      assert.equal(again.headers.get('x-deduplicated'), 'true');

      // A read that fails (the database, say) is answered 5xx; the next identical request runs again.
      const id = await create();
      await api.cache.students.evict(id);
      const failing = mock.method(queries, 'findById', () => Promise.reject(new Error('database gone')), {
        times: 1,
      });
      try {
        const failed = await fetch(`${api.url}/api/students/${id}`);
        await failed.arrayBuffer();
        assert.ok(failed.status >= 500, `a failed read is a 5xx, got ${failed.status}`);
        assert.equal(failing.mock.callCount(), 1, 'the failure came from the read');
      } finally {
        failing.mock.restore();
      }
      const retried = await fetch(`${api.url}/api/students/${id}`);
      assert.equal(retried.status, 200, 'the 5xx was not replayed');
      assert.equal(retried.headers.get('x-deduplicated'), null);
      assert.equal(((await retried.json()) as { id: string }).id, id);
    });

    test('a GET that joined an identical read which then failed runs itself: it gets the 200, neither the 5xx nor no answer', async () => {
      const id = await create();
      await api.cache.students.evict(id);
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const failing = mock.method(
        queries,
        'findById',
        async () => {
          await released;
          throw new Error('database gone');
        },
        { times: 1 },
      );
      try {
        const failed = fetch(`${api.url}/api/students/${id}`);
        while (failing.mock.callCount() === 0) await new Promise((resolve) => setTimeout(resolve, 5));
        const joined = fetch(`${api.url}/api/students/${id}`, { signal: AbortSignal.timeout(5_000) });
        // Time to join the read in flight.
        await new Promise((resolve) => setTimeout(resolve, 50));
        release();
        const leader = await failed;
        await leader.arrayBuffer();
        assert.ok(leader.status >= 500, `the read in flight failed: ${leader.status}`);
        const follower = await joined;
        assert.equal(follower.status, 200);
        assert.equal(follower.headers.get('x-deduplicated'), null);
        assert.equal(((await follower.json()) as { id: string }).id, id);
      } finally {
        failing.mock.restore();
      }
    });

    test('an identical GET after the window has passed is answered afresh, not replayed', async () => {
      // A window of two seconds (the steps inside it take milliseconds, even on a loaded machine); on Redis, B replays
      // what A stored there.
      const short = async () =>
        startCachedApi(testDb.database, {
          redisUrl: mode === 'redis' ? REDIS_URL : 'memory:',
          keyPrefix,
          env: { DEDUP_GET_WINDOW_SECONDS: '2' },
        });
      const a = await short();
      const b = mode === 'redis' ? await short() : a;
      // A stores its answer in Redis after sending it: B is asked once it is there.
      const put = a.cache.responses.put.bind(a.cache.responses);
      const stored: Promise<void>[] = [];
      const storing = mock.method(a.cache.responses, 'put', (...args: Parameters<typeof put>) => {
        const done = put(...args);
        stored.push(done);
        return done;
      });
      try {
        const id = await create();
        const get = (via: CachedApi) => fetch(`${via.url}/api/students/${id}`);
        assert.equal((await get(a)).headers.get('x-deduplicated'), null);
        assert.equal((await get(a)).headers.get('x-deduplicated'), 'true', 'replayed within the window');
        await Promise.all(stored);
        if (b !== a)
          assert.equal((await get(b)).headers.get('x-deduplicated'), 'true', "A's answer, from Redis");
        await new Promise((resolve) => setTimeout(resolve, 2_100));
        // Through B on Redis: what A would store again now is a fresh answer, B's to replay.
        assert.equal((await get(b)).headers.get('x-deduplicated'), null, 'the window has passed');
      } finally {
        storing.mock.restore();
        if (b !== a) await b.stop();
        await a.stop();
      }
    });

    test('a keyed write sent again while the first still runs is a 409 problem+json with Retry-After; once done, its answer', async () => {
      const key = { ...jsonHeaders, 'idempotency-key': uniqueName('in-progress') };
      const body = JSON.stringify({ firstName: 'Held', lastName: 'Write', email: 'held@example.com' });
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const transaction = testDb.database.transaction.bind(testDb.database);
      const held = mock.method(
        testDb.database,
        'transaction',
        async (work: Parameters<typeof transaction>[0]) => {
          await released;
          return transaction(work);
        },
        { times: 1 },
      );
      const post = () => fetch(`${api.url}/api/students`, { method: 'POST', headers: key, body });
      try {
        const first = post();
        while (held.mock.callCount() === 0) await new Promise((resolve) => setTimeout(resolve, 5));
        const again = await post();
        assert.equal(again.status, 409);
        assert.equal(again.headers.get('retry-after'), '1', 'when to try again');
        assert.match(again.headers.get('content-type') ?? '', /problem\+json/);
        assert.equal(((await again.json()) as { code: string }).code, 'IDEMPOTENCY.IN_PROGRESS');
        release();
        const created = await first;
        assert.equal(created.status, 201);
        const replay = await post();
        assert.equal(replay.status, 201);
        assert.equal(replay.headers.get('idempotent-replayed'), 'true');
        assert.equal(replay.headers.get('location'), created.headers.get('location'));
      } finally {
        release();
        held.mock.restore();
      }
    });

    test('an identical PUT sent while the first is being answered (its invalidation on its way to Redis) joins it: run once', async () => {
      const id = await create();
      const put = () =>
        fetch(`${api.url}/api/students/${id}`, {
          method: 'PUT',
          headers: jsonHeaders,
          body: JSON.stringify({ firstName: 'Joan', lastName: 'Clarke', email: 'jc@example.com' }),
        });
      const invalidate = api.cache.responses.invalidate.bind(api.cache.responses);
      // Dropped here at once, as always; the round trip to Redis takes 200 ms.
      const slow = mock.method(api.cache.responses, 'invalidate', async (group: string, at: number) => {
        const dropped = invalidate(group, at);
        await new Promise((resolve) => setTimeout(resolve, 200));
        await dropped;
      });
      try {
        const first = put();
        while (slow.mock.callCount() === 0) await new Promise((resolve) => setTimeout(resolve, 2));
        const second = await put();
        const answered = await first;
        assert.equal(answered.headers.get('etag'), '"2"');
        assert.equal(second.headers.get('etag'), '"2"', 'not applied a second time');
        assert.equal(second.headers.get('x-deduplicated'), 'true');
        assert.equal(await second.text(), await answered.text());
      } finally {
        slow.mock.restore();
      }
    });

    test('a replay carries the headers that describe its body: Content-Type and ETag, and Location for a keyed create', async () => {
      const id = await create();
      const first = await fetch(`${api.url}/api/students/${id}`);
      const again = await fetch(`${api.url}/api/students/${id}`);
      assert.equal(again.headers.get('x-deduplicated'), 'true');
      assert.match(again.headers.get('content-type') ?? '', /^application\/json/);
      for (const name of ['content-type', 'etag'])
        assert.equal(again.headers.get(name), first.headers.get(name), name);
      assert.equal(await again.text(), await first.text());

      const key = { ...jsonHeaders, 'idempotency-key': uniqueName('replayed-headers') };
      const post = () => fetch(`${api.url}/api/students`, { method: 'POST', headers: key, body: '{}' });
      const created = await post();
      assert.equal(created.status, 201);
      const replayed = await post();
      assert.equal(replayed.headers.get('idempotent-replayed'), 'true');
      for (const name of ['content-type', 'etag', 'location'])
        assert.equal(replayed.headers.get(name), created.headers.get(name), name);
      assert.equal(await replayed.text(), await created.text());
    });
  });
}
