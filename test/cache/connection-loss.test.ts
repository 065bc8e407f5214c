// Two webapi instances on one Redis and one database, A's Redis connections behind a proxy: whatever happens to
// them (a brief drop, a connection gone silent, a write made while A had no Redis), A never serves a student
// older than what B wrote once its connections are back, reads never hang, and nobody has to send A a request
// for it to recover.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { deleteRedisKeys, needsRedis, REDIS_URL, uniqueName } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { until } from '../support/until.ts';
import { startCachedApi, type CachedApi } from './support.ts';

const jsonHeaders = { 'content-type': 'application/json' };
const redisTarget = new URL(REDIS_URL);
/** Longer than any answer the cache may take; a request still unanswered then hangs. */
const HANG_MS = 5_000;

interface Student {
  readonly id: string;
  readonly firstName: string;
  readonly version: number;
}

const createStudent = async (api: CachedApi, firstName: string): Promise<Student> =>
  (await (
    await fetch(`${api.url}/api/students`, {
      method: 'POST',
      headers: jsonHeaders,
      body: JSON.stringify({ firstName, lastName: 'Hopper', email: 'gh@example.com' }),
    })
  ).json()) as Student;

async function rename(api: CachedApi, id: string, firstName: string): Promise<void> {
  const response = await fetch(`${api.url}/api/students/${id}`, {
    method: 'PUT',
    headers: jsonHeaders,
    body: JSON.stringify({ firstName, lastName: 'Hopper', email: 'gh@example.com' }),
    signal: AbortSignal.timeout(HANG_MS),
  });
  assert.equal(response.status, 200);
}

/** GET through `api` as `caller` (another caller: no deduplication replay of someone else's response). */
/** A connection that subscribed to something (a pub/sub connection). */
const subscribed = (sent: string) => /subscribe/i.test(sent);

/** bentocache's bus publisher: it published a notification and subscribed to nothing. */
const bentocacheBusPublisher = (sent: string) =>
  sent.includes('bentocache.notifications') && !subscribed(sent);

async function read(api: CachedApi, id: string, caller?: string) {
  const response = await fetch(`${api.url}/api/students/${id}`, {
    headers: caller ? { authorization: `Bearer ${caller}` } : {},
    signal: AbortSignal.timeout(HANG_MS),
  });
  assert.equal(response.status, 200);
  return {
    ...((await response.json()) as Student),
    replayed: response.headers.get('x-deduplicated') === 'true',
  };
}

const redisHealth = async (api: CachedApi) =>
  checkNamed((await (await fetch(`${api.url}/health`)).json()) as HealthBody, 'redis')?.status;

/** Waits until `api`'s /health shows Redis Healthy again, failing after `withinMs`. */
async function assertRedisHealthy(api: CachedApi, withinMs: number): Promise<void> {
  const status = await eventually(
    withinMs,
    () => redisHealth(api),
    (seen) => seen === 'Healthy',
  );
  assert.equal(status, 'Healthy', `Redis ${status} after ${withinMs} ms`);
}

const cacheHits = async (api: CachedApi) => (await api.cache.metrics.cacheHits.get()).values[0]?.value ?? 0;

/** Polls `check` until it holds or `withinMs` passes; answers the last value it saw. */
async function eventually<T>(withinMs: number, probe: () => Promise<T>, holds: (value: T) => boolean) {
  const deadline = Date.now() + withinMs;
  let value = await probe();
  while (!holds(value) && Date.now() < deadline) {
    await sleep(100);
    value = await probe();
  }
  return value;
}

/**
 * Reads the student through `api` until its first name is `firstName` or `withinMs` passes, each time as another
 * caller, so no read gets the deduplicated answer to an earlier one; answers the last student read.
 */
function readUntilNamed(api: CachedApi, id: string, firstName: string, withinMs: number) {
  let caller = 0;
  return eventually(
    withinMs,
    () => read(api, id, `caller-${++caller}`),
    (student) => student.firstName === firstName,
  );
}

