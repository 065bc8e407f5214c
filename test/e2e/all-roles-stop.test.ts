// `npm start`'s roles in one process, stopped while they start (a SIGTERM during the database's migration, or while
// the consuming roles wait for the broker): the start must end there, say so, and nothing it sets up may outlive
// the stop.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { embeddedRoles } from '../support/all-roles.ts';
import { freePort } from '../support/free-port.ts';
import { until } from '../support/until.ts';

/** Whether something accepts connections on the port. */
const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

/** The roles on ports of their own, so the test can tell what listens; `env` adds settings. */
async function rolesOnPorts(env: Record<string, string> = {}) {
  const ports = { api: await freePort(), notifications: await freePort(), worker: await freePort() };
  const roles = embeddedRoles({
    API_PORT: String(ports.api),
    NOTIFICATIONS_PORT: String(ports.notifications),
    WORKER_PORT: String(ports.worker),
    ...env,
  });
  const nothingListens = async (when: string) => {
    for (const [role, port] of Object.entries(ports))
      assert.equal(await listening(port), false, `the ${role} still listens ${when}`);
  };
  return { roles, ports, nothingListens };
}

/** What a start came to: 'started', or why it ended. */
const outcomeOf = (start: Promise<unknown>) =>
  start.then(
    () => 'started',
    (error: unknown) => String(error),
  );

const STOPPED = /all roles stopped while they started/;

describe('all roles in one process, stopped while they start', () => {
  test('at any point of the start: it ends, says it was stopped, and afterwards no role listens', async () => {
    // How long a whole start takes here, so the stops below fall across its phases on any machine.
    const timed = await rolesOnPorts();
    const begun = performance.now();
    assert.equal(await outcomeOf(timed.roles.start()), 'started');
    const startMs = performance.now() - begun;
    await timed.roles.stop();
    for (const fraction of [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.2]) {
      const stopAfterMs = Math.round(fraction * startMs);
      const { roles, nothingListens } = await rolesOnPorts();
      const started = outcomeOf(roles.start());
      await sleep(stopAfterMs);
      await roles.stop();
      const outcome = await started;
      if (outcome !== 'started') assert.match(outcome, STOPPED, `stopped ${stopAfterMs} ms into the start`);
      // Time for a start that went on past the stop to open something.
      await sleep(300);
      await nothingListens(`after a stop ${stopAfterMs} ms into a start of ${Math.round(startMs)} ms`);
    }
  });

  test('before the start: the start opens nothing and says it was stopped', async () => {
    const { roles, nothingListens } = await rolesOnPorts();
    await roles.stop();
    assert.match(await outcomeOf(roles.start()), STOPPED);
    await sleep(300);
    await nothingListens('after a start that came after the stop');
  });

  test('while the worker and the notifications service wait for a broker that does not answer', async () => {
    const deadBroker = await freePort();
    const { roles, ports, nothingListens } = await rolesOnPorts({
      AMQP_URL: `amqp://guest:guest@127.0.0.1:${deadBroker}`,
    });
    const started = outcomeOf(roles.start());
    // Each listens first, then waits (the webapi after its own 3 s wait for the broker).
    await until(
      async () => (await listening(ports.worker)) && (await listening(ports.notifications)),
      'the consuming roles listen and wait',
    );
    await roles.stop();
    assert.match(await started, STOPPED);
    await nothingListens('after the stop');
  });

  test('two stops at once: neither resolves before everything is stopped', async () => {
    const { roles, nothingListens } = await rolesOnPorts();
    assert.equal(await outcomeOf(roles.start()), 'started');
    const stops = [roles.stop(), roles.stop()];
    for (const stop of stops) {
      await stop;
      await nothingListens('once a stop resolved');
    }
  });
});
