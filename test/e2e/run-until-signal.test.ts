// How every role's process (`npm start` and each `npm run start:<role>`) starts, stops and exits, on a scripted
// service: SIGTERM stops it and exits 0; a stop past SHUTDOWN_TIMEOUT_MS is cut short with exit 1; a start that
// fails, or an error after it, is logged as fatal, stops what had started and exits 1.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { spawnRole } from '../support/role-process.ts';
import { settlesWithin } from '../support/settles-within.ts';
import { until } from '../support/until.ts';

interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly err?: { readonly message: string };
}

const FATAL = 60;

/** The scripted service of test/support/signal-service.ts in a process of its own. */
function run(env: Record<string, string>) {
  const service = spawnRole('test/support/signal-service.ts', env);
  const lines = () =>
    service
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as LogLine);
  const logged = (msg: string) => lines().some((line) => line.msg === msg);
  return { ...service, lines, logged };
}

describe('a role process, from start to exit', () => {
  test('SIGTERM stops the service and exits 0', async () => {
    const service = run({ STOP_MS: '200' });
    try {
      await until(() => service.logged('service started'), 'the start');
      service.child.kill('SIGTERM');
      assert.equal(await service.exited, 0, service.output());
      assert.ok(service.logged('service stopped'), service.output());
      assert.ok(service.logged('stopped'), service.output());
    } finally {
      service.child.kill('SIGKILL');
    }
  });

  test('a stop that takes longer than SHUTDOWN_TIMEOUT_MS is cut short once it has passed, with exit 1', async () => {
    const service = run({ STOP_MS: 'never', SHUTDOWN_TIMEOUT_MS: '1000' });
    try {
      await until(() => service.logged('service started'), 'the start');
      service.child.kill('SIGTERM');
      const begun = performance.now();
      // Past the limit, and well short of what a stop that nothing cuts short would take (forever).
      assert.equal(await settlesWithin(service.exited, 8_000), 'settled', 'the process exited');
      assert.equal(await service.exited, 1, service.output());
      assert.ok(performance.now() - begun >= 900, 'not before the limit');
      assert.ok(service.logged('service stop began'));
      assert.ok(!service.logged('service stopped'));
    } finally {
      service.child.kill('SIGKILL');
    }
  });

  test('a start that fails is logged as fatal with its reason, what it had started is stopped, and the exit is 1', async () => {
    const service = run({ START: 'fail' });
    assert.equal(await service.exited, 1, service.output());
    const fatal = service.lines().find((line) => line.msg === 'could not start');
    assert.equal(fatal?.level, FATAL, service.output());
    assert.match(fatal.err?.message ?? '', /EADDRINUSE/);
    assert.ok(service.logged('service stopped'), `stopped before the exit:\n${service.output()}`);
  });

  test('SIGTERM while the service still starts: the start ends, nothing failed, exit 0', async () => {
    const service = run({ START: 'until-stopped' });
    try {
      await until(() => service.logged('service starting'), 'the start to begin');
      service.child.kill('SIGTERM');
      assert.equal(await service.exited, 0, service.output());
      assert.ok(!service.logged('could not start'), service.output());
      assert.ok(service.logged('service stopped'));
    } finally {
      service.child.kill('SIGKILL');
    }
  });

  test('an error after the start is logged as fatal, stops the service, and exits 1', async () => {
    const service = run({ CRASH_AFTER_START: '1' });
    try {
      assert.equal(await service.exited, 1, service.output());
      const fatal = service.lines().find((line) => line.msg === 'stopping after a fatal error');
      assert.equal(fatal?.level, FATAL, service.output());
      assert.equal(fatal.err?.message, 'a bug after the start');
      assert.ok(service.logged('service stopped'), service.output());
    } finally {
      service.child.kill('SIGKILL');
    }
  });
});
