// The invalidation bus on Redis: what an instance takes from the messages other instances publish.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
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
  before(() => connection.connected());
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
  test('an older instance, reading everything after the first space as the group, hears the right group', async () => {
    await bus.ready();
    // As releases before versions in messages read them (6e52642 and before: invalidation-bus.ts, the 'message' listener).
    const older = new Redis(REDIS_URL);
    const heard: { group: string; at: number }[] = [];
    older.on('message', (_channel: string, message: string) => {
      const separator = message.indexOf(' ');
      heard.push({ group: message.slice(separator + 1), at: Number(message.slice(0, separator)) });
    });
    try {
      await older.subscribe(channel);
      await bus.invalidate('student-rolling', 5000, 7);
      await until(() => heard.length > 0, 'the older instance heard the invalidation');
      assert.deepEqual(heard, [{ group: 'student-rolling', at: 5000 }]);
    } finally {
      older.disconnect();
    }
  });

  /** A second instance's bus on the same channel, closed after the suite. */
  async function anotherInstance(): Promise<InvalidationBus> {
    const itsConnection = new CacheConnection(REDIS_URL, silentLogger);
    after(() => itsConnection.close());
    const other = new InvalidationBus(
      itsConnection,
      { channel, derivedKey: (group) => `${channel}:${group}` },
      silentLogger,
    );
    // Publishing needs the command connection, which comes up apart from the subscriber.
    await Promise.all([itsConnection.connected(), other.ready()]);
    return other;
  }

  test("a newer instance's message is heard once, not again as its copy for older instances; its own not at all", async () => {
    await bus.ready();
    const other = await anotherInstance();
    const before = bus.mark();
    await other.invalidate('student-twice', 6000, 3);
    await until(() => bus.newestVersion('student-twice') === 3, 'the message heard');
    await bus.invalidate('student-own', 6100, 4); // heard here at once (mark + 1), then echoed on both channels
    await publisher.publish(channel, '6200 student-marker'); // after both echoes: once heard, they were too
    await until(() => bus.invalidatedAt('student-marker') === 6200, 'the marker heard');
    assert.equal(bus.mark() - before, 3, 'the other instance, our own, the marker: once each');
  });

  test("an older instance's write of the same group in the same millisecond as a newer one's is still heard", async () => {
    await bus.ready();
    const other = await anotherInstance();
    await other.invalidate('student-same-ms', 7000, 2); // a newer instance's write: its message and its copy
    await until(() => bus.newestVersion('student-same-ms') === 2, 'the message heard');
    const mark = bus.mark(); // a read starts, after that write was heard
    // An older instance (a rolling upgrade) writes the same student, its instant the same millisecond.
    await publisher.publish(channel, '7000 student-same-ms');
    await publisher.publish(channel, '7100 student-marker-2');
    await until(() => bus.invalidatedAt('student-marker-2') === 7100, 'the marker heard');
    assert.equal(bus.heardSince('student-same-ms', mark), true, "the older instance's write was heard");
  });
});
