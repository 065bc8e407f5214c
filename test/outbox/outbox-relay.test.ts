// The outbox relay: rows leave in order as CloudEvents with confirms, exactly one relay leads, and a broker
// outage delays events without losing them.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { after, before, describe, mock, test } from 'node:test';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { BrokenCircuitError } from 'cockatiel';
import { inArray, isNull } from 'drizzle-orm';
import pg from 'pg';
import { outcome, type MessageBus, type ReceivedMessage } from '../../src/application/ports/message-bus.ts';
import { createStudent } from '../../src/application/students/create-student.ts';
import { updateStudent } from '../../src/application/students/update-student.ts';
import { mergeTopologies, topicExchange } from '../../src/contracts/messaging.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import {
  BACKLOG_COUNTED,
  OutboxRelay,
  type BeforePublish,
} from '../../src/infrastructure/outbox/outbox-relay.ts';
import {
  openDatabase,
  type Database,
  type Leadership,
} from '../../src/infrastructure/persistence/database.ts';
import type { SqlStatement } from '../../src/infrastructure/persistence/sql.ts';
import { SqlUnitOfWork } from '../../src/infrastructure/persistence/sql-unit-of-work.ts';
import { outbox } from '../../src/infrastructure/persistence/schema.ts';
import {
  createResiliencePolicy,
  DEFAULT_RESILIENCE,
  type ResiliencePolicy,
} from '../../src/infrastructure/resilience/resilience-policy.ts';
import { fakerStudentGenerator } from '../../src/infrastructure/system/faker-student-generator.ts';
import { systemClock } from '../../src/infrastructure/system/system-clock.ts';
import { uuidV7Generator } from '../../src/infrastructure/system/uuid-v7-generator.ts';
import { createTestVhost, type TestVhost } from '../support/rabbitmq-vhost.ts';
import { createPostgresDatabase, openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { recordingLogger, silentLogger } from '../support/logger.ts';
import { AMQP_URL, needsPostgres, needsRabbitMq } from '../support/services.ts';
import { settlesWithin } from '../support/settles-within.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { recordSpans } from '../support/tracing.ts';
import { until } from '../support/until.ts';

const spans = recordSpans();

const fastResilience = {
  ...DEFAULT_RESILIENCE,
  durationOfBreakMs: 1_000,
  baseDelayMs: 50,
  maxDelayMs: 200,
  timeoutMs: 2_000,
};

/** A queue bound to every student event, recording what arrives. */
async function collect(bus: MessageBus, queue = 'relay.test'): Promise<ReceivedMessage[]> {
  await bus.declareTopology(
    mergeTopologies({
      exchanges: [topicExchange('students')],
      queues: [{ name: queue, type: 'quorum', durable: true }],
      bindings: [{ exchange: 'students', queue, routingKey: '#' }],
    }),
  );
  const received: ReceivedMessage[] = [];
  await bus.consume(queue, { prefetch: 100, handler: (message) => (received.push(message), outcome.ack()) });
  return received;
}

function writeDeps(database: Database) {
  return {
    unitOfWork: new SqlUnitOfWork(database, uuidV7Generator),
    ids: uuidV7Generator,
    clock: systemClock,
    generator: fakerStudentGenerator,
  };
}

function writer(database: Database) {
  return createStudent(writeDeps(database));
}

function relayOn(database: Database, bus: MessageBus, options = {}, beforePublish?: BeforePublish) {
  return new OutboxRelay({
    database,
    bus,
    logger: silentLogger,
    policy: createResiliencePolicy('relay', fastResilience, silentLogger),
    options: { standbyRetryMs: 200, ...options },
    ...(beforePublish ? { beforePublish } : {}),
  });
}

/** Creates `count` students one after another; their ids, in write order. */
async function createStudents(database: Database, count: number): Promise<string[]> {
  const create = writer(database);
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const result = await create({ details: {}, actor: 'tester' });
    assert.ok(result.ok);
    ids.push(result.value.id);
  }
  return ids;
}

/**
 * A backlog of several batches, written while no relay runs: 6 students, each created then updated 4 times, their
 * rows interleaved. The relay (batches of 2, so up to three disjoint batches are in flight at once before one shares
 * a subject with an earlier one) must send every row once, and each student's in write order.
 */
async function backlogInOrder(database: Database, bus: MessageBus) {
  const received = await collect(bus, 'relay.backlog');
  const deps = writeDeps(database);
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) {
    const created = await createStudent(deps)({ details: {}, actor: 'tester' });
    assert.ok(created.ok);
    ids.push(created.value.id);
  }
  for (let round = 0; round < 4; round++)
    for (const id of ids) assert.ok((await updateStudent(deps)({ id, details: {}, actor: 'tester' })).ok);

  const relay = relayOn(database, bus, { batchSize: 2 });
  relay.start();
  try {
    await until(() => received.length >= 30, 'thirty messages');
    await allSent(database, 'every row marked sent');
  } finally {
    await relay.stop();
  }
  const events = received.map(
    (message) => JSON.parse(message.body.toString()) as { id: string; subject: string; type: string },
  );
  assert.equal(new Set(events.map((event) => event.id)).size, 30, 'each row once');
  for (const id of ids)
    assert.deepEqual(
      events.filter((event) => event.subject === id).map((event) => event.type),
      ['StudentCreated', 'StudentUpdated', 'StudentUpdated', 'StudentUpdated', 'StudentUpdated'],
      'in write order',
    );
}

