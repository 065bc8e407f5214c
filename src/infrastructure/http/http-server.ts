import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import cors from '@fastify/cors';
import Fastify, {
  LogController,
  errorCodes,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import helmet, { type HelmetOptions } from 'helmet';
import { scan } from 'secure-json-parse';
import type { Logger } from '../logging/logger.ts';
import {
  observeHttp,
  type HttpObservabilityOptions,
  type ObserveRefused,
  type ObserveUpgrade,
  type RequestsAtClose,
} from '../observability/http-observability.ts';
import { ROUTER_OPTIONS, trackAllowedMethods } from './allowed-methods.ts';
import { headerLines } from './header-lines.ts';
import { repeatedName } from './repeated-json-name.ts';
import {
  clientErrorTitle,
  httpTitle,
  problem,
  registerProblemDetails,
  sendErrorProblem,
  sendProblem,
  writeMalformedRequestProblem,
  writeProblemAndClose,
} from './problem-details.ts';
import { ACCESS_TOKEN, withoutQuerySecrets } from './access-token.ts';

const BODY_LIMIT_BYTES = 64 * 1024;

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The JSON body as it arrived. What tells two requests apart (deduplication, idempotency keys) must be these
     * bytes: serializing the parsed body again would make `1e400` and `null` one body (both `null`).
     */
    bodyText: string | undefined;
  }
}
const SAFE_REQUEST_ID = /^[\w.:-]{1,128}$/;

/**
 * What every response carries, as the OWASP REST Security Cheat Sheet has it for APIs: no MIME sniffing, no
 * framing, no embedding by other origins, HSTS (honoured once a proxy adds TLS), and a CSP under which a
 * response rendered as a document anyway can load and run nothing.
 */
const API_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'cross-origin-resource-policy': 'same-origin',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
};

/**
 * What HTTP caches (a browser's, a proxy's, a CDN's) may do with an answer (RFC 9111). With no Cache-Control, any of
 * them may give a 200 or a 404 a lifetime of its own guessing (§4.2.2; Varnish's default is 120 s) and serve it after
 * a write it never saw (the worker's never passes through HTTP), and a shared cache keyed on the URL alone (nginx's
 * proxy_cache) would serve one caller's answer to another. So a read is the caller's own cache's to keep, asked again
 * before every use (its ETag makes that a 304), and nothing else is stored (the OWASP REST set's `no-store`). A route
 * that says otherwise (the event stream, the pages) sets its own.
 */
const READ_CACHE_CONTROL = 'private, no-cache';
const NOT_STORED = 'no-store';

/** What every response carries, on an answer written to the socket (no Fastify request, so no hook adds them). */
const socketAnswerHeaders = (requestId: string): Record<string, string> => ({
  ...API_SECURITY_HEADERS,
  'cache-control': NOT_STORED,
  'x-request-id': requestId,
});

export type HttpServer = FastifyInstance<
  Server,
  IncomingMessage,
  ServerResponse,
  FastifyBaseLogger,
  ZodTypeProvider
>;

declare module 'fastify' {
  interface FastifyInstance {
    /** Logs and counts a WebSocket upgrade a hub answered off Fastify, as the request it is (createHttpServer's). */
    observeUpgrade: ObserveUpgrade;
    /** Once the server began to close: the requests then in flight, and how many were answered (createHttpServer's). */
    requestsAtClose: () => RequestsAtClose | undefined;
  }
}

export interface HttpServerOptions extends HttpObservabilityOptions {
  /** Largest request head (Node's maxHeaderSize); a larger one is answered 431 by Node itself. */
  readonly maxHeaderBytes: number;
  /** Browsers on these origins may call this server; `*` = any, without credentials. Absent: no CORS headers. */
  readonly cors?: {
    readonly origins: readonly string[];
    /** Methods browser scripts may use besides GET, HEAD and POST (the preflight lists them). */
    readonly methods?: readonly ('PUT' | 'PATCH' | 'DELETE')[];
    /** Response headers browser scripts may read. */
    readonly exposedHeaders?: readonly string[];
  };
  /** Where this server's pages may connect besides their own origin (CSP `connect-src`). */
  readonly connectSources?: readonly string[];
  /**
   * Query parameters the request log masks besides `access_token` (lower case): the SignalR connection token `id`,
   * which lets whoever holds it read, feed and end that connection.
   */
  readonly secretQueryParameters?: readonly string[];
  /**
   * How long closing waits for requests in flight before it cuts their connections (a client sending its body
   * slowly, or never): what stops after this server must still get its turn. Default DEFAULT_DRAIN_TIMEOUT_MS.
   */
  readonly drainTimeoutMs?: number;
  /**
   * How long a request may take to arrive whole, head and body (positive); one still incomplete then gets 408 and
   * its connection is closed. Default DEFAULT_REQUEST_TIMEOUT_MS.
   */
  readonly requestTimeoutMs?: number;
}

