// The worker's behaviour, run once on the embedded adapters and once on real PostgreSQL + RabbitMQ.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, test } from 'node:test';
import {
  Queues,
  DEATH_REASON_HEADER,
  deadLetterNames,
  Exchanges,
  messagingTopology,
  studentsWorkerQueues,
} from '../../src/contracts/messaging.ts';
import type { MessageBus, ReceivedMessage, Subscription } from '../../src/application/ports/message-bus.ts';
import { outcome } from '../../src/application/ports/message-bus.ts';
import { deleteStudent } from '../../src/application/students/delete-student.ts';
import type { StudentSnapshot } from '../../src/domain/student.ts';
import { inbox } from '../../src/infrastructure/persistence/schema.ts';
import { SqlUnitOfWork } from '../../src/infrastructure/persistence/sql-unit-of-work.ts';
import { systemClock } from '../../src/infrastructure/system/system-clock.ts';
import { uuidV7Generator } from '../../src/infrastructure/system/uuid-v7-generator.ts';
import {
  addStudent,
  counted,
  eventually,
  notificationsOf,
  partitionsOwned,
  startWorker,
  studentEvent,
  traceIdOf,
  updatesOf,
  withJitteredTransactions,
  type EnvironmentFactory,
  type RunningWorker,
  type WorkerEnvironment,
} from './worker-harness.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';

