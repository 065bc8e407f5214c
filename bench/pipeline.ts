// Events per second from commit to worker-done (outbox → relay → RabbitMQ → worker), next to two baselines
// measured in the same run: raw PostgreSQL transactions of the worker's shape, and the relay alone.
import { count, eq, isNull } from 'drizzle-orm';
import pg from 'pg';
import { createWorker } from '../src/apps/worker/main.ts';
import { parseConfig } from '../src/config.ts';
import { MESSAGING_TOPOLOGY } from '../src/contracts/messaging.ts';
import { Student } from '../src/domain/student.ts';
import { createLogger } from '../src/infrastructure/logging/logger.ts';
import { RabbitMqMessageBus } from '../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { startOutboxRelay } from '../src/infrastructure/outbox/outbox-relay.ts';
import { openDatabase, type Database } from '../src/infrastructure/persistence/database.ts';
import { SqlUnitOfWork } from '../src/infrastructure/persistence/sql-unit-of-work.ts';
import { outbox, students } from '../src/infrastructure/persistence/schema.ts';
import { fakerStudentGenerator } from '../src/infrastructure/system/faker-student-generator.ts';
import { uuidV7Generator } from '../src/infrastructure/system/uuid-v7-generator.ts';
import { checkNamed, type HealthBody } from '../test/support/health.ts';
import { createTestVhost } from '../test/support/rabbitmq-vhost.ts';
import { createPostgresDatabase } from '../test/support/databases.ts';
import { startChildServer } from './child-server.ts';
import type { BenchRow } from './table.ts';

const logger = createLogger({ level: 'warn', pretty: false });

/** A fresh database and vhost per measurement, so no run sees another's backlog. */
async function withStack<T>(
  work: (stack: { database: Database; url: string; amqpUrl: string }) => Promise<T>,
) {
  const created = await createPostgresDatabase();
  const vhost = await createTestVhost('pipeline_bench');
  const database = await openDatabase(created.url, logger);
  await database.migrate();
  try {
    return await work({ database, url: created.url, amqpUrl: vhost.url });
  } finally {
    await database.close();
    await created.drop();
    await vhost.delete();
  }
}

/** Commits `n` created students and their StudentCreated outbox rows in one transaction. */
async function seed(database: Database, n: number): Promise<string[]> {
  const unitOfWork = new SqlUnitOfWork(database, uuidV7Generator);
  const ids: string[] = [];
  await unitOfWork.transaction(async (scope) => {
    for (let i = 0; i < n; i++) {
      const created = Student.create({
        id: uuidV7Generator.next(),
        details: fakerStudentGenerator.generate(),
        actor: 'bench',
        now: new Date(),
      });
      if (!created.ok) throw new Error('generated student is invalid');
      await scope.students.add(created.value);
      ids.push(created.value.id);
    }
  });
  return ids;
}

async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
}

const perSecond = (n: number, startedMs: number) => Math.round(n / ((performance.now() - startedMs) / 1000));

/** The relay alone: n rows to `students` (no consumer), until none is unsent. */
function relayAlone(n: number): Promise<number> {
  return withStack(async ({ database, amqpUrl }) => {
    await seed(database, n);
    const bus = new RabbitMqMessageBus({ url: amqpUrl });
    await bus.declareTopology(MESSAGING_TOPOLOGY);
    const started = performance.now();
    const relay = startOutboxRelay({ database, bus, resilience: parseConfig({}).resilience, logger });
    await waitFor(async () => {
      const [row] = await database.db.select({ n: count() }).from(outbox).where(isNull(outbox.sentAt));
      return row?.n === 0;
    });
    const rate = perSecond(n, started);
    await relay.stop();
    await bus.close();
    return rate;
  });
}

/**
 * The whole loop as deployed: n events committed at once → relay (its own process, as in a webapi, already
 * leading) → RabbitMQ → worker (this process, already consuming), until every student has updates == 1. With
 * `partitions`, the events are spread over that many queues, shared out by `workers` workers (each with its own
 * connection), measured once every worker owns its share.
 */
