// The write → outbox → RabbitMQ → worker → notifications pipeline with every role its own process, on a
// database and a RabbitMQ vhost of its own, observed by a test consumer on the `notifications` exchange.
import pg from 'pg';
import { outcome } from '../../src/application/ports/message-bus.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { createTestVhost, type TestVhost } from '../support/rabbitmq-vhost.ts';
import { createPostgresDatabase } from '../support/databases.ts';
import { startRole, type RoleProcess } from '../support/role-process.ts';

export interface Notification {
  readonly messageId: string;
  readonly eventType: string;
  readonly studentId: string;
}

/** With `amqpUrl` the pipeline runs on that broker (e.g. a test's own); otherwise on a new vhost of the shared one. */
export async function startPipeline(options: { workerPrefetch?: number; amqpUrl?: string } = {}) {
  const database = await createPostgresDatabase();
  const vhost: TestVhost | undefined = options.amqpUrl ? undefined : await createTestVhost('pipeline_test');
  const amqpUrl = options.amqpUrl ?? vhost!.url;
  const env = {
    DATABASE_URL: database.url,
    AMQP_URL: amqpUrl,
    REDIS_URL: 'memory:',
    API_PORT: '0',
    WORKER_PORT: '0',
    WORKER_PREFETCH: String(options.workerPrefetch ?? 1),
    // Quick recovery after a broker restart; the defaults are tuned for production.
    RESILIENCE_DURATION_OF_BREAK_MS: '2000',
    RESILIENCE_BASE_DELAY_MS: '100',
    RESILIENCE_MAX_DELAY_MS: '1000',
    RESILIENCE_TIMEOUT_MS: '5000',
  };
  const webapi = await startRole('src/apps/webapi/main.ts', env);
  let worker: RoleProcess = await startRole('src/apps/worker/main.ts', env);

  const observer = new RabbitMqMessageBus({ url: amqpUrl, retryLowMs: 100, retryHighMs: 1_000 });
  await observer.declareTopology({
    exchanges: [{ name: 'notifications', type: 'topic', durable: true }],
    queues: [{ name: 'test.observer', type: 'quorum', durable: true }],
    bindings: [{ exchange: 'notifications', queue: 'test.observer', routingKey: '#' }],
  });
  const deliveries: Notification[] = [];
  await observer.consume('test.observer', {
    prefetch: 200,
    handler: (message) => {
      const event = JSON.parse(message.body.toString()) as {
        data: { eventType: string; student: { id: string } };
      };
      deliveries.push({
        messageId: message.messageId,
        eventType: event.data.eventType,
        studentId: event.data.student.id,
      });
      return outcome.ack();
    },
  });

  /** POSTs `count` students, `concurrency` at a time; returns every response status and the created ids. */
  async function createStudents(count: number, concurrency = 50) {
    const statuses: number[] = [];
    const ids: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < count) {
          next++;
          const response = await fetch(`${webapi.url}/api/students`, { method: 'POST' });
          statuses.push(response.status);
          if (response.status === 201) ids.push(((await response.json()) as { id: string }).id);
          else await response.body?.cancel();
        }
      }),
    );
    return { statuses, ids };
  }

  async function updatesPerStudent(): Promise<Map<string, number>> {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ id: string; updates: number }>(
        'select id, updates from students',
      );
      return new Map(rows.map((row) => [row.id, row.updates]));
    } finally {
      await client.end();
    }
  }

  return {
    env,
    webapi,
    get worker() {
      return worker;
    },
    async restartWorker() {
      worker = await startRole('src/apps/worker/main.ts', env);
    },
    deliveries,
    createStudents,
    updatesPerStudent,
    async dispose() {
      await observer.close().catch(() => undefined);
      await Promise.all([webapi.stop(), worker.stop()]);
      await vhost?.delete().catch(() => undefined);
      await database.drop();
    },
  };
}

/** Per student: how many distinct notifications of each type arrived, and how many raw deliveries repeated an id. */
export function tally(deliveries: readonly Notification[], ids: readonly string[]) {
  const seen = new Set<string>();
  let redelivered = 0;
  const perStudent = new Map<string, Map<string, number>>(ids.map((id) => [id, new Map()]));
  for (const delivery of deliveries) {
    if (seen.has(delivery.messageId)) {
      redelivered++;
      continue;
    }
    seen.add(delivery.messageId);
    const counts = perStudent.get(delivery.studentId);
    counts?.set(delivery.eventType, (counts.get(delivery.eventType) ?? 0) + 1);
  }
  let missing = 0;
  let twice = 0;
  for (const counts of perStudent.values()) {
    for (const type of ['StudentCreated', 'StudentCached']) {
      const count = counts.get(type) ?? 0;
      if (count === 0) missing++;
      if (count > 1) twice += count - 1;
    }
  }
  return { missing, twice, redelivered, distinct: seen.size };
}