describe(
  'A loses its Redis connections, B writes: A never keeps serving the old student',
  await needsRedis(),
  () => {
    let testDb: TestDatabase;
    const keyPrefix = `${uniqueName('tbe_conn_loss')}:student:`;
    const cleanups: (() => Promise<void>)[] = [];

    after(async () => {
      // Bounded: a failing test may leave a connection that never answers a QUIT.
      for (const cleanup of cleanups.reverse())
        await Promise.race([cleanup().catch(() => undefined), sleep(HANG_MS)]);
      await testDb?.dispose();
      await deleteRedisKeys(keyPrefix);
    });

    /** A (on `redisUrl`) and B (on Redis itself), sharing one database. */
    async function twoInstances(
      redisUrl: string,
      options: { halfOpenAfterMs?: number; pingIntervalMs?: number } = {},
    ) {
      testDb ??= await openTestDatabase('pglite');
      const a = await startCachedApi(testDb.database, { redisUrl, keyPrefix, ...options });
      cleanups.push(() => a.stop());
      const b = await startCachedApi(testDb.database, { redisUrl: REDIS_URL, keyPrefix });
      cleanups.push(() => b.stop());
      return { a, b };
    }

    async function tcpProxy() {
      const proxy = await TcpProxy.start(redisTarget.hostname, Number(redisTarget.port || 6379));
      cleanups.push(() => proxy.stop());
      return proxy;
    }

    test("A's connections drop briefly while B writes, no request reaches A meanwhile: A then serves B's write (L1 and replay)", async () => {
      const proxy = await tcpProxy();
      const { a, b } = await twoInstances(`redis://127.0.0.1:${proxy.port}`);
      const { id } = await createStudent(b, 'Old');
      assert.equal((await read(a, id)).firstName, 'Old');
      assert.equal((await read(a, id)).replayed, true, 'A holds a replay');
      assert.equal((await read(a, id, 'another')).firstName, 'Old', 'and an L1 copy');

      await proxy.pause();
      await rename(b, id, 'New');
      await proxy.resume();
      // A reconnects by itself (its retry delay is at most 1 s); nothing is asked of A meanwhile.
      await sleep(2_500);

      const replay = await read(a, id);
      assert.equal(replay.firstName, 'New', `the same caller (replayed: ${replay.replayed})`);
      assert.equal((await read(a, id, 'third')).firstName, 'New', 'another caller');
      // Every one of A's connections is ready again, some perhaps only after those reads on a busy machine.
      await assertRedisHealthy(a, 10_000);
    });

    test("while A cannot reach Redis it replays nothing: a GET via A after B's write gets the write", async () => {
      const proxy = await tcpProxy();
      const { a, b } = await twoInstances(`redis://127.0.0.1:${proxy.port}`, { halfOpenAfterMs: 300 });
      const { id } = await createStudent(b, 'Old');
      assert.equal((await read(a, id)).firstName, 'Old');
      assert.equal((await read(a, id)).replayed, true, 'A holds a replay');

      await proxy.pause();
      await sleep(200);
      // B's invalidation goes out on Redis, which A cannot hear now.
      await rename(b, id, 'New');
      const during = await read(a, id);
      assert.equal(during.firstName, 'New', `the same caller (replayed: ${during.replayed})`);
      assert.equal(during.replayed, false);
      await proxy.resume();
    });

    test("A started while Redis was unreachable hears B's writes once Redis is back: it replays nothing B changed", async () => {
      const proxy = await tcpProxy();
      await proxy.pause();
      const { a, b } = await twoInstances(`redis://127.0.0.1:${proxy.port}`, { halfOpenAfterMs: 300 });
      await proxy.resume();
      await assertRedisHealthy(a, 10_000);
      const { id } = await createStudent(b, 'Old');
      assert.equal((await read(a, id)).firstName, 'Old');
      assert.equal((await read(a, id)).replayed, true, 'A holds a replay');

      await rename(b, id, 'New');
      const seen = await read(a, id);
      assert.equal(seen.firstName, 'New', `the same caller (replayed: ${seen.replayed})`);
    });

    test("A's pub/sub connections go silent (dropped without FIN or RST) while B writes: A notices and serves B's write", async () => {
      const proxy = await tcpProxy();
      const { a, b } = await twoInstances(`redis://127.0.0.1:${proxy.port}`, { pingIntervalMs: 200 });
      const { id } = await createStudent(b, 'Old');
      assert.equal((await read(a, id)).firstName, 'Old');
      await sleep(300);
      assert.ok(proxy.silence(subscribed) >= 2, "A's own and bentocache's subscriber");

      await rename(b, id, 'New');
      const seen = await readUntilNamed(a, id, 'New', 10_000);
      assert.equal(seen.firstName, 'New', 'A noticed its subscriptions were gone');
      await assertRedisHealthy(a, 5_000);
    });

    test('every connection of A goes silent: reads keep working from the database, then A uses the cache again', async () => {
      const proxy = await tcpProxy();
      const { a, b } = await twoInstances(`redis://127.0.0.1:${proxy.port}`, {
        halfOpenAfterMs: 300,
        pingIntervalMs: 200,
      });
      const { id } = await createStudent(b, 'Old');
      assert.equal((await read(a, id)).firstName, 'Old');
      proxy.silence();
      await rename(b, id, 'New');

      await read(a, id, 'during'); // answers (maybe from A's L1, which has not heard of the write yet)
      // New connections through the proxy work: A gets back to Redis without a restart, and hears of the write.
      await assertRedisHealthy(a, 10_000);
      assert.equal((await read(a, id, 'after')).firstName, 'New');
      const hits = await cacheHits(a);
      assert.equal((await read(a, id, 'once more')).firstName, 'New');
      assert.equal(await cacheHits(a), hits + 1, 'served by the cache');
    });

    test("A's bentocache bus publisher goes silent: a GET that misses the cache on A still answers", async () => {
      const proxy = await tcpProxy();
      const { a, b } = await twoInstances(`redis://127.0.0.1:${proxy.port}`);
      const s = await createStudent(a, 'S');
      await rename(a, s.id, 'S2'); // A's bus publisher publishes once, so it can be told apart
      await until(() => proxy.silence(bentocacheBusPublisher) === 1, "A's bus publisher silenced");

      const { id } = await createStudent(b, 'T');
      // Its L2 entry expired (or Redis lost it): A has to load it.
      const redis = new Redis(REDIS_URL);
      try {
        assert.equal(await redis.del(`${keyPrefix}${id}`), 1);
      } finally {
        redis.disconnect();
      }
      const started = Date.now();
      assert.equal((await read(a, id)).firstName, 'T');
      // Not even the 1.5 s a read gives the cache before it goes to the database: it did not wait on the bus.
      assert.ok(Date.now() - started < 1_400, `answered in ${Date.now() - started} ms`);
    });

    test("a PUT answer made stale by A's write while A had no Redis is not replayed by B once A's Redis is back", async () => {
      const proxy = await tcpProxy();
      const { a, b } = await twoInstances(`redis://127.0.0.1:${proxy.port}`, { halfOpenAfterMs: 300 });
      const { id } = await createStudent(b, 'Old');
      await rename(b, id, 'First');

      await proxy.pause();
      await sleep(200);
      await rename(a, id, 'Second');
      await proxy.resume();
      await assertRedisHealthy(a, 5_000);

      // The same PUT as the first, within its 5 s window: it must run again (PUT A, PUT B, PUT A leaves A).
      const again = await fetch(`${b.url}/api/students/${id}`, {
        method: 'PUT',
        headers: jsonHeaders,
        body: JSON.stringify({ firstName: 'First', lastName: 'Hopper', email: 'gh@example.com' }),
      });
      assert.equal(again.status, 200);
      assert.equal(again.headers.get('x-deduplicated'), null, 'not the answer from before A wrote');
      const stored = (await (
        await fetch(`${b.url}/api/students/${id}`, { headers: { 'cache-control': 'no-cache' } })
      ).json()) as Student;
      assert.equal(stored.firstName, 'First');
    });

    test("a write made while A had no Redis reaches B once A's Redis is back, with no request to A", async () => {
      const proxy = await tcpProxy();
      const { a, b } = await twoInstances(`redis://127.0.0.1:${proxy.port}`, { halfOpenAfterMs: 300 });
      const { id } = await createStudent(a, 'Old');
      assert.equal((await read(b, id)).firstName, 'Old', 'B caches it');

      await proxy.pause();
      await sleep(200);
      await rename(a, id, 'New');
      await proxy.resume();

      const seen = await readUntilNamed(b, id, 'New', 5_000);
      assert.equal(seen.firstName, 'New', "A dropped B's stale copy by itself");
    });
  },
);
