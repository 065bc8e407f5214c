// The worker refreshes the cache after each change: its /health shows Redis too, and says what it does without it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { createWorkerOver, type Worker } from '../../src/apps/worker/main.ts';
import { parseConfig } from '../../src/config.ts';
import { openCache, type Cache } from '../../src/infrastructure/caching/open-cache.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { silentLogger } from '../support/logger.ts';
import { REDIS_URL, deleteRedisKeys, needsRedis, uniqueName } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { until } from '../support/until.ts';

interface RedisCheck {
  readonly status: string;
  readonly description?: string;
}

describe('worker /health: Redis', await needsRedis(), () => {
  const keyPrefix = `${uniqueName('tbe_worker_health')}:student:`;
  let testDb: TestDatabase;
  let proxy: TcpProxy;
  let bus: InProcessMessageBus;
  let cache: Cache;
  let worker: Worker;
  let health: string;

  before(async () => {
    testDb = await openTestDatabase('pglite');
    const opened = await TcpProxy.inFrontOf(REDIS_URL, 6379);
    proxy = opened.proxy;
    const config = parseConfig({ WORKER_PORT: '0', REDIS_URL: opened.url, CACHE_KEY_PREFIX: keyPrefix });
    cache = await openCache(
      { redisUrl: config.redisUrl, ...config.cache, registry: new Registry() },
      silentLogger,
    );
    bus = new InProcessMessageBus();
    worker = createWorkerOver(
      { database: testDb.database, bus, cache, registry: new Registry() },
      { config, logger: silentLogger },
    );
    health = await worker.start();
  });
  after(async () => {
    await worker?.stop();
    await bus?.close();
    await cache?.close();
    await proxy?.stop();
    await testDb?.dispose();
    await deleteRedisKeys(keyPrefix);
  });

  const redisCheck = async (): Promise<RedisCheck | undefined> => {
    return checkNamed((await (await fetch(health)).json()) as HealthBody, 'redis');
  };

  test('Degraded while Redis is away, saying what the worker does meanwhile; Healthy once it is back', async () => {
    assert.equal((await redisCheck())?.status, 'Healthy');
    await proxy.pause();
    const away = await redisCheck();
    assert.equal(away?.status, 'Degraded');
    assert.match(away?.description ?? '', /not refreshed in the cache/);
    await proxy.resume();
    await until(async () => (await redisCheck())?.status === 'Healthy', 'Redis back in /health');
  });
});