const DEFAULT_DRAIN_TIMEOUT_MS = 5_000;
/**
 * Closing waits until no connection has read a byte for LET_GO_QUIET_MS (a busy client has sent its next request,
 * and learnt from its answer to go; an idle one sends nothing), at most LET_GO_MAX_MS: under a steady load clients
 * keep opening new connections, and each of those is answered with the close too.
 */
const LET_GO_QUIET_MS = 100;
const LET_GO_MAX_MS = 1_000;
/** Node's own limit for a request head; Fastify turns Node's limit for the whole request off (0). */
const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

/**
 * A Fastify instance with the project's conventions: zod schemas, problem+json errors, request ids, security
 * headers, size limits, CORS when asked for, and the observability every role shares (a trace span and metrics
 * per request, GET /metrics).
 */
export function createHttpServer(logger: Logger, options: HttpServerOptions): HttpServer {
  // Set once the hooks it stands in for exist (below).
  let answerUnrouted: (request: FastifyRequest, reply: FastifyReply) => void = () => undefined;
  let observeRefused: ObserveRefused = () => undefined;
  let lateRequestOn: (socket: Socket) => FastifyRequest | undefined = () => undefined;
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  // 0, which means "none" to Node, would also make its check of every connection run all the time.
  if (!(requestTimeoutMs > 0))
    throw new RangeError(`requestTimeoutMs must be positive, not ${requestTimeoutMs}`);
  const app = Fastify<Server, IncomingMessage, ServerResponse, FastifyBaseLogger>({
    loggerInstance: logger.child(
      {},
      { serializers: { req: requestForLog([ACCESS_TOKEN, ...(options.secretQueryParameters ?? [])]) } },
    ),
    // observeHttp logs each request once, when it is answered.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy: options.trustedProxies?.length ? [...options.trustedProxies] : false,
    routerOptions: ROUTER_OPTIONS,
    // A body trickling in (or never finished) would hold its connection for good: a request arrives whole in time.
    requestTimeout: requestTimeoutMs,
    http: {
      maxHeaderSize: options.maxHeaderBytes,
      // Node answers an HTTP/1.1 request without Host with an empty 400; the onRequest hook answers it as problem+json.
      requireHostHeader: false,
      // Node checks the head's limit against the whole request's when it makes the server: both go to it.
      requestTimeout: requestTimeoutMs,
      // Node answers a head over this with 408 too; never more than the whole request gets.
      headersTimeout: requestTimeoutMs,
      // How often Node looks for requests past their time (30 s by default): no request lasts 1.25× its limit.
      connectionsCheckingInterval: Math.ceil(requestTimeoutMs / 4),
    },
    // A caller's x-request-id is kept when it is safe to log; otherwise we make one.
    requestIdHeader: false,
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Requests the router turns away (undecodable path, over-long parameter) get problem+json like the rest.
    frameworkErrors: (error, request, reply) => {
      answerUnrouted(request, reply);
      return sendErrorProblem(error, request, reply);
    },
    clientErrorHandler: (error, socket) => {
      // A request whose head Node parsed and whose body is late (408): answered already (a hook's 401), or with its
      // answer under way (a stream), it gets nothing more than the close, as from Node's own handler; in flight,
      // its 408 carries its id and is counted as it.
      const late = lateRequestOn(socket);
      const response = responseOn(socket);
      if (response?.headersSent || (late && !response)) return void socket.destroy(error);
      // A later request on the connection (pipelined) is malformed while an earlier one, arrived whole, is still being
      // answered: HTTP/1.1 answers in order, so the client takes the first answer for its first request. Written now,
      // the 400 would be that answer (a write it then believes refused, though committed), and the earlier one lost.
      // The earlier answer goes first; this one follows it, and ends the connection.
      if (response && !late && !response.writableFinished) {
        socket.pause();
        return afterResponsesOn(socket, error, () => answerClientError(error, socket, undefined));
      }
      answerClientError(error, socket, late);
    },
    // Our own 503 while closing (below): Fastify's is not problem+json and has no Retry-After.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
  }).withTypeProvider<ZodTypeProvider>();
  /** Answers a malformed (or late) request on its socket, as problem+json, and closes the connection. */
  function answerClientError(error: NodeJS.ErrnoException, socket: Socket, late: FastifyRequest | undefined) {
    const requestId = late?.id ?? randomUUID();
    // Read first: a socket forgets its peer once destroyed, as answering it does.
    const remoteAddress = socket.remoteAddress;
    const answered = writeMalformedRequestProblem(error, socket, socketAnswerHeaders(requestId));
    if (answered)
      observeRefused({
        status: answered.status,
        code: answered.code,
        ...(error.code ? { cause: error.code } : {}),
        requestId,
        remoteAddress,
        ...(late ? { request: late } : {}),
      });
  }
  // Node answers an expectation other than 100-continue with an empty 417; the onRequest hook answers it instead.
  app.server.on('checkExpectation', (request, response) => app.server.emit('request', request, response));
  // Node answers 100 Continue itself, before the app has seen the head: the client then sends a body the app refuses
  // from the head alone (401, 429, 413). The request goes on without it; preParsing sends it (below).
  app.server.on('checkContinue', (request, response) => app.server.emit('request', request, response));
  app.addHook('preParsing', (request, reply, payload, done) => {
    if (wantsContinue(request)) reply.raw.writeContinue();
    done(null, payload);
  });
  // Before any route is added: every one is mirrored, so a wrong method gets 405 rather than 404.
  const allowedMethods = trackAllowedMethods(app);
  // Node hands a CONNECT (a request for a tunnel, to a proxy) to 'connect' listeners, never to the app, and drops
  // the connection unanswered when there is none. This server is no proxy.
  app.server.on('connect', (request: IncomingMessage, socket: Duplex) => {
    const allowed = allowedMethods('*').join(', ');
    const requestId = randomUUID();
    const answer = problem({
      status: 405,
      title: httpTitle(405),
      code: 'ROUTE.METHOD_NOT_ALLOWED',
      detail: `This server is no proxy: it takes no CONNECT, but ${allowed}.`,
      instance: request.url ?? '',
      errors: [{ field: 'method', reason: `must be one of ${allowed}` }],
    });
    observeRefused({
      status: answer.status,
      code: answer.code,
      requestId,
      remoteAddress: request.socket.remoteAddress,
    });
    writeProblemAndClose(socket, answer, { ...socketAnswerHeaders(requestId), allow: allowed });
  });
  app.decorateRequest('bodyText', undefined);
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, parseJsonBody);
  // Every body these APIs take is JSON. Fastify would also read text/plain (what fetch sends for a string body
  // without a Content-Type) as a string, which then fails validation as "not an object"; a 415 says what to fix.
  app.removeContentTypeParser('text/plain');
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  const observed = observeHttp(app, options);
  observeRefused = observed.refused;
  lateRequestOn = observed.lateRequestOn;
  const pageHeaders = helmetHeaders({
    contentSecurityPolicy: {
      directives: {
        connectSrc: ["'self'", ...(options.connectSources ?? [])],
        // Served over plain HTTP (TLS, if any, ends at a proxy): upgrading the pages' requests would break them.
        upgradeInsecureRequests: null,
      },
    },
  });
  // First, for a moment, every response says `Connection: close` (those of requests already in flight too), so a
  // kept-alive client leaves after its answer. Closed idle instead, a connection would lose the request already on
  // its way (HTTP/1.1's keep-alive race): under load, one on every busy connection.
  let lettingGo = false;
  // Then idle connections are closed, and requests that still arrive on open ones are turned away, to another
  // instance.
  let closing = false;
  const connections = trackConnections(app.server);
  // The last preClose hook (a child context's run after the app's own, where the routes put theirs): streams end
  // first, then the connections are let go.
  void app.register(async (last) => {
    last.addHook('preClose', (done) => {
      lettingGo = true;
      observed.closing();
      // No new connection meanwhile: a client gets ECONNREFUSED, which it may always retry. Node's own close would
      // also close the idle connections at once; a net.Server's close only stops listening. Fastify's close, which
      // follows, finds it closed and still waits for every connection to close.
      NetServer.prototype.close.call(app.server);
      // Node's closeAllConnections leaves out the connections its parser let go of (upgraded ones).
      const deadline = setTimeout(
        connections.closeAll,
        options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS,
      ).unref();
      // Node closes the idle connections in its close, once, and never one that has not sent a request yet (a
      // browser's preconnect): either would hold the close for a minute or more. Swept until closed.
      const sweep = setInterval(() => {
        if (!closing) return;
        app.server.closeIdleConnections();
        connections.closeUnused();
      }, 250).unref();
      app.server.once('close', () => {
        clearInterval(sweep);
        clearTimeout(deadline);
      });
      void connections.quiet(LET_GO_QUIET_MS, LET_GO_MAX_MS).then(() => {
        closing = true;
        done();
      });
    });
  });
  const setCommonHeaders = (request: FastifyRequest, reply: FastifyReply) =>
    void reply
      .headers(API_SECURITY_HEADERS)
      .header('x-request-id', request.id)
      .header(
        'cache-control',
        request.method === 'GET' || request.method === 'HEAD' ? READ_CACHE_CONTROL : NOT_STORED,
      );
  const corsPolicy = options.cors && resolveCors(options.cors);
  // What the CORS plugin's hook would add, for the answers sent before it runs or where it never does: a browser
  // page can read them too.
  const allowCrossOrigin = (request: FastifyRequest, reply: FastifyReply) => {
    if (corsPolicy) void reply.headers(simpleCorsHeaders(corsPolicy, request.headers.origin));
  };
  // Callback hooks, not async ones: they run on every request, and a promise per hook is measurable.
  app.addHook('onRequest', (request, reply, done) => {
    setCommonHeaders(request, reply);
    if (closing) {
      allowCrossOrigin(request, reply);
      return void sendClosingProblem(reply);
    }
    const refusal = refusalOf(request);
    if (refusal) {
      allowCrossOrigin(request, reply);
      return refuse(request, reply, refusal);
    }
    // The CORS plugin answers every OPTIONS 204, as if every path existed; one that is no preflight gets the truth.
    const plainOptions =
      request.method === 'OPTIONS' && request.headers['access-control-request-method'] === undefined;
    // Already on its way to the not-found handler (no route takes OPTIONS here: no CORS), where callNotFound would send
    // Fastify's plain-text 404 instead of ours.
    if (plainOptions && !request.is404 && allowedMethods(request.url).length === 0)
      return reply.callNotFound();
    done();
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    // A browser renders only HTML as a document: the document policies (helmet's) go on those responses alone,
    // which keeps every JSON response small.
    const type = reply.getHeader('content-type');
    if (typeof type === 'string' && type.startsWith('text/html')) void reply.headers(pageHeaders);
    if (lettingGo) void reply.header('connection', 'close');
    // What OPTIONS is for (RFC 9110 §9.3.7): the methods the path takes.
    if (request.method === 'OPTIONS') {
      const allowed = allowedMethods(request.url);
      if (allowed.length > 0) void reply.header('allow', allowed.join(', '));
    }
    done(null, payload);
  });
  if (corsPolicy)
    void app.register(cors, {
      ...corsPolicy,
      // An OPTIONS without Origin is no preflight, but a valid request: strict mode answered a text/plain 400.
      strictPreflight: false,
    });
  // Fastify answers what its router turns away from a context of its own, where no hook runs: what they would have
  // done, done here, so such a response is as readable by a browser page, as safe and as observed as any other.
  answerUnrouted = (request, reply) => {
    setCommonHeaders(request, reply);
    allowCrossOrigin(request, reply);
    observed.unrouted(request, reply);
  };
  registerProblemDetails(app, allowedMethods);
  app.decorate('observeUpgrade', observed.upgraded);
  app.decorate('requestsAtClose', observed.requestsAtClose);
  return app;
}

