// From the API's 201 to the StudentCreated notification, over SSE and over the SignalR hub. Two stacks: every
// role its own process on real PostgreSQL, RabbitMQ and Redis (as deployed), and every role in one process on
// the embedded adapters (npm start). The writer and both clients run here.
import { HubConnectionBuilder, HttpTransportType, LogLevel } from '@microsoft/signalr';
import { EventSource } from 'eventsource';
import { Redis } from 'ioredis';
import { createPostgresDatabase } from '../test/support/databases.ts';
import { createTestVhost } from '../test/support/rabbitmq-vhost.ts';
import { startRole } from '../test/support/role-process.ts';
import { REDIS_URL, uniqueName } from '../test/support/services.ts';
import { startChildServer } from './child-server.ts';
import type { BenchRow } from './table.ts';

export interface LatencyBenchOptions {
  readonly durationSeconds?: number;
}

interface Stack {
  readonly name: string;
  readonly api: string;
  readonly notifications: string;
  stop(): Promise<void>;
}

async function embeddedStack(): Promise<Stack> {
  const server = await startChildServer<{ api: string; notifications: string }>('bench/servers/all-roles.ts');
  return { name: 'all roles in one process, embedded', ...server.info, stop: () => server.stop() };
}

/** webapi, worker and notifications as separate processes, on a database, vhost and key prefix of their own. */
async function servicesStack(): Promise<Stack> {
  const database = await createPostgresDatabase();
  const vhost = await createTestVhost('latency_bench');
  const keyPrefix = `${uniqueName('latency_bench')}:`;
  const env = {
    DATABASE_URL: database.url,
    AMQP_URL: vhost.url,
    REDIS_URL,
    CACHE_KEY_PREFIX: `${keyPrefix}student:`,
    REPLAY_LOG_KEY_PREFIX: `${keyPrefix}notifications:`,
    API_PORT: '0',
    WORKER_PORT: '0',
    NOTIFICATIONS_PORT: '0',
    // Strict FIFO (prefetch 1) handles one event at a time, each its own transaction: below 100 events/s on this
    // machine. With 50, different students run concurrently (and share transactions); each one's events stay in order.
    WORKER_PREFETCH: '50',
  };
  const roles = await Promise.all(
    ['webapi', 'worker', 'notifications'].map((role) => startRole(`src/apps/${role}/main.ts`, env)),
  );
  const [webapi, , notifications] = roles;
  return {
    name: 'each role its own process (worker prefetch 50), PostgreSQL + RabbitMQ + Redis',
    api: webapi!.url,
    notifications: notifications!.url,
    async stop() {
      await Promise.all(roles.map((role) => role.stop()));
      await vhost.delete();
      await database.drop();
      const redis = new Redis(REDIS_URL);
      const keys = await redis.keys(`${keyPrefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}

// The issue's rate on real services; the same at a quarter of it, where the 2-core machine that runs every server,
// role and client has headroom (the pipeline's own latency); the embedded mode, whose PGlite serves one thread.
const SCENARIOS = [
  { open: servicesStack, rate: 100 },
  { open: servicesStack, rate: 25 },
  { open: embeddedStack, rate: 25 },
] as const;

export async function notificationsLatency(options: LatencyBenchOptions = {}): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const { open, rate } of SCENARIOS) rows.push(...(await measureLatency(await open(), rate, options)));
  return rows;
}

async function measureLatency(
  server: Stack,
  rate: number,
  options: LatencyBenchOptions,
): Promise<BenchRow[]> {
  const duration = options.durationSeconds ?? 10;
  /** Student id → when its 201 arrived, and when its StudentCreated arrived on each transport. */
  const created = new Map<string, number>();
  const failed: string[] = [];
  const arrived = { sse: new Map<string, number>(), signalr: new Map<string, number>() };
  const source = new EventSource(`${server.notifications}/api/notifications/stream?types=StudentCreated`);
  const hub = new HubConnectionBuilder()
    .withUrl(`${server.notifications}/hubs/notifications`, {
      transport: HttpTransportType.WebSockets,
      skipNegotiation: true,
    })
    .configureLogging(LogLevel.None)
    .build();
  try {
    source.addEventListener('StudentCreated', (event) => {
      const { student } = JSON.parse(event.data) as { student: { id: string } };
      arrived.sse.set(student.id, performance.now());
    });
    hub.on('StudentCreated', (data: { student: { id: string } }) =>
      arrived.signalr.set(data.student.id, performance.now()),
    );
    await Promise.all([
      new Promise((resolve, reject) => {
        source.addEventListener('connected', resolve, { once: true });
        source.addEventListener('error', reject, { once: true });
      }),
      hub.start(),
    ]);
    const post = async (record: boolean) => {
      const response = await fetch(`${server.api}/api/students`, { method: 'POST' });
      const at = performance.now();
      if (response.status !== 201) {
        failed.push(`${response.status} ${await response.text()}`);
        return;
      }
      const { id } = (await response.json()) as { id: string };
      if (record) created.set(id, at);
    };
    // A second of unmeasured writes warms up the JIT, the database and the sockets.
    await writeAtFixedRate(rate, 1, () => post(false));
    await writeAtFixedRate(rate, duration, () => post(true));
    // The warm-up's notifications arrive too: wait for those of the measured writes, by id.
    const allArrived = () =>
      [...created.keys()].every((id) => arrived.sse.has(id) && arrived.signalr.has(id));
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && !allArrived()) await sleep(50);
  } finally {
    source.close();
    await hub.stop();
    await server.stop();
  }
  const scenario = `notifications latency: 201 → StudentCreated (${rate} writes/s, ${duration} s), ${server.name}`;
  return (['sse', 'signalr'] as const).map((transport) => {
    const latencies = [...created]
      .map(([id, at]) => (arrived[transport].get(id) ?? Infinity) - at)
      .sort((a, b) => a - b);
    const missing = latencies.filter((latency) => latency === Infinity).length;
    // A notification can beat the 201 to the client: that counts as 0.
    const round = (ms: number) => Math.round(Math.max(0, ms) * 100) / 100;
    return {
      scenario,
      variant: transport === 'sse' ? 'SSE (eventsource)' : 'SignalR (@microsoft/signalr, WebSockets)',
      rps: Math.round(created.size / duration),
      p50: round(percentile(latencies, 0.5)),
      p99: round(percentile(latencies, 0.99)),
      note: `target p50 ≤ 5 ms, p99 ≤ 25 ms; ${created.size - missing}/${created.size} arrived${failed.length > 0 ? `; ${failed.length} writes failed, first: ${failed[0]}` : ''}`,
    };
  });
}

/** Starts one write per tick on a fixed schedule whatever the latency (open loop), then waits for them all. */
async function writeAtFixedRate(rate: number, seconds: number, write: () => Promise<void>): Promise<void> {
  const interval = 1000 / rate;
  const started = performance.now();
  const writes: Promise<void>[] = [];
  for (let n = 0; n < rate * seconds; n++) {
    await sleep(Math.max(0, started + n * interval - performance.now()));
    writes.push(write());
  }
  await Promise.all(writes);
}
