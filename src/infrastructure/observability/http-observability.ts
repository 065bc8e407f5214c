// Every HTTP server of the system is observed the same way: a server span per request (continuing a caller's
// W3C trace context) that is the active context while the route handler runs, a latency histogram by method,
// route and status, one access-log line per request, and the process's metrics at GET /metrics.
import { SpanKind, SpanStatusCode, context, trace, type Context, type Span } from '@opentelemetry/api';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import proxyAddr from '@fastify/proxy-addr';
import { Counter, Histogram, type Registry } from 'prom-client';
import { bindRequestSpan } from '../logging/logger.ts';
import { contextFromHeaders, tracer } from './tracing.ts';

export interface HttpObservabilityOptions {
  /** Which role this server belongs to: a label of its metrics (one process may run several). */
  readonly service: string;
  /** The process's metrics, served at /metrics. */
  readonly registry: Registry;
  /**
   * Addresses or CIDR ranges of the reverse proxies in front: a request from one is taken to come from the client
   * its X-Forwarded-For names (the rate limit's key, the access log's remoteAddress, a WebSocket upgrade's too), over
   * its X-Forwarded-Proto, for its X-Forwarded-Host. Absent or empty: those headers are ignored, since any client
   * could send them.
   */
  readonly trustedProxies?: readonly string[];
}

export const METRICS_PATH = '/metrics';
const DURATION_METRIC = 'http_server_request_duration_seconds';
const REFUSED_METRIC = 'http_server_refused_requests_total';
// Probes and scrapes, every few seconds: they would bury the traces and log lines that matter. They are not traced,
// their access-log line is at debug while they succeed, and they are still counted.
const ROUTINE_PREFIXES = ['/health', METRICS_PATH];
// Any other method is one label value, so a client cannot grow the metric's cardinality.
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

interface Observation {
  readonly started: number;
  readonly method: string;
  readonly route: string;
  readonly span: Span | undefined;
  /** The handler runs in it: the server span's context (sampled or not); none when nothing is traced. */
  readonly context: Context | undefined;
  /** A probe or a scrape: its access-log line is at debug while it succeeds. */
  readonly routine: boolean;
  /** Its answer: a client that closes a stream (SSE) whose head was sent ends it, it does not abort it. */
  readonly response: ServerResponse;
}

const OBSERVATION = Symbol('observation');
type ObservedRequest = FastifyRequest & { [OBSERVATION]: Observation | null };

/**
 * Observes a request Fastify answers outside every hook: one the router turned away (`frameworkErrors`). Call it
 * before the reply is sent.
 */
export type ObserveUnrouted = (request: FastifyRequest, reply: FastifyReply) => void;

/**
 * A request answered on the bare socket: one Node's HTTP parser refused (malformed, a head too large, too slow) or a
 * CONNECT. Before Node made a request of it, nothing of it is known but why; one whose body did not arrive in time
 * is a routed request, counted and logged as such.
 */
export interface RefusedRequest {
  readonly status: number;
  /** The problem's code (`REQUEST.HEADERS_TOO_LARGE`, …). */
  readonly code: string;
  /** Node's own name for what its parser refused (`HPE_HEADER_OVERFLOW`, …), for the log. */
  readonly cause?: string;
  /** The id the answer carries in X-Request-Id. */
  readonly requestId: string;
  readonly remoteAddress: string | undefined;
  /** The routed request in flight on the connection (its head was parsed, its body had not arrived), if any. */
  readonly request?: FastifyRequest;
}

export type ObserveRefused = (refused: RefusedRequest) => void;

/** The requests in flight when the server began to close, and how many of them were answered since. */
export interface RequestsAtClose {
  readonly inFlight: number;
  /** The rest were cut off (at the drain deadline) or given up on by their clients. */
  readonly answered: number;
}

/**
 * A WebSocket upgrade answered off Fastify (by the hub): 101, or the status it was refused with. Logged and counted as
 * a request of `route`, its duration up to that answer.
 */
export type ObserveUpgrade = (
  request: IncomingMessage,
  route: string,
  status: number,
  milliseconds: number,
) => void;

/**
 * Adds the hooks and the /metrics route; call before any route is registered (handlers are wrapped as added).
 * Returns what observes the requests no hook sees.
 */
