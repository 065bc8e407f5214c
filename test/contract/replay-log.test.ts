// One contract for both replay log adapters: the in-memory ring (embedded) and the Redis stream.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import {
  EMPTY_LOG_ID,
  NotLogWriterError,
  compareLogIds,
  laterLogId,
  type NewReplayLogEntry,
  type ReplayLog,
  type ReplayLogEntry,
  type ReplayLogTail,
  type ReplayLogTailListener,
} from '../../src/application/ports/replay-log.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { RedisStreamReplayLog } from '../../src/infrastructure/replay-log/redis-stream-replay-log.ts';
import { silentLogger } from '../support/logger.ts';
import { REDIS_URL, deleteRedisKeys, needsRedis, uniqueName } from '../support/services.ts';
import { until } from '../support/until.ts';

const WRITER = 'writer-a';

function entry(n: number, subject = 'student-1'): NewReplayLogEntry {
  return { messageId: randomUUID(), type: 'StudentCreated', subject, data: JSON.stringify({ n }) };
}

/** A tail listener collecting entries, for tails that must miss nothing. */
function tailInto(seen: ReplayLogEntry[]): ReplayLogTailListener {
  return {
    entries: (entries) => void seen.push(...entries),
    missed: (retention) => assert.fail(`the tail missed entries through ${retention.trimmedThrough}`),
  };
}

