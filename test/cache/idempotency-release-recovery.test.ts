// A key freed while Redis was away (its request failed) is freed once Redis is back, not left to its lease.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { openCache } from '../../src/infrastructure/caching/open-cache.ts';
import { silentLogger } from '../support/logger.ts';
import { deleteRedisKeys, needsRedis, REDIS_URL, uniqueName } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';

test(
  'a key whose request failed while Redis was away is free once Redis is back, not "in progress" for its lease',
  await needsRedis(),
  async () => {
    const keyPrefix = `${uniqueName('release_recovery')}:`;
    const target = new URL(REDIS_URL);
    const proxy = await TcpProxy.start(target.hostname, Number(target.port || 6379));
    const cache = await openCache(
      {
        redisUrl: `redis://127.0.0.1:${proxy.port}`,
        keyPrefix,
        ttlSeconds: 60,
        registry: new Registry(),
        halfOpenAfterMs: 300,
      },
      silentLogger,
    );
    try {
      const store = cache.idempotency;
      assert.equal(await store.begin('key', 'fingerprint', 30_000), undefined);
      await proxy.pause();
      await assert.rejects(store.release('key', { fingerprint: 'fingerprint', leaseMs: 30_000 }));
      await proxy.resume();
      // Recovery takes a reconnection and a PING; the lease (30 s) is far longer.
      let held: unknown = 'Redis not back';
      for (let attempt = 0; held !== undefined && attempt < 50; attempt++) {
        await sleep(100);
        held = await store.begin('key', 'fingerprint', 30_000).catch(() => 'Redis not back');
      }
      assert.equal(held, undefined, `still held: ${JSON.stringify(held)}`);
    } finally {
      await cache.close();
      await proxy.stop();
      await deleteRedisKeys(keyPrefix);
    }
  },
);