export function observeHttp(
  app: FastifyInstance,
  { service, registry, trustedProxies = [] }: HttpObservabilityOptions,
): {
  readonly unrouted: ObserveUnrouted;
  readonly refused: ObserveRefused;
  readonly upgraded: ObserveUpgrade;
  /** The routed request on a connection whose body has not arrived whole, answered or not. */
  readonly lateRequestOn: (socket: Socket) => FastifyRequest | undefined;
  /** Call as the server begins to close: from then on, those then in flight are followed (requestsAtClose). */
  readonly closing: () => void;
  readonly requestsAtClose: () => RequestsAtClose | undefined;
} {
  // The client a trusted proxy forwards for, as Fastify finds it for the requests it parses.
  const trust = trustedProxies.length > 0 ? proxyAddr.compile([...trustedProxies]) : undefined;
  const clientAddressOf = (request: IncomingMessage) =>
    trust ? proxyAddr(request, trust) : request.socket.remoteAddress;
  const duration = requestDuration(registry);
  const refusals = refusedRequests(registry);
  // One labelled child per method, route and status, made once: labels() parses and checks them and makes closures.
  const durations = new Map<string, Histogram.Internal<'service' | 'method' | 'route' | 'status_code'>>();
  const durationOf = (method: string, route: string, status: string) => {
    const key = `${method} ${route} ${status}`;
    let child = durations.get(key);
    if (!child) {
      child = duration.labels({ service, method, route, status_code: status });
      durations.set(key, child);
    }
    return child;
  };
  // A request slot, not a WeakMap: a property read is cheaper, and the entry goes with the request.
  app.decorateRequest(OBSERVATION, null);
  // The last routed request on each connection: one whose body is too slow is answered from the socket (408).
  const lastOn = new WeakMap<Socket, FastifyRequest>();
  // Counters only, for the shutdown's log line: what a stop cut off.
  let inFlight = 0;
  let atClose: { readonly since: number; readonly inFlight: number; answered: number } | undefined;

  const start = (request: FastifyRequest, reply: FastifyReply) => {
    lastOn.set(request.raw.socket, request);
    const route = request.routeOptions.url;
    const method = KNOWN_METHODS.has(request.method) ? request.method : '_OTHER';
    const parent = contextFromHeaders(request.headers);
    const routine = route !== undefined && ROUTINE_PREFIXES.some((prefix) => route.startsWith(prefix));
    const traced = route !== undefined && !routine;
    // Without an exporter every span is a no-op one: nothing to describe, no context to make active.
    const candidate = traced
      ? tracer.startSpan(`${method} ${route}`, { kind: SpanKind.SERVER }, parent)
      : undefined;
    const span = candidate?.isRecording() ? candidate : undefined;
    // One the sampler dropped records nothing, yet its context must reach the handler's work: that work then
    // follows the "not sampled" decision rather than starting traces of its own.
    const carried = candidate && trace.isSpanContextValid(candidate.spanContext()) ? candidate : undefined;
    // Lines the request's logger writes outside the handler (its hooks, the error handler's `unhandled error`) are
    // in its trace too: an operator goes from such a line to the trace by its ids.
    if (carried) bindRequestSpan(request.log, carried.spanContext());
    if (span)
      span.setAttributes({
        'http.request.method': method,
        'http.route': route,
        'url.path': request.url.split('?', 1)[0],
        'url.scheme': request.protocol,
        'client.address': request.ip,
      });
    inFlight++;
    (request as ObservedRequest)[OBSERVATION] = {
      started: performance.now(),
      method,
      // Unmatched URLs share one label value, for the same reason as methods.
      route: route ?? 'unmatched',
      span,
      context: carried && trace.setSpan(parent, carried),
      routine,
      response: reply.raw,
    };
  };
  // Callback hooks, not async ones: they run on every request, and a promise per hook is measurable.
  app.addHook('onRequest', (request, reply, done) => {
    start(request, reply);
    done();
  });

  // Hooks cannot make a context active for what follows them; wrapping each handler can.
  app.addHook('onRoute', (routeOptions) => {
    const handler = routeOptions.handler;
    routeOptions.handler = function observedHandler(request, reply) {
      const observation = (request as ObservedRequest)[OBSERVATION];
      return observation?.context
        ? context.with(observation.context, handler, this, request, reply)
        : handler.call(this, request, reply);
    };
  });

  const finish = (request: FastifyRequest, status: number, aborted: boolean) => {
    const observed = request as ObservedRequest;
    const observation = observed[OBSERVATION];
    if (!observation) return;
    // Once: a request aborted mid-response is not also counted when its response ends.
    observed[OBSERVATION] = null;
    inFlight--;
    if (atClose && !aborted && observation.started < atClose.since) atClose.answered++;
    const milliseconds = performance.now() - observation.started;
    durationOf(observation.method, observation.route, String(status)).observe(milliseconds / 1000);
    // One access-log line per request (Fastify's own logging, off, wrote two), in the request's trace: a request a
    // hook answered (401, 403, 400) or the client aborted ends outside the handler's context.
    // A failing probe or scrape still shows.
    const level: AccessLevel = observation.routine && status < 400 ? 'debug' : 'info';
    if (observation.context)
      context.with(observation.context, logAccess, undefined, request, level, status, milliseconds, aborted);
    else logAccess(request, level, status, milliseconds, aborted);
    const { span } = observation;
    if (!span) return;
    span.setAttribute('http.response.status_code', status);
    if (aborted) span.setStatus({ code: SpanStatusCode.ERROR, message: 'client closed the request' });
    else if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  };
  app.addHook('onResponse', (request, reply, done) => {
    finish(request, reply.statusCode, false);
    done();
  });
  app.addHook('onRequestAbort', (request, done) => {
    // A stream (SSE, the hub's SSE transport) ends when its client closes it, after its 200 went out: that is how
    // every such stream ends, not an error. A request given up on before its answer began is a 499.
    const response = (request as ObservedRequest)[OBSERVATION]?.response;
    if (response?.headersSent) finish(request, response.statusCode, false);
    else finish(request, 499, true);
    done();
  });

  app.get(METRICS_PATH, { schema: { hide: true } }, async (_request, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()),
  );

  return {
    unrouted: (request, reply) => {
      start(request, reply);
      // What onResponse and onRequestAbort are to a routed request: 'close' follows the end of the response, or an
      // abort.
      reply.raw.once('close', () =>
        reply.raw.writableFinished ? finish(request, reply.statusCode, false) : finish(request, 499, true),
      );
    },
    // Counted apart from the histogram: such a request has no start to time it from, no method or route to label.
    refused: ({ status, code, cause, requestId, remoteAddress, request }) => {
      // Its head was parsed: counted and logged once, as the request it is, with the status it got.
      if (request) return finish(request, status, false);
      refusals.inc({ service, status_code: String(status), code });
      app.log.info({ reqId: requestId, statusCode: status, code, cause, remoteAddress }, 'request refused');
    },
    upgraded: (request, route, status, milliseconds) => {
      const method = request.method && KNOWN_METHODS.has(request.method) ? request.method : '_OTHER';
      durationOf(method, route, String(status)).observe(milliseconds / 1000);
      // Shaped as the access log's `req`, whose serializer masks the query's secrets (a token, the connection's id).
      const req = {
        method: request.method,
        url: request.url ?? '',
        host: request.headers.host,
        ip: clientAddressOf(request),
        socket: request.socket,
      };
      app.log.info(
        { reqId: randomUUID(), req, statusCode: status, responseTime: milliseconds },
        'request completed',
      );
    },
    lateRequestOn: (socket) => {
      const request = lastOn.get(socket);
      return request && !request.raw.complete ? request : undefined;
    },
    closing: () => {
      atClose ??= { since: performance.now(), inFlight, answered: 0 };
    },
    requestsAtClose: () => atClose && { inFlight: atClose.inFlight, answered: atClose.answered },
  };
}