/**
 * A PGlite database and an in-process bus of the test's own, for a relay that must not meet the shared ones; each
 * relay passed to `stopAfter` is stopped, then the bus closed and the database dropped, however the test ends.
 */
async function withOwnOutbox(
  run: (own: {
    ownDb: TestDatabase;
    ownBus: InProcessMessageBus;
    stopAfter: (relay: OutboxRelay) => OutboxRelay;
  }) => Promise<void>,
): Promise<void> {
  const ownDb = await openTestDatabase('pglite');
  const ownBus = new InProcessMessageBus();
  const relays: OutboxRelay[] = [];
  try {
    await run({ ownDb, ownBus, stopAfter: (relay) => (relays.push(relay), relay) });
  } finally {
    for (const relay of relays) await relay.stop();
    await ownBus.close();
    await ownDb.dispose();
  }
}

/** The id of the outbox row of a student's first event. */
const rowIdOf = async (database: Database, studentId: string) =>
  (await database.db.select().from(outbox)).find((row) => row.subject === studentId)?.id;

const unsent = (database: Database) =>
  database.db
    .select({ id: outbox.id })
    .from(outbox)
    .where(isNull(outbox.sentAt))
    .then((rows) => rows.length);

/** Until every row of `database`'s outbox is marked sent. */
const allSent = (database: Database, what: string, timeoutMs?: number) =>
  until(() => unsent(database).then((count) => count === 0), what, timeoutMs);

