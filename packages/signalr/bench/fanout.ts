/**
 * Broadcast fan-out benchmark: this library vs raw `ws` vs Socket.IO, same payload, same client count.
 * Each server runs alone in a child process; clients (bare sockets speaking just enough of each wire
 * protocol) run in other child processes and report delivered messages and latency (send timestamp in
 * the payload).
 *
 *   npx tsx packages/signalr/bench/fanout.ts                       # 5,000 clients × 20 msg/s, ~1 minute
 *   npx tsx packages/signalr/bench/fanout.ts --idle --clients 19500 # idle memory per connection only
 *
 * Latency runs from each message's scheduled send time to its arrival; "delivered msg/s" counts what
 * arrived within the measured window.
 *
 * Flags: --clients N  --rate MSG_PER_S  --duration S  --payload BYTES  --client-procs K
 *        --libs signalr,ws,socketio  --idle  --profile (server CPU profiles in $TMPDIR/fanout-profiles)
 *        --json-out FILE (the results as JSON too, for a caller that compares them with its own)
 * The server holds one descriptor per client: keep --clients below `ulimit -n` (20,000 here, hence 19,500).
 * Idle memory is the server's RSS growth (after GC) divided by the clients: noise below a few thousand.
 */
import { type ChildProcess, execSync, fork } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { nextMessage } from './child-messages.ts';
import { Server as SocketIoServer } from 'socket.io';
import { WebSocketServer } from 'ws';
import { defineHub, HubServer, mountOnHttpServer } from '../src/index.ts';

type Lib = 'signalr' | 'ws' | 'socketio';

const { values: flags } = parseArgs({
  options: {
    role: { type: 'string', default: 'driver' },
    lib: { type: 'string', default: 'signalr' },
    libs: { type: 'string', default: 'signalr,ws,socketio' },
    clients: { type: 'string' },
    rate: { type: 'string', default: '20' },
    duration: { type: 'string', default: '8' },
    payload: { type: 'string', default: '100' },
    'client-procs': { type: 'string' },
    idle: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    port: { type: 'string' },
    count: { type: 'string' },
    'json-out': { type: 'string' },
  },
});

const wallClock = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const HUB_PATH = '/hubs/bench';

// Latency histogram: 0.05-ms buckets up to 1 s, then 10-ms buckets up to 60 s.
const FINE_BUCKETS = 20_000;
const HISTOGRAM_SIZE = FINE_BUCKETS + 6_000;
function bucketOf(ms: number): number {
  if (ms < 0) return 0;
  if (ms < 1000) return Math.floor(ms * 20);
  return Math.min(HISTOGRAM_SIZE - 1, FINE_BUCKETS + Math.floor((ms - 1000) / 10));
}
function valueOf(bucket: number): number {
  return bucket < FINE_BUCKETS ? (bucket + 0.5) / 20 : 1000 + (bucket - FINE_BUCKETS + 0.5) * 10;
}
function percentile(histogram: number[], p: number): number {
  const total = histogram.reduce((sum, n) => sum + n, 0);
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    seen += histogram[i]!;
    if (seen >= total * p) return valueOf(i);
  }
  return NaN;
}

function send(message: unknown): void {
  process.send!(message);
}

