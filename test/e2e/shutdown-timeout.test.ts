// SHUTDOWN_TIMEOUT_MS reaches every entry point's stop: a role whose stop hangs (its broker went silent, a host gone
// without closing anything, so closing the connection waits for an answer that never comes) exits 1 once the
// configured time has passed, not after the default 10 s.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startAllRoles } from '../support/all-roles.ts';
import { createProxiedVhost } from '../support/rabbitmq-vhost.ts';
import { startRole } from '../support/role-process.ts';
import { needsRabbitMq } from '../support/services.ts';
import { settlesWithin } from '../support/settles-within.ts';

const SHUTDOWN_TIMEOUT_MS = 2_000;

interface Running {
  /** SIGTERM, and the exit code. */
  stop(): Promise<number | null>;
  kill(): Promise<void>;
  output(): string;
}

/** `npm start`'s entry point, with the same shape as startRole's. */
async function startAllRolesProcess(env: Record<string, string>): Promise<Running> {
  const roles = startAllRoles(env);
  try {
    await roles.ready;
  } catch (error) {
    roles.child.kill('SIGKILL');
    throw error;
  }
  return {
    stop() {
      roles.child.kill('SIGTERM');
      return roles.exited;
    },
    async kill() {
      roles.child.kill('SIGKILL');
      await roles.exited;
    },
    output: roles.output,
  };
}

describe('SHUTDOWN_TIMEOUT_MS, with a broker gone silent during the stop', await needsRabbitMq(), () => {
  let broker: Awaited<ReturnType<typeof createProxiedVhost>>;
  before(async () => {
    broker = await createProxiedVhost('shutdown_timeout');
  });
  after(() => broker?.delete());

  const entryPoints: [string, (env: Record<string, string>) => Promise<Running>][] = [
    ['npm start (src/main.ts)', startAllRolesProcess],
    ['the webapi', (env) => startRole('src/apps/webapi/main.ts', env)],
    ['the worker', (env) => startRole('src/apps/worker/main.ts', env)],
    ['the notifications service', (env) => startRole('src/apps/notifications/main.ts', env)],
  ];
  for (const [name, start] of entryPoints)
    test(`${name} is cut short once SHUTDOWN_TIMEOUT_MS has passed, with exit 1`, async () => {
      const role = await start({
        DATABASE_URL: 'pglite://memory',
        AMQP_URL: broker.url,
        REDIS_URL: 'memory:',
        API_PORT: '0',
        WORKER_PORT: '0',
        NOTIFICATIONS_PORT: '0',
        SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      });
      try {
        assert.ok(broker.proxy.silence() > 0, 'the role is connected to the broker');
        const begun = performance.now();
        const exited = role.stop();
        // Well short of the default (10 s), and of the stop nothing cuts short (it waits for the broker for good).
        assert.equal(await settlesWithin(exited, 7_000), 'settled', `still stopping:\n${role.output()}`);
        assert.equal(await exited, 1, role.output());
        assert.ok(performance.now() - begun >= SHUTDOWN_TIMEOUT_MS - 100, 'not before the limit');
      } finally {
        await role.kill();
      }
    });
});