export function workerScenarios(
  name: string,
  environment: EnvironmentFactory,
  options: { skip?: string },
): void {
  describe(`the worker on ${name}`, options, () => {
    let env: WorkerEnvironment;
    let running: RunningWorker | undefined;

    beforeEach(async () => {
      env = await environment();
    });
    afterEach(async () => {
      await running?.worker.stop();
      running = undefined;
      await env.dispose();
    });

    const updates = async (student: StudentSnapshot) =>
      (await updatesOf(env.database, [student.id])).get(student.id);

    test('a created student is processed once: updates 1, then StudentCreated and StudentCached, in order', async () => {
      running = await startWorker(env);
      const student = await addStudent(env.database);

      await env.bus.publish([studentEvent('StudentCreated', student)]);
      await eventually(
        'the event is processed',
        async () => (await counted(running!.registry, 'processed')) === 1,
      );

      assert.equal(await updates(student), 1);
      const sent = await notificationsOf(env.database, student.id);
      assert.deepEqual(
        sent.map((n) => [n.type, n.routingKey, n.payload.eventType, n.payload.student.updates]),
        [
          ['StudentCreated', 'student.created', 'StudentCreated', 1],
          ['StudentCached', 'student.cached', 'StudentCached', 1],
        ],
      );
      assert.equal(sent[0]?.payload.userId, 'alice');
      assert.match(sent[0]?.traceparent ?? '', new RegExp(`^00-${traceIdOf(0)}-[\\da-f]{16}-01$`));
    });

    test('the same message delivered twice changes nothing the second time', async () => {
      running = await startWorker(env);
      const student = await addStudent(env.database);
      const event = studentEvent('StudentCreated', student);

      await env.bus.publish([event]);
      await env.bus.publish([event]);
      await eventually(
        'the copy is seen as a duplicate',
        async () => (await counted(running!.registry, 'duplicate')) === 1,
      );

      assert.equal(await counted(running.registry, 'processed'), 1);
      assert.equal(await updates(student), 1);
      assert.equal((await notificationsOf(env.database, student.id)).length, 2);
    });

    test('a deleted student gets StudentDeleted; an update that arrives after the delete is dropped quietly', async () => {
      running = await startWorker(env);
      const student = await addStudent(env.database);
      const removed = await deleteStudent({
        unitOfWork: new SqlUnitOfWork(env.database, uuidV7Generator),
        clock: systemClock,
      })({ id: student.id, actor: 'bob' });
      assert.ok(removed.ok);

      await env.bus.publish([
        studentEvent('StudentUpdated', student),
        studentEvent('StudentDeleted', student),
      ]);
      await eventually(
        'both events are handled',
        async () =>
          (await counted(running!.registry, 'processed')) === 1 &&
          (await counted(running!.registry, 'student_gone')) === 1,
      );

      const sent = await notificationsOf(env.database, student.id);
      assert.deepEqual(
        sent.map((n) => n.type),
        ['StudentDeleted'],
      );
      assert.equal(sent[0]?.payload.student.id, student.id);
    });

    test('a poison message goes to students.worker.dead with the reason, and the next good message is processed', async () => {
      running = await startWorker(env);
      const { dead, deadQueue } = await collectDeadLetters(env.bus);
      try {
        const student = await addStudent(env.database);
        const invalid = studentEvent('StudentCreated', student);
        await env.bus.publish([
          {
            exchange: Exchanges.students,
            routingKey: 'student.created',
            messageId: 'poison-1',
            body: 'not json',
          },
          {
            ...invalid,
            messageId: 'poison-2',
            body: JSON.stringify({ ...JSON.parse(invalid.body), subject: 'x' }),
          },
          studentEvent('StudentCreated', student),
        ]);

        await eventually('the good message is processed', async () => (await updates(student)) === 1);
        await eventually('both poison messages are dead-lettered', () => dead.length === 2);
        const reasons = deathReasons(dead);
        assert.match(reasons.get('poison-1') ?? '', /^body is not JSON/);
        assert.match(reasons.get('poison-2') ?? '', /^not a student CloudEvent: subject: /);
        assert.equal(await counted(running.registry, 'dead_lettered'), 2);
        assert.equal((await notificationsOf(env.database, student.id)).length, 2);
      } finally {
        await deadQueue.close();
      }
    });

    test('text PostgreSQL cannot store and an over-long id are dead-lettered naming the field, before the database', async () => {
      running = await startWorker(env);
      const { dead, deadQueue } = await collectDeadLetters(env.bus);
      try {
        const student = await addStudent(env.database);
        type EventJson = { id: string; data: { actor: string; student: { firstName: string } } };
        const poison = (messageId: string, change: (event: EventJson) => void) => {
          const message = studentEvent('StudentDeleted', student);
          const event = JSON.parse(message.body) as EventJson;
          change(event);
          return { ...message, messageId, body: JSON.stringify(event) };
        };
        // Random, so it does not compress below PostgreSQL's index entry limit.
        const longId = randomBytes(3_000).toString('base64');
        await env.bus.publish([
          poison('nul', (event) => (event.data.student.firstName = 'A\u0000da')),
          poison('surrogate', (event) => (event.data.actor = 'alice\ud800')),
          poison('long-id', (event) => (event.id = longId)),
        ]);

        await eventually('all three are dead-lettered', () => dead.length === 3);
        const reasons = deathReasons(dead);
        assert.match(reasons.get('nul') ?? '', /data\.student\.firstName: must be Unicode text without NUL/);
        assert.match(reasons.get('surrogate') ?? '', /data\.actor: must be Unicode text/);
        assert.match(reasons.get('long-id') ?? '', /^not a student CloudEvent: id: /);
        assert.equal(await counted(running.registry, 'dead_lettered'), 3);
        assert.deepEqual(await notificationsOf(env.database, student.id), []);
      } finally {
        await deadQueue.close();
      }
    });

    test('stop() while a message is in flight lets it finish and settle before it resolves', async () => {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let entered!: () => void;
      const inFlight = new Promise<void>((resolve) => (entered = resolve));
      const steps: string[] = [];
      running = await startWorker(env, {
        afterProcessed: async () => {
          entered();
          await released;
          steps.push('message finished');
        },
      });
      const student = await addStudent(env.database);
      await env.bus.publish([studentEvent('StudentCreated', student)]);
      await inFlight;

      const stopped = running.worker.stop().then(() => steps.push('stopped'));
      try {
        // Correct code can never fail this check; a stop that did not wait would have resolved long before.
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.deepEqual(steps, [], 'stop waits for the in-flight message');
        // Meanwhile its health says it is on its way out, so nothing counts on it any more.
        const health = (await (await fetch(running.healthUrl)).json()) as HealthBody;
        const consumer = checkNamed<{ state: string }>(health, 'consumer');
        assert.deepEqual([consumer?.status, consumer?.data.state], ['Unhealthy', 'stopping']);
        assert.equal((await fetch(`${running.healthUrl}/ready`)).status, 503);
      } finally {
        release();
        await stopped;
        running = undefined;
      }
      assert.deepEqual(steps, ['message finished', 'stopped']);
      assert.equal(await updates(student), 1);
      assert.equal((await notificationsOf(env.database, student.id)).length, 2);

      // It was acknowledged: a new worker sees only the next message, no redelivery ahead of it.
      running = await startWorker(env);
      const next = await addStudent(env.database);
      await env.bus.publish([studentEvent('StudentCreated', next)]);
      await eventually('the next message is processed', async () => (await updates(next)) === 1);
      assert.equal(await counted(running.registry, 'duplicate'), 0);
    });

    test("with prefetch 2, two students' events are in hand at once", async () => {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const inHand = new Set<string>();
      running = await startWorker(env, {
        prefetch: 2,
        afterProcessed: async ({ studentId }) => {
          inHand.add(studentId);
          await released;
        },
      });
      const [first, second] = [await addStudent(env.database), await addStudent(env.database)];
      try {
        await env.bus.publish([
          studentEvent('StudentCreated', first),
          studentEvent('StudentCreated', second),
        ]);
        // With one message at a time, the second would wait for the first, held here, for good.
        await eventually('both events are in hand', () => inHand.size === 2, 10_000);
      } finally {
        release();
      }
    });

    test('with prefetch 50, 20 students × 10 interleaved updates: each student in order, updates 10', async () => {
      const rounds = 10;
      running = await startWorker(env, { prefetch: 50, database: withJitteredTransactions(env.database) });
      await interleavedUpdatesInOrder(env, { students: 20, rounds });
    });

    test('with 4 partitions and prefetch 50, two workers share them; 20 students × 10 interleaved updates stay in order, each once', async () => {
      const rounds = 10;
      const jittered = withJitteredTransactions(env.database);
      // Prefetch 50: with many messages in flight, only one consumer per partition keeps a student's order.
      running = await startWorker(env, { partitions: 4, prefetch: 50, database: jittered });
      const second = await startWorker(env, { partitions: 4, prefetch: 50, database: jittered });
      const owned = async (worker: RunningWorker) => {
        const body = (await (await fetch(worker.healthUrl)).json()) as HealthBody;
        const consumer = checkNamed<{ partitions: { owned: number[]; members: number } }>(body, 'consumer');
        assert.ok(consumer, 'a consumer check');
        return consumer.data.partitions;
      };
      try {
        await eventually('the partitions are shared out', async () => {
          const [a, b] = await Promise.all([owned(running!), owned(second)]);
          return a.members === 2 && b.members === 2 && a.owned.length === 2 && b.owned.length === 2;
        });
        assert.deepEqual(
          await Promise.all([running, second].map((worker) => partitionsOwned(worker.registry))),
          [2, 2],
          'worker_partitions_owned',
        );
        await interleavedUpdatesInOrder(env, { students: 20, rounds });
        const [first, other] = await Promise.all([
          counted(running.registry, 'processed'),
          counted(second.registry, 'processed'),
        ]);
        assert.ok(first > 0 && other > 0, `both workers processed events (${first} and ${other})`);
        assert.equal(first + other, 20 * rounds);
      } finally {
        await second.worker.stop();
      }
      // A stopped worker consumes nothing: the other takes its partitions, and is the only consumer of each.
      await eventually('the first owns all four', async () => (await owned(running!)).owned.length === 4);
      for (const queue of studentsWorkerQueues(4))
        assert.equal((await env.bus.inspectQueue(queue))?.consumers, 1, queue);
    });

    test('the inbox forgets what was handled longer ago than its retention (7 days), and keeps the rest', async () => {
      const day = 86_400_000;
      const handled = (id: string, daysAgo: number) => ({
        messageId: id,
        consumer: Queues.studentsWorker,
        processedAt: new Date(Date.now() - daysAgo * day),
      });
      await env.database.db
        .insert(inbox)
        .values([handled('long-ago', 8), handled('last-week', 6), handled('yesterday', 1)]);
      running = await startWorker(env);
      const remembered = async () =>
        (await env.database.db.select({ id: inbox.messageId }).from(inbox)).map((row) => row.id).sort();
      await eventually('the old entry is gone', async () => (await remembered()).length === 2);
      assert.deepEqual(await remembered(), ['last-week', 'yesterday']);
    });

    test('queues of another WORKER_PARTITIONS layout are reported: /health is Degraded, naming them', async () => {
      await env.bus.declareTopology(messagingTopology(1)); // a role that runs with the default
      await env.bus.publish([studentEvent('StudentCreated', await addStudent(env.database))]);
      running = await startWorker(env, { partitions: 4 });
      const body = (await (await fetch(running.healthUrl)).json()) as HealthBody;
      assert.equal(body.status, 'Degraded');
      assert.equal(checkNamed(body, 'worker-queues')?.status, 'Degraded');
      assert.match(
        checkNamed(body, 'worker-queues')?.description ?? '',
        /^students\.worker \(1 waiting, 0 consumers\): not this worker's layout \(WORKER_PARTITIONS=4\)/,
      );
      assert.equal((await fetch(`${running.healthUrl}/ready`)).status, 200, 'it still works');
    });

    test('/health reports the database, the broker (rabbitmq) and the consumer', async () => {
      running = await startWorker(env);
      const response = await fetch(running.healthUrl);
      assert.equal(response.status, 200);
      const body = (await response.json()) as HealthBody;
      assert.equal(body.status, 'Healthy');
      assert.deepEqual(
        body.checks.map((check) => check.name),
        ['database', 'rabbitmq', 'consumer', 'worker-queues'],
        'in the order they are registered',
      );
      assert.equal((await fetch(`${running.healthUrl}/ready`)).status, 200);
      assert.equal((await fetch(`${running.healthUrl}/live`)).status, 200);
      const metrics = await (await fetch(running.healthUrl.replace(/\/health$/, '/metrics'))).text();
      assert.match(metrics, /worker_message_processing_seconds/);
      assert.match(metrics, /^worker_partitions_owned 1$/m, 'the one queue');
    });
  });
}

