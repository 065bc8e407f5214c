// The cache's claim on its key prefix (CacheConnection.claim): confirmed again without costing the cache a second
// half-open period after a reconnection, kept while the process runs, and, when another deployment took the prefix
// while Redis was away, the cache turned off with /health saying why.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Redis } from 'ioredis';
import {
  CacheConnection,
  type CacheConnectionOptions,
} from '../../src/infrastructure/caching/redis-cache-connection.ts';
import { silentLogger } from '../support/logger.ts';
import { REDIS_URL, deleteRedisKeys, needsRedis, uniqueName } from '../support/services.ts';
import { until } from '../support/until.ts';

const { skip } = await needsRedis();
const prefixes: string[] = [];
after(() => Promise.all(prefixes.map((prefix) => deleteRedisKeys(prefix))));

/**
 * A connection that claimed a prefix of its own for `this-deployment`; `other`, another client of the same Redis (an
 * operator, another deployment).
 */
async function withClaim(
  options: CacheConnectionOptions,
  run: (claim: { connection: CacheConnection; other: Redis; key: string }) => Promise<void>,
): Promise<void> {
  const prefix = `${uniqueName('cache_claim')}:`;
  prefixes.push(prefix);
  const connection = new CacheConnection(REDIS_URL, silentLogger, options);
  const other = new Redis(REDIS_URL);
  try {
    await connection.connected();
    await connection.claim(prefix, 'this-deployment', 'CACHE_KEY_PREFIX');
    assert.equal(connection.available, true);
    await run({ connection, other, key: `${prefix}deployment` });
  } finally {
    await Promise.all([connection.close(), other.quit()]);
  }
}

/** Drops `connection`'s command connection from the server side, as a Redis restart would. */
async function dropCommandConnection(connection: CacheConnection, other: Redis): Promise<void> {
  await other.client('KILL', 'ID', String(await connection.redis!.client('ID')));
}

test(
  'after its command connection is dropped, the cache is back within one half-open period',
  { skip },
  () => {
    const halfOpenAfterMs = 1_000;
    return withClaim({ halfOpenAfterMs }, async ({ connection, other }) => {
      await dropCommandConnection(connection, other);
      const dropped = Date.now();
      await until(() => connection.redis!.status !== 'ready', 'the connection to drop');
      await until(() => connection.available, 'the cache to be available again', 10_000, 20);
      const off = Date.now() - dropped;
      assert.ok(off < halfOpenAfterMs * 1.6, `cache off for ${off} ms after a reconnection`);
    });
  },
);

test(
  'a claim deleted while the process runs is made again, before another deployment takes it',
  { skip },
  () =>
    withClaim({ pingIntervalMs: 100 }, async ({ connection, other, key }) => {
      await other.del(key); // FLUSHDB, or evicted under maxmemory-policy allkeys-lru
      await until(
        async () => (await other.get(key)) === 'this-deployment',
        'the claim to be made again',
        3_000,
      );
      assert.equal(connection.available, true);
    }),
);

test(
  'a claim lost while Redis was away and taken by another deployment turns the cache off, and /health says why (Degraded: it serves from the database)',
  { skip },
  () =>
    withClaim({ halfOpenAfterMs: 100 }, async ({ connection, other, key }) => {
      // Redis restarted empty and another deployment came first; this one's connection comes back afterwards.
      await other.set(key, 'another-deployment');
      await dropCommandConnection(connection, other);
      await until(async () => {
        const { status, description } = await connection.healthCheck('the cache is off').check();
        return (
          status === 'Degraded' &&
          /belongs to another deployment \(another-deployment\)/.test(description ?? '')
        );
      }, 'the health check to report the conflict');
      assert.equal(connection.available, false);
      await assert.rejects(
        connection.run((redis) => redis.ping()),
        { name: 'DependencyUnavailableError' },
      );
    }),
);