// Why a server cannot listen, in the terms of the settings that choose where.
const LISTEN_FAILURES: Readonly<Record<string, string>> = {
  EADDRINUSE: 'the port is in use',
  EACCES: 'not permitted (a port below 1024 needs privileges)',
  EADDRNOTAVAIL: 'no network interface of this machine has that address',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name does not resolve',
};

/** Listens on `host`:`port`; when it cannot, says why and which settings choose them (HOST, `portVariable`). */
export async function listenOn(
  app: HttpServer,
  host: string,
  port: number,
  portVariable: string,
): Promise<string> {
  try {
    return await app.listen({ host, port });
  } catch (error) {
    const why = LISTEN_FAILURES[(error as NodeJS.ErrnoException).code ?? ''];
    if (why === undefined) throw error;
    throw new Error(`cannot listen on ${host}:${port}: ${why}; set HOST or ${portVariable}`, {
      cause: error,
    });
  }
}

interface CorsPolicy {
  readonly origin: '*' | string[];
  readonly credentials: boolean;
  readonly methods: string[];
  readonly exposedHeaders: string[];
}

function resolveCors({
  origins,
  methods = [],
  exposedHeaders = [],
}: NonNullable<HttpServerOptions['cors']>): CorsPolicy {
  const anyOrigin = origins.includes('*');
  return {
    // Credentials (cookies) only for listed origins: browsers refuse them with `*` anyway.
    origin: anyOrigin ? '*' : [...origins],
    credentials: !anyOrigin,
    // The plugin's default allows only GET, HEAD and POST.
    methods: ['GET', 'HEAD', 'POST', ...methods],
    exposedHeaders: ['X-Request-Id', ...exposedHeaders],
  };
}

