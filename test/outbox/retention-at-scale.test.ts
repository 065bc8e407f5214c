// Retention catching up on a large backlog of expired rows: it must neither hold publishing up for as long as the
// deletion takes, nor a stop.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { outcome } from '../../src/application/ports/message-bus.ts';
import { createStudent } from '../../src/application/students/create-student.ts';
import { mergeTopologies, topicExchange } from '../../src/contracts/messaging.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { OutboxRelay } from '../../src/infrastructure/outbox/outbox-relay.ts';
import { pruneInbox, schedulePruning } from '../../src/infrastructure/persistence/retention.ts';
import { SqlUnitOfWork } from '../../src/infrastructure/persistence/sql-unit-of-work.ts';
import {
  createResiliencePolicy,
  DEFAULT_RESILIENCE,
} from '../../src/infrastructure/resilience/resilience-policy.ts';
import { fakerStudentGenerator } from '../../src/infrastructure/system/faker-student-generator.ts';
import { systemClock } from '../../src/infrastructure/system/system-clock.ts';
import { uuidV7Generator } from '../../src/infrastructure/system/uuid-v7-generator.ts';
import { silentLogger } from '../support/logger.ts';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { needsPostgres } from '../support/services.ts';
import { until } from '../support/until.ts';

// Enough that deleting them takes seconds (batches of 5,000, at tens of thousands of rows a second).
const EXPIRED_ROWS = 200_000;

describe('retention at scale (PostgreSQL)', await needsPostgres(), () => {
  let testDb: TestDatabase;

  before(async () => {
    testDb = await openTestDatabase('postgres');
  });
  after(async () => {
    await testDb?.dispose();
  });

  async function query(sql: string): Promise<number> {
    const client = new pg.Client({ connectionString: testDb.url });
    await client.connect();
    try {
      return (await client.query<{ n: number }>(sql)).rows[0]?.n ?? 0;
    } finally {
      await client.end();
    }
  }

  test('a backlog of expired sent rows does not hold new messages up while it is deleted', async () => {
    await query(
      `insert into outbox (id, exchange, routing_key, type, subject, payload, occurred_at, sent_at)
       select gen_random_uuid(), 'students', 'student.updated', 'StudentUpdated', gen_random_uuid()::text,
         jsonb_build_object('n', g, 'pad', repeat('x', 300)), now() - interval '3 days', now() - interval '3 days'
       from generate_series(1, ${EXPIRED_ROWS}) g`,
    );
    await query('analyze outbox');
    const bus = new InProcessMessageBus();
    await bus.declareTopology(
      mergeTopologies({
        exchanges: [topicExchange('students')],
        queues: [{ name: 'retention.relay', type: 'quorum', durable: true }],
        bindings: [{ exchange: 'students', queue: 'retention.relay', routingKey: '#' }],
      }),
    );
    const received: string[] = [];
    await bus.consume('retention.relay', {
      prefetch: 100,
      handler: (message) => (received.push(message.messageId), outcome.ack()),
    });
    const relay = new OutboxRelay({
      database: testDb.database,
      bus,
      logger: silentLogger,
      policy: createResiliencePolicy('relay', DEFAULT_RESILIENCE, silentLogger),
      options: { standbyRetryMs: 200, pollIntervalMs: 100 },
    });
    const create = createStudent({
      unitOfWork: new SqlUnitOfWork(testDb.database, uuidV7Generator),
      ids: uuidV7Generator,
      clock: systemClock,
      generator: fakerStudentGenerator,
    });
    relay.start();
    try {
      const left = () =>
        query(`select count(*)::int as n from outbox where sent_at < now() - interval '1 day'`);
      // The cleanup is under way.
      await until(async () => (await left()) < EXPIRED_ROWS, 'the cleanup to start', 30_000);
      const before = received.length;
      assert.ok((await create({ details: {}, actor: 'retention' })).ok);
      await until(() => received.length > before, 'the new message', 60_000);
      assert.ok((await left()) > 0, 'the new message went out while expired rows were still being deleted');
      await until(async () => (await left()) === 0, 'every expired row deleted', 120_000);
    } finally {
      await relay.stop();
      await bus.close();
    }
  });

  test("stopping the inbox's pruning does not wait for the whole backlog to be deleted", async () => {
    await query(
      `insert into inbox (message_id, consumer, processed_at)
       select gen_random_uuid()::text, 'retention', now() - interval '30 days'
       from generate_series(1, ${EXPIRED_ROWS}) g`,
    );
    await query('analyze inbox');
    const pruning = schedulePruning(
      (stopping) => pruneInbox(testDb.database, new Date(Date.now() - 86_400_000), stopping),
      { everyMs: 3_600_000, logger: silentLogger, what: 'inbox' },
    );
    await until(
      async () => (await query('select count(*)::int as n from inbox')) < EXPIRED_ROWS,
      'the pruning to start',
    );
    await pruning.stop();
    assert.ok(
      (await query('select count(*)::int as n from inbox')) > 0,
      'stop() ended the pruning between batches, rather than waiting for all of the backlog',
    );
  });
});
