// The image's HEALTHCHECK reads the role ports as the configuration does: a blank value is unset (its default port).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { test } from 'node:test';

const listen = (port: number) =>
  new Promise<Server | undefined>((resolve) => {
    const server = createServer((_request, response) => response.end('{}'));
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => resolve(server));
  });

/** The healthcheck's exit status with these role ports (1 has nothing listening). */
const probe = (apiPort: string) =>
  new Promise<number>((resolve) => {
    execFile(
      process.execPath,
      ['scripts/healthcheck.mjs'],
      { env: { ...process.env, API_PORT: apiPort, NOTIFICATIONS_PORT: '1', WORKER_PORT: '1' } },
      (error) => resolve(error ? Number(error.code ?? 1) : 0),
    );
  });

test('a blank API_PORT probes the default port 5000, where the role listens, as the configuration reads it', async () => {
  const server = await listen(5000);
  assert.ok(server, 'port 5000 is free: the test plays the webapi there, on its default port');
  try {
    assert.equal(await probe(''), 0, 'API_PORT= (blank)');
    assert.equal(await probe('  '), 0, 'API_PORT of blanks');
    assert.equal(await probe(' 5000 '), 0, 'API_PORT with blanks around it');
  } finally {
    server.close();
  }
});