/** What @fastify/cors puts on a response that is no preflight, for the responses its hook never sees. */
function simpleCorsHeaders(policy: CorsPolicy, origin: string | undefined): Record<string, string> {
  const exposed = policy.exposedHeaders.join(',');
  if (policy.origin === '*')
    return { 'access-control-allow-origin': '*', 'access-control-expose-headers': exposed };
  if (origin === undefined || !policy.origin.includes(origin)) return { vary: 'Origin' };
  return {
    vary: 'Origin',
    'access-control-allow-origin': origin,
    'access-control-allow-credentials': 'true',
    'access-control-expose-headers': exposed,
  };
}

/**
 * Keeps the open connections (one set entry each, nothing per request). `closeUnused` closes those that have not
 * sent a byte since its previous call, so a client about to send its first request has a moment to.
 */
function trackConnections(server: Server): {
  closeUnused(): void;
  closeAll(): void;
  /** Settles once no open connection has read a byte for `quietMs`, or after `maxMs`. */
  quiet(quietMs: number, maxMs: number): Promise<void>;
} {
  const open = new Set<Socket>();
  // One listener for all: a closure (and `once`'s wrapper) per connection would weigh on every open stream.
  function forget(this: Socket) {
    open.delete(this);
  }
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.on('close', forget);
  });
  let unused = new Set<Socket>();
  const bytesRead = () => {
    let total = 0;
    for (const socket of open) total += socket.bytesRead;
    return total;
  };
  return {
    closeUnused() {
      for (const socket of unused) if (socket.bytesRead === 0) socket.destroy();
      unused = new Set([...open].filter((socket) => socket.bytesRead === 0));
    },
    closeAll() {
      for (const socket of open) socket.destroy();
    },
    quiet: (quietMs, maxMs) =>
      new Promise((resolve) => {
        const started = Date.now();
        let read = bytesRead();
        let readAt = started;
        const check = () => {
          const now = Date.now();
          const nowRead = bytesRead();
          if (nowRead !== read) [read, readAt] = [nowRead, now];
          // A connection closed meanwhile takes its bytes with it, and that counts as a change too.
          if (now - readAt < quietMs && now - started < maxMs) return;
          clearInterval(poll);
          resolve();
        };
        // Nothing to let go: no connection is open.
        if (open.size === 0) return resolve();
        const poll = setInterval(check, 20);
      }),
  };
}

