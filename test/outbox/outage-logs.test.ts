// A broker outage as the outbox relay's log tells it: that the events wait in the outbox and how many, then that the
// backlog went out, how many and after how long; nothing, and no backlog count, while all is well.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isNull } from 'drizzle-orm';
import { createStudent } from '../../src/application/students/create-student.ts';
import { topicExchange } from '../../src/contracts/messaging.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { OutboxRelay } from '../../src/infrastructure/outbox/outbox-relay.ts';
import type { Database } from '../../src/infrastructure/persistence/database.ts';
import { outbox } from '../../src/infrastructure/persistence/schema.ts';
import { SqlUnitOfWork } from '../../src/infrastructure/persistence/sql-unit-of-work.ts';
import {
  createResiliencePolicy,
  DEFAULT_RESILIENCE,
} from '../../src/infrastructure/resilience/resilience-policy.ts';
import { fakerStudentGenerator } from '../../src/infrastructure/system/faker-student-generator.ts';
import { systemClock } from '../../src/infrastructure/system/system-clock.ts';
import { uuidV7Generator } from '../../src/infrastructure/system/uuid-v7-generator.ts';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { recordingLogger, silentLogger } from '../support/logger.ts';
import { privateServersAndPostgres, startPrivateRabbitMq } from '../support/private-servers.ts';
import { until } from '../support/until.ts';

const HELD_BACK = 'publishing the outbox failed; the events wait in the outbox';

describe('outbox relay logs through a broker outage', await privateServersAndPostgres(), () => {
  let rabbitMq: Awaited<ReturnType<typeof startPrivateRabbitMq>>;
  let testDb: TestDatabase;
  before(async () => {
    rabbitMq = await startPrivateRabbitMq();
    testDb = await openTestDatabase('postgres');
  });
  after(async () => {
    await testDb?.dispose();
    await rabbitMq?.dispose();
  });

  test(
    'while the broker is away the relay says the events wait in the outbox, with the backlog; once back, that it drained',
    { timeout: 120_000 },
    async () => {
      const { logger, logged } = recordingLogger();
      const lines = () =>
        logged()
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as Record<string, unknown>);
      // The backlog counts the relay asks for, seen from the statements it runs.
      let backlogCounts = 0;
      const database: Database = {
        ...testDb.database,
        sql: {
          query: (statement, params) => {
            if (statement.name === 'outbox_backlog') backlogCounts++;
            return testDb.database.sql.query(statement, params);
          },
        },
      };
      const bus = new RabbitMqMessageBus({ url: rabbitMq.url, retryLowMs: 100, retryHighMs: 500 });
      await bus.declareTopology({ exchanges: [topicExchange('students')], queues: [], bindings: [] });
      const relay = new OutboxRelay({
        database,
        bus,
        logger,
        policy: createResiliencePolicy(
          'relay',
          {
            ...DEFAULT_RESILIENCE,
            durationOfBreakMs: 1_000,
            baseDelayMs: 50,
            maxDelayMs: 200,
            timeoutMs: 2_000,
          },
          silentLogger,
        ),
        options: { pollIntervalMs: 100 },
      });
      const create = createStudent({
        unitOfWork: new SqlUnitOfWork(testDb.database, uuidV7Generator),
        ids: uuidV7Generator,
        clock: systemClock,
        generator: fakerStudentGenerator,
      });
      const createStudents = async (count: number) => {
        for (let i = 0; i < count; i++) assert.ok((await create({ details: {}, actor: 'tester' })).ok);
      };
      const unsent = async () =>
        (await testDb.database.db.select({ id: outbox.id }).from(outbox).where(isNull(outbox.sentAt))).length;
      try {
        relay.start();
        await until(() => relay.status().role === 'leader', 'leadership');
        await createStudents(2);
        await until(async () => (await unsent()) === 0, 'the healthy rows sent');
        assert.deepEqual(
          lines().map((line) => line.msg),
          ['leading: publishing the outbox'],
          'publishing while all is well adds no line',
        );
        assert.equal(backlogCounts, 0, 'nor a backlog count');

        await rabbitMq.stop();
        await createStudents(5);
        await until(() => lines().some((line) => line.msg === HELD_BACK), 'the outage said', 60_000);
        const heldBack = lines().find((line) => line.msg === HELD_BACK)!;
        assert.equal(heldBack.level, 40, 'a warning: nothing is lost, the relay goes on trying');
        assert.equal(heldBack.backlog, 5, 'how many events wait');
        assert.ok(
          Date.parse(String(heldBack.failingSince)) <= Number(heldBack.time),
          `failingSince ${String(heldBack.failingSince)}`,
        );
        assert.ok(heldBack.reason, 'why');
        assert.equal(heldBack.err, undefined, 'no stack for an outage the line explains');

        await rabbitMq.start();
        await until(() => lines().some((line) => line.msg === 'outbox drained'), 'the drain said', 90_000);
        assert.equal(await unsent(), 0);
        const drained = lines().find((line) => line.msg === 'outbox drained')!;
        assert.equal(drained.level, 30);
        assert.equal(drained.published, 5, 'the events held back, all of them');
        assert.ok(
          typeof drained.downMs === 'number' &&
            typeof drained.tookMs === 'number' &&
            drained.downMs >= drained.tookMs &&
            drained.tookMs >= 0,
          `downMs ${String(drained.downMs)}, tookMs ${String(drained.tookMs)}`,
        );
        assert.equal(
          lines().filter((line) => line.msg === HELD_BACK).length,
          1,
          'said once, not once per failed attempt',
        );

        // All is well again: no line, no count, and the outage is not said again.
        const countsBefore = backlogCounts;
        const linesBefore = lines().length;
        await createStudents(2);
        await until(async () => (await unsent()) === 0, 'the rows after the recovery sent');
        assert.equal(lines().length, linesBefore, JSON.stringify(lines().slice(linesBefore)));
        assert.equal(backlogCounts, countsBefore);
      } finally {
        await relay.stop();
        await bus.close();
      }
    },
  );
});
