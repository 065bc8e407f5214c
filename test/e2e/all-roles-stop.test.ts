// `npm start`'s roles in one process, stopped while they start (a SIGTERM during the database's migration, say):
// the start must end there, and nothing it sets up afterwards may outlive the stop.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { embeddedRoles } from '../support/all-roles.ts';
import { freePort } from '../support/free-port.ts';

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

test('a stop at any point of the start ends it: afterwards no role listens, and the start either ran or says it was stopped', async () => {
  // From at once (the adapters still opening) to after the start (an ordinary stop).
  for (const stopAfterMs of [0, 100, 250, 500, 1_000, 2_000]) {
    const ports = [await freePort(), await freePort(), await freePort()];
    const roles = embeddedRoles({
      API_PORT: String(ports[0]),
      NOTIFICATIONS_PORT: String(ports[1]),
      WORKER_PORT: String(ports[2]),
    });
    const starting = roles.start().then(
      () => 'started',
      (error: unknown) => error,
    );
    await sleep(stopAfterMs);
    await roles.stop();
    const started = await starting;
    if (started !== 'started')
      assert.match(
        String(started),
        /all roles stopped while they started/,
        `stopped after ${stopAfterMs} ms`,
      );
    // What a start that went on past the stop would have opened by now.
    await sleep(500);
    for (const port of ports)
      assert.equal(
        await listening(port),
        false,
        `port ${port} after a stop ${stopAfterMs} ms into the start`,
      );
  }
});
