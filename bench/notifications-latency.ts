// From the API's 201 to the StudentCreated notification, over SSE and over the SignalR hub: every role in one
// child process on the embedded adapters; writer and both clients here.
import { HubConnectionBuilder, HttpTransportType, LogLevel } from '@microsoft/signalr';
import { EventSource } from 'eventsource';
import { startChildServer } from './child-server.ts';
import type { BenchRow } from './table.ts';

export interface LatencyBenchOptions {
  readonly ratePerSecond?: number;
  readonly durationSeconds?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}

export async function notificationsLatency(options: LatencyBenchOptions = {}): Promise<BenchRow[]> {
  const rate = options.ratePerSecond ?? 100;
  const duration = options.durationSeconds ?? 10;
  const server = await startChildServer<{ api: string; notifications: string }>('bench/servers/all-roles.ts');
  /** Student id → when its 201 arrived, and when its StudentCreated arrived on each transport. */
  const created = new Map<string, number>();
  const arrived = { sse: new Map<string, number>(), signalr: new Map<string, number>() };
  const source = new EventSource(
    `${server.info.notifications}/api/notifications/stream?types=StudentCreated`,
  );
  const hub = new HubConnectionBuilder()
    .withUrl(`${server.info.notifications}/hubs/notifications`, {
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
      const response = await fetch(`${server.info.api}/api/students`, { method: 'POST' });
      const at = performance.now();
      if (response.status !== 201) throw new Error(`POST /api/students: ${response.status}`);
      const { id } = (await response.json()) as { id: string };
      if (record) created.set(id, at);
    };
    // A second of unmeasured writes warms up the JIT, the database and the sockets.
    await writeAtFixedRate(rate, 1, () => post(false));
    await writeAtFixedRate(rate, duration, () => post(true));
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && (arrived.sse.size < created.size || arrived.signalr.size < created.size))
      await sleep(50);
  } finally {
    source.close();
    await hub.stop();
    await server.stop();
  }
  const scenario = `notifications latency: 201 → StudentCreated (${rate} writes/s, ${duration} s, all roles embedded)`;
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
      note: `target p50 ≤ 5 ms, p99 ≤ 25 ms; ${created.size - missing}/${created.size} arrived`,
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
