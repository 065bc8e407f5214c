import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { DependencyUnavailableError } from '../../src/application/errors.ts';
import {
  createHttpServer,
  listenOn,
  type HttpServerOptions,
} from '../../src/infrastructure/http/http-server.ts';
import type { Logger } from '../../src/infrastructure/logging/logger.ts';
import { writeMalformedRequestProblem } from '../../src/infrastructure/http/problem-details.ts';
import { recordingLogger } from '../support/logger.ts';

/** A server with the options every test here shares, and `options` on top. */
function testServer(logger: Logger, options: Partial<HttpServerOptions> = {}) {
  return createHttpServer(logger, {
    service: 'test',
    registry: new Registry(),
    maxHeaderBytes: 16_384,
    ...options,
  });
}

test('the request log masks an access_token in the query (EventSource and SignalR clients send one)', async () => {
  const { logger, logged } = recordingLogger();
  const app = testServer(logger);
  app.get('/stream', async () => ({ ok: true }));
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    assert.equal((await fetch(`${url}/stream?types=A&access_token=secret.jwt.value&x=1`)).status, 200);
  } finally {
    await app.close();
  }
  assert.match(logged(), /"url":"\/stream\?types=A&access_token=\[redacted\]&x=1"/);
  assert.doesNotMatch(logged(), /secret\.jwt\.value/);
});

test('the request log masks the query parameters a server names secret (a SignalR connection token)', async () => {
  const { logger, logged } = recordingLogger();
  const app = testServer(logger, { secretQueryParameters: ['id'] });
  app.post('/hubs/notifications', async () => ({ ok: true }));
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const response = await fetch(`${url}/hubs/notifications?id=conn-token-value&Id=second-token&_=1`, {
      method: 'POST',
    });
    assert.equal(response.status, 200);
  } finally {
    await app.close();
  }
  assert.match(logged(), /"url":"\/hubs\/notifications\?id=\[redacted\]&Id=\[redacted\]&_=1"/);
  assert.doesNotMatch(logged(), /conn-token-value|second-token/);
});

test('a request that took too long to arrive is a 408 saying so, not that it is invalid HTTP', () => {
  const written: string[] = [];
  const socket = {
    destroyed: false,
    writable: true,
    write: (text: string) => written.push(text),
    destroy: () => undefined,
  } as unknown as Socket;
  const timeout = Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' });
  writeMalformedRequestProblem(timeout, socket);
  const [head = '', body = ''] = written.join('').split('\r\n\r\n');
  assert.match(head, /^HTTP\/1.1 408 /);
  const problem = JSON.parse(body) as { detail: string };
  assert.equal(problem.detail, 'The request did not arrive in time: send it whole, without pauses.');
});

test('a routed request whose body is late is counted and logged once, under the id its 408 carries; one answered already only sees the close', async () => {
  const { logger, logged } = recordingLogger();
  const registry = new Registry();
  const app = testServer(logger, { registry, requestTimeoutMs: 300 });
  app.post('/upload', async () => ({ stored: true }));
  // Answered by a hook before its body is read, as a missing token is.
  app.post(
    '/early',
    { onRequest: (_request, reply, _done) => void reply.code(401).send() },
    async () => ({}),
  );
  // A stream answered at once, whose request declared a body it never sends.
  app.get('/events', async (_request, reply) => {
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream' });
    reply.raw.write(': open\n\n');
  });
  const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
  const stalled = async (start: string) => {
    const socket = connect(Number(url.port), url.hostname);
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    socket.on('error', () => undefined);
    socket.write(start);
    await once(socket, 'close');
    return received;
  };
  try {
    const body = await stalled(
      `POST /upload HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":`,
    );
    assert.match(body, /^HTTP\/1.1 408 /);
    const requestId = /\r\nx-request-id: ([\w-]+)\r\n/i.exec(body)?.[1];
    assert.ok(requestId, body);
    const stream = await stalled(`GET /events HTTP/1.1\r\nHost: ${url.host}\r\nContent-Length: 5\r\n\r\n`);
    assert.match(stream, /^HTTP\/1.1 200 /);
    assert.doesNotMatch(stream, /HTTP\/1.1 408/, 'no second head inside the stream');
    const early = await stalled(
      `POST /early HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":`,
    );
    assert.match(early, /^HTTP\/1.1 401 /);
    assert.equal(early.match(/HTTP\/1.1 /g)?.length, 1, 'answered once: the 401, then the close');
    const metrics = await registry.metrics();
    assert.doesNotMatch(metrics, /http_server_refused_requests_total\{/);
    assert.match(
      metrics,
      /http_server_request_duration_seconds_count\{[^}]*route="\/upload",status_code="408"\} 1/,
    );
    assert.match(
      metrics,
      /http_server_request_duration_seconds_count\{[^}]*route="\/early",status_code="401"\} 1/,
    );
    const lines = logged()
      .split('\n')
      .filter((line) => line.includes('/upload') || line.includes(requestId));
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, new RegExp(`"reqId":"${requestId}".*"statusCode":408`));
  } finally {
    await app.close();
  }
});

