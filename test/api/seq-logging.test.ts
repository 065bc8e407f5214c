// SEQ_URL: a role ships its logs to Seq as well as to stdout, and an unreachable Seq never takes it down.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startAllRoles } from '../support/all-roles.ts';
import { startRole } from '../support/role-process.ts';
import { until } from '../support/until.ts';

const webapiAlone = { DATABASE_URL: 'pglite://memory', API_PORT: '0' };

describe('logs to Seq', () => {
  let seq: Server;
  const events: { MessageTemplate?: string; Level?: string; Properties?: Record<string, unknown> }[] = [];
  /** The API key each ingestion request came with. */
  const apiKeys = new Set<string | undefined>();

  before(async () => {
    // Seq's raw ingestion endpoint, as seq-logging posts to it.
    seq = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk));
      request.on('end', () => {
        if (request.method === 'POST' && request.url === '/api/events/raw') {
          events.push(...(JSON.parse(body) as { Events: typeof events }).Events);
          apiKeys.add(request.headers['x-seq-apikey'] as string | undefined);
        }
        response.writeHead(201).end();
      });
    });
    await new Promise<void>((resolve) => seq.listen(0, '127.0.0.1', resolve));
  });
  after(() => new Promise((resolve) => seq.close(resolve)));

  test('with SEQ_URL set, every line also goes to Seq, with its level and properties, and SEQ_API_KEY', async () => {
    const { port } = seq.address() as AddressInfo;
    const role = await startRole('src/apps/webapi/main.ts', {
      ...webapiAlone,
      SEQ_URL: `http://127.0.0.1:${port}`,
      SEQ_API_KEY: 'seq-key-of-the-webapi',
    });
    try {
      assert.match(role.output(), /"msg":"webapi listening"/, 'stdout keeps everything');
    } finally {
      assert.equal(await role.stop(), 0);
    }
    // Stopping flushes what was buffered for Seq.
    const listening = events.find((event) => event.MessageTemplate === 'webapi listening');
    assert.equal(listening?.Level, 'Information');
    assert.equal(listening?.Properties?.url, role.url);
    assert.equal(listening?.Properties?.name, 'webapi', 'which role wrote it, in a Seq that several share');
    assert.ok(events.some((event) => event.MessageTemplate === 'stopped'));
    assert.deepEqual(
      [...apiKeys],
      ['seq-key-of-the-webapi'],
      'a Seq that wants a key gets it with every batch',
    );
  });

  test('with SEQ_URL set, stdout still gets every line LOG_LEVEL lets through, debug lines too', async () => {
    const { port } = seq.address() as AddressInfo;
    const roles = startAllRoles({ SEQ_URL: `http://127.0.0.1:${port}`, LOG_LEVEL: 'debug' });
    try {
      const { api } = await roles.ready;
      assert.equal((await fetch(`${api}/api/students`, { method: 'POST' })).status, 201);
      // The worker's line for each event it handles is a debug line.
      await until(
        () => /"level":20,[^\n]*"msg":"student event processed"/.test(roles.output()),
        "the worker's debug line on stdout",
      );
      roles.child.kill('SIGTERM');
      assert.equal(await roles.exited, 0, roles.output());
    } finally {
      roles.child.kill('SIGKILL');
    }
    assert.ok(
      events.some((event) => event.MessageTemplate === 'student event processed' && event.Level === 'Debug'),
      'and Seq gets it too',
    );
  });

  test('an unreachable Seq is reported once on stderr; the role serves and stops as usual', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));

    const role = await startRole('src/apps/webapi/main.ts', {
      ...webapiAlone,
      SEQ_URL: `http://127.0.0.1:${port}`,
    });
    try {
      for (let write = 0; write < 3; write++) {
        const response = await fetch(`${role.url}/api/students`, { method: 'POST' });
        assert.equal(response.status, 201);
      }
      const deadline = Date.now() + 20_000;
      while (!/Seq at .* is not taking logs/.test(role.output()) && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      assert.equal(await role.stop(), 0, role.output());
    }
    const reports = role.output().match(/Seq at http:\/\/127\.0\.0\.1:\d+ is not taking logs.*/g) ?? [];
    assert.equal(reports.length, 1, 'one report, not one per batch');
    assert.match(reports[0]!, /ECONNREFUSED/, 'with the reason underneath');
    // Each access line once on stdout, as the role wrote it.
    assert.equal(role.output().match(/"msg":"request completed"/g)?.length, 3);
    assert.match(role.output(), /"msg":"stopped"/);
  });

  test('a Seq that takes the connection and never answers does not hold up the stop: exit 0 within SHUTDOWN_TIMEOUT_MS', async () => {
    const sockets = new Set<Socket>();
    const silent = createNetServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    try {
      const role = await startRole('src/apps/webapi/main.ts', {
        ...webapiAlone,
        SEQ_URL: `http://127.0.0.1:${port}`,
        SHUTDOWN_TIMEOUT_MS: '6000',
      });
      assert.equal((await fetch(`${role.url}/api/students`, { method: 'POST' })).status, 201);
      // Exit 1 would mean the stop was cut short at SHUTDOWN_TIMEOUT_MS, still waiting for Seq.
      assert.equal(await role.stop(), 0, role.output());
      assert.match(role.output(), /"msg":"stopped"/);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