// ---------------------------------------------------------------- server role
async function runServer(lib: Lib): Promise<void> {
  const http = createServer();
  let broadcast: (payload: { seq: number; t: number; pad: string }) => void;
  if (lib === 'signalr') {
    const hub = await HubServer.create({ hub: defineHub({ methods: {} }) });
    mountOnHttpServer(http, HUB_PATH, hub);
    broadcast = (payload) => void hub.clients.all.send('tick', payload);
  } else if (lib === 'ws') {
    const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
    broadcast = (payload) => {
      const data = JSON.stringify(payload);
      for (const client of wss.clients) client.send(data);
    };
  } else {
    const io = new SocketIoServer(http, { transports: ['websocket'], serveClient: false });
    broadcast = (payload) => io.emit('tick', payload);
  }
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  const gc = (globalThis as { gc?: () => void }).gc;
  process.on(
    'message',
    async (message: { kind: string; rate?: number; duration?: number; payload?: number }) => {
      if (message.kind === 'rss') {
        gc?.();
        await sleep(200);
        gc?.();
        const usage = process.memoryUsage();
        send({ kind: 'rss', rss: usage.rss, heap: usage.heapUsed, external: usage.external });
      } else if (message.kind === 'broadcast') {
        const interval = 1000 / message.rate!;
        const pad = 'x'.repeat(message.payload!);
        const cpuBefore = process.cpuUsage();
        // Peak memory while sending: what a backlog of slow or overloaded clients costs.
        let peakRss = process.memoryUsage().rss;
        const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
        const started = performance.now();
        const wallStarted = wallClock();
        let seq = 0;
        // A fixed schedule, catching up when late. Each payload carries its *scheduled* time, so a server
        // that falls behind shows it as latency instead of quietly sending less (no coordinated omission).
        while (performance.now() - started < message.duration! * 1000) {
          broadcast({ seq, t: wallStarted + seq * interval, pad });
          seq++;
          const next = started + seq * interval;
          await sleep(Math.max(0, next - performance.now()));
        }
        const cpu = process.cpuUsage(cpuBefore);
        const elapsed = performance.now() - started;
        clearInterval(sampler);
        send({ kind: 'broadcasted', sent: seq, cpu: (cpu.user + cpu.system) / 1000 / elapsed, peakRss });
      } else if (message.kind === 'exit') {
        process.exit(0);
      }
    },
  );
  send({ kind: 'listening', port: (http.address() as AddressInfo).port });
}

// ---------------------------------------------------------------- client role
/**
 * Clients are bare TCP sockets that perform the WebSocket upgrade and then only scan the byte stream for
 * the payload's `"t":` timestamps: a WebSocket library per client would cost more CPU than the servers
 * under test, on the same cores.
 */
const UPGRADE_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const T_MARK = '"t":';
const T_MARK_BYTES = Buffer.from(T_MARK);
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
const SOCKET_IO_PING = Buffer.from([0x81, 0x01, 0x32]);

/** A masked client text frame; the all-zero mask key leaves the payload as is. */
function clientFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
}

