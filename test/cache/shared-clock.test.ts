// Instances compare each other's instants (a cache entry's, an invalidation's, a stored response's expiry): they
// must all be taken on one clock, Redis's, whatever the host's own clock says. A host whose clock is 30 s ahead
// (a VM resumed from a pause, NTP not yet caught up) stamps as the others do once its cache is connected, and a step
// of its clock later is followed at the next ping round.
import assert from 'node:assert/strict';
import { after, describe, mock, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { orderedNow, sharedNow } from '../../src/infrastructure/caching/ordered-now.ts';
import { CacheConnection } from '../../src/infrastructure/caching/redis-cache-connection.ts';
import { silentLogger } from '../support/logger.ts';
import { needsRedis, REDIS_URL } from '../support/services.ts';

/** Far more than a round trip to Redis here, far less than the skews below. */
const TOLERANCE_MS = 250;

describe('instants on the shared clock', await needsRedis(), () => {
  const realNow = Date.now.bind(Date);
  let skewMs = 0;
  mock.method(Date, 'now', () => realNow() + skewMs);
  const redis = new Redis(REDIS_URL);
  const connections: CacheConnection[] = [];
  after(async () => {
    mock.restoreAll();
    redis.disconnect();
    await Promise.all(connections.map((connection) => connection.close()));
  });

  const redisNow = async () => {
    const [seconds, microseconds] = await redis.time();
    return Number(seconds) * 1_000 + Number(microseconds) / 1_000;
  };

  const assertOnRedisClock = async (what: string) => {
    const before = await redisNow();
    const shared = sharedNow();
    const ordered = orderedNow();
    const afterwards = await redisNow();
    for (const [name, instant] of [
      ['sharedNow', shared],
      ['orderedNow', ordered],
    ] as const)
      assert.ok(
        instant >= before - TOLERANCE_MS && instant <= afterwards + TOLERANCE_MS,
        `${what}: ${name}() is ${Math.round(instant - afterwards)} ms off Redis's clock`,
      );
  };

  test("a host clock that agrees with Redis's is kept as it is, not moved by a measurement's noise", async () => {
    skewMs = 0;
    const connection = new CacheConnection(REDIS_URL, silentLogger, { pingIntervalMs: 20 });
    connections.push(connection);
    await connection.connected();
    // Several ping rounds, each one more measurement.
    await sleep(300);
    // The same reading, unless a millisecond ends between the two calls: a few tries.
    const same = Array.from({ length: 5 }, () => sharedNow() === Date.now());
    assert.ok(same.some(Boolean), `sharedNow() is ${sharedNow() - Date.now()} ms off the host clock`);
  });

  test('a host clock 30 s ahead stamps on Redis clock once connected', async () => {
    skewMs = 30_000;
    const connection = new CacheConnection(REDIS_URL, silentLogger, { pingIntervalMs: 100 });
    connections.push(connection);
    await connection.connected();
    await assertOnRedisClock('host 30 s ahead');
    assert.ok(connection.staleBefore <= orderedNow(), 'staleBefore is on the shared clock too');
  });

  test('a later step of the host clock (30 s back) is followed at the next ping round', async () => {
    skewMs = -30_000;
    await sleep(500);
    await assertOnRedisClock('host stepped 30 s back');
  });
});
