// Builds what a worker test needs: a database and a bus (embedded or real), students, domain events as the outbox
// relay publishes them, and reads of the notifications the worker wrote.
import { and, asc, eq, inArray } from 'drizzle-orm';
import { Registry } from 'prom-client';
import { v7 } from 'uuid';
import type { MessageBus, OutgoingMessage } from '../../src/application/ports/message-bus.ts';
import { createStudent } from '../../src/application/students/create-student.ts';
import { toStudentDto } from '../../src/application/students/student-dto.ts';
import { createWorker, type Worker, type WorkerDeps } from '../../src/apps/worker/main.ts';
import { parseConfig } from '../../src/config.ts';
import {
  CLOUD_EVENTS_CONTENT_TYPE,
  SUBJECT_HEADER,
  type CloudEvent,
} from '../../src/contracts/cloud-events.ts';
import { Exchanges, StudentRoutingKeys, TRACEPARENT_HEADER } from '../../src/contracts/messaging.ts';
import type {
  StudentEventData,
  StudentEventType,
  StudentNotification,
} from '../../src/contracts/students.ts';
import type { StudentSnapshot } from '../../src/domain/student.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import type { Database } from '../../src/infrastructure/persistence/database.ts';
import { SqlUnitOfWork } from '../../src/infrastructure/persistence/sql-unit-of-work.ts';
import { outbox, students } from '../../src/infrastructure/persistence/schema.ts';
import { fakerStudentGenerator } from '../../src/infrastructure/system/faker-student-generator.ts';
import { systemClock } from '../../src/infrastructure/system/system-clock.ts';
import { uuidV7Generator } from '../../src/infrastructure/system/uuid-v7-generator.ts';
import { createTestVhost } from '../support/rabbitmq-vhost.ts';
import { openTestDatabase } from '../support/databases.ts';
import { silentLogger } from '../support/logger.ts';

export interface WorkerEnvironment {
  readonly database: Database;
  readonly bus: MessageBus;
  dispose(): Promise<void>;
}

export type EnvironmentFactory = () => Promise<WorkerEnvironment>;

export const embedded: EnvironmentFactory = async () => {
  const test = await openTestDatabase('pglite');
  const bus = new InProcessMessageBus();
  return {
    database: test.database,
    bus,
    async dispose() {
      await bus.close();
      await test.dispose();
    },
  };
};

/** Its own PostgreSQL database and its own RabbitMQ vhost, both removed afterwards. */
export const realServers: EnvironmentFactory = async () => {
  const [test, vhost] = await Promise.all([openTestDatabase('postgres'), createTestVhost('worker_test')]);
  const bus = new RabbitMqMessageBus({ url: vhost.url, connectionName: 'worker test', retryLowMs: 200 });
  return {
    database: test.database,
    bus,
    async dispose() {
      await bus.close();
      await Promise.all([test.dispose(), vhost.delete()]);
    },
  };
};

export interface RunningWorker {
  readonly worker: Worker;
  readonly healthUrl: string;
  readonly registry: Registry;
}

/** A worker on a free port with short retry delays, started. */
export async function startWorker(
  env: WorkerEnvironment,
  options: {
    prefetch?: number;
    partitions?: number;
    afterProcessed?: WorkerDeps['afterProcessed'];
    database?: Database;
  } = {},
): Promise<RunningWorker> {
  const config = parseConfig({
    WORKER_PORT: '0',
    LOG_LEVEL: 'silent',
    WORKER_PREFETCH: String(options.prefetch ?? 1),
    WORKER_PARTITIONS: String(options.partitions ?? 1),
    RESILIENCE_BASE_DELAY_MS: '5',
    RESILIENCE_MAX_DELAY_MS: '50',
  });
  const registry = new Registry();
  const worker = createWorker({
    config,
    logger: silentLogger,
    database: options.database ?? env.database,
    bus: env.bus,
    registry,
    afterProcessed: options.afterProcessed,
  });
  const healthUrl = await worker.start();
  return { worker, healthUrl, registry };
}

/**
 * The same database, but each transaction starts after a random pause of up to `maxMs`, as GC pauses and a busy
 * pool do: handlers that run concurrently then overtake each other, so only real ordering keeps an order.
 */