function replayLogContract(open: (maxEntries: number) => Promise<ReplayLog>) {
  const opened: ReplayLog[] = [];
  const writable = async (maxEntries = 1_000) => {
    const log = await open(maxEntries);
    opened.push(log);
    assert.equal(await log.claimWriter(WRITER, 30_000), true);
    return log;
  };
  after(() => Promise.all(opened.map((log) => log.close())));

  test('appends get increasing ids and are read back after an id, in order, paged by limit', async () => {
    const log = await writable();
    const ids: string[] = [];
    for (let n = 0; n < 7; n++) ids.push((await log.append(entry(n), WRITER)).id);
    const sorted = [...ids].sort(compareLogIds);
    assert.deepEqual(ids, sorted);
    assert.equal(new Set(ids).size, 7);

    const firstPage = await log.readAfter('0-0', 3);
    assert.deepEqual(
      firstPage.map((e) => JSON.parse(e.data) as { n: number }),
      [{ n: 0 }, { n: 1 }, { n: 2 }],
    );
    const rest = await log.readAfter(firstPage.at(-1)?.id ?? '', 100);
    assert.deepEqual(
      rest.map((e) => e.id),
      ids.slice(3),
    );
    assert.deepEqual(await log.readAfter(ids.at(-1) ?? '', 10), []);
    const [one] = await log.readAfter(ids[4] ?? '', 1);
    assert.equal(one?.type, 'StudentCreated');
    assert.equal(one?.subject, 'student-1');
  });

  test('an entry keeps the trace context it was appended in, read back and tailed; without one it has none', async () => {
    const log = await writable();
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const tailed: ReplayLogEntry[] = [];
    const { lastId, trimmedThrough } = await log.retention();
    const tail = log.tail(laterLogId(lastId, trimmedThrough), tailInto(tailed));
    try {
      await log.append({ ...entry(1), traceparent }, WRITER);
      await log.append(entry(2), WRITER);
      const [traced, untraced] = await log.readAfter('0-0', 10);
      assert.equal(traced?.traceparent, traceparent);
      assert.equal(untraced?.traceparent, undefined);
      assert.equal('traceparent' in (untraced ?? {}), false);
      await until(() => tailed.length === 2, 'both entries tailed');
      assert.deepEqual(
        tailed.map((e) => e.traceparent),
        [traceparent, undefined],
      );
    } finally {
      await tail.close();
    }
  });

  test('an entry appended twice for the same message id is stored once and returns the first id', async () => {
    const log = await writable();
    const first = entry(1);
    const appended = await log.append(first, WRITER);
    await log.append(entry(2), WRITER);
    const again = await log.append(first, WRITER);
    assert.deepEqual(again, { id: appended.id, duplicate: true });
    assert.equal(appended.duplicate, false);
    assert.equal((await log.readAfter('0-0', 100)).length, 2);
  });

  test('the last twice-the-log message ids are de-duplicated; older ones are forgotten, so what is remembered stays bounded', async () => {
    const log = await writable(5);
    const appended = Array.from({ length: 25 }, (_, n) => entry(n));
    for (const each of appended) assert.equal((await log.append(each, WRITER)).duplicate, false);
    for (const recent of appended.slice(-10))
      assert.equal((await log.append(recent, WRITER)).duplicate, true, `message ${recent.data} again`);
    // Remembered for a day, every notification's id outgrew the log it guards (Redis grew by a key per notification).
    assert.equal((await log.append(appended[0]!, WRITER)).duplicate, false, 'the oldest id is forgotten');
  });

  test('only the holder of the writer lease appends; a released lease can be taken by another writer', async () => {
    const log = await writable();
    assert.equal(await log.claimWriter('writer-b', 30_000), false);
    await assert.rejects(log.append(entry(1), 'writer-b'), NotLogWriterError);
    assert.equal(await log.claimWriter(WRITER, 30_000), true, 'the holder renews');
    await log.releaseWriter('writer-b'); // not the holder: no effect
    assert.equal(await log.claimWriter('writer-b', 30_000), false);
    await log.releaseWriter(WRITER);
    assert.equal(await log.claimWriter('writer-b', 30_000), true);
    await assert.rejects(log.append(entry(2), WRITER), NotLogWriterError);
    await log.append(entry(3), 'writer-b');
  });

  test('retention keeps the newest entries and names the last trimmed id', async () => {
    const log = await writable(5);
    const empty = await log.retention();
    assert.equal(empty.length, 0);
    assert.equal(empty.lastId, '0-0');
    assert.equal(empty.firstId, undefined);
    const ids: string[] = [];
    for (let n = 0; n < 8; n++) ids.push((await log.append(entry(n), WRITER)).id);
    const retention = await log.retention();
    assert.equal(retention.length, 5);
    assert.equal(retention.firstId, ids[3]);
    assert.equal(retention.lastId, ids[7]);
    assert.equal(retention.trimmedThrough, ids[2]);
    assert.deepEqual(
      (await log.readAfter('0-0', 100)).map((e) => e.id),
      ids.slice(3),
    );
  });

  test('a new log names where it begins: an id an earlier log gave out is older than trimmedThrough', async () => {
    const earlier = `${Date.now() - 1}-5`;
    const log = await writable();
    const first = (await log.append(entry(1), WRITER)).id;
    const { trimmedThrough } = await log.retention();
    assert.ok(compareLogIds(earlier, trimmedThrough) < 0, `${earlier} is older than ${trimmedThrough}`);
    assert.ok(compareLogIds(first, trimmedThrough) >= 0, 'a reader of the first entry missed nothing');
  });

  test("a reader given the empty log's position misses nothing: the first entry follows it, not older than the log", async () => {
    const log = await writable();
    const empty = await log.retention();
    const position = laterLogId(empty.lastId, empty.trimmedThrough);
    const first = (await log.append(entry(1), WRITER)).id;
    const { trimmedThrough } = await log.retention();
    assert.ok(
      compareLogIds(position, trimmedThrough) >= 0,
      `${position} is not older than ${trimmedThrough}`,
    );
    assert.deepEqual(
      (await log.readAfter(position, 10)).map((e) => e.id),
      [first],
    );
  });

  test('a tail delivers every entry after its start id once, in order, including ones appended later', async () => {
    const log = await writable();
    const before = (await log.append(entry(0), WRITER)).id;
    const early = (await log.append(entry(1), WRITER)).id;
    const seen: ReplayLogEntry[] = [];
    const tail = log.tail(before, tailInto(seen));
    try {
      const later: string[] = [];
      for (let n = 2; n < 40; n++) later.push((await log.append(entry(n), WRITER)).id);
      await until(() => seen.length >= 39, '39 tailed entries');
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual(
        seen.map((e) => e.id),
        [early, ...later],
      );
    } finally {
      await tail.close();
    }
    const afterClose = seen.length;
    await log.append(entry(99), WRITER);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(seen.length, afterClose, 'a closed tail gets nothing more');
  });

  test('a tail whose start id the log trimmed is told it missed entries, once, before the entries kept after it', async () => {
    const log = await writable(3);
    const start = (await log.append(entry(0), WRITER)).id;
    const appended: string[] = [];
    for (let n = 1; n <= 5; n++) appended.push((await log.append(entry(n), WRITER)).id);
    const events: string[] = [];
    const tail = log.tail(start, {
      entries: (entries) => void events.push(...entries.map((e) => e.id)),
      missed: (retention) => void events.push(`missed through ${retention.trimmedThrough}`),
    });
    try {
      await until(() => events.length >= 4, 'the gap and the three kept entries');
      const later = (await log.append(entry(6), WRITER)).id;
      await until(() => events.length >= 5, 'the entry appended later');
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual(events, [`missed through ${appended[1]}`, ...appended.slice(2), later]);
    } finally {
      await tail.close();
    }
  });
}

describe('replay log contract: MemoryRingReplayLog', () => {
  replayLogContract(async (maxEntries) => new MemoryRingReplayLog({ maxEntries }));
});