/**
 * Creates `students` students and publishes `rounds` updates of each, interleaved (round r carries trace id r, so
 * every notification tells which of its student's events caused it); waits until every event is processed and
 * checks that each student's notifications came in its events' order.
 */
async function interleavedUpdatesInOrder(
  env: WorkerEnvironment,
  { students, rounds }: { readonly students: number; readonly rounds: number },
): Promise<void> {
  const all = await Promise.all(Array.from({ length: students }, () => addStudent(env.database)));
  for (let round = 0; round < rounds; round++)
    await env.bus.publish(all.map((student) => studentEvent('StudentUpdated', student, { trace: round })));
  const ids = all.map((student) => student.id);
  await eventually(
    'every student got all its events',
    async () => [...(await updatesOf(env.database, ids)).values()].every((n) => n === rounds),
    120_000,
  );
  const expected = Array.from({ length: rounds }, (_, round) => [
    ['StudentUpdated', traceIdOf(round), round + 1],
    ['StudentCached', traceIdOf(round), round + 1],
  ]).flat();
  for (const student of all) {
    const sent = await notificationsOf(env.database, student.id);
    assert.deepEqual(
      sent.map((n) => [n.type, n.traceparent?.split('-')[1], n.payload.student.updates]),
      expected,
      `student ${student.id}`,
    );
  }
}

/** Every message dead-lettered from `students.worker`, as it arrives. */
async function collectDeadLetters(
  bus: MessageBus,
): Promise<{ dead: ReceivedMessage[]; deadQueue: Subscription }> {
  const dead: ReceivedMessage[] = [];
  const deadQueue = await bus.consume(deadLetterNames(Queues.studentsWorker).queue, {
    prefetch: 10,
    handler: (message) => {
      dead.push(message);
      return outcome.ack();
    },
  });
  return { dead, deadQueue };
}

/** Each dead letter's reason, by message id. */
function deathReasons(dead: readonly ReceivedMessage[]): Map<string, string | undefined> {
  return new Map(dead.map((message) => [message.messageId, message.headers[DEATH_REASON_HEADER]]));
}
