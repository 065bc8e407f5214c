// A server that is closing finishes what it is doing and turns away what still arrives on open connections, with
// a problem+json 503 that says to retry (a load balancer sends the retry to another instance).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Agent, request } from 'node:http';
import { Socket } from 'node:net';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createHttpServer, type HttpServerOptions } from '../../src/infrastructure/http/http-server.ts';
import { silentLogger } from '../support/logger.ts';
import { until } from '../support/until.ts';

/** A server on our plumbing, and a signal for the moment its slow request is in flight. */
function closingServer(options: Partial<HttpServerOptions> = {}) {
  const app = createHttpServer(silentLogger, {
    service: 'test',
    registry: new Registry(),
    maxHeaderBytes: 16_384,
    ...options,
  });
  let started!: () => void;
  const inFlight = new Promise<void>((resolve) => (started = resolve));
  return { app, inFlight, started };
}

test(
  'a request that arrives while the server closes gets a problem+json 503 with Retry-After, readable by a browser page; the one in flight completes',
  { timeout: 10_000 },
  async () => {
    const { app, inFlight, started } = closingServer({ cors: { origins: ['http://page.example'] } });
    let finish!: () => void;
    const released = new Promise<void>((resolve) => (finish = resolve));
    app.get('/slow', async () => {
      started();
      await released;
      return { done: true };
    });
    app.get('/fast', async () => ({ fast: true }));
    // Once the fast request is answered, the slow one ends and the server can finish closing.
    app.addHook('onSend', (request, _reply, payload, done) => {
      if (request.url === '/fast') finish();
      done(null, payload);
    });
    const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
    const connection = async () => {
      const socket = new Socket();
      await once(socket.connect(Number(url.port), url.hostname), 'connect');
      let received = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
      return { socket, received: () => received, closed: once(socket, 'close') };
    };
    // A connection kept alive after its request, idle: closed when the server stops letting connections go.
    const idle = await connection();
    idle.socket.write(`GET /fast?idle HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
    const busy = await connection();
    // Connected before the close began, its request sent only after: what a kept-alive one sends at that moment.
    const late = await connection();
    busy.socket.write(`GET /slow HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
    await inFlight;
    const closing = app.close();
    await idle.closed;
    late.socket.write(`GET /fast HTTP/1.1\r\nHost: ${url.host}\r\nOrigin: http://page.example\r\n\r\n`);
    await Promise.all([closing, busy.closed, late.closed]);

    assert.match(busy.received(), /^HTTP\/1\.1 200 /);
    assert.match(busy.received(), /\r\nconnection: close\r\n/i);
    assert.match(busy.received(), /\{"done":true\}$/);
    const refused = late.received();
    assert.match(refused, /^HTTP\/1\.1 503 /);
    assert.match(refused, /\r\ncontent-type: application\/problem\+json/i);
    assert.match(refused, /\r\nretry-after: 1\r\n/i);
    assert.match(refused, /\r\nconnection: close\r\n/i);
    assert.match(refused, /\r\naccess-control-allow-origin: http:\/\/page\.example\r\n/i);
    const body = JSON.parse(refused.split('\r\n\r\n')[1] ?? '') as Record<string, unknown>;
    assert.equal(body.status, 503);
    assert.equal(body.code, 'SERVER.CLOSING');
    assert.equal(body.instance, '/fast');
  },
);

test(
  'stopping under load resets no request: each busy kept-alive client gets its next answer with Connection: close, then is refused a new connection',
  { timeout: 20_000 },
  async () => {
    const { app } = closingServer();
    app.get('/item', async () => ({ item: 1 }));
    const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
    const agent = new Agent({ keepAlive: true, maxSockets: 20 });
    const outcomes = new Map<string, number>();
    const count = (outcome: string) => outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    const get = () =>
      new Promise<string>((resolve, reject) =>
        request(new URL('/item', url), { agent }, (response) => {
          response.resume().on('end', () => resolve(`${response.statusCode} ${response.headers.connection}`));
        })
          .on('error', reject)
          .end(),
      );
    let answered = 0;
    // Every client sends its next request as soon as it has an answer, as under load; each ends once refused.
    const client = async () => {
      for (;;) {
        const outcome = await get().catch((error: NodeJS.ErrnoException) => error.code ?? String(error));
        count(outcome);
        answered += 1;
        if (outcome === 'ECONNREFUSED') return;
      }
    };
    const clients = Array.from({ length: 20 }, client);
    try {
      await until(() => answered > 500, 'the clients are busy');
      await app.close();
      await Promise.all(clients);
    } finally {
      agent.destroy();
    }
    const seen = Object.fromEntries(outcomes);
    // Without the let-go, closing the idle connections reset the request already on its way on nearly every one.
    assert.deepEqual(
      Object.keys(seen).sort(),
      ['200 close', '200 keep-alive', 'ECONNREFUSED'],
      JSON.stringify(seen),
    );
    assert.equal(seen.ECONNREFUSED, 20);
  },
);

test(
  'closing takes no longer than the work in flight: neither a kept-alive client nor a connection that never sends a request holds it',
  { timeout: 10_000 },
  async () => {
    const { app, inFlight, started } = closingServer();
    app.get('/slow', async () => {
      started();
      await new Promise((resolve) => setTimeout(resolve, 300));
      return { done: true };
    });
    const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
    // A client that keeps its connection open for the next request, and one that connects and sends nothing.
    const keptAlive = new Socket();
    const silent = new Socket();
    await once(keptAlive.connect(Number(url.port), url.hostname), 'connect');
    await once(silent.connect(Number(url.port), url.hostname), 'connect');
    let received = '';
    keptAlive.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
    const keptAliveClosed = once(keptAlive, 'close');
    keptAlive.write(`GET /slow HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
    await inFlight;
    const closing = Date.now();
    try {
      await app.close();
      // Node alone waits for both until their timeouts, a minute and more.
      assert.ok(Date.now() - closing < 3_000, `closed after ${Date.now() - closing} ms`);
      assert.match(received, /^HTTP\/1\.1 200 /);
      await keptAliveClosed;
    } finally {
      keptAlive.destroy();
      silent.destroy();
    }
  },
);

test(
  'a request still unfinished at the drain deadline (a body that never completes) is cut, and closing ends',
  { timeout: 10_000 },
  async () => {
    const { app } = closingServer({ drainTimeoutMs: 300 });
    app.post('/upload', async () => ({ stored: true }));
    const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
    const uploader = new Socket();
    await once(uploader.connect(Number(url.port), url.hostname), 'connect');
    const cut = once(uploader, 'close');
    uploader.write(
      `POST /upload HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":`,
    );
    await new Promise((resolve) => setTimeout(resolve, 100)); // the request is in flight, its body incomplete
    const closing = Date.now();
    try {
      // Without the deadline, the close would wait for the body until the request timeout (a minute).
      const closed = await Promise.race([
        app.close().then(() => true),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), 5_000)),
      ]);
      assert.ok(closed, 'closed within 5 s');
      assert.ok(Date.now() - closing < 2_000, `closed after ${Date.now() - closing} ms`);
      await cut;
    } finally {
      uploader.destroy();
    }
  },
);
