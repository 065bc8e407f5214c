// `npm run stack`: webapi, worker and notifications as three processes on real PostgreSQL, RabbitMQ and Redis,
// like production, in one terminal. Each output line is prefixed with its role. Ctrl-C (or SIGTERM) stops every
// role gracefully; another one a second later kills them. If a role exits on its own, the others are stopped and
// the command fails. Exit status: 0 only if every role stopped cleanly because it was asked to.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { styleText } from 'node:util';
import { ConfigError, isWritten, parseConfig, type Config } from '../src/config.ts';
import { valueWithoutUrlPassword } from '../src/infrastructure/logging/url-password.ts';

const ROLES = [
  { name: 'webapi', entry: 'src/apps/webapi/main.ts', color: 'cyan' },
  { name: 'worker', entry: 'src/apps/worker/main.ts', color: 'magenta' },
  { name: 'notifications', entry: 'src/apps/notifications/main.ts', color: 'green' },
] as const;

/** The servers' usual local addresses; each is used only when its variable is unset (or blank, as for the roles). */
const LOCAL_SERVERS = {
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres',
  AMQP_URL: 'amqp://guest:guest@127.0.0.1:5672',
  REDIS_URL: 'redis://127.0.0.1:6379',
} as const;

// Embedded adapters live inside one process: separate processes would each get their own, never meeting.
const SINGLE_PROCESS_SCHEMES = ['memory:', 'pglite:'];

if (existsSync('.env')) process.loadEnvFile('.env');
const servers = Object.fromEntries(
  Object.entries(LOCAL_SERVERS).map(([name, local]) => {
    const given = process.env[name];
    // A blank one passed on would be unset to each role: its embedded default, which the three would not share.
    return [name, isWritten(given) ? given : local];
  }),
) as Record<keyof typeof LOCAL_SERVERS, string>;

const config = validated({ ...process.env, ...servers });
const embedded = Object.entries(servers).filter(([, url]) =>
  SINGLE_PROCESS_SCHEMES.some((scheme) => url.startsWith(scheme)),
);
if (embedded.length > 0) {
  process.stderr.write(
    `${embedded.map(([name, url]) => `${name}=${url}`).join(', ')} (embedded): an embedded adapter serves one process only, ` +
      'and the stack runs three. Point it at a server (or unset it for the local default), or use `npm start` ' +
      'to run every role in one process.\n',
  );
  process.exit(2);
}

const width = Math.max(...ROLES.map((role) => role.name.length));
const tty = process.stdout.isTTY === true;
const prefixOf = (role: (typeof ROLES)[number]) => {
  const label = `${role.name.padEnd(width)} |`;
  return tty ? styleText(role.color, label) : label;
};
const say = (message: string) => process.stdout.write(`${' '.repeat(width)} | ${message}\n`);

say(`PostgreSQL ${valueWithoutUrlPassword(servers.DATABASE_URL)}`);
say(`RabbitMQ   ${valueWithoutUrlPassword(servers.AMQP_URL)}`);
say(`Redis      ${valueWithoutUrlPassword(servers.REDIS_URL)}`);
say(
  `API http://${config.host}:${config.ports.api}, pages http://${config.host}:${config.ports.notifications}`,
);

const childEnv = {
  ...process.env,
  ...servers,
  // Pretty in a terminal, as a role started alone would be; the pipe would otherwise make it JSON.
  ...(tty && !process.env.LOG_FORMAT ? { LOG_FORMAT: 'pretty' } : {}),
};

/** How a role ended: `clean` only for exit status 0; `said` in words (the status, or the signal that killed it). */
interface Exit {
  readonly clean: boolean;
  readonly said: string;
}

interface Running {
  readonly role: (typeof ROLES)[number];
  readonly child: ChildProcess;
  /** Resolves once the role has ended and its output is flushed too. */
  readonly done: Promise<Exit>;
}

const running: Running[] = ROLES.map((role) => {
  const child = spawn(process.execPath, ['--import', 'tsx', role.entry], {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: Ctrl-C reaches only this script, which then stops each role exactly once.
    detached: true,
  });
  const prefix = prefixOf(role);
  const piped = [
    [child.stdout, process.stdout],
    [child.stderr, process.stderr],
  ].map(
    ([from, to]) =>
      new Promise<void>((resolve) => {
        const lines = createInterface({ input: from as NodeJS.ReadableStream, crlfDelay: Infinity });
        lines.on('line', (line) => (to as NodeJS.WriteStream).write(`${prefix} ${line}\n`));
        lines.on('close', resolve);
      }),
  );
  const exited = new Promise<Exit>((resolve) => {
    child.once('error', (error) => resolve({ clean: false, said: `could not start: ${error.message}` }));
    child.once('exit', (code, signal) =>
      resolve(
        signal
          ? { clean: false, said: `was killed by ${signal}` }
          : { clean: code === 0, said: `exited with status ${code}` },
      ),
    );
  });
  const done = Promise.all([exited, ...piped]).then(([code]) => code);
  return { role, child, done };
});

// Under `npm run`, one Ctrl-C arrives twice: from the terminal and forwarded by npm. Only a later one means "kill".
const REPEATED_SIGNAL_MS = 1_000;
let stopRequestedAt: number | undefined;
let killTimer: NodeJS.Timeout | undefined;

function stopAll(reason: string): void {
  if (stopRequestedAt !== undefined) return;
  stopRequestedAt = Date.now();
  say(`${reason}: stopping every role`);
  for (const { child } of running)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  // Each role cuts its own drain at SHUTDOWN_TIMEOUT_MS; one that still hangs after that is killed.
  killTimer = setTimeout(() => killAll('a role did not stop in time'), config.shutdownTimeoutMs + 5_000);
  killTimer.unref();
}

function killAll(reason: string): void {
  say(`${reason}: killing the roles still running`);
  for (const { child } of running)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    if (stopRequestedAt === undefined) stopAll(signal);
    else if (Date.now() - stopRequestedAt > REPEATED_SIGNAL_MS) killAll(`another ${signal}`);
  });
}

// Whoever read the output has gone (`npm run stack | head`): the next line written would end this script with an
// EPIPE and leave every role running, unseen. They are stopped instead.
for (const output of [process.stdout, process.stderr])
  output.on('error', () => stopAll('the output was closed'));

let failed = false;
await Promise.all(
  running.map(async ({ role, done }) => {
    const exit = await done;
    const asked = stopRequestedAt !== undefined;
    if (!exit.clean || !asked) {
      failed = true;
      say(`${role.name} ${exit.said}${asked ? '' : ' on its own'}`);
    }
    stopAll(`${role.name} exited`);
  }),
);
clearTimeout(killTimer);
say(failed ? 'stopped, with failures' : 'stopped');
process.exit(failed ? 1 : 0);

/** The configuration the roles will see, checked once here so a mistake is reported once, not three times. */
function validated(env: Record<string, string | undefined>): Config {
  try {
    return parseConfig(env, { allRoles: true });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
}
