// WORKER_PARTITIONS=4 with two worker processes on real PostgreSQL and RabbitMQ: the partitions are shared out,
// every event is processed once and in its student's order, and a killed worker's partitions move to the other.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { updateStudent } from '../../src/application/students/update-student.ts';
import type { StudentSnapshot } from '../../src/domain/student.ts';
import type { Database } from '../../src/infrastructure/persistence/database.ts';
import { SqlUnitOfWork } from '../../src/infrastructure/persistence/sql-unit-of-work.ts';
import { fakerStudentGenerator } from '../../src/infrastructure/system/faker-student-generator.ts';
import { systemClock } from '../../src/infrastructure/system/system-clock.ts';
import { uuidV7Generator } from '../../src/infrastructure/system/uuid-v7-generator.ts';
import { openTestDatabase, studentsTableLock, type TestDatabase } from '../support/databases.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { parseExposition } from '../support/prometheus-text.ts';
import { createTestVhost, type TestVhost } from '../support/rabbitmq-vhost.ts';
import { startRole, type RoleProcess } from '../support/role-process.ts';
import { needsPostgres, needsRabbitMq } from '../support/services.ts';
import { addStudent, eventually, notificationsOf, updatesOf } from './worker-harness.ts';

const servers = [await needsPostgres(), await needsRabbitMq()].find((requirement) => requirement.skip) ?? {};

interface PartitionsHealth {
  readonly count: number;
  readonly slot?: number;
  readonly members?: number;
  readonly owned: number[];
}

async function partitionsOf(worker: RoleProcess): Promise<PartitionsHealth> {
  const body = (await (await fetch(`${worker.url}/health`)).json()) as HealthBody;
  const consumer = checkNamed<{ partitions: PartitionsHealth }>(body, 'consumer');
  assert.ok(consumer, 'a consumer check');
  return consumer.data.partitions;
}

