// A server that is closing finishes what it is doing and turns away what still arrives on open connections, with
// a problem+json 503 that says to retry (a load balancer sends the retry to another instance).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Socket } from 'node:net';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createHttpServer, type HttpServerOptions } from '../../src/infrastructure/http/http-server.ts';
import { silentLogger } from '../support/logger.ts';

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
    const socket = new Socket();
    let host = '';
    // Once closing has begun, a second request goes out on the busy connection; once it is answered, the slow one
    // ends and the server can finish closing.
    app.addHook('preClose', (done) => {
      socket.write(`GET /fast HTTP/1.1\r\nHost: ${host}\r\nOrigin: http://page.example\r\n\r\n`);
      done();
    });
    app.addHook('onSend', (request, _reply, payload, done) => {
      if (request.url === '/fast') finish();
      done(null, payload);
    });
    const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
    host = url.host;
    await once(socket.connect(Number(url.port), url.hostname), 'connect');
    let received = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
    const ended = once(socket, 'close');
    socket.write(`GET /slow HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    await inFlight;
    await Promise.all([app.close(), ended]);

    const [first, second] = received.split(/(?=HTTP\/1\.1 )/);
    assert.match(first ?? '', /^HTTP\/1\.1 200 /);
    assert.match(first ?? '', /\{"done":true\}$/);
    assert.match(second ?? '', /^HTTP\/1\.1 503 /);
    assert.match(second ?? '', /\r\ncontent-type: application\/problem\+json/i);
    assert.match(second ?? '', /\r\nretry-after: 1\r\n/i);
    assert.match(second ?? '', /\r\nconnection: close\r\n/i);
    assert.match(second ?? '', /\r\naccess-control-allow-origin: http:\/\/page\.example\r\n/i);
    const body = JSON.parse((second ?? '').split('\r\n\r\n')[1] ?? '') as Record<string, unknown>;
    assert.equal(body.status, 503);
    assert.equal(body.code, 'SERVER.CLOSING');
    assert.equal(body.instance, '/fast');
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
