// PostgreSQL, Redis and RabbitMQ servers of a test's own, on free ports with data in a temp dir, so a fault test
// can stop and restart them without disturbing the machine's shared servers or anyone else's tests.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port.ts';
import { needsPostgres } from './services.ts';

const run = promisify(execFile);
const POSTGRES_BIN = '/usr/lib/postgresql';

export interface PrivateServer {
  readonly name: string;
  readonly url: string;
  /** Shuts the server down; connections are cut and new ones refused until start(). */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same data. */
  start(): Promise<void>;
  /** Stops it (if running) and deletes its data. Safe to call more than once. */
  dispose(): Promise<void>;
}

/** Private servers next to the shared PostgreSQL: skipped when either is missing. */
export async function privateServersAndPostgres(): Promise<{ skip?: string }> {
  return [await needsPostgres(), privateServersAvailable()].find((requirement) => requirement.skip) ?? {};
}

/** Whether this machine can run private servers (the server binaries, and root to run them as their users). */
export function privateServersAvailable(): { skip?: string } {
  const missing = [
    [postgresBin('initdb'), 'PostgreSQL (initdb)'],
    ['/usr/bin/redis-server', 'redis-server'],
    ['/usr/lib/rabbitmq/bin/rabbitmq-server', 'rabbitmq-server'],
  ].filter(([path]) => !path || !existsSync(path));
  const reason =
    missing.length > 0
      ? `private servers need ${missing.map(([, name]) => name).join(', ')}`
      : process.getuid?.() !== 0
        ? 'private servers need root (they run as the postgres and rabbitmq users)'
        : undefined;
  if (!reason) return {};
  if (process.env.CI === 'true') throw new Error(`${reason} (CI=true: fault suites must not be skipped)`);
  return { skip: reason };
}

/** A tool of the newest PostgreSQL installed (Debian keeps each major version in its own directory). */
function postgresBin(tool: string): string | undefined {
  if (!existsSync(POSTGRES_BIN)) return undefined;
  const newest = readdirSync(POSTGRES_BIN)
    .filter((name) => /^\d+$/.test(name))
    .sort((a, b) => Number(a) - Number(b))
    .at(-1);
  return newest ? join(POSTGRES_BIN, newest, 'bin', tool) : undefined;
}

function tempDir(prefix: string, owner?: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (owner) chownToUser(dir, owner);
  return dir;
}

function chownToUser(path: string, user: string): void {
  const { uid, gid } = userIds(user);
  chownSync(path, uid, gid);
}

function userIds(user: string): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith(`${user}:`));
  if (!line) throw new Error(`no user ${user} on this machine`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** A PostgreSQL cluster of its own (trust auth, user postgres), run as the postgres user. */
export async function startPrivatePostgres(): Promise<PrivateServer> {
  const port = await freePort();
  const dir = tempDir('tbe-pg-', 'postgres');
  const data = join(dir, 'data');
  const asPostgres = (tool: string, args: string[]) =>
    run('runuser', ['-u', 'postgres', '--', postgresBin(tool)!, ...args]);
  await asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const start = () =>
    asPostgres('pg_ctl', [
      '-D',
      data,
      '-l',
      join(dir, 'server.log'),
      '-o',
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`,
      '-w',
      'start',
    ]).then(() => undefined);
  const stop = () => asPostgres('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']).then(() => undefined);
  let disposed = false;
  const server: PrivateServer = {
    name: 'PostgreSQL',
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop,
    start,
    async dispose() {
      if (disposed) return;
      disposed = true;
      await asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await start();
  } catch (error) {
    await server.dispose();
    throw error;
  }
  return server;
}

/** A Redis of its own, with an append-only file so a restart keeps its data (as the replay log needs). */
export async function startPrivateRedis(): Promise<PrivateServer> {
  const port = await freePort();
  const dir = tempDir('tbe-redis-');
  let server: ChildProcess | undefined;
  const start = async () => {
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', ''],
      { stdio: 'ignore' },
    );
    server = child;
    await waitForPort(port, 'Redis', 20_000, child);
  };
  const stop = async () => {
    const child = server;
    server = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM'); // Redis writes its append-only file and exits
    await exited;
  };
  let disposed = false;
  const redis: PrivateServer = {
    name: 'Redis',
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
    async dispose() {
      if (disposed) return;
      disposed = true;
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await start();
  } catch (error) {
    await redis.dispose();
    throw error;
  }
  return redis;
}

/**
 * A RabbitMQ node of its own (with only the `plugins` given), run as the rabbitmq user. stop()/start() stop and start
 * the broker application, as `rabbitmqctl stop_app` / `start_app` do: every connection is cut, durable queues survive.
 */
export async function startPrivateRabbitMq({
  plugins = [],
}: { readonly plugins?: readonly string[] } = {}): Promise<
  PrivateServer & { ctl(...args: string[]): Promise<unknown> }
> {
  const port = await freePort();
  const distributionPort = await freePort();
  const node = `tbe${port}@localhost`;
  const dir = tempDir('tbe-rabbitmq-', 'rabbitmq');
  writeFileSync(join(dir, 'enabled_plugins'), `[${plugins.join(',')}].\n`);
  writeFileSync(
    join(dir, 'rabbitmq.conf'),
    `listeners.tcp.local = 127.0.0.1:${port}\nloopback_users = none\n`,
  );
  for (const file of ['enabled_plugins', 'rabbitmq.conf']) chownToUser(join(dir, file), 'rabbitmq');
  const env = [
    `RABBITMQ_NODENAME=${node}`,
    `RABBITMQ_NODE_PORT=${port}`,
    `RABBITMQ_DIST_PORT=${distributionPort}`,
    `RABBITMQ_MNESIA_BASE=${join(dir, 'mnesia')}`,
    `RABBITMQ_LOG_BASE=${join(dir, 'log')}`,
    `RABBITMQ_ENABLED_PLUGINS_FILE=${join(dir, 'enabled_plugins')}`,
    `RABBITMQ_CONFIG_FILE=${join(dir, 'rabbitmq.conf')}`,
    `RABBITMQ_PID_FILE=${join(dir, 'pid')}`,
    'HOME=/var/lib/rabbitmq', // where the node and rabbitmqctl find the same Erlang cookie
  ];
  const asRabbitMq = (command: string, args: string[], timeoutMs = 120_000) =>
    run('runuser', ['-u', 'rabbitmq', '--', 'env', ...env, `/usr/lib/rabbitmq/bin/${command}`, ...args], {
      timeout: timeoutMs,
    });
  const ctl = (...args: string[]) => asRabbitMq('rabbitmqctl', ['-n', node, ...args]);
  let disposed = false;
  const server: PrivateServer & { ctl(...args: string[]): Promise<unknown> } = {
    name: 'RabbitMQ',
    ctl,
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    stop: () => ctl('stop_app').then(() => undefined),
    async start() {
      await ctl('start_app');
      await ctl('await_startup', '--timeout', '120');
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      await ctl('stop').catch(() => undefined); // the whole node
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await asRabbitMq('rabbitmq-server', ['-detached']);
    // Waits for the pid file, then the node, then the broker application.
    await ctl('wait', join(dir, 'pid'), '--timeout', '120');
  } catch (error) {
    await server.dispose();
    throw error;
  }
  return server;
}

async function waitForPort(
  port: number,
  name: string,
  timeoutMs: number,
  child: ChildProcess,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode} on start`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`${name} did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
