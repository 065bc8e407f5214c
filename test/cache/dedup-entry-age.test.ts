// A deduplicated read is stamped with the age of the state it shows, not with when it began: a read that began just
// after a write's invalidation instant, but got the cache entry from before that write (the writer replaces it a
// moment later), must not be replayed as current once the invalidation lands.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import Fastify from 'fastify';
import { Registry } from 'prom-client';
import dedupPlugin from '../../src/apps/webapi/plugins/dedup.plugin.ts';
import { createCacheMetrics } from '../../src/infrastructure/caching/cache-metrics.ts';
import { InvalidationBus } from '../../src/infrastructure/caching/invalidation-bus.ts';
import { orderedNow } from '../../src/infrastructure/caching/ordered-now.ts';
import { CacheConnection } from '../../src/infrastructure/caching/redis-cache-connection.ts';
import { ResponseReplayStore } from '../../src/infrastructure/caching/response-replay-store.ts';
import { silentLogger } from '../support/logger.ts';

const GROUP = 'student-1';

/** A GET deduplicated for 30 s that shows `shown.body`, read from a cache entry of instant `shown.at`. */
async function readThroughApp() {
  const connection = new CacheConnection('memory:', silentLogger);
  const invalidations = new InvalidationBus(
    connection,
    { channel: 'test', derivedKey: (group) => group },
    silentLogger,
  );
  const store = new ResponseReplayStore(connection, invalidations, (group) => group);
  const app = Fastify();
  await app.register(dedupPlugin, { store, metrics: createCacheMetrics(new Registry()) });
  const shown = { body: 'v1', at: orderedNow() };
  let held: Promise<void> | undefined;
  app.get('/student', { config: { dedup: { windowSeconds: 30, group: () => GROUP } } }, async (request) => {
    // What the cache had when the read asked: a held read answers with it once released.
    const { body, at } = shown;
    await held;
    request.shownStateAt = at;
    return body;
  });
  await app.ready();
  const get = async () => {
    const response = await app.inject({ method: 'GET', url: '/student' });
    return { body: response.body, deduplicated: response.headers['x-deduplicated'] === 'true' };
  };
  return {
    app,
    store,
    shown,
    get,
    hold() {
      let release!: () => void;
      held = new Promise((resolve) => (release = resolve));
      return () => {
        held = undefined;
        release();
      };
    },
    async close() {
      await app.close();
      await connection.close();
    },
  };
}

const apps: { close(): Promise<void> }[] = [];
after(() => Promise.all(apps.map((app) => app.close())));

test("a read that began after a write's invalidation instant but shows the entry from before it is not replayed once the invalidation lands", async () => {
  const { store, shown, get, hold, ...app } = await readThroughApp();
  apps.push(app);
  // The write takes its instant, then replaces the entry and records the invalidation: a read starts in between.
  const writtenAt = orderedNow();
  const release = hold();
  const read = get();
  await new Promise((resolve) => setImmediate(resolve));
  Object.assign(shown, { body: 'v2', at: writtenAt });
  await store.invalidate(GROUP, writtenAt);
  release();
  assert.deepEqual(await read, { body: 'v1', deduplicated: false }, 'it shows the entry it got');
  // Sent after the write was answered: it must show the write, not the read above for the next 30 s.
  assert.deepEqual(await get(), { body: 'v2', deduplicated: false });
});

test("a read that shows the write's own entry is replayed: that entry is current at its own invalidation", async () => {
  const { store, shown, get, ...app } = await readThroughApp();
  apps.push(app);
  const writtenAt = orderedNow();
  Object.assign(shown, { body: 'v2', at: writtenAt });
  await store.invalidate(GROUP, writtenAt);
  assert.deepEqual(await get(), { body: 'v2', deduplicated: false });
  assert.deepEqual(await get(), { body: 'v2', deduplicated: true });
});