type AccessLevel = 'debug' | 'info';

// A function of the module, not a closure made per request: under tsx (esbuild's keepNames) each named closure costs
// a defineProperty, 2 µs of every request here.
function logAccess(
  request: FastifyRequest,
  level: AccessLevel,
  status: number,
  milliseconds: number,
  aborted: boolean,
): void {
  request.log[level](
    { req: request, statusCode: status, responseTime: milliseconds },
    aborted ? 'request aborted' : 'request completed',
  );
}

/** One counter per registry, as the histogram below. */
function refusedRequests(registry: Registry): Counter<'service' | 'status_code' | 'code'> {
  const existing = registry.getSingleMetric(REFUSED_METRIC);
  if (existing) return existing as Counter<'service' | 'status_code' | 'code'>;
  return new Counter({
    name: REFUSED_METRIC,
    help: 'HTTP requests answered before they were parsed (malformed, too large, too slow) or a CONNECT, by role, status and why.',
    labelNames: ['service', 'status_code', 'code'],
    registers: [registry],
  });
}

/** One histogram per registry, whichever role's server creates it first. */
function requestDuration(registry: Registry): Histogram<'service' | 'method' | 'route' | 'status_code'> {
  const existing = registry.getSingleMetric(DURATION_METRIC);
  if (existing) return existing as Histogram<'service' | 'method' | 'route' | 'status_code'>;
  return new Histogram({
    name: DURATION_METRIC,
    help: 'HTTP requests served, by role, method, route and status, and how long each took (to the end of the response).',
    labelNames: ['service', 'method', 'route', 'status_code'],
    // OpenTelemetry's default HTTP buckets.
    buckets: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10],
    registers: [registry],
  });
}