export function withJitteredTransactions(database: Database, maxMs = 25): Database {
  const db = new Proxy(database.db, {
    get(target, property, receiver) {
      if (property !== 'transaction') return Reflect.get(target, property, receiver) as unknown;
      return async (...args: Parameters<Database['db']['transaction']>) => {
        await new Promise((resolve) => setTimeout(resolve, Math.random() * maxMs));
        return target.transaction(...args);
      };
    },
  });
  return { ...database, db };
}

/** A student stored the way the webapi stores one (its StudentCreated row lands in the outbox too). */
export async function addStudent(database: Database): Promise<StudentSnapshot> {
  const created = await createStudent({
    unitOfWork: new SqlUnitOfWork(database, uuidV7Generator),
    ids: uuidV7Generator,
    clock: systemClock,
    generator: fakerStudentGenerator,
  })({ details: {}, actor: 'alice' });
  if (!created.ok) throw new Error(created.error.message);
  return created.value;
}

const routingKeys = {
  StudentCreated: StudentRoutingKeys.created,
  StudentUpdated: StudentRoutingKeys.updated,
  StudentDeleted: StudentRoutingKeys.deleted,
} as const;

/** A 32-hex-digit W3C trace id that encodes `n`, so a notification tells which event it came from. */
export const traceIdOf = (n: number) => (n + 1).toString(16).padStart(32, '0');

/** A domain event as the outbox relay publishes it: CloudEvent body, subject and traceparent headers. */
export function studentEvent(
  type: StudentEventType,
  student: StudentSnapshot,
  options: { id?: string; trace?: number } = {},
): OutgoingMessage {
  const id = options.id ?? v7();
  const event: CloudEvent<StudentEventData> = {
    specversion: '1.0',
    id,
    source: '/tests/worker',
    type,
    subject: student.id,
    time: new Date().toISOString(),
    datacontenttype: 'application/json',
    data: { student: toStudentDto(student), actor: 'alice' },
  };
  return {
    exchange: Exchanges.students,
    routingKey: routingKeys[type],
    messageId: id,
    body: JSON.stringify(event),
    contentType: CLOUD_EVENTS_CONTENT_TYPE,
    headers: {
      [SUBJECT_HEADER]: student.id,
      [TRACEPARENT_HEADER]: `00-${traceIdOf(options.trace ?? 0)}-00f067aa0ba902b7-01`,
    },
  };
}

export interface StoredNotification {
  readonly type: string;
  readonly routingKey: string;
  readonly payload: StudentNotification;
  readonly traceparent: string | undefined;
}

/** The notifications the worker wrote for one student, in outbox (= publish) order. */
export async function notificationsOf(database: Database, studentId: string): Promise<StoredNotification[]> {
  const rows = await database.db
    .select()
    .from(outbox)
    .where(and(eq(outbox.exchange, Exchanges.notifications), eq(outbox.subject, studentId)))
    .orderBy(asc(outbox.seq));
  return rows.map((row) => ({
    type: row.type,
    routingKey: row.routingKey,
    payload: row.payload as StudentNotification,
    traceparent: row.headers[TRACEPARENT_HEADER],
  }));
}

export async function updatesOf(database: Database, ids: readonly string[]): Promise<Map<string, number>> {
  const rows = await database.db
    .select({ id: students.id, updates: students.updates })
    .from(students)
    .where(inArray(students.id, [...ids]));
  return new Map(rows.map((row) => [row.id, row.updates]));
}

/** The worker's message counter for one outcome. */
export async function counted(registry: Registry, outcome: string): Promise<number> {
  const metric = registry.getSingleMetric('worker_messages_total');
  const values = metric ? (await metric.get()).values : [];
  return values.find((value) => value.labels.outcome === outcome)?.value ?? 0;
}

/** The worker's `worker_partitions_owned` gauge. */
export async function partitionsOwned(registry: Registry): Promise<number | undefined> {
  const metric = registry.getSingleMetric('worker_partitions_owned');
  return metric ? (await metric.get()).values[0]?.value : undefined;
}

/** Polls `condition` until it holds; fails with `what` after `timeoutMs` (generous: the machine is shared). */
export async function eventually(
  what: string,
  condition: () => Promise<boolean> | boolean,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
