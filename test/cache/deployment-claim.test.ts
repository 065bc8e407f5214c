// The cache's claim on its key prefix (CacheConnection.claim): confirmed again without costing the cache a second
// half-open period after a reconnection, and kept while the process runs.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Redis } from 'ioredis';
import { CacheConnection } from '../../src/infrastructure/caching/redis-cache-connection.ts';
import { silentLogger } from '../support/logger.ts';
import { REDIS_URL, deleteRedisKeys, needsRedis, uniqueName } from '../support/services.ts';
import { until } from '../support/until.ts';

const { skip } = await needsRedis();
const prefixes: string[] = [];
after(() => Promise.all(prefixes.map((prefix) => deleteRedisKeys(prefix))));

function prefix(): string {
  const made = `${uniqueName('own_claim')}:`;
  prefixes.push(made);
  return made;
}

test(
  'after its command connection is dropped, the cache is back within one half-open period',
  { skip },
  async () => {
    const halfOpenAfterMs = 1_000;
    const connection = new CacheConnection(REDIS_URL, silentLogger, { halfOpenAfterMs });
    const other = new Redis(REDIS_URL);
    try {
      await connection.connected();
      await connection.claim(prefix(), 'this-deployment', 'CACHE_KEY_PREFIX');
      assert.equal(connection.available, true);
      await other.client('KILL', 'ID', String(await connection.redis!.client('ID')));
      const dropped = Date.now();
      await until(() => connection.redis!.status !== 'ready', 'the connection to drop');
      await until(() => connection.available, 'the cache to be available again', 10_000, 20);
      const off = Date.now() - dropped;
      assert.ok(off < halfOpenAfterMs * 1.6, `cache off for ${off} ms after a reconnection`);
    } finally {
      await Promise.all([connection.close(), other.quit()]);
    }
  },
);

test(
  'a claim deleted while the process runs is made again, before another deployment takes it',
  { skip },
  async () => {
    const claimed = prefix();
    const connection = new CacheConnection(REDIS_URL, silentLogger, { pingIntervalMs: 100 });
    const other = new Redis(REDIS_URL);
    try {
      await connection.connected();
      await connection.claim(claimed, 'this-deployment', 'CACHE_KEY_PREFIX');
      await other.del(`${claimed}deployment`); // FLUSHDB, or evicted under maxmemory-policy allkeys-lru
      await until(
        async () => (await other.get(`${claimed}deployment`)) === 'this-deployment',
        'the claim to be made again',
        3_000,
      );
      assert.equal(connection.available, true);
    } finally {
      await Promise.all([connection.close(), other.quit()]);
    }
  },
);
