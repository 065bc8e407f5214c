// Cache writes that land late (after a newer version, or after the delete) never leave an older student cached:
// instances on one Redis, each with its own L1, as the webapi and the worker are; and the embedded (memory) cache.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, mock, test } from 'node:test';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import type { StudentSnapshot } from '../../src/domain/student.ts';
import { openCache, type Cache } from '../../src/infrastructure/caching/open-cache.ts';
import { orderedNow } from '../../src/infrastructure/caching/ordered-now.ts';
import { VersionFence } from '../../src/infrastructure/caching/version-fence.ts';
import { silentLogger } from '../support/logger.ts';
import { REDIS_URL, deleteRedisKeys, needsRedis, uniqueName } from '../support/services.ts';
import { until } from '../support/until.ts';

function student(id: string, version: number): StudentSnapshot {
  return {
    id,
    firstName: 'Ada',
    lastName: `Version ${version}`,
    email: 'ada@example.com',
    updates: version - 1,
    created: new Date('2026-12-01T00:00:00Z'),
    createdBy: 'anonymous',
    lastModified: version > 1 ? new Date('2026-12-02T00:00:00Z') : null,
    lastModifiedBy: version > 1 ? 'worker' : null,
    version,
  };
}

/** What `cache` serves for `id`, and whether it had to ask the database (whose row is `row`). */
async function read(cache: Cache, id: string, row: StudentSnapshot | undefined) {
  let loaded = false;
  const cached = await cache.students.getOrLoad(id, async () => {
    loaded = true;
    return row;
  });
  return { version: cached?.version, loaded };
}

function lateWriteContract(
  open: () => Promise<{ writer: Cache; lateWriter: Cache; reader: () => Promise<Cache> }>,
) {
  test("a create's entry that lands after the worker's update is not cached over it", async () => {
    const { writer, lateWriter, reader } = await open();
    const id = randomUUID();
    await writer.students.set(student(id, 2));
    await lateWriter.students.add(student(id, 1));
    // From the cache, or from the database once the late entry (and what it overwrote) is dropped.
    for (const cache of [writer, lateWriter, await reader()])
      assert.equal((await read(cache, id, student(id, 2))).version, 2);
  });

  test('an update that lands after the delete does not bring the student back', async () => {
    const { writer, lateWriter, reader } = await open();
    const id = randomUUID();
    await writer.students.add(student(id, 1));
    await writer.students.evict(id);
    await lateWriter.students.set(student(id, 2));
    for (const cache of [writer, lateWriter, await reader()])
      assert.deepEqual(await read(cache, id, undefined), { version: undefined, loaded: true });
  });

  test('a load that read the row before an update is not served after it', async () => {
    const { writer, lateWriter, reader } = await open();
    const id = randomUUID();
    let rowBeforeTheUpdate = true;
    // The load reads version 1; the update commits and writes version 2 before the load's result is cached.
    const loadedEarly = await lateWriter.students.getOrLoad(id, async () => {
      await writer.students.set(student(id, 2));
      rowBeforeTheUpdate = false;
      return student(id, 1);
    });
    assert.equal(loadedEarly?.version, 1, 'the load itself answers with what it read');
    assert.equal(rowBeforeTheUpdate, false);
    for (const cache of [lateWriter, writer, await reader()])
      assert.equal((await read(cache, id, student(id, 2))).version, 2);
  });
}