async function metricOf(worker: RoleProcess, name: string, labels?: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${worker.url}/metrics`)).text();
  return parseExposition(text).value(name, labels) ?? 0;
}

const processedBy = (worker: RoleProcess) =>
  metricOf(worker, 'worker_messages_total', { outcome: 'processed' });

describe('two workers over four partition queues', servers, () => {
  let database: TestDatabase;
  let vhost: TestVhost;
  const workers: RoleProcess[] = [];
  const startWorker = async (env: Record<string, string> = {}) => {
    const worker = await startRole('src/apps/worker/main.ts', {
      DATABASE_URL: database.url,
      AMQP_URL: vhost.url,
      WORKER_PORT: '0',
      WORKER_PARTITIONS: '4',
      ...env,
    });
    workers.push(worker);
    return worker;
  };

  before(async () => {
    [database, vhost] = await Promise.all([
      openTestDatabase('postgres'),
      createTestVhost('worker_partitions'),
    ]);
  });
  after(async () => {
    await Promise.all(workers.map((worker) => worker.kill()));
    await Promise.all([database?.dispose(), vhost?.delete()]);
  });

  /**
   * `students` new students (each one StudentCreated, by alice), then `rounds` updates of each, update r by actor
   * `round-r`, written as the webapi writes them (the workers' relay publishes the outbox rows). One student's
   * updates follow each other, so its events sit side by side in its queue, where any overtaking would show.
   */
  async function write(students: number, rounds: number, pauseMs = 0) {
    const update = updateStudent({
      unitOfWork: new SqlUnitOfWork(database.database, uuidV7Generator),
      ids: uuidV7Generator,
      clock: systemClock,
      generator: fakerStudentGenerator,
    });
    const all = await Promise.all(Array.from({ length: students }, () => addStudent(database.database)));
    await Promise.all(
      all.map(async (student) => {
        for (let round = 1; round <= rounds; round++) {
          const updated = await update({ id: student.id, details: {}, actor: `round-${round}` });
          assert.ok(updated.ok);
          if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
        }
      }),
    );
    return all;
  }

  /**
   * Each student's events processed exactly once and in the order written: its notifications (in outbox order) are
   * Created + Cached by alice, then Updated + Cached by round-1, round-2, …, with `updates` counting up. A skipped,
   * repeated or reordered event would show here.
   */
  async function assertProcessedOnceInOrder(
    db: Database,
    students: readonly StudentSnapshot[],
    rounds: number,
  ) {
    await eventually(
      'every event is processed',
      async () =>
        [
          ...(
            await updatesOf(
              db,
              students.map((s) => s.id),
            )
          ).values(),
        ].every((n) => n === rounds + 1),
      120_000,
    );
    const expected = [
      ['StudentCreated', 'alice', 1],
      ['StudentCached', 'alice', 1],
      ...Array.from({ length: rounds }, (_, r) => [
        ['StudentUpdated', `round-${r + 1}`, r + 2],
        ['StudentCached', `round-${r + 1}`, r + 2],
      ]).flat(),
    ];
    for (const student of students) {
      const sent = await notificationsOf(db, student.id);
      assert.deepEqual(
        sent.map((n) => [n.type, n.payload.userId, n.payload.student.updates]),
        expected,
        `student ${student.id}`,
      );
    }
    const updates = await updatesOf(
      db,
      students.map((s) => s.id),
    );
    assert.ok(students.every((s) => updates.get(s.id) === rounds + 1));
  }

  test('they own two partitions each, and 50 students × 5 updates are all processed once, each student in order', async () => {
    const [first, second] = [await startWorker(), await startWorker()];
    await eventually('each owns two partitions', async () => {
      const [a, b] = await Promise.all([partitionsOf(first), partitionsOf(second)]);
      return a.owned.length === 2 && b.owned.length === 2 && a.members === 2 && b.members === 2;
    });
    const [a, b] = await Promise.all([partitionsOf(first), partitionsOf(second)]);
    assert.deepEqual([...a.owned, ...b.owned].sort(), [0, 1, 2, 3]);
    assert.deepEqual(
      await Promise.all([first, second].map((worker) => metricOf(worker, 'worker_partitions_owned'))),
      [2, 2],
    );

    const rounds = 5;
    const students = await write(50, rounds);
    await assertProcessedOnceInOrder(database.database, students, rounds);
    const [byFirst, bySecond] = await Promise.all([processedBy(first), processedBy(second)]);
    assert.ok(byFirst > 0 && bySecond > 0, `both process events (${byFirst} and ${bySecond})`);
    assert.equal(byFirst + bySecond, 50 * (rounds + 1), 'each event processed by one of them, once');
    // Queue lag is reported per partition, by the worker that owns it.
    for (const [worker, owned] of [
      [first, a.owned],
      [second, b.owned],
    ] as const)
      for (const partition of owned)
        assert.ok(
          (await metricOf(worker, 'message_age_seconds_count', { queue: `students.worker.${partition}` })) >
            0,
          `lag of students.worker.${partition}`,
        );
  });

  test('when one is killed while writes keep coming, the other takes all four and every event is still processed once, in order', async () => {
    const [first, second] = workers as [RoleProcess, RoleProcess];
    const rounds = 8;
    const before = await processedBy(second);
    let killed: Promise<void> | undefined;
    // Killed while the writes (8 × 100 ms per student) are under way and the first is consuming them.
    const killing = setTimeout(() => (killed = first.kill()), 300);
    const students = await write(30, rounds, 100);
    clearTimeout(killing);
    assert.ok(killed, 'the first was killed during the writes');
    await killed;
    await eventually('the survivor owns all four', async () => {
      const health = await partitionsOf(second);
      return health.owned.length === 4 && health.members === 1;
    });
    await assertProcessedOnceInOrder(database.database, students, rounds);
    assert.ok((await processedBy(second)) > before, 'the survivor processed the rest');
    assert.equal(await metricOf(second, 'worker_partitions_owned'), 4);
  });

  test('a worker handing two partitions over while it holds their messages keeps every student in order', async () => {
    await Promise.all(workers.splice(0).map((worker) => worker.kill()));
    const rounds = 30;
    const students = await write(40, rounds);
    // Writes to students wait while this session holds the table: the first worker's handlers stop mid-message.
    const lock = await studentsTableLock(database.url);
    try {
      const [first, second] = await lock.whileLocked(async () => {
        // Prefetch 100: the first then holds up to 100 messages of each partition it is to hand over.
        const holder = await startWorker({ WORKER_PREFETCH: '100' });
        await eventually(
          'the first consumes all four',
          async () => (await partitionsOf(holder)).owned.length === 4,
        );
        await lock.waiting(); // the first is handling messages
        const taker = await startWorker({ WORKER_PREFETCH: '100' });
        await eventually('the second takes two', async () => (await partitionsOf(taker)).owned.length === 2);
        // The first starts handing over at its next look (every 2 s), with its messages still in hand.
        await new Promise((resolve) => setTimeout(resolve, 3_000));
        return [holder, taker] as const;
      });
      await assertProcessedOnceInOrder(database.database, students, rounds);
      assert.ok((await processedBy(second)) > 0, 'the second handled the partitions it took');
      assert.equal((await partitionsOf(first)).owned.length, 2);
    } finally {
      await lock.end();
    }
  });
});