function pipeline(n: number, prefetch: number, { partitions = 1, workers = 1 } = {}): Promise<number> {
  return withStack(async ({ database, url, amqpUrl }) => {
    const config = parseConfig({
      WORKER_PORT: '0',
      WORKER_PREFETCH: String(prefetch),
      WORKER_PARTITIONS: String(partitions),
      LOG_LEVEL: 'warn',
    });
    const buses = Array.from({ length: workers }, () => new RabbitMqMessageBus({ url: amqpUrl }));
    const running = buses.map((bus) => createWorker({ config, logger, database, bus }));
    const relay = await startChildServer('bench/servers/relay.ts', {
      BENCH_DATABASE_URL: url,
      BENCH_AMQP_URL: amqpUrl,
      BENCH_WORKER_PARTITIONS: String(partitions),
    });
    const healthUrls = await Promise.all(running.map((worker) => worker.start()));
    if (partitions > 1)
      await waitFor(async () => {
        const owned = await Promise.all(healthUrls.map(partitionsOwned));
        return owned.every((count) => count === partitions / workers);
      });
    await seed(database, n);
    const started = performance.now();
    await waitFor(async () => {
      const [row] = await database.db.select({ n: count() }).from(students).where(eq(students.updates, 1));
      return row?.n === n;
    });
    const rate = perSecond(n, started);
    await Promise.all(running.map((worker) => worker.stop()));
    await relay.stop();
    await Promise.all(buses.map((bus) => bus.close()));
    return rate;
  });
}

/** How many partition queues the worker behind `healthUrl` consumes now. */
async function partitionsOwned(healthUrl: string): Promise<number> {
  const health = (await (await fetch(healthUrl)).json()) as HealthBody;
  return (
    checkNamed<{ partitions?: { owned: readonly number[] } }>(health, 'consumer')?.data.partitions?.owned
      .length ?? 0
  );
}

/** Baseline: the worker's transaction shape (lock + read, update, 2 outbox inserts) straight on pg, 10 at a time. */
function rawTransactions(n: number): Promise<number> {
  return withStack(async ({ database, url }) => {
    const ids = await seed(database, n);
    const pool = new pg.Pool({ connectionString: url, max: 10 });
    // pool.end() resolves before its connections have closed, and the database is then dropped WITH (FORCE): a
    // connection terminated by that must not be an unhandled 'error' that ends the run.
    pool.on('error', () => undefined);
    const insert =
      "insert into outbox (id, exchange, routing_key, type, subject, payload, occurred_at) values ($1, 'notifications', 'student.cached', 'StudentCached', $2, '{}'::jsonb, now())";
    const started = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        const client = await pool.connect();
        try {
          while (next < ids.length) {
            const id = ids[next++]!;
            await client.query('begin');
            await client.query('select * from students where id = $1 for update', [id]);
            await client.query(
              'update students set updates = updates + 1, version = version + 1 where id = $1',
              [id],
            );
            await client.query(insert, [uuidV7Generator.next(), id]);
            await client.query(insert, [uuidV7Generator.next(), id]);
            await client.query('commit');
          }
        } finally {
          client.release();
        }
      }),
    );
    const rate = perSecond(n, started);
    await pool.end();
    return rate;
  });
}

export async function pipelineBench(options: { events?: number } = {}): Promise<BenchRow[]> {
  const n = options.events ?? 5_000;
  const baseline = await rawTransactions(n);
  await relayAlone(1_000); // warms up the JIT and the broker's queue processes; not measured
  const relay = await relayAlone(n);
  const fifo = await pipeline(Math.min(n, 2_000), 1);
  const fifoPartitioned = await pipeline(Math.min(n, 2_000), 1, { partitions: 4, workers: 2 });
  const concurrent = await pipeline(n, 50);
  const scenario = `commit → worker done (${n.toLocaleString('en-US')} events)`;
  return [
    { scenario, variant: 'raw PostgreSQL tx of the worker shape (baseline)', rps: baseline, ratio: 1 },
    { scenario, variant: 'relay alone (outbox → RabbitMQ)', rps: relay, note: 'target ≥ 5,000/s' },
    {
      scenario,
      variant: 'pipeline, prefetch 50',
      rps: concurrent,
      ratio: concurrent / baseline,
      note: 'target ≥ 0.50×',
    },
    { scenario, variant: 'pipeline, prefetch 1 (strict FIFO)', rps: fifo, ratio: fifo / baseline },
    {
      scenario,
      variant: 'pipeline, prefetch 1, 4 partitions over 2 workers',
      rps: fifoPartitioned,
      ratio: fifoPartitioned / baseline,
      note: `${(fifoPartitioned / fifo).toFixed(2)}× one queue`,
    },
  ];
}
