// From the API's 201 to the StudentCreated notification, over SSE and over the SignalR hub. Two stacks: every
// role its own process on real PostgreSQL, RabbitMQ and Redis (as deployed), and every role in one process on
// the embedded adapters (npm start). The writer and both clients run here. Next to the services stack, its baseline:
// the two RabbitMQ hops a notification takes, alone, at the same rate. A last, traced run shows where the time
// goes: each hop's spans, as the roles export them over OTLP to this process.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus } from 'node:os';
import { HubConnectionBuilder, HttpTransportType, LogLevel } from '@microsoft/signalr';
import { EventSource } from 'eventsource';
import { Redis } from 'ioredis';
import { Connection, type Consumer } from 'rabbitmq-client';
import { createPostgresDatabase } from '../test/support/databases.ts';
import { createTestVhost } from '../test/support/rabbitmq-vhost.ts';
import { rolesOn, startRole } from '../test/support/role-process.ts';
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
async function servicesStack(extraEnv: Record<string, string> = {}): Promise<Stack> {
  const database = await createPostgresDatabase();
  const vhost = await createTestVhost('latency_bench');
  const keyPrefix = `${uniqueName('latency_bench')}:`;
  const env = {
    ...rolesOn({ database: database.url, amqp: vhost.url, redis: REDIS_URL }, keyPrefix),
    // Strict FIFO (prefetch 1) handles one event at a time, each its own transaction: below 100 events/s on this
    // machine. With 50, different students run concurrently (and share transactions); each one's events stay in order.
    WORKER_PREFETCH: '50',
    ...extraEnv,
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

/** Waits, up to five seconds, for what is still on its way; what has not arrived by then shows as missing. */
async function until(arrived: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && !arrived()) await sleep(50);
}

// To a hundredth of a millisecond. A notification can beat the 201 to the client: that counts as 0.
const roundMs = (ms: number) => Math.round(Math.max(0, ms) * 100) / 100;

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}

// The issue's rate on real services; the same at a quarter of it, where the 2-core machine that runs every server,
// role and client has headroom (the pipeline's own latency); the embedded mode, whose PGlite serves one thread.
const SCENARIOS = [
  { open: servicesStack, rate: 100, brokerBaseline: true },
  { open: servicesStack, rate: 25, brokerBaseline: true },
  { open: embeddedStack, rate: 25, brokerBaseline: false },
] as const;

export async function notificationsLatency(options: LatencyBenchOptions = {}): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const { open, rate, brokerBaseline } of SCENARIOS) {
    const measured = await measureLatency(await open(), rate, options);
    if (brokerBaseline) {
      const baseline = { scenario: measured[0]!.scenario, ...(await brokerHops(rate, options)) };
      rows.push(
        baseline,
        ...measured.map((row) => ({ ...row, note: `${row.note}; ${timesBaseline(row, baseline)}` })),
      );
    } else rows.push(...measured);
  }
  rows.push(...(await tracedHops(options)));
  return rows;
}

const timesBaseline = (row: BenchRow, baseline: BenchRow) =>
  `p50 ${(row.p50! / baseline.p50!).toFixed(1)}× the broker's`;

/**
 * The floor under the pipeline's latency: a notification crosses RabbitMQ twice (the relay publishes the student
 * event; the worker, having handled it, publishes the notification), each a publish with confirm into a quorum
 * queue and a delivery. Here those two hops run alone, with nothing between them, on raw rabbitmq-client with
 * Nagle's algorithm off as the adapter has it: what the database, the cache, the replay log and the push add
 * comes on top.
 */