describe('late cache writes on Redis (two writers, a reader started afterwards)', await needsRedis(), () => {
  const keyPrefix = `${uniqueName('tbe_late_writes')}:student:`;
  const opened: Cache[] = [];
  const openOne = async () => {
    const cache = await openCache(
      { redisUrl: REDIS_URL, keyPrefix, ttlSeconds: 900, registry: new Registry() },
      silentLogger,
    );
    opened.push(cache);
    return cache;
  };
  after(async () => {
    await Promise.all(opened.map((cache) => cache.close()));
    await deleteRedisKeys(keyPrefix);
  });

  lateWriteContract(async () => ({ writer: await openOne(), lateWriter: await openOne(), reader: openOne }));

  test('an update that lands late leaves the newer version in Redis; a process started afterwards loads it once, then serves its own entry', async () => {
    const writer = await openOne();
    const lateWriter = await openOne();
    const id = randomUUID();
    await writer.students.set(student(id, 3));
    await lateWriter.students.set(student(id, 2));
    // What Redis holds is the newer version.
    const redis = new Redis(REDIS_URL);
    try {
      assert.match((await redis.get(`${keyPrefix}${id}`)) ?? '', /Version 3/);
    } finally {
      redis.disconnect();
    }
    // A process started after the writes loads once (it cannot tell what a writer that died while Redis was away
    // left behind, nor whether Redis came back from its append-only file), then serves the entry it wrote.
    const reader = await openOne();
    assert.deepEqual(await read(reader, id, student(id, 3)), { version: 3, loaded: true });
    assert.deepEqual(await read(reader, id, student(id, 3)), { version: 3, loaded: false });
  });

  test("an update that lands late, its instant taken after the newer one's, is not served while it waits to be dropped", async () => {
    const reader = await openOne();
    const writer = await openOne();
    const lateWriter = await openOne();
    const id = randomUUID();
    await read(reader, id, student(id, 1));
    // The worker's version 1 passes the fence before the webapi's version 2, which took its instant first; version
    // 1's entry then overwrites version 2's, and waits, looking at the fence, to be dropped.
    const gate = () => {
      let open = () => {};
      const opened = new Promise<void>((resolve) => (open = resolve));
      return { opened, open };
    };
    const newerMayAdvance = gate();
    const lateMayWrite = gate();
    const lateMayLook = gate();
    const lateLooking = gate();
    const advance = VersionFence.prototype.advance;
    const newest = VersionFence.prototype.newest;
    let lookingLate = false;
    mock.method(
      VersionFence.prototype,
      'advance',
      async function (this: VersionFence, key: string, version: number) {
        if (version === 2) await newerMayAdvance.opened;
        const answer = await advance.call(this, key, version);
        if (version === 1) {
          newerMayAdvance.open();
          await lateMayWrite.opened;
          lookingLate = true;
        }
        return answer;
      },
    );
    mock.method(VersionFence.prototype, 'newest', async function (this: VersionFence, key: string) {
      if (lookingLate) {
        lookingLate = false;
        lateLooking.open();
        await lateMayLook.opened;
      }
      return newest.call(this, key);
    });
    try {
      const before = orderedNow();
      // Each takes its instant as it is called: the newer write first.
      const newer = writer.students.set(student(id, 2));
      const late = lateWriter.students.set(student(id, 1));
      await newer;
      await until(() => !reader.responses.isCurrent(id, before), 'the reader hears of version 2');
      lateMayWrite.open();
      await lateLooking.opened;
      assert.equal(
        (await read(reader, id, student(id, 2))).version,
        2,
        'the late entry is older than version 2',
      );
      lateMayLook.open();
      await late;
    } finally {
      mock.restoreAll();
      lateMayWrite.open();
      lateMayLook.open();
    }
  });

  test('a process started after a write whose eviction never reached Redis (its writer stopped while Redis was away, or Redis came back from its append-only file) reads the write', async () => {
    const writer = await openOne();
    const id = randomUUID();
    await writer.students.set(student(id, 1));
    // Version 2 is in the database; the eviction that would have dropped version 1 from Redis was lost.
    const reader = await openOne();
    assert.deepEqual(await read(reader, id, student(id, 2)), { version: 2, loaded: true });
  });
});

describe('late cache writes in the embedded (memory) cache', () => {
  const opened: Cache[] = [];
  after(() => Promise.all(opened.map((cache) => cache.close())));

  lateWriteContract(async () => {
    const cache = await openCache(
      { redisUrl: 'memory:', keyPrefix: 'student:', ttlSeconds: 900, registry: new Registry() },
      silentLogger,
    );
    opened.push(cache);
    return { writer: cache, lateWriter: cache, reader: async () => cache };
  });

  test('a deleted student stays deleted after the instance has heard of more writes than it remembers', async () => {
    const cache = await openCache(
      { redisUrl: 'memory:', keyPrefix: 'student:', ttlSeconds: 900, registry: new Registry() },
      silentLogger,
    );
    opened.push(cache);
    const id = randomUUID();
    await cache.students.add(student(id, 1));
    assert.deepEqual(await read(cache, id, student(id, 1)), { version: 1, loaded: false }, 'cached');
    await cache.students.evict(id);
    // The invalidations it remembers (10,000 students) no longer hold the delete: the entry itself must be gone.
    for (let other = 0; other <= 10_000; other++) await cache.students.invalidate(randomUUID());
    assert.deepEqual(await read(cache, id, undefined), { version: undefined, loaded: true });
  });
});