function sendClosingProblem(reply: FastifyReply): void {
  void sendProblem(
    reply.header('retry-after', '1').header('connection', 'close'),
    problem({
      status: 503,
      title: 'Service Unavailable',
      code: 'SERVER.CLOSING',
      detail: 'This instance is shutting down; send the request again (another instance will take it).',
      instance: reply.request.url,
    }),
  );
}

const CHUNKED_LAST = /(?:^|,)[ \t]*chunked$/;

// Node's own test for a 100-continue expectation, which it meets itself by answering 100 Continue.
const CONTINUE_EXPECTATION = /(?:^|\W)100-continue(?:$|\W)/i;

/**
 * Whether a request that expects 100-continue gets it now, as its body is about to be read: not when the body is too
 * large (413), which is then answered at once.
 */
function wantsContinue(request: FastifyRequest): boolean {
  const { expect, 'content-length': length } = request.headers;
  if (expect === undefined || request.raw.httpVersion !== '1.1' || !CONTINUE_EXPECTATION.test(expect))
    return false;
  return length === undefined || Number(length) <= request.routeOptions.bodyLimit;
}

/** Why a request is refused unread: the header (or part of the target) at fault, and what it must be. */
interface Refusal {
  readonly status: number;
  readonly code: string;
  readonly field: string;
  readonly reason: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * A request HTTP says to refuse before its body is read: an HTTP/1.1 request without Host (RFC 9112 §3.2), a
 * target with a fragment (RFC 9112 §3.2: a fragment is the client's alone), two Content-Types (which body is it?),
 * a transfer coding other than chunked, or any in HTTP/1.0 (RFC 9112 §6.1; it has 501 for the first, but
 * llhttp's own refusal of the forms it cannot frame is a 400, and so is this one), an expectation
 * this server cannot meet (RFC 9110 §10.1.1), a body in a content coding it does not decode (RFC 9110 §15.5.16: say
 * which codings it takes, in Accept-Encoding).
 */
function refusalOf(request: FastifyRequest): Refusal | undefined {
  const { headers } = request;
  const { rawHeaders } = request.raw;
  // Every request passes here: the usual one in a few tests, allocating nothing.
  const hostLines = headerLines(rawHeaders, 'host');
  // Node keeps the first of two Content-Type lines.
  const typeLines = headers['content-type'] === undefined ? 0 : headerLines(rawHeaders, 'content-type');
  if (
    hostLines === 1 &&
    typeLines <= 1 &&
    headers.expect === undefined &&
    headers['content-encoding'] === undefined &&
    (headers['transfer-encoding'] === undefined ||
      (headers['transfer-encoding'] === 'chunked' && request.raw.httpVersion === '1.1')) &&
    !request.url.includes('#')
  )
    return undefined;
  const invalid = (field: string, reason: string): Refusal => ({
    status: 400,
    code: 'REQUEST.INVALID',
    field,
    reason,
  });
  const http11 = request.raw.httpVersion === '1.1';
  if (hostLines === 0 && http11) return invalid('Host', 'is required in an HTTP/1.1 request');
  // Which one names the server is anybody's guess (RFC 9112 §3.2: a 400, in any version).
  if (hostLines > 1) return invalid('Host', 'must be sent once');
  if (request.url.includes('#')) return invalid('path', 'must not contain a fragment (#)');
  if (typeLines > 1) return invalid('Content-Type', 'must be sent once');
  // Only the forms llhttp lets through (chunked last): it refuses any other itself, right after this hook.
  const transfer = headers['transfer-encoding']?.trim().toLowerCase();
  const chunkedLast = transfer !== undefined && CHUNKED_LAST.test(transfer);
  // HTTP/1.0 has no transfer codings: its framing is faulty (RFC 9112 §6.1), whatever Node makes of it.
  if (chunkedLast && !http11) return invalid('Transfer-Encoding', 'has no place in an HTTP/1.0 request');
  // Node takes the chunks apart but decodes no other transfer coding: a gzip one would be read as it arrived.
  if (chunkedLast && transfer !== 'chunked') return invalid('Transfer-Encoding', 'can only be chunked here');
  if (headers.expect !== undefined && http11 && !CONTINUE_EXPECTATION.test(headers.expect))
    return {
      status: 417,
      code: 'REQUEST.EXPECTATION_FAILED',
      field: 'Expect',
      reason: 'can only be 100-continue here',
    };
  const coding = headers['content-encoding']?.trim().toLowerCase();
  const hasBody =
    headers['transfer-encoding'] !== undefined ||
    (headers['content-length'] !== undefined && headers['content-length'] !== '0');
  if (coding !== undefined && coding !== '' && coding !== 'identity' && hasBody)
    return {
      status: 415,
      code: 'REQUEST.CONTENT_ENCODING',
      field: 'Content-Encoding',
      reason: 'must be identity: send the body uncompressed',
      headers: { 'accept-encoding': 'identity' },
    };
  return undefined;
}

/** Answers a refusal; the connection closes, so an unread body is never taken for the next request. */
function refuse(request: FastifyRequest, reply: FastifyReply, refusal: Refusal): void {
  const { status, code, field, reason, headers = {} } = refusal;
  void sendProblem(
    reply.headers(headers).header('connection', 'close'),
    problem({
      status,
      title: clientErrorTitle(status, code),
      code,
      detail: `${field} ${reason}.`,
      instance: request.url,
      errors: [{ field, reason }],
    }),
  );
}

/**
 * The security headers helmet sets, computed once: its middleware runs against a recorder instead of each response
 * (@fastify/helmet rebuilt the whole middleware for every request, 6 % of a cached GET). Our policies are static.
 */
function helmetHeaders(options: HelmetOptions): Readonly<Record<string, string>> {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader: (name: string, value: string | number) => (headers[name.toLowerCase()] = String(value)),
    removeHeader: () => undefined,
  };
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, () => undefined);
  return headers;
}

/**
 * Runs `then` once every response under way on the connection has gone out: Node queues those of pipelined requests
 * and hands the next to the socket as each finishes. One that ends unfinished (its client gone) ends the connection.
 */
function afterResponsesOn(socket: Socket, error: Error, then: () => void): void {
  const response = responseOn(socket);
  if (!response || response.writableFinished) return then();
  response.once('finish', () => process.nextTick(afterResponsesOn, socket, error, then));
  response.once('close', () => {
    if (!response.writableFinished) socket.destroy(error);
  });
}

/** The response Node has under way on a connection (`_httpMessage`, Node's field): its request's head was parsed. */
function responseOn(socket: Socket): ServerResponse | undefined {
  return (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined;
}

/**
 * Fastify's request log line, with a token in the query (EventSource and SignalR clients send `access_token`) and the
 * other `secret` parameters masked.
 */
function requestForLog(secret: readonly string[]) {
  return (request: FastifyRequest) => ({
    method: request.method,
    url: withoutQuerySecrets(request.url, secret),
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort,
  });
}

// JSON travels as UTF-8 (RFC 8259 §8.1). Fatal: bytes that are not UTF-8 are refused, not stored as U+FFFD.
const utf8 = new TextDecoder('utf-8', { fatal: true });
const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)/i;

/**
 * Fastify's JSON parser, saying why a body is rejected: its own says "not valid JSON" even for valid JSON with a
 * `__proto__` key. Same error codes; a leading byte order mark is ignored as before; a charset other than UTF-8 is
 * a 415.
 */
function parseJsonBody(
  request: FastifyRequest,
  bytes: Buffer,
  done: (error: Error | null, body?: unknown) => void,
): void {
  const charset = CHARSET.exec(request.headers['content-type'] ?? '')?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8')
    return done(new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(), undefined);
  const invalid = (message: string) =>
    done(Object.assign(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), { message }), undefined);
  let body: string;
  try {
    // A byte order mark, which RFC 8259 lets a parser ignore, is dropped here.
    body = utf8.decode(bytes);
  } catch {
    return invalid('Body is not valid UTF-8.');
  }
  request.bodyText = body;
  // Clients set up to send Content-Type: application/json on every request (a default header, an interceptor; an
  // empty StringContent in .NET) send it on a body-less DELETE too: a route whose schema takes no body reads an empty
  // one as none. One that takes a body refuses it, as Fastify does, even where the body may be left out (POST, PUT):
  // a client that declares JSON and sends nothing has most likely lost its body, and a write of generated fields
  // would hide that.
  if (body.length === 0)
    return request.routeOptions.schema?.body === undefined
      ? done(null, undefined)
      : done(new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(), undefined);
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (error) {
    return invalid(`Body is not valid JSON: ${(error as Error).message}`);
  }
  // JSON.parse keeps the last of two equal names and drops the first unseen: `{"firstName":"Ada","firstName":"Eve"}`
  // would store Eve, where another reader (a proxy, a log, a first-wins parser) sees Ada (RFC 8259 §4, RFC 7493 §2.3).
  const repeated = value !== null && typeof value === 'object' ? repeatedName(body) : undefined;
  if (repeated !== undefined)
    return invalid(
      `Body is not valid JSON: the name ${JSON.stringify(repeated)} appears twice in one object`,
    );
  try {
    // Once merged into an object, such a key would replace its prototype.
    if (value !== null && typeof value === 'object')
      scan(value, { protoAction: 'error', constructorAction: 'error' });
  } catch {
    return invalid(
      'Body must not contain a "__proto__" key, or a "constructor" key holding a "prototype" key',
    );
  }
  done(null, value);
}