test('a request whose head or body stops arriving gets 408 once its time is up, and its connection is closed', async () => {
  const app = testServer(recordingLogger().logger, { requestTimeoutMs: 300 });
  app.post('/upload', async () => ({ stored: true }));
  const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
  const stalled = async (start: string) => {
    const socket = connect(Number(url.port), url.hostname);
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    socket.write(start);
    await once(socket, 'close');
    return received;
  };
  try {
    const started = Date.now();
    const [body, head] = await Promise.all([
      stalled(
        `POST /upload HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":`,
      ),
      stalled(`POST /upload HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: appl`),
    ]);
    for (const response of [body, head]) {
      assert.match(response, /^HTTP\/1.1 408 /);
      assert.match(
        response,
        /"detail":"The request did not arrive in time: send it whole, without pauses\."/,
      );
    }
    // The limit plus at most one of Node's checks (a quarter of it), and some slack for a busy machine.
    assert.ok(Date.now() - started < 2_000, `answered after ${Date.now() - started} ms`);
  } finally {
    await app.close();
  }
});

test("a malformed request pipelined behind writes in flight is answered after them: each answer stays its request's", async () => {
  const app = testServer(recordingLogger().logger);
  let stored = 0;
  app.post<{ Body: { ms: number } }>('/upload', async (request) => {
    // Still running when the parser meets the next request's malformed line.
    await delay(request.body.ms);
    stored += 1;
    return { stored };
  });
  const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
  try {
    const socket = connect(Number(url.port), url.hostname);
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    const post = (ms: number) => {
      const body = JSON.stringify({ ms });
      return `POST /upload HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    };
    socket.write(`${post(100)}${post(300)}GARBAGE\r\n\r\n`);
    await once(socket, 'close');
    assert.equal(stored, 2);
    // HTTP/1.1 answers in order: a client takes the first two answers for its POSTs, which were both stored.
    const statuses = [...received.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((match) => match[1]);
    assert.deepEqual(statuses, ['200', '200', '400']);
  } finally {
    await app.close();
  }
});

test('an OPTIONS for a path no route serves is a problem+json 404 on a server without CORS too (the worker)', async () => {
  const app = testServer(recordingLogger().logger);
  app.get('/health', async () => ({ status: 'Healthy' }));
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const response = await fetch(`${url}/nowhere`, { method: 'OPTIONS' });
    assert.equal(response.status, 404);
    assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(((await response.json()) as { code: string }).code, 'ROUTE.NOT_FOUND');
  } finally {
    await app.close();
  }
});

test("a request limit longer than Node's own default (five minutes) applies to head and body alike", async () => {
  const app = testServer(recordingLogger().logger, { requestTimeoutMs: 600_000 });
  try {
    assert.equal(app.server.requestTimeout, 600_000);
    assert.equal(app.server.headersTimeout, 600_000);
  } finally {
    await app.close();
  }
  // No limit is no option: a body could then trickle in for good.
  assert.throws(() => testServer(recordingLogger().logger, { requestTimeoutMs: 0 }), /must be positive/);
});

test('a server that cannot listen says why and which settings choose where', async () => {
  const app = testServer(recordingLogger().logger);
  const taken = createServer().listen(0, '127.0.0.1');
  await once(taken, 'listening');
  const { port } = taken.address() as AddressInfo;
  try {
    await assert.rejects(
      listenOn(app, '127.0.0.1', port, 'API_PORT'),
      new RegExp(
        `^Error: cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use; set HOST or API_PORT$`,
      ),
    );
  } finally {
    taken.close();
    await app.close();
  }
});

test('a failure to listen that the settings do not explain is passed on as it is', async () => {
  const app = testServer(recordingLogger().logger);
  try {
    await assert.rejects(listenOn(app, '127.0.0.1', 70_000, 'API_PORT'), { code: 'ERR_SOCKET_BAD_PORT' });
  } finally {
    await app.close();
  }
});

test('an unexpected error is a 500 that shows the caller nothing of it, and is logged whole', async () => {
  const { logger, logged } = recordingLogger();
  const app = testServer(logger);
  app.get('/broken', async () => {
    throw new Error('connection string postgres://admin:hunter2@db');
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const response = await fetch(`${url}/broken`);
    assert.equal(response.status, 500);
    const text = await response.text();
    assert.doesNotMatch(text, /hunter2/);
    assert.equal((JSON.parse(text) as { code: string }).code, 'INTERNAL');
  } finally {
    await app.close();
  }
  const line = logged()
    .split('\n')
    .find((entry) => entry.includes('"msg":"unhandled error"'));
  assert.ok(line, logged());
  assert.match(line, /"level":50/);
  assert.match(line, /hunter2@db/);
  assert.match(line, /"stack":/);
});

test('a dependency that cannot be reached is a 503 naming it, with Retry-After, and is logged as a warning with its cause', async () => {
  const { logger, logged } = recordingLogger();
  const app = testServer(logger);
  app.get('/students', async () => {
    throw new DependencyUnavailableError('database', {
      cause: new Error('connect ECONNREFUSED 10.0.0.7:5432'),
    });
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const response = await fetch(`${url}/students`);
    assert.equal(response.status, 503);
    assert.equal(response.headers.get('retry-after'), '5');
    const problem = (await response.json()) as { code: string; dependency: string };
    assert.equal(problem.code, 'DEPENDENCY.UNAVAILABLE');
    assert.equal(problem.dependency, 'database');
  } finally {
    await app.close();
  }
  const line = logged()
    .split('\n')
    .find((entry) => entry.includes('"msg":"database unavailable: answering 503 until it is back"'));
  assert.ok(line, logged());
  assert.match(line, /"level":40/);
  assert.match(line, /ECONNREFUSED 10\.0\.0\.7:5432/, 'the cause, for whoever must bring it back');
});

test("a library's client error adds the headers its status calls for, never ones that override ours or set cookies", async () => {
  const app = testServer(recordingLogger().logger, { cors: { origins: ['https://app.example'] } });
  // As http-errors builds it (an upstream client's error may carry the upstream response's headers the same way).
  app.get('/range', async () => {
    throw Object.assign(new Error('Range Not Satisfiable'), {
      statusCode: 416,
      headers: {
        'Content-Range': 'bytes */10',
        'X-Request-Id': 'forged',
        'X-Content-Type-Options': 'sniff',
        'Access-Control-Allow-Origin': '*',
        Vary: 'Accept',
        'Set-Cookie': 'session=upstream',
      },
    });
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const response = await fetch(`${url}/range`, {
      headers: { origin: 'https://app.example', 'x-request-id': 'mine' },
    });
    assert.equal(response.status, 416);
    assert.equal(response.headers.get('content-range'), 'bytes */10');
    assert.equal(response.headers.get('x-request-id'), 'mine');
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(response.headers.get('access-control-allow-origin'), 'https://app.example');
    assert.equal(response.headers.get('vary'), 'Origin');
    assert.equal(response.headers.get('set-cookie'), null);
    assert.equal(response.headers.get('content-type'), 'application/problem+json; charset=utf-8');
  } finally {
    await app.close();
  }
});

test('closing cuts, at the drain deadline, a connection an upgrade listener took over and still holds', async () => {
  const app = testServer(recordingLogger().logger, { drainTimeoutMs: 200 });
  // What a WebSocket server that never closes its sockets does: Node no longer counts them as its HTTP connections.
  app.server.on('upgrade', () => undefined);
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const client = connect(Number(new URL(url).port), '127.0.0.1');
  client.on('error', () => undefined);
  client.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  await once(app.server, 'upgrade');
  const closed = once(client, 'close');
  const closing = app.close();
  const cutOff = await Promise.race([closing.then(() => true), delay(3_000).then(() => false)]);
  assert.ok(cutOff, 'closed within the deadline');
  await closed;
});