async function brokerHops(rate: number, options: LatencyBenchOptions): Promise<Omit<BenchRow, 'scenario'>> {
  const duration = options.durationSeconds ?? 10;
  const vhost = await createTestVhost('latency_bench_broker');
  const connection = new Connection({
    url: vhost.url,
    noDelay: true,
    connectionName: 'latency bench (broker)',
  });
  connection.on('error', (error: unknown) => console.error('broker baseline connection error', error));
  const [first, second] = ['bench.hop1', 'bench.hop2'];
  const publisher = connection.createPublisher({ confirm: true });
  const sent = new Map<string, number>();
  const latencies: number[] = [];
  const consumers: Consumer[] = [];
  try {
    for (const queue of [first, second])
      await connection.queueDeclare({ queue, durable: true, arguments: { 'x-queue-type': 'quorum' } });
    const consume = (queue: string, handle: (id: string) => Promise<void> | void) => {
      const consumer = connection.createConsumer(
        { queue, queueOptions: { queue, passive: true }, qos: { prefetchCount: 50 }, concurrency: 50 },
        (message) => handle(message.messageId!),
      );
      consumer.on('error', (error: unknown) => console.error('broker baseline consumer error', error));
      consumers.push(consumer);
    };
    // The worker's part, without the work: forward, and ack once the broker confirmed the forward.
    consume(first, (id) => publisher.send({ routingKey: second, messageId: id, durable: true }, '{}'));
    consume(second, (id) => {
      const at = sent.get(id);
      if (at !== undefined) latencies.push(performance.now() - at);
    });
    let n = 0;
    const publish = async (record: boolean) => {
      const id = `m${n++}`;
      if (record) sent.set(id, performance.now());
      await publisher.send({ routingKey: first, messageId: id, durable: true }, '{}');
    };
    await writeAtFixedRate(rate, 1, () => publish(false));
    await writeAtFixedRate(rate, duration, () => publish(true));
    await until(() => latencies.length >= sent.size);
  } finally {
    await Promise.all(consumers.map((consumer) => consumer.close()));
    await publisher.close();
    await connection.close();
    await vhost.delete();
  }
  const sorted = latencies.sort((a, b) => a - b);
  return {
    variant: 'baseline: two RabbitMQ hops alone',
    rps: Math.round(sent.size / duration),
    p50: roundMs(percentile(sorted, 0.5)),
    p99: roundMs(percentile(sorted, 0.99)),
    note: `publish (confirmed) → quorum queue → forward (confirmed) → quorum queue → delivered; ${sorted.length}/${sent.size} arrived`,
  };
}

interface ExportedSpan {
  readonly service: string;
  readonly name: string;
  readonly traceId: string;
  readonly startMs: number;
  readonly endMs: number;
}

