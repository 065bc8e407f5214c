// The invalidation bus on Redis: what an instance takes from the messages other instances publish.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { InvalidationBus } from '../../src/infrastructure/caching/invalidation-bus.ts';
import { CacheConnection } from '../../src/infrastructure/caching/redis-cache-connection.ts';
import { silentLogger } from '../support/logger.ts';
import { REDIS_URL, needsRedis, uniqueName } from '../support/services.ts';
import { until } from '../support/until.ts';

describe('invalidation bus (Redis)', await needsRedis(), () => {
  const channel = uniqueName('tbe_invalidations');
  const connection = new CacheConnection(REDIS_URL, silentLogger);
  const bus = new InvalidationBus(
    connection,
    { channel, derivedKey: (group) => `${channel}:${group}` },
    silentLogger,
  );
  const publisher = new Redis(REDIS_URL);
  after(async () => {
    publisher.disconnect();
    await connection.close();
  });

  test("an older instance's message (no version, no origin), as in a rolling upgrade, still invalidates", async () => {
    await bus.ready();
    await publisher.publish(channel, '1000 student-old');
    await until(() => bus.invalidatedAt('student-old') === 1000, 'the old message heard');
    assert.equal(bus.newestVersion('student-old'), 0);
  });

  test('a version that does not parse counts as none, and a later one is still taken', async () => {
    await bus.ready();
    await publisher.publish(channel, '1000 x other-instance student-bad');
    await until(() => bus.invalidatedAt('student-bad') === 1000, 'the message heard');
    assert.equal(bus.newestVersion('student-bad'), 0);
    await publisher.publish(channel, '2000 9 other-instance student-bad');
    await until(() => bus.newestVersion('student-bad') === 9, 'version 9 heard');
  });
});
