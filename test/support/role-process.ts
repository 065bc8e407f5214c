import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { after } from 'node:test';

export interface RoleProcess {
  readonly child: ChildProcess;
  /** The URL from the role's "listening" log line. */
  readonly url: string;
  output(): string;
  /** SIGTERM, and wait for the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: no shutdown of any kind, as a crash. */
  kill(): Promise<void>;
}

const OUTPUT_KEPT_CHARS = 200_000;

// A test that fails before it stops its processes must not leave them holding the test file open (their pipes keep
// it alive) until the runner times the whole file out, hiding which test failed. Only under the test runner: the
// benchmarks use this module too, and a hook would start node:test's harness in them.
const running = new Set<ChildProcess>();
if (process.env.NODE_TEST_CONTEXT)
  after(() => {
    for (const child of running) child.kill('SIGKILL');
  });

/** The servers roles that run as processes of their own share (URLs). */
export interface RoleServers {
  readonly database: string;
  readonly amqp: string;
  readonly redis: string;
}

/**
 * The settings of roles on `servers`, each on a free port. With `keyPrefix`, their Redis keys lie under it: runs on
 * one Redis stay apart.
 */
export function rolesOn(servers: RoleServers, keyPrefix?: string): Record<string, string> {
  return {
    DATABASE_URL: servers.database,
    AMQP_URL: servers.amqp,
    REDIS_URL: servers.redis,
    ...(keyPrefix === undefined
      ? {}
      : { CACHE_KEY_PREFIX: `${keyPrefix}cache:`, REPLAY_LOG_KEY_PREFIX: `${keyPrefix}log:` }),
    API_PORT: '0',
    WORKER_PORT: '0',
    NOTIFICATIONS_PORT: '0',
  };
}

export interface SpawnedRole {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  /** Its exit code, once it has exited. */
  readonly exited: Promise<number | null>;
  output(): string;
}

/** Runs an entry point (a role's, or a test's stand-in) as a real process, keeping what it writes. */
export function spawnRole(entry: string, env: Record<string, string>): SpawnedRole {
  const child = spawn(process.execPath, ['--import', 'tsx', entry], {
    env: { ...process.env, LOG_FORMAT: 'json', LOG_LEVEL: 'info', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // The last ~200 kB of stdout and stderr, kept as chunks: cutting one string to size on every chunk would copy all
  // of it each time, CPU taken from the roles under load.
  const chunks: string[] = [];
  let kept = 0;
  const keep = (text: string) => {
    chunks.push(text);
    kept += text.length;
    while (kept - chunks[0]!.length >= OUTPUT_KEPT_CHARS) kept -= chunks.shift()!.length;
  };
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  running.add(child);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  return { child, exited, output: () => chunks.join('') };
}

/** Starts `npm run start:<role>`'s entry point as a real process and waits until it logs its URL. */
export async function startRole(
  entry: string,
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<RoleProcess> {
  const { child, exited, output } = spawnRole(entry, env);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${entry} did not start:\n${output()}`)), timeoutMs);
    const onData = () => {
      const match = /"(?:url|health)":"(http:\/\/[^"/]+)/.exec(output());
      if (match?.[1]) {
        clearTimeout(timer);
        child.stdout.off('data', onData);
        resolve(match[1]);
      }
    };
    child.stdout.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${entry} exited with ${code} before it was ready:\n${output()}`));
    });
  });
  return {
    child,
    url,
    output,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