async function runClients(lib: Lib, port: number, count: number): Promise<void> {
  const histogram = new Array<number>(HISTOGRAM_SIZE).fill(0);
  let window = { start: Infinity, end: -Infinity };
  let delivered = 0;
  let cpuAtStart = process.cpuUsage();
  const sockets: Socket[] = [];
  const path = lib === 'signalr' ? HUB_PATH : lib === 'ws' ? '/' : '/socket.io/?EIO=4&transport=websocket';
  const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${UPGRADE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`;

  function record(now: number, sent: number): void {
    if (sent < window.start || sent > window.end) return;
    if (now <= window.end) delivered++;
    histogram[bucketOf(now - sent)]!++;
  }

  function open(): Promise<void> {
    return new Promise((resolve, reject) => {
      let stage: 'upgrade' | 'handshake' | 'open' | 'namespace' | 'ready' = 'upgrade';
      /** The start of a timestamp cut off by the end of the previous read. */
      let carry = '';

      function handshake(text: string): void {
        if (stage === 'upgrade') {
          if (!text.startsWith('HTTP/1.1 101'))
            return reject(new Error(`upgrade failed: ${text.slice(0, 40)}`));
          stage = lib === 'signalr' ? 'handshake' : lib === 'socketio' ? 'open' : 'ready';
          if (lib === 'signalr') socket.write(clientFrame('{"protocol":"json","version":1}\u001e'));
        }
        // SignalR: the handshake reply `{}`; Socket.IO: the open packet, then the namespace connect `40{…}`.
        if (stage === 'handshake' && text.includes('{}\u001e')) stage = 'ready';
        if (stage === 'open' && text.includes('0{"sid"')) {
          socket.write(clientFrame('40'));
          stage = 'namespace';
        } else if (stage === 'namespace' && text.includes('40{')) {
          stage = 'ready';
        }
        if (stage === 'ready') resolve();
      }

      // `onread` reuses one buffer for every socket: no per-read allocation, no stream machinery.
      const socket = connect({
        port,
        host: '127.0.0.1',
        onread: {
          buffer: READ_BUFFER,
          callback: (nread: number, buffer: Uint8Array): boolean => {
            const view = Buffer.from(buffer.buffer, buffer.byteOffset, nread);
            if (stage !== 'ready') {
              handshake(view.toString('latin1'));
              return true;
            }
            if (lib === 'socketio' && view.includes(SOCKET_IO_PING)) socket.write(clientFrame('3'));
            const now = wallClock();
            if (carry) {
              const joined = carry + view.toString('latin1', 0, Math.min(nread, 32));
              const at = joined.indexOf(T_MARK);
              if (at !== -1) record(now, parseFloat(joined.slice(at + 4, at + 29)));
              carry = '';
            }
            for (let at = view.indexOf(T_MARK_BYTES); at !== -1; at = view.indexOf(T_MARK_BYTES, at + 4)) {
              if (at + 29 > nread) {
                carry = view.toString('latin1', at, nread);
                return true;
              }
              record(now, parseFloat(view.toString('latin1', at + 4, at + 29)));
            }
            // A marker cut inside its own four bytes.
            for (const partial of ['"t"', '"t', '"']) {
              if (
                nread >= partial.length &&
                view.toString('latin1', nread - partial.length, nread) === partial
              ) {
                carry = partial;
                break;
              }
            }
            return true;
          },
        },
      });
      sockets.push(socket);
      socket.on('error', (error) => (stage === 'ready' ? undefined : reject(error)));
      socket.on('connect', () => socket.write(request));
    });
  }

  const concurrency = 200;
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++;
        await open();
      }
    }),
  );
  process.on('message', (message: { kind: string; start?: number; end?: number }) => {
    if (message.kind === 'window') {
      window = { start: message.start!, end: message.end! };
      cpuAtStart = process.cpuUsage();
    } else if (message.kind === 'report') {
      const cpu = process.cpuUsage(cpuAtStart);
      send({
        kind: 'report',
        delivered,
        histogram,
        cpu: (cpu.user + cpu.system) / 1000 / (wallClock() - window.start),
      });
    } else if (message.kind === 'exit') {
      for (const socket of sockets) socket.destroy();
      process.exit(0);
    }
  });
  send({ kind: 'ready' });
}

// ---------------------------------------------------------------- driver
interface Result {
  lib: Lib;
  clients: number;
  idleBytesPerConnection: number;
  deliveredPerSecond?: number;
  expectedPerSecond?: number;
  p50?: number;
  p99?: number;
  serverCpu?: number;
  clientCpu?: number;
  /** Highest server RSS while broadcasting, above its RSS with the same clients idle. */
  peakOverIdleBytes?: number;
}

const self = fileURLToPath(import.meta.url);
function child(args: string[], execArgv: string[] = []): ChildProcess {
  return fork(self, args, {
    execArgv: ['--import', 'tsx', ...execArgv],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

async function measure(lib: Lib, clients: number, procs: number, idleOnly: boolean): Promise<Result> {
  const profile = flags.profile ? ['--cpu-prof', `--cpu-prof-dir=${tmpdir()}/fanout-profiles`] : [];
  const server = child(['--role', 'server', '--lib', lib], ['--expose-gc', ...profile]);
  const clientProcs: ChildProcess[] = [];
  try {
    const { port } = await nextMessage<{ port: number }>(server, 'listening');
    await sleep(500);
    server.send({ kind: 'rss' });
    const baseline = (await nextMessage<{ rss: number }>(server, 'rss')).rss;

    const connectStart = performance.now();
    for (let i = 0; i < procs; i++) {
      const share = Math.floor(clients / procs) + (i < clients % procs ? 1 : 0);
      clientProcs.push(
        child(['--role', 'client', '--lib', lib, '--port', String(port), '--count', String(share)]),
      );
    }
    await Promise.all(clientProcs.map((proc) => nextMessage(proc, 'ready')));
    process.stdout.write(
      `  ${lib}: ${clients} connected in ${((performance.now() - connectStart) / 1000).toFixed(1)} s`,
    );
    await sleep(2000);
    server.send({ kind: 'rss' });
    const loaded = (await nextMessage<{ rss: number }>(server, 'rss')).rss;
    const result: Result = { lib, clients, idleBytesPerConnection: (loaded - baseline) / clients };
    if (idleOnly) {
      process.stdout.write('\n');
      return result;
    }

    const rate = Number(flags.rate);
    const duration = Number(flags.duration);
    const payload = Number(flags.payload);
    // One unmeasured second warms up the JIT and the sockets.
    server.send({ kind: 'broadcast', rate, duration: 1, payload });
    await nextMessage(server, 'broadcasted');
    await sleep(1000);
    const start = wallClock() + 200;
    for (const proc of clientProcs) proc.send({ kind: 'window', start, end: start + duration * 1000 });
    await sleep(200);
    server.send({ kind: 'broadcast', rate, duration, payload });
    const { cpu, peakRss } = await nextMessage<{ cpu: number; peakRss: number }>(server, 'broadcasted');
    await sleep(2000); // late deliveries still count for latency
    const reports = await Promise.all(
      clientProcs.map((proc) => {
        proc.send({ kind: 'report' });
        return nextMessage<{ delivered: number; histogram: number[]; cpu: number }>(proc, 'report');
      }),
    );
    const clientCpu = reports.reduce((sum, report) => sum + report.cpu, 0);
    const histogram = new Array<number>(HISTOGRAM_SIZE).fill(0);
    let delivered = 0;
    for (const report of reports) {
      delivered += report.delivered;
      report.histogram.forEach((n, i) => (histogram[i]! += n));
    }
    process.stdout.write(' ✓\n');
    return {
      ...result,
      deliveredPerSecond: delivered / duration,
      expectedPerSecond: clients * rate,
      p50: percentile(histogram, 0.5),
      p99: percentile(histogram, 0.99),
      serverCpu: cpu,
      clientCpu,
      peakOverIdleBytes: peakRss - loaded,
    };
  } finally {
    for (const proc of [...clientProcs, server]) {
      proc.send({ kind: 'exit' }, () => undefined);
    }
    await Promise.all(
      [...clientProcs, server].map((proc) => (proc.exitCode === null ? once(proc, 'exit') : undefined)),
    );
  }
}

function table(results: Result[]): void {
  const io = results.find((result) => result.lib === 'socketio');
  const ratio = (value: number | undefined, base: number | undefined): string =>
    value !== undefined && base ? `${(value / base).toFixed(2)}×` : '—';
  const rows = results.map((r) => ({
    library: r.lib,
    clients: r.clients,
    'delivered msg/s': r.deliveredPerSecond?.toFixed(0) ?? '—',
    'of offered': r.expectedPerSecond
      ? `${((100 * r.deliveredPerSecond!) / r.expectedPerSecond).toFixed(1)}%`
      : '—',
    'msg/s vs socket.io': ratio(r.deliveredPerSecond, io?.deliveredPerSecond),
    'p50 ms': r.p50?.toFixed(2) ?? '—',
    'p99 ms': r.p99?.toFixed(2) ?? '—',
    'p99 vs socket.io': ratio(r.p99, io?.p99),
    'server CPU': r.serverCpu !== undefined ? `${(100 * r.serverCpu).toFixed(0)}%` : '—',
    'clients CPU': r.clientCpu !== undefined ? `${(100 * r.clientCpu).toFixed(0)}%` : '—',
    'peak over idle MB': r.peakOverIdleBytes !== undefined ? (r.peakOverIdleBytes / 2 ** 20).toFixed(1) : '—',
    'idle KiB/conn': (r.idleBytesPerConnection / 1024).toFixed(2),
    'idle vs socket.io': ratio(r.idleBytesPerConnection, io?.idleBytesPerConnection),
  }));
  console.table(rows);
}

/** The server needs a descriptor per client; fail early and clearly instead of with EMFILE mid-run. */
function checkDescriptorLimit(clients: number): void {
  const limit = execSync('ulimit -n', { shell: '/bin/sh', encoding: 'utf8' }).trim();
  if (limit !== 'unlimited' && Number(limit) < clients + 100) {
    console.error(`ulimit -n is ${limit}: raise it (ulimit -n ${clients + 100}) or lower --clients.`);
    process.exit(1);
  }
}

async function drive(): Promise<void> {
  const idle = flags.idle;
  const clients = Number(flags.clients ?? (idle ? 19_500 : 5_000));
  checkDescriptorLimit(clients);
  const procs = Number(flags['client-procs'] ?? Math.max(2, Math.ceil(clients / 5_000)));
  const libs = flags.libs.split(',') as Lib[];
  console.log(
    idle
      ? `idle memory: ${clients} connections per library`
      : `fan-out: ${clients} clients × ${flags.rate} msg/s for ${flags.duration} s, payload ${flags.payload} B, ${procs} client processes`,
  );
  const results: Result[] = [];
  for (const lib of libs) results.push(await measure(lib, clients, procs, idle));
  table(results);
  if (flags['json-out']) writeFileSync(flags['json-out'], JSON.stringify(results));
}

if (flags.role === 'server') await runServer(flags.lib as Lib);
else if (flags.role === 'client') await runClients(flags.lib as Lib, Number(flags.port), Number(flags.count));
else await drive();