/** Receives spans as the roles export them with OTEL_EXPORTER_OTLP_PROTOCOL=http/json (OTLP/HTTP, JSON encoding). */
async function startSpanReceiver() {
  const spans: ExportedSpan[] = [];
  const ms = (unixNano: string) => Number(BigInt(unixNano) / 1000n) / 1000;
  type Export = {
    resourceSpans?: {
      resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
      scopeSpans?: {
        spans?: { name: string; traceId: string; startTimeUnixNano: string; endTimeUnixNano: string }[];
      }[];
    }[];
  };
  const server = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      let exported: Export;
      try {
        exported = JSON.parse(body) as Export;
      } catch {
        response.writeHead(400).end();
        return;
      }
      for (const { resource, scopeSpans = [] } of exported.resourceSpans ?? []) {
        const service = resource?.attributes?.find(({ key }) => key === 'service.name')?.value.stringValue;
        for (const span of scopeSpans.flatMap((scope) => scope.spans ?? []))
          spans.push({
            service: service ?? '?',
            name: span.name,
            traceId: span.traceId,
            startMs: ms(span.startTimeUnixNano),
            endMs: ms(span.endTimeUnixNano),
          });
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * One write's path, hop by hop: the services stack at the low rate with tracing on, every span placed against the
 * end of its trace's POST (when the 201 left the webapi). Medians over the writes; a hop that happens twice in a
 * write (the worker emits two notifications) counts its first time.
 */
async function tracedHops(options: LatencyBenchOptions): Promise<BenchRow[]> {
  const rate = 25;
  const receiver = await startSpanReceiver();
  try {
    const stack = await servicesStack({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    });
    // Stopping the stack flushes each role's spans to the receiver.
    const [sse] = await measureLatency(stack, rate, options);
    const offsets = new Map<string, { start: number[]; end: number[] }>();
    const traces = new Map<string, ExportedSpan[]>();
    for (const span of receiver.spans) {
      const trace = traces.get(span.traceId);
      if (trace) trace.push(span);
      else traces.set(span.traceId, [span]);
    }
    for (const spans of traces.values()) {
      const post = spans.find((span) => span.service === 'webapi' && span.name === 'POST /api/students');
      if (!post) continue;
      const seen = new Set<string>();
      for (const span of spans.toSorted((a, b) => a.startMs - b.startMs)) {
        const hop = `${span.service}: ${span.name}`;
        if (seen.has(hop)) continue;
        seen.add(hop);
        const offset = offsets.get(hop) ?? { start: [], end: [] };
        offset.start.push(span.startMs - post.endMs);
        offset.end.push(span.endMs - post.endMs);
        offsets.set(hop, offset);
      }
    }
    const median = (values: number[]) => values.toSorted((a, b) => a - b)[Math.floor(values.length / 2)]!;
    const signed = (ms: number) => `${ms < 0 ? '−' : '+'}${Math.abs(ms).toFixed(1)}`;
    const scenario = `one write, hop by hop: span medians from the 201 (traced, ${rate} writes/s, services)`;
    return [
      ...[...offsets]
        .map(([hop, { start, end }]) => ({ hop, start: median(start), end: median(end), n: start.length }))
        .sort((a, b) => a.start - b.start)
        .map(({ hop, start, end, n }) => ({
          scenario,
          variant: hop,
          note: `${signed(start)} → ${signed(end)} ms (${n} traces)`,
        })),
      { ...sse!, scenario, variant: 'SSE event arrives (eventsource)', note: 'traced; p50/p99 from the 201' },
    ];
  } finally {
    await receiver.close();
  }
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
  let cpu: { busyMs: number; busyShare: number } | undefined;
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
    const before = readMachineCpu();
    await writeAtFixedRate(rate, duration, () => post(true));
    // The warm-up's notifications arrive too: wait for those of the measured writes, by id.
    const allArrived = () =>
      [...created.keys()].every((id) => arrived.sse.has(id) && arrived.signalr.has(id));
    await until(allArrived);
    cpu = machineCpuSince(before);
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
    return {
      scenario,
      variant: transport === 'sse' ? 'SSE (eventsource)' : 'SignalR (@microsoft/signalr, WebSockets)',
      rps: Math.round(created.size / duration),
      p50: roundMs(percentile(latencies, 0.5)),
      p99: roundMs(percentile(latencies, 0.99)),
      note: `target p50 ≤ 5 ms, p99 ≤ 25 ms; ${created.size - missing}/${created.size} arrived${failed.length > 0 ? `; ${failed.length} writes failed, first: ${failed[0]}` : ''}${cpu ? `; machine ${Math.round(cpu.busyShare * 100)} % busy, ${(cpu.busyMs / created.size).toFixed(1)} ms CPU per write` : ''}`,
    };
  });
}

/**
 * The whole machine's CPU time so far (every core, every process: the roles, PostgreSQL, RabbitMQ, Redis and this
 * process's clients), to say what a write costs and how near the machine is to saturation, where latency becomes
 * queueing.
 */
function readMachineCpu(): { busyMs: number; totalMs: number } {
  let busyMs = 0;
  let totalMs = 0;
  for (const { times } of cpus()) {
    const busy = times.user + times.nice + times.sys + times.irq;
    busyMs += busy;
    totalMs += busy + times.idle;
  }
  return { busyMs, totalMs };
}

function machineCpuSince(start: ReturnType<typeof readMachineCpu>): { busyMs: number; busyShare: number } {
  const now = readMachineCpu();
  const busyMs = now.busyMs - start.busyMs;
  return { busyMs, busyShare: busyMs / (now.totalMs - start.totalMs) };
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
