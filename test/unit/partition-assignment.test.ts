import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Subscription } from '../../src/application/ports/message-bus.ts';
import {
  assignPartitions,
  memberSlotFirstKey,
  ownedPartitions,
  type PartitionAssignment,
} from '../../src/apps/worker/partition-assignment.ts';
import {
  MAX_WORKER_PARTITIONS,
  otherLayoutQueues,
  studentsWorkerQueues,
} from '../../src/contracts/messaging.ts';
import type { Database, Leadership } from '../../src/infrastructure/persistence/database.ts';
import { recordingLogger, silentLogger } from '../support/logger.ts';

describe('ownedPartitions', () => {
  test('alone, a worker owns every partition, whatever its slot', () => {
    assert.deepEqual(ownedPartitions(4, [5], 5), [0, 1, 2, 3]);
    assert.deepEqual(ownedPartitions(4, [], 0), [0, 1, 2, 3]);
  });

  test('the workers split the partitions by rank among the held slots: every partition exactly once', () => {
    for (const slots of [
      [0, 1],
      [3, 9],
      [0, 1, 2],
      [1, 4, 6, 7, 20],
    ]) {
      for (const partitions of [1, 2, 4, 7, 64]) {
        const shares = slots.map((slot) => ownedPartitions(partitions, slots, slot));
        assert.deepEqual(
          shares.flat().sort((a, b) => a - b),
          Array.from({ length: partitions }, (_, p) => p),
          `slots ${slots.join()} over ${partitions}`,
        );
        const sizes = shares.map((share) => share.length);
        assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `even split: ${sizes.join()}`);
      }
    }
    assert.deepEqual(ownedPartitions(4, [2, 7], 2), [0, 2]);
    assert.deepEqual(ownedPartitions(4, [2, 7], 7), [1, 3]);
  });

  test('more workers than partitions: the lowest ranks own one each, the rest none', () => {
    const slots = [0, 1, 2, 3, 4];
    assert.deepEqual(
      slots.map((slot) => ownedPartitions(3, slots, slot)),
      [[0], [1], [2], [], []],
    );
  });

  test('its own slot counts even when the list of held slots missed it', () => {
    assert.deepEqual(ownedPartitions(4, [1], 0), [0, 2]);
  });
});

/**
 * Advisory locks of one database shared by fake processes. Each process gets its own connection (`connect`), which a
 * test can cut: its locks go, and its calls fail until it is back.
 */
function fakeLocks() {
  const holders = new Map<number, { readonly owner: object; readonly lose: () => void }>();
  const held = (first: number, last: number) =>
    [...holders.keys()].filter((key) => key >= first && key <= last).sort((a, b) => a - b);
  const connect = () => {
    const owner = {};
    let down = false;
    const database: Pick<Database, 'tryLead' | 'heldLeadLocks'> = {
      async tryLead(key) {
        if (down) throw new Error('database unreachable');
        if (holders.has(key)) return undefined;
        let markLost!: () => void;
        const lost = new Promise<void>((resolve) => (markLost = resolve));
        const lose = () => {
          if (holders.get(key)?.lose === lose) holders.delete(key);
          markLost();
        };
        holders.set(key, { owner, lose });
        const leadership: Leadership = { lost, listen: async () => {}, release: async () => lose() };
        return leadership;
      },
      async heldLeadLocks(first, last) {
        if (down) throw new Error('database unreachable');
        return held(first, last);
      },
    };
    return {
      database,
      cut() {
        down = true;
        for (const holder of [...holders.values()]) if (holder.owner === owner) holder.lose();
      },
      restore: () => (down = false),
    };
  };
  /** The lock on `key` goes as a failed heartbeat ends it; its connection stays up. */
  const lose = (key: number) => holders.get(key)?.lose();
  return { connect, held, lose };
}

/**
 * A worker's assignment over the fake locks, recording which partitions it is subscribed to; the subscriptions of
 * `waiting` wait for the broker.
 */