describe('replay log contract: RedisStreamReplayLog', await needsRedis(), () => {
  const prefixes: string[] = [];
  let admin: Redis;
  before(() => {
    admin = new Redis(REDIS_URL);
  });
  after(async () => {
    for (const prefix of prefixes) await deleteRedisKeys(prefix, admin);
    await admin.quit();
  });
  const open = async (maxEntries: number, keyPrefix = `${uniqueName('tbe_replay_test')}:`) => {
    prefixes.push(keyPrefix);
    const log = new RedisStreamReplayLog(
      { url: REDIS_URL, keyPrefix, maxEntries, dedupTtlSeconds: 60, blockMs: 200 },
      silentLogger,
    );
    await log.connected();
    return log;
  };
  replayLogContract((maxEntries) => open(maxEntries));

  test('a stream Redis lost (a restart without persistence) begins again: the old ids are older than it', async () => {
    const keyPrefix = `${uniqueName('tbe_replay_test')}:`;
    const log = await open(1_000, keyPrefix);
    try {
      assert.equal(await log.claimWriter(WRITER, 30_000), true);
      const old: string[] = [];
      for (let n = 0; n < 3; n++) old.push((await log.append(entry(n), WRITER)).id);
      await admin.del(`${keyPrefix}log`);
      // Ids are Redis's clock: a restart takes longer than the millisecond the new ids need to be later.
      await new Promise((resolve) => setTimeout(resolve, 5));
      const first = (await log.append(entry(3), WRITER)).id;
      const retention = await log.retention();
      // It begins before its first entry: a reader told to resume from where it begins gets that entry.
      assert.equal(retention.firstId, first);
      assert.ok(compareLogIds(retention.trimmedThrough, first) < 0, 'begins before its first entry');
      for (const id of old)
        assert.ok(compareLogIds(id, retention.trimmedThrough) < 0, `${id} missed entries`);
    } finally {
      await log.close();
    }
  });

  test('a log restarted with a smaller REPLAY_LOG_MAX_ENTRIES names the newest entry it trimmed, not the oldest', async () => {
    const keyPrefix = `${uniqueName('tbe_replay_test')}:`;
    const larger = await open(10, keyPrefix);
    const ids: string[] = [];
    try {
      assert.equal(await larger.claimWriter(WRITER, 30_000), true);
      for (let n = 0; n < 10; n++) ids.push((await larger.append(entry(n), WRITER)).id);
      await larger.releaseWriter(WRITER);
    } finally {
      await larger.close();
    }
    const smaller = await open(3, keyPrefix);
    try {
      assert.equal(await smaller.claimWriter(WRITER, 30_000), true);
      ids.push((await smaller.append(entry(10), WRITER)).id);
      const retention = await smaller.retention();
      assert.equal(retention.firstId, ids[8]);
      // A reader whose last id is any of the trimmed ones missed entries: it must get `reset`.
      assert.equal(retention.trimmedThrough, ids[7]);
    } finally {
      await smaller.close();
    }
  });

  test('a tail from before a stream Redis lost is told it missed entries once, not at every read while no entry follows', async () => {
    const keyPrefix = `${uniqueName('tbe_replay_test')}:`;
    const log = await open(1_000, keyPrefix);
    const missed: string[] = [];
    const seen: ReplayLogEntry[] = [];
    let tail: ReplayLogTail | undefined;
    try {
      assert.equal(await log.claimWriter(WRITER, 30_000), true);
      const old = (await log.append(entry(0), WRITER)).id;
      await admin.del(`${keyPrefix}log`);
      await new Promise((resolve) => setTimeout(resolve, 5));
      await log.retention(); // the log begins again, empty
      tail = log.tail(old, {
        entries: (entries) => void seen.push(...entries),
        missed: (retention) => void missed.push(retention.trimmedThrough),
      });
      // Several reads (each blocks 200 ms here) find nothing after the gap.
      await new Promise((resolve) => setTimeout(resolve, 1_200));
      assert.equal(missed.length, 1, `told once, not ${missed.length} times`);
      const first = (await log.append(entry(1), WRITER)).id;
      await until(() => seen.length === 1, 'the first entry of the new log');
      assert.deepEqual(
        seen.map(({ id }) => id),
        [first],
      );
      assert.equal(missed.length, 1);
    } finally {
      await tail?.close();
      await log.close();
    }
  });

  test('a Redis that lost its scripts (a restart) still appends, claims and releases the lease', async () => {
    const log = await open(1_000);
    try {
      assert.equal(await log.claimWriter(WRITER, 30_000), true);
      const first = await log.append(entry(0), WRITER);
      // The scripts run by their SHA; a Redis without them answers NOSCRIPT, and the script is sent again.
      await admin.script('FLUSH');
      const second = await log.append(entry(1), WRITER);
      assert.ok(compareLogIds(first.id, second.id) < 0);
      await admin.script('FLUSH');
      await log.releaseWriter(WRITER);
      await admin.script('FLUSH');
      assert.equal(await log.claimWriter('another writer', 30_000), true);
      assert.deepEqual(
        (await log.readAfter(EMPTY_LOG_ID, 10)).map(({ id }) => id),
        [first.id, second.id],
      );
    } finally {
      await log.close();
    }
  });
});
