// Every role's HTTP server: a server span per request that continues the caller's trace and is active in the
// handler, probes left untraced, and a latency histogram whose labels a client cannot multiply.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { Registry } from 'prom-client';
import { createHttpServer, type HttpServer } from '../../src/infrastructure/http/http-server.ts';
import { registerHealthRoutes } from '../../src/infrastructure/http/health.routes.ts';
import { inSpan } from '../../src/infrastructure/observability/tracing.ts';
import { recordingLogger } from '../support/logger.ts';
import { parseExposition } from '../support/prometheus-text.ts';
import { exchange } from '../support/raw-http.ts';
import { recordSpans } from '../support/tracing.ts';
import { until } from '../support/until.ts';

const spans = recordSpans();

describe('HTTP observability', () => {
  let app: HttpServer;
  let url: string;
  const activeInHandler: (string | undefined)[] = [];
  const { logger, logged } = recordingLogger();
  let hanging!: () => void;
  const handlerStarted = new Promise<void>((resolve) => (hanging = resolve));
  let returned = false;
  /** Stands in for performance.now() where a test mocks it; /slow moves it on by 1.5 s. */
  let clock = 0;

  before(async () => {
    app = createHttpServer(logger, {
      service: 'test',
      registry: new Registry(),
      maxHeaderBytes: 16_384,
    });
    registerHealthRoutes(app, []);
    app.get('/things/:id', async () => {
      activeInHandler.push(trace.getActiveSpan()?.spanContext().spanId);
      return { ok: true };
    });
    app.get('/broken', async () => {
      throw new Error('bug');
    });
    app.get('/refused', async (_request, reply) => reply.code(409).send());
    app.get('/work', async () => inSpan('work', {}, async () => ({ ok: true })));
    app.get('/slow', async () => {
      clock += 1500;
      return { ok: true };
    });
    // Answers only once its client has gone.
    app.get('/hang', async (_request, reply) => {
      const gone = once(reply.raw, 'close');
      hanging();
      await gone;
      returned = true;
      return { late: true };
    });
    url = await app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(() => app.close());

  test("a request is a SERVER span named by its route, a child of the caller's traceparent, active in the handler", async () => {
    spans.reset();
    const response = await fetch(`${url}/things/42?x=1`, {
      headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
    });
    assert.equal(response.status, 200);
    const [span] = spans.getFinishedSpans();
    assert.equal(span?.name, 'GET /things/:id');
    assert.equal(span.kind, SpanKind.SERVER);
    assert.equal(span.spanContext().traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(span.parentSpanContext?.spanId, '00f067aa0ba902b7');
    assert.equal(span.attributes['http.request.method'], 'GET');
    assert.equal(span.attributes['http.route'], '/things/:id');
    assert.equal(span.attributes['url.path'], '/things/42');
    assert.equal(span.attributes['url.scheme'], 'http');
    assert.equal(span.attributes['client.address'], '127.0.0.1');
    assert.equal(span.attributes['http.response.status_code'], 200);
    assert.equal(activeInHandler.at(-1), span.spanContext().spanId);
    const [line] = logged()
      .split('\n')
      .filter((each) => each.includes('"url":"/things/42?x=1"'))
      .map((each) => JSON.parse(each) as Record<string, unknown>);
    assert.equal(line?.msg, 'request completed');
    assert.equal(line.statusCode, 200);
    assert.equal(typeof line.responseTime, 'number', 'how long it took, in the one access line');
  });

  test("a caller's trace context that says not sampled is followed: neither the request nor its work is exported", async () => {
    spans.reset();
    const response = await fetch(`${url}/work`, {
      headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00' },
    });
    assert.equal(response.status, 200);
    assert.deepEqual(
      spans.getFinishedSpans().map((span) => span.name),
      [],
      'not a trace of its own',
    );
  });

  test("a 5xx ends its span as an error, a 4xx (the client's fault) does not; health probes and scrapes are not traced", async () => {
    spans.reset();
    assert.equal((await fetch(`${url}/refused`)).status, 409);
    assert.equal((await fetch(`${url}/broken`)).status, 500);
    assert.equal((await fetch(`${url}/health/ready`)).status, 200);
    assert.equal((await fetch(`${url}/metrics`)).status, 200);
    assert.deepEqual(
      spans.getFinishedSpans().map((span) => [span.name, span.status.code]),
      [
        ['GET /refused', SpanStatusCode.UNSET],
        ['GET /broken', SpanStatusCode.ERROR],
      ],
    );
    assert.equal(spans.getFinishedSpans()[1]?.attributes['http.response.status_code'], 500);
  });

  test('a request its client gives up on is counted and logged once, as 499, and its span ends as an error', async () => {
    spans.reset();
    const client = connect(Number(new URL(url).port), '127.0.0.1');
    client.on('error', () => undefined);
    await once(client, 'connect');
    client.write('GET /hang HTTP/1.1\r\nHost: x\r\n\r\n');
    await handlerStarted;
    client.destroy();
    await until(() => returned, 'the handler to return, after its client has gone');
    const metrics = parseExposition(await (await fetch(`${url}/metrics`)).text());
    const count = (labels: Record<string, string>) =>
      metrics.sum('http_server_request_duration_seconds_count', {
        service: 'test',
        route: '/hang',
        ...labels,
      });
    assert.equal(count({}), 1, 'counted once');
    assert.equal(count({ status_code: '499' }), 1);
    const lines = logged()
      .split('\n')
      .filter((line) => line.includes('"url":"/hang"'));
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, /"statusCode":499/);
    assert.match(lines[0]!, /"msg":"request aborted"/);
    const hung = spans.getFinishedSpans().filter((span) => span.name === 'GET /hang');
    assert.equal(hung.length, 1);
    assert.equal(hung[0]?.status.code, SpanStatusCode.ERROR);
    assert.equal(hung[0]?.attributes['http.response.status_code'], 499);
  });

  test('the latency histogram is in seconds, as its name says', async (t) => {
    clock = Math.ceil(performance.now());
    t.mock.method(performance, 'now', () => clock);
    assert.equal((await fetch(`${url}/slow`)).status, 200);
    t.mock.restoreAll();
    const metrics = parseExposition(await (await fetch(`${url}/metrics`)).text());
    const slow = { service: 'test', route: '/slow' };
    assert.equal(metrics.sum('http_server_request_duration_seconds_sum', slow), 1.5);
    assert.equal(metrics.sum('http_server_request_duration_seconds_bucket', { ...slow, le: '1' }), 0);
    assert.equal(metrics.sum('http_server_request_duration_seconds_bucket', { ...slow, le: '2.5' }), 1);
  });

  test("OPTIONS * on a server without CORS (the worker's) lists the methods it takes", async () => {
    const answer = await exchange(
      new URL(url).port,
      'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    assert.match(answer, /^HTTP\/1.1 204 /);
    assert.match(answer, /\r\nallow: GET, HEAD\r\n/i);
  });

  test('GET /metrics counts requests by method, route and status; unknown routes and methods share one label', async () => {
    await fetch(`${url}/no/such/${Math.random()}`);
    await fetch(`${url}/no/such/${Math.random()}`, { method: 'PROPFIND' });
    // A path that exists, with a method it does not take: a 405, also of no route.
    await fetch(`${url}/things/1`, { method: 'PROPFIND' });
    await fetch(`${url}/things/1`, { method: 'DELETE' });
    await fetch(`${url}/things/1`);
    // Turned away by the router itself, before any hook.
    await fetch(`${url}/things/%E0%A4%A`);
    const metrics = parseExposition(await (await fetch(`${url}/metrics`)).text());
    const count = (labels: Record<string, string>) =>
      metrics.sum('http_server_request_duration_seconds_count', { service: 'test', ...labels });
    assert.ok(count({ method: 'GET', route: '/things/:id', status_code: '200' }) >= 2);
    assert.equal(
      count({ route: 'unmatched', status_code: '404' }),
      2,
      'random paths and methods, one series',
    );
    assert.equal(count({ route: 'unmatched', status_code: '405' }), 2);
    assert.equal(count({ method: 'DELETE' }), 1, 'a standard method is a label value of its own');
    assert.equal(count({ method: 'GET', route: 'unmatched', status_code: '400' }), 1, 'an undecodable path');
    assert.equal(count({ method: '_OTHER' }), 2);
  });

  test("requests answered before they were parsed (malformed, a head too large, CONNECT) are counted and logged with the answer's request id", async () => {
    const { port } = new URL(url);
    const answers = [
      await exchange(port, 'FOO123 / HTTP/1.1\r\nHost: x\r\n\r\n'),
      await exchange(port, `GET / HTTP/1.1\r\nHost: x\r\nx-padding: ${'x'.repeat(20_000)}\r\n\r\n`),
      await exchange(port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'),
    ];
    assert.deepEqual(
      answers.map((answer) => answer.split(' ', 2)[1]),
      ['400', '431', '405'],
    );
    const metrics = parseExposition(await (await fetch(`${url}/metrics`)).text());
    const refused = (labels: Record<string, string>) =>
      metrics.sum('http_server_refused_requests_total', { service: 'test', ...labels });
    assert.equal(refused({ status_code: '400', code: 'REQUEST.INVALID' }), 1);
    assert.equal(refused({ status_code: '431', code: 'REQUEST.HEADERS_TOO_LARGE' }), 1);
    assert.equal(refused({ status_code: '405', code: 'ROUTE.METHOD_NOT_ALLOWED' }), 1);
    for (const answer of answers) {
      const requestId = /\r\nx-request-id: ([\w-]+)\r\n/i.exec(answer)?.[1];
      assert.ok(requestId, answer);
      const lines = logged()
        .split('\n')
        .filter((line) => line.includes(requestId));
      assert.equal(lines.length, 1, `one line for ${requestId}`);
      assert.match(lines[0]!, /"msg":"request refused"/);
      assert.match(lines[0]!, /"remoteAddress":"127\.0\.0\.1"/);
    }
  });

  test('a probe or a scrape that succeeds is logged at debug, not info: it would bury the requests that matter', async () => {
    const lines = () =>
      logged()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { msg: string; req?: { url: string } });
    const before = lines().length;
    assert.equal((await fetch(`${url}/health/ready`)).status, 200);
    assert.equal((await fetch(`${url}/metrics`)).status, 200);
    assert.equal((await fetch(`${url}/things/1`)).status, 200);
    const completed = lines()
      .slice(before)
      .filter((line) => line.msg === 'request completed')
      .map((line) => line.req?.url);
    assert.deepEqual(completed, ['/things/1']);
  });
});

describe("a request's log lines outside its handler", () => {
  test("the error handler's line of a 500, and a hook's line, carry the request's trace_id and span_id", async () => {
    const { logger, logged } = recordingLogger({ traced: true });
    const server = createHttpServer(logger, {
      service: 'test',
      registry: new Registry(),
      maxHeaderBytes: 16_384,
    });
    server.get('/broken', async () => {
      throw new Error('bug');
    });
    server.get('/hooked', {
      preHandler: (request, _reply, done) => {
        request.log.warn('from a hook');
        done();
      },
      handler: async () => ({ ok: true }),
    });
    const base = await server.listen({ host: '127.0.0.1', port: 0 });
    try {
      spans.reset();
      assert.equal((await fetch(`${base}/broken`)).status, 500);
      assert.equal((await fetch(`${base}/hooked`)).status, 200);
    } finally {
      await server.close();
    }
    const lines = logged()
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const [route, message] of [
      ['/broken', 'unhandled error'],
      ['/hooked', 'from a hook'],
    ] as const) {
      const span = spans.getFinishedSpans().find((finished) => finished.name === `GET ${route}`);
      assert.ok(span, `a span for ${route}`);
      const line = lines.find((logged) => logged.msg === message);
      assert.ok(line, `${message} is logged`);
      assert.equal(line.trace_id, span.spanContext().traceId, `${message}: in the request's trace`);
      assert.equal(line.span_id, span.spanContext().spanId, `${message}: of the request's span`);
    }
  });
});

describe('a stream its client closes', () => {
  test('is an answered 200, not an aborted 499 or an error span: every SSE stream ends that way', async () => {
    const { logger, logged } = recordingLogger();
    const registry = new Registry();
    const server = createHttpServer(logger, { service: 'test', registry, maxHeaderBytes: 16_384 });
    server.get('/stream', async (_request, reply) => {
      reply.hijack();
      reply.raw.writeHead(200, { 'content-type': 'text/event-stream' });
      reply.raw.write(': open\n\n');
    });
    const base = await server.listen({ host: '127.0.0.1', port: 0 });
    try {
      spans.reset();
      const client = connect(Number(new URL(base).port), '127.0.0.1');
      client.on('error', () => undefined);
      await once(client, 'connect');
      client.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n');
      await once(client, 'data');
      client.destroy();
      await until(
        () => spans.getFinishedSpans().some((span) => span.name === 'GET /stream'),
        'the stream span to end',
      );
      const [span] = spans.getFinishedSpans().filter((finished) => finished.name === 'GET /stream');
      assert.equal(span?.status.code, SpanStatusCode.UNSET);
      assert.equal(span.attributes['http.response.status_code'], 200);
      const metrics = parseExposition(await (await fetch(`${base}/metrics`)).text());
      assert.equal(
        metrics.sum('http_server_request_duration_seconds_count', { route: '/stream', status_code: '200' }),
        1,
      );
      const line = logged()
        .split('\n')
        .find((logged) => logged.includes('"url":"/stream"'));
      assert.match(line ?? '', /"statusCode":200,[^\n]*"msg":"request completed"/);
    } finally {
      await server.close();
    }
  });
});

describe('behind a reverse proxy', () => {
  /** A server that trusts `trustedProxies`, and what it logs. */
  const serverTrusting = (trustedProxies: string[]) => {
    const { logger, logged } = recordingLogger();
    const server = createHttpServer(logger, {
      service: 'test',
      registry: new Registry(),
      maxHeaderBytes: 16_384,
      trustedProxies,
    });
    return { server, logged };
  };

  test("the access log and the span name the client a trusted proxy forwards for, not the proxy's address", async () => {
    const forwarded = {
      'x-forwarded-for': '203.0.113.9',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'api.example',
    };
    const seen: Record<string, unknown>[] = [];
    for (const trustedProxies of [['127.0.0.1', '::1'], []]) {
      const { server, logged } = serverTrusting(trustedProxies);
      server.get('/things', async () => ({ ok: true }));
      const base = await server.listen({ host: '127.0.0.1', port: 0 });
      try {
        spans.reset();
        assert.equal((await fetch(`${base}/things`, { headers: forwarded })).status, 200);
        const line = logged()
          .split('\n')
          .find((logged) => logged.includes('"msg":"request completed"'));
        const { req } = JSON.parse(line ?? '{}') as { req?: { remoteAddress: string; host: string } };
        const [span] = spans.getFinishedSpans();
        seen.push({
          remoteAddress: req?.remoteAddress,
          // The Host the request came with, the listener's (the port differs from run to run), or the forwarded one.
          host: req?.host === new URL(base).host ? 'as sent' : req?.host,
          client: span?.attributes['client.address'],
          scheme: span?.attributes['url.scheme'],
        });
      } finally {
        await server.close();
      }
    }
    assert.deepEqual(seen, [
      { remoteAddress: '203.0.113.9', host: 'api.example', client: '203.0.113.9', scheme: 'https' },
      // Not trusted: any client could send those headers.
      { remoteAddress: '127.0.0.1', host: 'as sent', client: '127.0.0.1', scheme: 'http' },
    ]);
  });

  test("a WebSocket upgrade's line (it bypasses Fastify) names the forwarded client too, from a trusted proxy only", async () => {
    const upgrade = {
      method: 'GET',
      url: '/hubs/notifications?id=x',
      headers: { host: 'api.example', 'x-forwarded-for': '203.0.113.9', upgrade: 'websocket' },
      socket: { remoteAddress: '127.0.0.1', remotePort: 50_000 },
    } as unknown as IncomingMessage;
    const seen: unknown[] = [];
    for (const trustedProxies of [['127.0.0.1'], []]) {
      const { server, logged } = serverTrusting(trustedProxies);
      await server.ready();
      server.observeUpgrade(upgrade, '/hubs/notifications', 101, 3);
      const { req } = JSON.parse(logged().trim().split('\n').at(-1) ?? '{}') as {
        req?: { remoteAddress: string };
      };
      seen.push(req?.remoteAddress);
      await server.close();
    }
    assert.deepEqual(seen, ['203.0.113.9', '127.0.0.1']);
  });
});