function member(
  database: Pick<Database, 'tryLead' | 'heldLeadLocks'>,
  partitions = 4,
  rebalanceEveryMs = 10,
) {
  const subscribed = new Set<number>();
  const waiting = new Set<number>();
  const assignment: PartitionAssignment = assignPartitions({
    database,
    partitions,
    logger: silentLogger,
    rebalanceEveryMs,
    subscribe: async (partition) => {
      assert.ok(!subscribed.has(partition), `subscribed twice to ${partition}`);
      subscribed.add(partition);
      const subscription: Subscription = {
        get waitingForBroker() {
          return waiting.has(partition);
        },
        close: async () => {
          subscribed.delete(partition);
          return 0;
        },
      };
      return subscription;
    },
  });
  return { assignment, waiting, subscribed: () => [...subscribed].sort((a, b) => a - b) };
}

async function eventually(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('assignPartitions', () => {
  test('a second worker takes half the partitions from the first; when it stops, the first takes them back', async () => {
    const locks = fakeLocks();
    const first = member(locks.connect().database);
    await first.assignment.start();
    assert.deepEqual(first.subscribed(), [0, 1, 2, 3]);
    assert.deepEqual(first.assignment.status(), { slot: 0, members: 1, owned: [0, 1, 2, 3], waiting: [] });

    const second = member(locks.connect().database);
    await second.assignment.start();
    assert.deepEqual(second.subscribed(), [1, 3]);
    await eventually('the first hands 1 and 3 over', () => first.subscribed().join() === '0,2');
    assert.deepEqual(second.assignment.status(), { slot: 1, members: 2, owned: [1, 3], waiting: [] });

    await second.assignment.stop();
    assert.deepEqual(second.subscribed(), []);
    await eventually('the first owns all again', () => first.subscribed().join() === '0,1,2,3');
    await first.assignment.stop();
    assert.deepEqual(first.subscribed(), []);
    assert.deepEqual(locks.held(memberSlotFirstKey(4), memberSlotFirstKey(4) + 63), []);
  });

  test('a worker of another layout (WORKER_PARTITIONS changed by a rolling restart) leaves no partition without a consumer', async () => {
    const locks = fakeLocks();
    const a = member(locks.connect().database, 4);
    const b = member(locks.connect().database, 4);
    await a.assignment.start();
    await b.assignment.start();
    await eventually('the two share the four out', () => a.subscribed().length === 2);
    // The third worker, restarted with WORKER_PARTITIONS=2, must not be counted as owning a share of the 4-layout.
    const other = member(locks.connect().database, 2);
    await other.assignment.start();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(
      [...a.subscribed(), ...b.subscribed()].sort((x, y) => x - y),
      [0, 1, 2, 3],
      `4-layout workers own ${a.subscribed().join()} and ${b.subscribed().join()}`,
    );
    assert.deepEqual(other.subscribed(), [0, 1]);
    for (const worker of [a, b, other]) await worker.assignment.stop();
  });

  test('a worker that lost its slot keeps its partitions and takes no others until it holds a slot again', async () => {
    const locks = fakeLocks();
    const firstConnection = locks.connect();
    const first = member(firstConnection.database);
    const second = member(locks.connect().database);
    await first.assignment.start();
    await second.assignment.start();
    await eventually('they split', () => first.subscribed().join() === '0,2');

    firstConnection.cut();
    await eventually('the first knows it has no slot', () => first.assignment.status().slot === undefined);
    // The second now sees one member and subscribes to everything; on 0 and 2 the queues' single active consumer
    // keeps it waiting behind the first.
    await eventually('the second takes all', () => second.subscribed().join() === '0,1,2,3');
    await new Promise((resolve) => setTimeout(resolve, 50)); // several rounds of the first, failing
    assert.deepEqual(first.assignment.status(), {
      slot: undefined,
      members: undefined,
      owned: [0, 2],
      waiting: [],
    });

    firstConnection.restore();
    await eventually('the first holds a slot again', () => first.assignment.status().slot === 0);
    await eventually('the second gives 0 and 2 back', () => second.subscribed().join() === '1,3');
    assert.deepEqual(first.subscribed(), [0, 2]);
    await Promise.all([first.assignment.stop(), second.assignment.stop()]);
  });

  test('its status names the owned partitions whose subscription waits for the broker', async () => {
    const worker = member(fakeLocks().connect().database);
    await worker.assignment.start();
    worker.waiting.add(1).add(3);
    assert.deepEqual(worker.assignment.status(), {
      slot: 0,
      members: 1,
      owned: [0, 1, 2, 3],
      waiting: [1, 3],
    });
    worker.waiting.clear();
    assert.deepEqual(worker.assignment.status().waiting, []);
    await worker.assignment.stop();
  });

  test('a slot lost while a look reads the held slots is no failure: the worker takes one again', async () => {
    // As after a SIGSTOP longer than the slot session's idle timeout: on SIGCONT the overdue look queries pg_locks
    // while the slot session's end arrives.
    const locks = fakeLocks();
    const { database } = locks.connect();
    let loseDuringLook = false;
    const racing: Pick<Database, 'tryLead' | 'heldLeadLocks'> = {
      tryLead: (key) => database.tryLead(key),
      async heldLeadLocks(first, last) {
        const held = await database.heldLeadLocks(first, last);
        if (loseDuringLook) {
          loseDuringLook = false;
          locks.lose(memberSlotFirstKey(4));
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
        return held;
      },
    };
    const { logger, logged } = recordingLogger();
    const assignment = assignPartitions({
      database: racing,
      partitions: 4,
      logger,
      rebalanceEveryMs: 10,
      subscribe: async () => ({ waitingForBroker: false, close: async () => 0 }),
    });
    await assignment.start();
    loseDuringLook = true;
    await eventually('the slot was lost during a look', () => !loseDuringLook);
    await eventually('it holds a slot again', () => assignment.status().slot !== undefined);
    await new Promise((resolve) => setTimeout(resolve, 30));
    await assignment.stop();
    assert.doesNotMatch(logged(), /partition assignment failed/);
  });

  test('a worker whose slot is lost takes one again at once, not at its next regular look', async () => {
    const locks = fakeLocks();
    const worker = member(locks.connect().database, 4, 60_000);
    await worker.assignment.start();
    assert.deepEqual(worker.assignment.status(), { slot: 0, members: 1, owned: [0, 1, 2, 3], waiting: [] });

    locks.lose(memberSlotFirstKey(4));
    await eventually(
      'it holds a slot again',
      () => locks.held(memberSlotFirstKey(4), memberSlotFirstKey(4) + 63).length === 1,
    );
    assert.deepEqual(worker.assignment.status(), { slot: 0, members: 1, owned: [0, 1, 2, 3], waiting: [] });
    await worker.assignment.stop();
  });

  test('with more workers than partitions the extra one owns none, and takes over when another stops', async () => {
    const locks = fakeLocks();
    const workers = [member(locks.connect().database, 2), member(locks.connect().database, 2)];
    for (const worker of workers) await worker.assignment.start();
    const spare = member(locks.connect().database, 2);
    await spare.assignment.start();
    await eventually('the first two split', () => workers[0]!.subscribed().join() === '0');
    assert.deepEqual(spare.assignment.status(), { slot: 2, members: 3, owned: [], waiting: [] });

    await workers[0]!.assignment.stop();
    await eventually(
      'partition 0 moves on',
      () => workers[1]!.subscribed().join() === '0' && spare.subscribed().join() === '1',
    );
    await Promise.all([workers[1]!.assignment.stop(), spare.assignment.stop()]);
  });
});

describe('otherLayoutQueues', () => {
  test('names, for every other layout with a queue this one lacks, one of those queues', () => {
    const layouts = Array.from({ length: MAX_WORKER_PARTITIONS }, (_, index) => index + 1);
    for (const partitions of layouts) {
      const own = new Set(studentsWorkerQueues(partitions));
      const watched = otherLayoutQueues(partitions);
      assert.ok(
        watched.every((queue) => !own.has(queue)),
        `${partitions}: none of its own`,
      );
      for (const other of layouts.filter((n) => studentsWorkerQueues(n).some((queue) => !own.has(queue))))
        assert.ok(
          studentsWorkerQueues(other).some((queue) => watched.includes(queue)),
          `${partitions} sees layout ${other}`,
        );
    }
  });
});
