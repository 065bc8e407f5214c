// SSE fan-out of the notifications service to 5,000 bare-socket clients, next to Socket.IO broadcasting a payload of
// the same size to as many clients in the same run (packages/signalr/bench/fanout.ts, run with --libs socketio).
// Roles: driver (here), server (createNotifications on the in-process bus and a memory replay log), clients.
import { type ChildProcess, fork, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { nextMessage } from '../packages/signalr/bench/child-messages.ts';
import type { BenchRow } from './table.ts';

const CLIENTS = 5_000;
const CLIENT_PROCS = 2;
const RATE = 20;
const DURATION_S = 8;
const T_MARK = Buffer.from('"t":');
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const wallClock = (): number => performance.timeOrigin + performance.now();
const send = (message: unknown): void => void process.send!(message);

async function runServer(): Promise<void> {
  const { createNotifications } = await import('../src/apps/notifications/main.ts');
  const { parseConfig } = await import('../src/config.ts');
  const { createLogger } = await import('../src/infrastructure/logging/logger.ts');
  const { InProcessMessageBus } = await import('../src/infrastructure/messaging/in-process-message-bus.ts');
  const { MemoryRingReplayLog } = await import('../src/infrastructure/replay-log/memory-ring-replay-log.ts');
  const { notificationMessage } = await import('../test/notifications/support.ts');
  const config = parseConfig({ NOTIFICATIONS_PORT: '0', LOG_LEVEL: 'warn', SSE_HEARTBEAT_SECONDS: '30' });
  const bus = new InProcessMessageBus();
  const notifications = await createNotifications({
    config,
    logger: createLogger({ ...config.log, name: 'bench-sse' }),
    bus,
    replayLog: new MemoryRingReplayLog({ maxEntries: 1_000 }),
  });
  const url = new URL(await notifications.start());
  /** A notification as the relay publishes it, its send time in `student.t` for the clients to find. */
  const message = (t: number) => {
    const base = notificationMessage('StudentCreated');
    const event = JSON.parse(base.body.toString()) as { data: { student: Record<string, unknown> } };
    event.data.student.t = t;
    return {
      message: { ...base, body: JSON.stringify(event) },
      dataBytes: JSON.stringify(event.data).length,
    };
  };
  const gc = (globalThis as { gc?: () => void }).gc;
  process.on('message', async (command: { kind: string; duration?: number }) => {
    if (command.kind === 'rss') {
      gc?.();
      await sleep(200);
      gc?.();
      send({ kind: 'rss', rss: process.memoryUsage().rss });
    } else if (command.kind === 'broadcast') {
      // A fixed schedule; each payload carries its scheduled time, so falling behind shows as latency.
      const started = performance.now();
      const wallStarted = wallClock();
      let seq = 0;
      while (performance.now() - started < command.duration! * 1000) {
        await bus.publish([message(wallStarted + seq * (1000 / RATE)).message]);
        seq++;
        await sleep(Math.max(0, started + seq * (1000 / RATE) - performance.now()));
      }
      send({ kind: 'broadcasted', sent: seq });
    } else if (command.kind === 'exit') process.exit(0);
  });
  send({ kind: 'listening', port: Number(url.port), dataBytes: message(wallClock()).dataBytes });
}

/** Bare sockets that only count the `"t":` markers of events sent inside the window (cheaper than any client library). */
async function runClients(port: number, count: number): Promise<void> {
  let window = { start: Infinity, end: -Infinity };
  let delivered = 0;
  const latencies: number[] = [];
  const sockets: Socket[] = [];
  const request = `GET /api/notifications/stream HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`;
  const open = () =>
    new Promise<void>((resolve, reject) => {
      const socket = connect({
        port,
        host: '127.0.0.1',
        onread: {
          buffer: READ_BUFFER,
          callback: (nread: number, buffer: Uint8Array): boolean => {
            const view = Buffer.from(buffer.buffer, buffer.byteOffset, nread);
            resolve(); // the response head (and `connected`) arrived
            const now = wallClock();
            // A marker split across two reads is missed: at worst a slight undercount for SSE, never an overcount.
            for (let at = view.indexOf(T_MARK); at !== -1; at = view.indexOf(T_MARK, at + 4)) {
              const sent = parseFloat(view.toString('latin1', at + 4, Math.min(nread, at + 29)));
              if (sent < window.start || sent > window.end) continue;
              if (now <= window.end) delivered++;
              if (latencies.length < 200_000) latencies.push(now - sent);
            }
            return true;
          },
        },
      });
      sockets.push(socket);
      socket.on('error', reject);
      socket.on('connect', () => socket.write(request));
    });
  for (let opened = 0; opened < count; opened += 100)
    await Promise.all(Array.from({ length: Math.min(100, count - opened) }, open));
  process.on('message', (command: { kind: string; start?: number; end?: number }) => {
    if (command.kind === 'window') window = { start: command.start!, end: command.end! };
    else if (command.kind === 'report') send({ kind: 'report', delivered, latencies });
    else if (command.kind === 'exit') {
      for (const socket of sockets) socket.destroy();
      process.exit(0);
    }
  });
  send({ kind: 'ready' });
}

const self = fileURLToPath(import.meta.url);
const child = (args: string[], execArgv: string[] = []): ChildProcess =>
  fork(self, args, {
    execArgv: ['--import', 'tsx', ...execArgv],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });

async function measureSse() {
  const server = child(['--role', 'server'], ['--expose-gc']);
  const clients: ChildProcess[] = [];
  try {
    const { port, dataBytes } = await nextMessage<{ port: number; dataBytes: number }>(server, 'listening');
    server.send({ kind: 'rss' });
    const idle = (await nextMessage<{ rss: number }>(server, 'rss')).rss;
    for (let i = 0; i < CLIENT_PROCS; i++)
      clients.push(
        child(['--role', 'client', '--port', String(port), '--count', String(CLIENTS / CLIENT_PROCS)]),
      );
    await Promise.all(clients.map((proc) => nextMessage(proc, 'ready')));
    await sleep(2000);
    server.send({ kind: 'rss' });
    const loaded = (await nextMessage<{ rss: number }>(server, 'rss')).rss;
    server.send({ kind: 'broadcast', duration: 1 }); // warm-up, not measured
    await nextMessage(server, 'broadcasted');
    const start = wallClock() + 200;
    for (const proc of clients) proc.send({ kind: 'window', start, end: start + DURATION_S * 1000 });
    await sleep(200);
    server.send({ kind: 'broadcast', duration: DURATION_S });
    await nextMessage(server, 'broadcasted');
    await sleep(2000);
    const reports = await Promise.all(
      clients.map((proc) => {
        proc.send({ kind: 'report' });
        return nextMessage<{ delivered: number; latencies: number[] }>(proc, 'report');
      }),
    );
    const latencies = reports.flatMap((report) => report.latencies).sort((a, b) => a - b);
    const at = (p: number) => Math.round((latencies[Math.floor(latencies.length * p)] ?? NaN) * 100) / 100;
    return {
      dataBytes,
      deliveredPerSecond: reports.reduce((sum, report) => sum + report.delivered, 0) / DURATION_S,
      p50: at(0.5),
      p99: at(0.99),
      idleBytesPerConnection: (loaded - idle) / CLIENTS,
    };
  } finally {
    for (const proc of [...clients, server]) proc.send({ kind: 'exit' }, () => undefined);
    await Promise.all(
      [...clients, server].map((proc) => (proc.exitCode === null ? once(proc, 'exit') : undefined)),
    );
  }
}

interface SocketIoResult {
  deliveredPerSecond: number;
  p50: number;
  p99: number;
  idleBytesPerConnection: number;
}

export async function sseFanOut(): Promise<BenchRow[]> {
  const sse = await measureSse();
  const jsonOut = join(tmpdir(), `sse-fanout-socketio-${process.pid}.json`);
  const socketIo = spawnSync(
    process.execPath,
    [
      ...['--import', 'tsx', 'packages/signalr/bench/fanout.ts', '--libs', 'socketio'],
      ...['--clients', String(CLIENTS), '--rate', String(RATE), '--duration', String(DURATION_S)],
      ...['--payload', String(sse.dataBytes), '--json-out', jsonOut],
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  if (socketIo.status !== 0) throw new Error(`the Socket.IO fan-out exited with ${socketIo.status}`);
  const [io] = JSON.parse(readFileSync(jsonOut, 'utf8')) as [SocketIoResult];
  const scenario = `fan-out: ${CLIENTS} clients × ${RATE} msg/s, ${DURATION_S} s, ~${sse.dataBytes} B payload`;
  const kib = (bytes: number) => (bytes / 1024).toFixed(2);
  return [
    {
      scenario,
      variant: 'Socket.IO broadcast (baseline)',
      rps: Math.round(io.deliveredPerSecond),
      p50: io.p50,
      p99: io.p99,
      ratio: 1,
      note: `idle ${kib(io.idleBytesPerConnection)} KiB/connection`,
    },
    {
      scenario,
      variant: 'notifications SSE',
      rps: Math.round(sse.deliveredPerSecond),
      p50: sse.p50,
      p99: sse.p99,
      ratio: sse.deliveredPerSecond / io.deliveredPerSecond,
      note: `idle ${kib(sse.idleBytesPerConnection)} KiB/connection (target ≤ 11); target ≥ 1.05× Socket.IO`,
    },
  ];
}

const { values: flags } = parseArgs({
  options: { role: { type: 'string' }, port: { type: 'string' }, count: { type: 'string' } },
  strict: false,
});
if (flags.role === 'server') await runServer();
else if (flags.role === 'client') await runClients(Number(flags.port), Number(flags.count));