describe('outbox relay, embedded (PGlite + in-process bus)', () => {
  let testDb: TestDatabase;
  let bus: InProcessMessageBus;
  let relay: OutboxRelay;

  before(async () => {
    testDb = await openTestDatabase('pglite');
    bus = new InProcessMessageBus();
  });
  after(async () => {
    await relay?.stop();
    await bus?.close();
    await testDb?.dispose();
  });

  test("rows leave in write order as CloudEvents with a stable id, the row's traceparent and the subject, then are marked sent", async () => {
    const received = await collect(bus);
    // A poll interval far beyond the wait below: only the NOTIFY at commit can wake the relay in time.
    relay = relayOn(testDb.database, bus, { pollIntervalMs: 600_000 });
    relay.start();
    await until(() => relay.status().role === 'leader', 'leadership');
    const ids = await createStudents(testDb.database, 5);
    await until(() => received.length === 5, 'five messages');

    const events = received.map((message) => JSON.parse(message.body.toString()));
    assert.deepEqual(
      events.map((event) => event.subject),
      ids,
      'in write order',
    );
    const rows = await testDb.database.db.select().from(outbox);
    for (const [index, message] of received.entries()) {
      const event = events[index];
      assert.equal(event.specversion, '1.0');
      assert.equal(event.type, 'StudentCreated');
      assert.equal(message.routingKey, 'student.created');
      assert.equal(message.messageId, event.id);
      assert.ok(
        rows.some((row) => row.id === event.id && row.sentAt !== null),
        'the row is marked sent',
      );
      assert.equal(event.data.student.id, ids[index]);
      const row = rows.find((each) => each.id === event.id);
      assert.match(row?.headers.traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      assert.equal(message.headers.traceparent, row?.headers.traceparent, 'the creation context, unchanged');
      assert.equal(message.headers['cloudEvents:subject'], ids[index]);
    }
    assert.equal(await unsent(testDb.database), 0);
  });

  test('a backlog of many overlapping batches leaves once per row, each student in write order', async () => {
    await relay.stop(); // the backlog is written while no relay runs
    await backlogInOrder(testDb.database, bus);
  });

  test('a batch whose publish fails is not overtaken by a later batch of its student', async () => {
    // Its own database and bus: only this student's rows, written while no relay runs.
    await withOwnOutbox(async ({ ownDb, ownBus, stopAfter }) => {
      const received = await collect(ownBus, 'relay.overtake');
      const deps = writeDeps(ownDb.database);
      const created = await createStudent(deps)({ details: {}, actor: 'tester' });
      assert.ok(created.ok);
      const id = created.value.id;
      for (let i = 0; i < 3; i++)
        assert.ok((await updateStudent(deps)({ id, details: {}, actor: 'tester' })).ok);
      // The first publish of the student's first row fails after a while (a lost confirm); every other goes through.
      const publish = ownBus.publish.bind(ownBus);
      let failed = false;
      mock.method(
        ownBus,
        'publish',
        async (messages: Parameters<typeof publish>[0], signal?: AbortSignal) => {
          if (!failed && messages.some((message) => message.routingKey === 'student.created')) {
            failed = true;
            await new Promise((resolve) => setTimeout(resolve, 200));
            throw new Error('confirm lost');
          }
          return publish(messages, signal);
        },
      );
      // One row a batch: the student's later rows are each a batch of their own, that could be in flight meanwhile.
      const ownRelay = stopAfter(relayOn(ownDb.database, ownBus, { batchSize: 1, batchesInFlight: 4 }));
      ownRelay.start();
      await allSent(ownDb.database, 'every row marked sent');
      assert.ok(failed, 'the first publish failed');
      await until(() => new Set(received.map((message) => message.messageId)).size === 4, 'four messages');
      const events = received.map(
        (message) => JSON.parse(message.body.toString()) as { id: string; type: string },
      );
      // What a consumer de-duplicating by message id sees: each message where it first arrived.
      const firstSeen = events.filter(
        (event, index) => events.findIndex((each) => each.id === event.id) === index,
      );
      assert.deepEqual(
        firstSeen.map((event) => event.type),
        ['StudentCreated', 'StudentUpdated', 'StudentUpdated', 'StudentUpdated'],
        'in write order, also after the failed publish',
      );
    });
  });

  test("rows leave in the outbox's commit order (seq), not in the order of their ids: writers' clocks disagree", async () => {
    // Two webapi instances whose clocks differ by a few ms (or one whose clock stepped back) give a student's later
    // event an id (UUIDv7, time-ordered) that sorts before its earlier one's: the relay must still send them in seq
    // order, or a consumer applies an update before the create it follows.
    await withOwnOutbox(async ({ ownDb, ownBus, stopAfter }) => {
      const received = await collect(ownBus, 'relay.skew');
      const descending = Array.from({ length: 8 }, () => uuidV7Generator.next()).reverse();
      const skewed = { next: () => descending.shift() ?? uuidV7Generator.next() };
      const deps = { ...writeDeps(ownDb.database), unitOfWork: new SqlUnitOfWork(ownDb.database, skewed) };
      const created = await createStudent(deps)({ details: {}, actor: 'tester' });
      assert.ok(created.ok);
      const id = created.value.id;
      for (let i = 0; i < 3; i++)
        assert.ok((await updateStudent(deps)({ id, details: {}, actor: 'tester' })).ok);
      stopAfter(relayOn(ownDb.database, ownBus)).start();
      await until(() => received.length >= 4, 'four messages');
      assert.deepEqual(
        received.map((message) => (JSON.parse(message.body.toString()) as { type: string }).type),
        ['StudentCreated', 'StudentUpdated', 'StudentUpdated', 'StudentUpdated'],
        'in commit order',
      );
    });
  });

  test('a row written while the relay is publishing leaves at once, not at the next poll', async () => {
    await withOwnOutbox(async ({ ownDb, ownBus, stopAfter }) => {
      const received = await collect(ownBus, 'relay.during-drain');
      // Once armed, the relay's next read of the outbox is held while another student is written: that write's
      // wake-up arrives while the relay is busy, not while it waits.
      let armed = false;
      let writtenDuringRead: Promise<string> | undefined;
      const watched: Database = {
        ...ownDb.database,
        sql: {
          query: async <Row>(statement: SqlStatement, params: readonly unknown[]) => {
            const rows = await ownDb.database.sql.query<Row>(statement, params);
            if (armed && statement.name.startsWith('outbox_unsent')) {
              armed = false;
              writtenDuringRead = createStudents(ownDb.database, 1).then(([id]) => id!);
              await writtenDuringRead;
              await new Promise((resolve) => setTimeout(resolve, 100));
            }
            return rows;
          },
        },
      };
      // A poll interval far beyond the wait below: only the wake-up can bring the second row out in time.
      const ownRelay = stopAfter(relayOn(watched, ownBus, { pollIntervalMs: 600_000 }));
      ownRelay.start();
      await until(() => ownRelay.status().role === 'leader', 'leadership');
      await new Promise((resolve) => setTimeout(resolve, 200)); // the relay waits for work
      armed = true;
      const [first] = await createStudents(ownDb.database, 1);
      await until(() => writtenDuringRead !== undefined, 'the write during a read');
      const second = await writtenDuringRead!;
      await until(() => received.length >= 2, 'both messages', 5_000);
      assert.deepEqual(
        received.map((message) => message.headers['cloudEvents:subject']),
        [first, second],
      );
    });
  });

  test('rows leave only once the step before publishing has finished with them, and leave anyway when it fails', async () => {
    await withOwnOutbox(async ({ ownDb, ownBus, stopAfter }) => {
      const received = await collect(ownBus, 'relay.before-publish');
      const subjects = () => received.map((message) => message.headers['cloudEvents:subject']);
      const stepped: string[][] = [];
      let finishFirst!: () => void;
      const firstStep = new Promise<void>((resolve) => (finishFirst = resolve));
      const ownRelay = stopAfter(
        relayOn(ownDb.database, ownBus, {}, async (rows) => {
          stepped.push(rows.map((row) => row.subject));
          if (stepped.length === 1) return firstStep;
          throw new Error('the cache is gone');
        }),
      );
      ownRelay.start();
      const [first] = await createStudents(ownDb.database, 1);
      await until(() => stepped.length === 1, 'the step, for the first row');
      assert.deepEqual(stepped, [[first]]);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(subjects(), [], 'held while the step runs');
      finishFirst();
      await until(() => received.length === 1, 'the first row, once the step finished');

      const [second] = await createStudents(ownDb.database, 1);
      await until(() => received.length === 2, 'the second row, although its step failed');
      assert.deepEqual(subjects(), [first, second]);
      await allSent(ownDb.database, 'both rows marked sent');
    });
  });

  test('while the breaker is open the step before publishing is not run again at every retry; a step that throws at once does not hold the rows', async () => {
    await withOwnOutbox(async ({ ownDb, ownBus, stopAfter }) => {
      const received = await collect(ownBus, 'relay.breaker-open');
      let breaker: 'open' | 'closed' = 'open';
      // The broker is down and the breaker open: every publish fails at once, as cockatiel's does.
      const policy: ResiliencePolicy = {
        execute: async (call, signal) => {
          if (breaker === 'open') throw new BrokenCircuitError();
          return call(signal ?? new AbortController().signal);
        },
        breakerState: () => breaker,
      };
      let steps = 0;
      const ownRelay = stopAfter(
        new OutboxRelay({
          database: ownDb.database,
          bus: ownBus,
          logger: silentLogger,
          policy,
          options: { standbyRetryMs: 200 },
          // Not async: it throws before it returns a promise.
          beforePublish: () => {
            steps++;
            throw new Error('the cache client is closed');
          },
        }),
      );
      ownRelay.start();
      await createStudents(ownDb.database, 1);
      await until(() => ownRelay.status().lastError !== undefined, 'a first failed publish');
      // Backoff starts at 250-500 ms: a few more attempts fail meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      assert.equal(received.length, 0);
      assert.equal(steps, 0, 'no step while every publish fails at once');
      breaker = 'closed';
      await until(() => received.length === 1, 'the row, once the breaker closed, although its step threw');
      assert.equal(steps, 1);
      await allSent(ownDb.database, 'the row marked sent');
    });
  });

  test('a topology the broker did not take at first is declared on a later attempt, and the rows then leave', async () => {
    const ownDb = await openTestDatabase('pglite');
    const ownBus = new InProcessMessageBus();
    const queue = 'relay.declared-late';
    const topology = mergeTopologies({
      exchanges: [topicExchange('students')],
      queues: [{ name: queue, type: 'quorum', durable: true }],
      bindings: [{ exchange: 'students', queue, routingKey: '#' }],
    });
    let ownRelay: OutboxRelay | undefined;
    try {
      const [id] = await createStudents(ownDb.database, 1);
      // The broker refuses every declaration until the relay has reported a failure.
      let refusing = true;
      const declare = ownBus.declareTopology.bind(ownBus);
      mock.method(ownBus, 'declareTopology', async (declared: typeof topology) => {
        if (refusing) throw new Error('broker unreachable');
        return declare(declared);
      });
      ownRelay = new OutboxRelay({
        database: ownDb.database,
        bus: ownBus,
        logger: silentLogger,
        policy: createResiliencePolicy('relay', fastResilience, silentLogger),
        topology,
        options: { standbyRetryMs: 200 },
      });
      ownRelay.start();
      await until(() => ownRelay!.status().lastError !== undefined, 'the failed declaration');
      refusing = false;
      await allSent(ownDb.database, 'the row marked sent', 10_000);
      const received: ReceivedMessage[] = [];
      await ownBus.consume(queue, {
        prefetch: 10,
        handler: (message) => (received.push(message), outcome.ack()),
      });
      await until(() => received.length === 1, 'the message in the declared queue');
      assert.equal(received[0]?.headers['cloudEvents:subject'], id);
    } finally {
      await ownRelay?.stop();
      await ownBus.close();
      await ownDb.dispose();
    }
  });

  test('a leadership that fails as soon as it is taken up is contended for again only after the standby wait, and said once', async () => {
    await withOwnOutbox(async ({ ownDb, ownBus, stopAfter }) => {
      // Every LISTEN fails, as on a database that drops each new session at once.
      let contended = 0;
      const failingListen: Database = {
        ...ownDb.database,
        async tryLead(lockKey) {
          // A relay that contends in a loop would starve the timers: slowed down, so the count below can show it.
          if (++contended > 10) await new Promise((resolve) => setTimeout(resolve, 20));
          const leadership = await ownDb.database.tryLead(lockKey);
          return (
            leadership && { ...leadership, listen: async () => Promise.reject(new Error('connection lost')) }
          );
        },
      };
      const { logger, logged } = recordingLogger();
      const ownRelay = stopAfter(
        new OutboxRelay({
          database: failingListen,
          bus: ownBus,
          logger,
          policy: createResiliencePolicy('relay', fastResilience, silentLogger),
          options: { standbyRetryMs: 200 },
        }),
      );
      ownRelay.start();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      assert.ok(contended <= 7, `contended ${contended} times in one second, with 200 ms between attempts`);
      assert.ok(contended >= 3, `contended ${contended} times`);
      assert.equal(ownRelay.status().lastError, 'connection lost');
      // A database that keeps failing is a few lines per outage, not one per attempt.
      assert.equal(logged().match(/could not take up leadership/g)?.length, 1);
    });
  });

  test('a leader that loses its lock in the middle of a drain reads no more rows: the next leader sends them', async () => {
    await withOwnOutbox(async ({ ownDb, ownBus, stopAfter }) => {
      const received = await collect(ownBus, 'relay.lost-lock');
      await createStudents(ownDb.database, 10);
      // Its lock's session ends (frozen past its idle timeout, say) while its first publish waits on the broker; from
      // then on another process holds the lock, and this relay's attempts to lead again fail.
      let loseLock!: () => void;
      let taken = false;
      const losing: Database = {
        ...ownDb.database,
        async tryLead(lockKey) {
          if (taken) return undefined;
          taken = true;
          const leadership = await ownDb.database.tryLead(lockKey);
          assert.ok(leadership);
          const lost = new Promise<void>((resolve) => (loseLock = resolve));
          return { ...leadership, lost: Promise.race([leadership.lost, lost]) };
        },
      };
      const publish = ownBus.publish.bind(ownBus);
      let publishing!: () => void;
      const firstPublish = new Promise<void>((resolve) => (publishing = resolve));
      let confirm!: () => void;
      const confirmed = new Promise<void>((resolve) => (confirm = resolve));
      mock.method(
        ownBus,
        'publish',
        async (messages: Parameters<typeof publish>[0], signal?: AbortSignal) => {
          publishing();
          await confirmed;
          return publish(messages, signal);
        },
      );
      const ownRelay = stopAfter(relayOn(losing, ownBus, { batchSize: 1, batchesInFlight: 1 }));
      ownRelay.start();
      await firstPublish;
      loseLock();
      confirm();
      await until(() => ownRelay.status().role === 'standby', 'standing by');
      // The batch with the broker and the one read beside it went out; every row after them waits for the leader.
      const left = await unsent(ownDb.database);
      assert.ok(left >= 8, `${10 - left} rows sent after the lock was lost`);
      taken = false;
      await allSent(ownDb.database, 'every row sent by the next leader');
      await until(() => new Set(received.map((message) => message.messageId)).size === 10, 'every row');
    });
  });

  test("the broker's health check does not wait on a database that does not answer: it leaves the backlog out", async () => {
    const stalled = relayOn(testDb.database, bus);
    mock.method(stalled, 'backlog', () => new Promise<number>(() => undefined));
    const check = stalled.healthCheck().check();
    assert.equal(await settlesWithin(check, 1_500), 'settled', 'well within the health check time limit');
    const health = await check;
    assert.equal(health.status, 'Healthy', 'the broker is fine');
    assert.equal(health.data?.backlog, undefined);
  });

  test('while the database stalls, health checks and scrapes share one backlog count instead of piling up queries', async () => {
    let counts = 0;
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    const { sql } = testDb.database;
    const stalling: Database = {
      ...testDb.database,
      sql: {
        ...sql,
        query: async (statement, params) => {
          if (statement.name !== 'outbox_backlog') return sql.query(statement, params);
          counts++;
          await answered;
          return sql.query(statement, params);
        },
      },
    };
    const stalled = relayOn(stalling, bus);
    const checks = await Promise.all([1, 2, 3].map(() => stalled.healthCheck().check()));
    assert.ok(
      checks.every((health) => health.data?.backlog === undefined),
      'each left the count out',
    );
    const scrape = stalled.backlog();
    assert.equal(counts, 1, 'one count under way');
    answer();
    assert.equal(typeof (await scrape), 'number');
    await stalled.backlog();
    assert.equal(counts, 2, 'a caller after it counts again');
  });

  for (const kind of ['postgres', 'pglite'] as const)
    test(`the backlog is counted up to ${BACKLOG_COUNTED} rows; past that it is the span of their positions, an upper bound read from the index (${kind})`, async () => {
      const own = await openTestDatabase(kind);
      try {
        const counter = relayOn(own.database, bus);
        const add = (rows: number) =>
          own.database.sql.query(
            {
              name: 'test_outbox_backlog_rows',
              text: `insert into outbox (id, exchange, routing_key, type, subject, payload, occurred_at)
                     select gen_random_uuid(), 'students', 'student.updated', 'StudentUpdated', 'backlog',
                       '{}'::jsonb, now() from generate_series(1, $1::int)`,
            },
            [rows],
          );
        const sendOne = (position: 'min' | 'middle') =>
          own.database.sql.query(
            {
              name: `test_outbox_send_${position}`,
              text: `update outbox set sent_at = now() where seq = (select ${
                position === 'min' ? 'min(seq)' : '(min(seq) + max(seq)) / 2'
              } from outbox where sent_at is null)`,
            },
            [],
          );
        await add(5);
        await sendOne('middle');
        assert.equal(await counter.backlog(), 4, 'a small backlog is counted, gaps and all');
        await add(BACKLOG_COUNTED + 1_000);
        assert.equal(await counter.backlog(), BACKLOG_COUNTED + 1_004 + 1, 'the span includes the sent row');
        await sendOne('min');
        assert.equal(
          await counter.backlog(),
          BACKLOG_COUNTED + 1_004,
          'the span starts at the oldest unsent row',
        );
        // Positions keep growing for the database's life: a span past 2^31 is a number, not a failed query.
        await own.database.sql.query(
          {
            name: 'test_outbox_far_seq',
            text: 'alter table outbox alter column seq restart with 3000000000',
          },
          [],
        );
        await add(1);
        assert.ok((await counter.backlog()) > 2 ** 31);
      } finally {
        await own.dispose();
      }
    });

  test('a sent row is deleted once it is older than the retention; a younger one stays', async () => {
    await relay?.stop();
    const ids = await createStudents(testDb.database, 3);
    const rowsOf = () =>
      testDb.database.db
        .select({ id: outbox.id })
        .from(outbox)
        .where(inArray(outbox.subject, ids))
        .then((rows) => rows.length);
    relay = relayOn(testDb.database, bus, { retentionMs: 60_000 });
    relay.start();
    await allSent(testDb.database, 'every row sent');
    await relay.stop();
    await testDb.database.db
      .update(outbox)
      .set({ sentAt: new Date(Date.now() - 120_000) })
      .where(inArray(outbox.subject, ids.slice(0, 2)));
    relay = relayOn(testDb.database, bus, { retentionMs: 60_000 });
    relay.start();
    await until(async () => (await rowsOf()) === 1, 'the two old rows to go');
    const [kept] = await testDb.database.db.select().from(outbox).where(inArray(outbox.subject, ids));
    assert.equal(kept?.subject, ids[2]);
  });

  test("each published row gets a publish span, a child of (and linked to) the row's create span", async () => {
    const received = await collect(bus, 'relay.spans');
    await relay?.stop();
    relay = relayOn(testDb.database, bus);
    relay.start();
    spans.reset();
    const result = await writer(testDb.database)({ details: {}, actor: 'tester' });
    assert.ok(result.ok);
    await until(() => received.length === 1, 'the message');
    await until(() => spans.getFinishedSpans().some((span) => span.name === 'publish students'), 'the span');

    const create = spans.getFinishedSpans().find((span) => span.name === 'create students');
    const publish = spans.getFinishedSpans().find((span) => span.name === 'publish students');
    const row = (await testDb.database.db.select().from(outbox)).find(
      (each) => each.id === received[0]?.messageId,
    );
    assert.equal(create?.kind, SpanKind.PRODUCER);
    assert.equal(create.attributes['messaging.operation.type'], 'create');
    assert.equal(create.attributes['messaging.operation.name'], 'create');
    assert.equal(create.attributes['messaging.destination.name'], 'students');
    assert.equal(
      row?.headers.traceparent,
      `00-${create.spanContext().traceId}-${create.spanContext().spanId}-01`,
      "the row carries the create span's context",
    );
    assert.equal(publish?.kind, SpanKind.CLIENT);
    assert.equal(publish.spanContext().traceId, create.spanContext().traceId, 'one trace');
    assert.equal(publish.parentSpanContext?.spanId, create.spanContext().spanId);
    assert.deepEqual(
      publish.links.map((link) => link.context.spanId),
      [create.spanContext().spanId],
    );
    assert.equal(publish.attributes['messaging.message.id'], row.id);
    assert.equal(create.attributes['messaging.message.id'], row.id);
    assert.equal(publish.attributes['messaging.system'], 'in-process');
    assert.equal(publish.attributes['messaging.operation.type'], 'send');
    assert.equal(publish.attributes['messaging.operation.name'], 'publish');
  });

  test("a publish the broker refuses ends the row's publish span as an error, with the broker's reason", async () => {
    // A bus of its own that was never given the topology: every publish to `students` is refused.
    const ownDb = await openTestDatabase('pglite');
    const ownBus = new InProcessMessageBus();
    const ownRelay = relayOn(ownDb.database, ownBus);
    try {
      spans.reset();
      const [id] = await createStudents(ownDb.database, 1);
      ownRelay.start();
      const failed = () =>
        spans
          .getFinishedSpans()
          .find((span) => span.name === 'publish students' && span.status.code === SpanStatusCode.ERROR);
      await until(() => failed() !== undefined, 'a failed publish span');
      assert.equal(failed()?.attributes['messaging.message.id'], await rowIdOf(ownDb.database, id!));
      // What a trace backend shows: why the event did not leave, not only that it did not.
      assert.equal(failed()?.status.message, "publish failed: no exchange 'students'");
      assert.deepEqual(
        failed()
          ?.events.filter((event) => event.name === 'exception')
          .map((event) => event.attributes?.['exception.message']),
        ["publish failed: no exchange 'students'"],
        'the exception recorded on the span',
      );
      assert.equal(await unsent(ownDb.database), 1, 'the row waits for a later attempt');
    } finally {
      await ownRelay.stop();
      await ownBus.close();
      await ownDb.dispose();
    }
  });
});

describe('outbox relay on PostgreSQL and RabbitMQ', await needsPostgres(), async () => {
  const rabbit = await needsRabbitMq();
  let created: Awaited<ReturnType<typeof createPostgresDatabase>>;
  let vhost: TestVhost;
  let database: Database;
  const cleanups: (() => Promise<unknown>)[] = [];

  before(async () => {
    if (rabbit.skip) return;
    created = await createPostgresDatabase();
    vhost = await createTestVhost('relay_test');
    database = await openDatabase(created.url, silentLogger);
    await database.migrate();
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await database?.close();
    await created?.drop();
    await vhost?.delete();
  });

  test(
    'the leading relay is woken at once by writes in its own process and, by NOTIFY, by writes in another',
    rabbit,
    async () => {
      const bus = new RabbitMqMessageBus({ url: vhost.url });
      cleanups.push(() => bus.close());
      const received = await collect(bus, 'relay.wake.test');
      // Another process's connections: a pool and channels of its own.
      const elsewhere = await openDatabase(created.url, silentLogger);
      cleanups.push(() => elsewhere.close());
      // A poll interval far beyond the waits below: only the wake-ups can bring the rows out in time.
      const relay = relayOn(database, bus, { pollIntervalMs: 600_000 });
      cleanups.push(() => relay.stop());
      relay.start();
      await until(() => relay.status().role === 'leader', 'leadership');
      for (const [source, count] of [
        [database, 1],
        [elsewhere, 2],
        [database, 3],
      ] as const) {
        assert.ok((await writer(source)({ details: {}, actor: 'tester' })).ok);
        await until(() => received.length === count, `message ${count}`, 5_000);
      }
      // A message can arrive before the broker's confirm of it reaches the relay: stopped then, the relay would leave its
      // row unsent (to go out again later), and the next test would wait for a clean outbox in vain.
      await allSent(database, 'the rows marked sent');
      await relay.stop(); // the next test needs the lock free
    },
  );

  test(
    'a backlog of many overlapping batches leaves once per row, each student in write order',
    rabbit,
    async () => {
      const bus = new RabbitMqMessageBus({ url: vhost.url });
      cleanups.push(() => bus.close());
      await backlogInOrder(database, bus);
    },
  );

  test(
    'with the broker down, writes succeed, the breaker opens and health is Degraded; when it is back, every event flows',
    rabbit,
    async () => {
      const target = new URL(AMQP_URL);
      const proxy = await TcpProxy.start(target.hostname, Number(target.port || 5672));
      cleanups.push(() => proxy.stop());
      const viaProxy = new URL(vhost.url);
      viaProxy.host = `127.0.0.1:${proxy.port}`;
      const bus = new RabbitMqMessageBus({ url: viaProxy.toString(), retryLowMs: 100, retryHighMs: 500 });
      cleanups.push(() => bus.close());
      const consumerBus = new RabbitMqMessageBus({ url: vhost.url });
      cleanups.push(() => consumerBus.close());
      const received = await collect(consumerBus);
      const relay = relayOn(database, bus, { pollIntervalMs: 100 });
      cleanups.push(() => relay.stop());
      relay.start();
      await until(() => relay.status().role === 'leader', 'leadership');
      const create = writer(database);

      await proxy.pause();
      for (let i = 0; i < 20; i++)
        assert.ok((await create({ details: {}, actor: 'tester' })).ok, 'writes succeed');
      await until(() => relay.status().breaker === 'open', 'the breaker to open', 30_000);
      const health = await relay.healthCheck().check();
      assert.equal(health.status, 'Degraded');
      assert.equal(health.data?.breaker, 'open');
      assert.ok(Number(health.data?.backlog) >= 20, `backlog ${String(health.data?.backlog)}`);

      await proxy.resume();
      await allSent(database, 'the backlog to drain', 60_000);
      await until(
        () => new Set(received.map((message) => message.messageId)).size === 20,
        'all 20 events',
        20_000,
      );
      assert.equal((await relay.healthCheck().check()).status, 'Healthy');
      await relay.stop(); // the next test needs the lock free
    },
  );

  test(
    "a row that commits after the relay has read past it still leaves before its student's later rows",
    rabbit,
    async () => {
      await allSent(database, 'a clean outbox');
      const bus = new RabbitMqMessageBus({ url: vhost.url });
      cleanups.push(() => bus.close());
      const received = await collect(bus, 'relay.late-commit');
      // Student X's create takes its `seq`, then waits before COMMIT (a slow commit). Keyed: a create without a key is
      // one autocommit statement, with nothing to hold between the two.
      let commit!: () => void;
      const commitAllowed = new Promise<void>((resolve) => (commit = resolve));
      let flushed!: () => void;
      const rowTaken = new Promise<void>((resolve) => (flushed = resolve));
      const slowCommits: Database = {
        ...database,
        transaction: (work) =>
          database.transaction(async (tx) => {
            const result = await work(tx);
            flushed();
            await commitAllowed;
            return result;
          }),
      };
      const lateCreate = writer(slowCommits)({
        details: {},
        actor: 'tester',
        idempotency: { key: randomUUID(), fingerprint: 'late create', ttlSeconds: 60 },
      });
      await rowTaken;
      await createStudents(database, 3); // later `seq`s, committed at once
      // Right after the relay's first read, which cannot see X's row yet: X's create commits, and X is updated.
      let x: string | undefined;
      let firstRead = true;
      const watched: Database = {
        ...database,
        sql: {
          query: async <Row>(statement: SqlStatement, params: readonly unknown[]) => {
            const rows = await database.sql.query<Row>(statement, params);
            if (firstRead && statement.name.startsWith('outbox_unsent')) {
              firstRead = false;
              commit();
              const created = await lateCreate;
              assert.ok(created.ok);
              x = created.value.id;
              assert.ok(
                (await updateStudent(writeDeps(database))({ id: x, details: {}, actor: 'tester' })).ok,
              );
            }
            return rows;
          },
        },
      };
      const relay = relayOn(watched, bus, { batchSize: 2 });
      cleanups.push(() => relay.stop());
      relay.start();
      await until(() => received.length >= 5, 'five messages');
      await allSent(database, 'the rows marked sent');
      await relay.stop(); // the next test needs the lock free
      const events = received.map(
        (message) => JSON.parse(message.body.toString()) as { subject: string; type: string },
      );
      assert.deepEqual(
        events.filter((event) => event.subject === x).map((event) => event.type),
        ['StudentCreated', 'StudentUpdated'],
      );
    },
  );

  test(
    "when the leader's connection drops right after it won the lock, the relay contends again, leads and publishes, and stops",
    rabbit,
    async () => {
      await allSent(database, 'a clean outbox');
      const bus = new RabbitMqMessageBus({ url: vhost.url });
      cleanups.push(() => bus.close());
      const received = await collect(bus, 'relay.listen-lost');
      const admin = new pg.Client({ connectionString: created.url });
      await admin.connect();
      cleanups.push(() => admin.end());
      // The first leadership's session is ended by the server just before its LISTEN, as a network blip or a
      // PostgreSQL restart at that moment would: the LISTEN fails.
      let dropped = false;
      const dropsFirstLeader: Database = {
        ...database,
        async tryLead(lockKey) {
          const leadership = await database.tryLead(lockKey);
          if (!leadership || dropped) return leadership;
          dropped = true;
          const dropping: Leadership = {
            ...leadership,
            async listen(channel, onNotify) {
              await admin.query(
                `select pg_terminate_backend(pid) from pg_locks
                 where locktype = 'advisory' and objid = $1::bigint::oid
                   and database = (select oid from pg_database where datname = current_database())`,
                [lockKey],
              );
              await leadership.lost;
              return leadership.listen(channel, onNotify);
            },
          };
          return dropping;
        },
      };
      const relay = relayOn(dropsFirstLeader, bus, { pollIntervalMs: 100 });
      cleanups.push(() => relay.stop());
      relay.start();
      await until(() => dropped, 'the first leadership');

      const [id] = await createStudents(database, 1);
      await until(
        () => received.some((message) => message.headers['cloudEvents:subject'] === id),
        'the event',
      );
      assert.equal(relay.status().role, 'leader');
      await allSent(database, 'the row marked sent');
      await relay.stop(); // resolves; the next test needs the lock free
    },
  );

  test(
    'stopped while the broker is unreachable, the relay stops at once; the batch it was publishing goes out later',
    rabbit,
    async () => {
      await allSent(database, 'a clean outbox');
      const reachable = new RabbitMqMessageBus({ url: vhost.url });
      cleanups.push(() => reachable.close());
      const received = await collect(reachable, 'relay.stopped-in-outage');
      const target = new URL(AMQP_URL);
      const proxy = await TcpProxy.start(target.hostname, Number(target.port || 5672));
      cleanups.push(() => proxy.stop());
      await proxy.pause();
      const viaProxy = new URL(vhost.url);
      viaProxy.host = `127.0.0.1:${proxy.port}`;
      const bus = new RabbitMqMessageBus({ url: viaProxy.toString() });
      cleanups.push(() => bus.close());
      let publishing!: () => void;
      const publishStarted = new Promise<void>((resolve) => (publishing = resolve));
      const publish = bus.publish.bind(bus);
      bus.publish = (messages, signal) => (publishing(), publish(messages, signal));
      const [id] = await createStudents(database, 1);
      // The default resilience: attempts of up to 30 s each, retried with back-off, each waiting for a connection.
      const relay = new OutboxRelay({
        database,
        bus,
        logger: silentLogger,
        policy: createResiliencePolicy('relay', DEFAULT_RESILIENCE, silentLogger),
        options: { standbyRetryMs: 200 },
      });
      cleanups.push(() => relay.stop());
      spans.reset();
      relay.start();
      await publishStarted;

      assert.equal(await settlesWithin(relay.stop(), 5_000), 'settled', 'relay.stop()');
      assert.equal(await settlesWithin(bus.close(), 5_000), 'settled', 'bus.close() after it');
      assert.equal(await unsent(database), 1, 'the row is left unsent');
      const abandoned = spans.getFinishedSpans().filter((span) => span.name === 'publish students');
      assert.equal(abandoned.length, 1, 'the publish span ends');
      assert.notEqual(
        abandoned[0]?.status.code,
        SpanStatusCode.ERROR,
        'a publish given up by a stop is no failure',
      );

      const next = relayOn(database, reachable);
      cleanups.push(() => next.stop());
      next.start();
      await until(
        () => received.some((message) => message.headers['cloudEvents:subject'] === id),
        'the event',
      );
      await allSent(database, 'the row marked sent');
      await next.stop(); // the next test needs the lock free
    },
  );

  test(
    'two relays on one database: one publishes, the other takes over when it is killed, nothing is published twice',
    rabbit,
    async () => {
      await allSent(database, 'a clean outbox');
      const consumerBus = new RabbitMqMessageBus({ url: vhost.url });
      cleanups.push(() => consumerBus.close());
      const received = await collect(consumerBus, 'relay.takeover');

      const child = spawn(process.execPath, ['--import', 'tsx', 'test/outbox/relay-process.ts'], {
        env: { ...process.env, RELAY_DATABASE_URL: created.url, RELAY_AMQP_URL: vhost.url },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      cleanups.push(async () => child.kill('SIGKILL'));
      let leading = false;
      createInterface({ input: child.stdout }).once('line', () => (leading = true));
      await until(() => leading, 'the relay process to lead');

      const bus = new RabbitMqMessageBus({ url: vhost.url });
      cleanups.push(() => bus.close());
      const standby = relayOn(database, bus, { pollIntervalMs: 100 });
      cleanups.push(() => standby.stop());
      standby.start();
      await until(() => standby.status().role === 'standby', 'the second relay to stand by');

      const create = writer(database);
      for (let i = 0; i < 30; i++) await create({ details: {}, actor: 'tester' });
      await until(() => received.length >= 30, 'the leader to publish 30');
      // Killed between a publish's confirm and marking its rows sent, the leader would leave them for the standby to
      // publish again: at-least-once, by design (consumers skip by message id). What is marked sent never goes twice.
      await allSent(database, 'the leader to mark them sent');
      assert.equal(standby.status().published, 0, 'the standby published nothing');

      child.kill('SIGKILL');
      await until(() => standby.status().role === 'leader', 'the standby to take over', 15_000);
      for (let i = 0; i < 30; i++) await create({ details: {}, actor: 'tester' });
      await until(() => received.length >= 60, 'all 60 events');
      await new Promise((resolve) => setTimeout(resolve, 500)); // room for a stray duplicate to show up
      const ids = received.map((message) => message.messageId);
      assert.equal(ids.length, 60);
      assert.equal(new Set(ids).size, 60, 'no event published twice');
      assert.equal(standby.status().published, 30);
    },
  );
});
