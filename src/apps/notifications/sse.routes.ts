import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import {
  compareLogIds,
  isLogId,
  laterLogId,
  type ReplayLog,
  type ReplayLogEntry,
  type ReplayLogRetention,
} from '../../application/ports/replay-log.ts';
import {
  NotificationRoutes,
  SseEvents,
  type ConnectedMessage,
  type ResetMessage,
} from '../../contracts/notifications.ts';
import { NotificationEventTypes } from '../../contracts/students.ts';
import type { TokenVerifier } from '../../infrastructure/auth/jwt-verifier.ts';
import { headerLines } from '../../infrastructure/http/header-lines.ts';
import { requireToken } from '../../infrastructure/http/require-token.ts';
import type { HttpServer } from '../../infrastructure/http/http-server.ts';
import {
  httpTitle,
  invalidRequest,
  problem,
  sendProblem,
} from '../../infrastructure/http/problem-details.ts';
import type { Logger } from '../../infrastructure/logging/logger.ts';
import type { ConnectionLimits } from './connection-limits.ts';
import type { LogFanOut, ResumeLimits, ResumingReader } from './fan-out.ts';
import { expectedFailure } from '../../infrastructure/logging/expected-failure.ts';

export interface SseOptions {
  readonly log: ReplayLog;
  readonly fanOut: LogFanOut;
  readonly heartbeatMs: number;
  /** When auth is on: a reader's token, from the Authorization header, the `access_token` query or cookie. */
  readonly verifier: TokenVerifier | undefined;
  /** Shared with the hub: how many streams and hub connections this instance and one user may hold. */
  readonly limits: ConnectionLimits;
  /** Unsent bytes a connection may hold (and, while it replays, live entries waiting for it) before it is closed as too slow. */
  readonly maxBufferedBytes: number;
  readonly logger: Logger;
}

export interface SseStreams {
  readonly count: number;
}

const NOTIFICATION_TYPES: ReadonlySet<string> = new Set(Object.values(NotificationEventTypes));

const OLDER_THAN_RETENTION =
  'Last-Event-ID is older than the replay log holds (trimmed, or lost in a restart)';

// CORS, the request id, no content sniffing, HSTS (when a proxy adds TLS) and the resource policy.
const STREAM_HEADERS =
  /^(?:access-control-|vary$|x-request-id$|x-content-type-options$|strict-transport-security$|cross-origin-resource-policy$)/;

/** How long a client waits before it reconnects after a shutdown: spread out, so the others are not stampeded. */
function reconnectDelayMs(): number {
  return 1_000 + Math.floor(Math.random() * 2_000);
}

/**
 * `GET /api/notifications/stream` (and the original's alias): notifications as Server-Sent Events. When the
 * server closes, every stream ends with a `retry:` hint: EventSource reconnects (to any instance) with its
 * Last-Event-ID and misses nothing.
 */
export async function registerSseRoutes(app: HttpServer, options: SseOptions): Promise<SseStreams> {
  const streams = new Set<EventStream>();
  const limits: ResumeLimits = { maxQueuedBytes: options.maxBufferedBytes };
  const heartbeat = setInterval(() => {
    const now = Date.now();
    for (const stream of streams) {
      // The token it was opened with is no longer taken: the client comes back with a current one, or gets 401.
      if (stream.expiresAt !== undefined && stream.expiresAt <= now) {
        streams.delete(stream);
        stream.write(stream.takeSkippedFrame());
        endWithRetry(stream.response, options);
      } else stream.write(`${stream.takeSkippedFrame()}: heartbeat\n\n`);
    }
  }, options.heartbeatMs);
  heartbeat.unref();
  // preClose: the server already refuses new requests; one that arrived before waits for the log at most, and is then
  // told to retry (below).
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
    clearInterval(heartbeat);
    for (const stream of streams) {
      stream.write(stream.takeSkippedFrame());
      endWithRetry(stream.response, options);
    }
    streams.clear();
  });

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    // A repeated query parameter arrives as an array.
    const query = request.query as Record<string, string | string[] | undefined>;
    const header = request.headers['last-event-id'];
    // An empty header is no id (WHATWG), so the query's counts then.
    const lastEventId = header ? header : query.lastEventId;
    // `types=A&types=B` means the same as `types=A,B`.
    const types = [query.types ?? []]
      .flat()
      .flatMap((list) => list.split(','))
      .map((type) => type.trim())
      .filter(Boolean);
    const wanted = types.length > 0 ? new Set(types) : undefined;

    const invalid = (field: string, reason: string) =>
      sendProblem(reply, invalidRequest(request.url, `${field} ${reason}.`, [{ field, reason }]));
    // A misspelt type would otherwise be a stream on which nothing ever arrives.
    const unknown = types.filter((type) => !NOTIFICATION_TYPES.has(type));
    if (unknown.length > 0)
      return invalid(
        'types',
        `must list event types of ${[...NOTIFICATION_TYPES].join(', ')}, not ${unknown.join(', ')}`,
      );
    // Two header lines reach us joined by a comma (Node's way with headers it does not know): told apart here.
    if (
      Array.isArray(lastEventId) ||
      (header !== undefined && headerLines(request.raw.rawHeaders, 'last-event-id') > 1)
    )
      return invalid('Last-Event-ID', 'must be given once');
    // Why the client's Last-Event-ID cannot be resumed from: it gets a `reset` event and live notifications.
    let reset: ResetMessage | undefined;
    let from = lastEventId || undefined;
    if (from !== undefined && !isLogId(from))
      return invalid('Last-Event-ID', 'must be an event id received from this stream (<ms>-<seq>)');
    // RFC 9110 §9.3.2: the GET's header section, without the stream.
    if (request.method === 'HEAD') return void openEventStream(reply).end();
    let retention: ReplayLogRetention;
    try {
      retention = await options.log.retention();
    } catch (error) {
      // Not an error status, on which EventSource would stop reconnecting: it retries (/health reports the log).
      options.logger.warn(expectedFailure(error), 'replay log unavailable; SSE client told to retry');
      return endWithRetry(openEventStream(reply), options);
    }
    // The log answers, but this instance does not tail it yet (it started while the log was away): no position to
    // start a stream from; in a moment there is.
    if (!options.fanOut.ready) return endWithRetry(openEventStream(reply), options);
    // While the log answered, the client may have left (its stream would never be closed) or the server begun to
    // close (it has ended the streams it had).
    if (request.raw.socket.destroyed) return void reply.hijack();
    if (closing) return endWithRetry(openEventStream(reply), options);
    // Where a stream that asked for no earlier entries starts: this instance's newest entry, or where the log begins if
    // later (the log was lost and the tail has no entry of the new one yet), or it would be told it fell behind.
    const live = laterLogId(options.fanOut.position, retention.trimmedThrough);
    if (from !== undefined) {
      // The log resumes from where it begins (or was last trimmed) through its newest entry. Any other well-formed
      // id gets `reset`, never an error: EventSource gives up for good on an error status, and an id from a log
      // that was lost (a restart without persistence) is no client's fault.
      const reason =
        compareLogIds(from, retention.trimmedThrough) < 0
          ? OLDER_THAN_RETENTION
          : compareLogIds(from, laterLogId(retention.lastId, retention.trimmedThrough)) > 0
            ? 'Last-Event-ID is not in the replay log'
            : undefined;
      if (reason) {
        reset = { reason, oldestId: retention.firstId ?? null };
        // Then all the log still holds, from where it begins: only what it no longer has is missed (a log lost in a
        // restart, the entries trimmed). The reset's `id:` is the client's next Last-Event-ID.
        from = retention.trimmedThrough;
      }
    }

    const slot = options.limits.take(request.caller?.subject);
    if ('refused' in slot) {
      // A full instance is no client's fault: told to retry, EventSource comes back later (or to another instance).
      if (slot.refused === 'instance') return endWithRetry(openEventStream(reply), options);
      return sendProblem(
        reply,
        problem({
          status: 429,
          title: httpTitle(429),
          code: 'NOTIFICATIONS.TOO_MANY_CONNECTIONS',
          detail: options.limits.explain(slot.refused),
          instance: request.url,
        }),
      );
    }
    // The stream lives outside the handler: sharing its scope would keep the request and reply alive with it.
    start(openEventStream(reply), from ?? live, reset, wanted, request.caller?.expiresAt, slot.release);
  };

  const start = (
    response: ServerResponse,
    from: string,
    reset: ResetMessage | undefined,
    wanted: ReadonlySet<string> | undefined,
    expiresAt: number | undefined,
    release: () => void,
  ) => {
    const stream = new EventStream(response, wanted, expiresAt, options);
    const connected: ConnectedMessage = { clientId: stream.clientId, timestamp: new Date().toISOString() };
    // With the id the stream starts from, a client that drops before its first notification resumes there.
    stream.write(`id: ${from}\nevent: ${SseEvents.connected}\ndata: ${JSON.stringify(connected)}\n\n`);
    if (reset) stream.write(resetFrame(from, reset));
    streams.add(stream);
    const resuming = options.fanOut.resume(from, stream, limits);
    response.once('close', () => {
      release();
      streams.delete(stream);
      resuming.unsubscribe();
    });
    resuming.caughtUp.catch((error: unknown) => {
      options.logger.warn(
        { ...expectedFailure(error), clientId: stream.clientId },
        'SSE replay failed; the client is told to retry',
      );
      endWithRetry(response, options);
    });
  };

  await app.register(async (scope) => {
    if (options.verifier) requireToken(scope, options.verifier);
    // EventSource cannot send an Authorization header: the token may come in the query or a cookie.
    const route = { schema: { hide: true }, config: { tokenFromQueryOrCookie: true } };
    scope.get(NotificationRoutes.stream, route, handler);
    scope.get(NotificationRoutes.streamAlias, route, handler);
  });

  return {
    get count() {
      return streams.size;
    },
  };
}

/**
 * Takes the response over from Fastify and writes the event stream's head. Headers set by the hooks so far would be
 * lost with the hijack; given to writeHead in one object, they are not also kept per header for the stream's
 * lifetime. An event stream is no document: of the security headers it keeps those that apply to it (the CSP,
 * framing and referrer policies would only weigh on every connection). The reply's own copy stays as it is:
 * deleting its entries would turn it into a larger hash table.
 */
function openEventStream(reply: FastifyReply): ServerResponse {
  const hookHeaders = Object.fromEntries(
    Object.entries(reply.getHeaders()).filter(([name]) => STREAM_HEADERS.test(name)),
  ) as Record<string, string | number | string[]>;
  reply.hijack();
  const response = reply.raw;
  // The stream lasts as long as its connection: its end can be the connection's close, as HTTP allows, instead of
  // chunked encoding, which frames every event for every client (a length line and two line ends per write).
  response.useChunkedEncodingByDefault = false;
  response.writeHead(200, {
    ...hookHeaders,
    // Event streams are always UTF-8 (no charset parameter needed).
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache, no-transform',
    // Proxies such as nginx must pass events on at once.
    'x-accel-buffering': 'no',
  });
  response.socket?.setNoDelay(true);
  flattenHead(response);
  return response;
}

/** Ends a stream so that EventSource reconnects (to any instance) with its Last-Event-ID, after a spread-out delay. */
function endWithRetry(response: ServerResponse, options: SseOptions): void {
  write(response, `retry: ${reconnectDelayMs()}\n\n`, options);
  response.end();
}

function resetFrame(resumeFrom: string, reset: ResetMessage): string {
  return `id: ${resumeFrom}\nevent: ${SseEvents.reset}\ndata: ${JSON.stringify(reset)}\n\n`;
}

/**
 * One open event stream, as the fan-out and the heartbeat reach it. A class, not closures: it lives as long as its
 * connection, and under tsx every named closure also carries a 256-byte property dictionary (esbuild's keepNames).
 */
class EventStream implements ResumingReader {
  readonly clientId = randomUUID();
  /** The newest entry the `?types=` filter skipped since an id was last sent. */
  #skippedThrough: string | undefined;

  constructor(
    readonly response: ServerResponse,
    readonly wanted: ReadonlySet<string> | undefined,
    /** When its token is no longer taken (epoch ms); none when auth is off. */
    readonly expiresAt: number | undefined,
    readonly options: SseOptions,
  ) {}

  write(chunk: string | Buffer): boolean {
    return write(this.response, chunk, this.options);
  }

  async deliver(entry: ReplayLogEntry): Promise<void> {
    if (this.wanted && !this.wanted.has(entry.type)) {
      this.#skippedThrough = entry.id;
      return;
    }
    this.#skippedThrough = undefined;
    const backlogged = !this.write(frameOf(entry));
    // While replaying, wait for the client instead of piling the backlog up in memory.
    if (backlogged && !this.response.destroyed) await drained(this.response);
  }

  fellBehind(resumeFrom: string, retention: ReplayLogRetention): void {
    // What the filter skipped is older than where the reset resumes: its id, sent later, would move the client back.
    this.#skippedThrough = undefined;
    this.write(resetFrame(resumeFrom, { reason: OLDER_THAN_RETENTION, oldestId: retention.firstId ?? null }));
  }

  /** The client reconnects with its Last-Event-ID and catches up from the log, not from memory. */
  overflowed(queuedBytes: number): void {
    this.options.logger.info(
      { clientId: this.clientId, queued: queuedBytes },
      'SSE client too slow to catch up; closing its stream',
    );
    this.response.destroy();
  }

  /**
   * Moves the client's Last-Event-ID past the entries its filter skipped, so a resume neither reads them again nor
   * gets a `reset` over them once they leave the log. Once per heartbeat, not per entry. An event nobody listens
   * to, not a bare `id:` line: the `eventsource` package ignores a block without data (browsers follow the spec).
   */
  takeSkippedFrame(): string {
    const id = this.#skippedThrough;
    if (id === undefined) return '';
    this.#skippedThrough = undefined;
    return `id: ${id}\nevent: ${SseEvents.skipped}\ndata:\n\n`;
  }
}

/**
 * Node keeps a response's head as it built it, a tree of some 80 concatenated strings (~3 KiB) held for as long as
 * the stream lasts; reading a character flattens it in place (V8), leaving one string. `_header` is Node's field.
 */
function flattenHead(response: ServerResponse): void {
  const head = (response as unknown as { _header?: unknown })._header;
  if (typeof head === 'string') head.charCodeAt(0);
}

// One encoded frame per live entry, written to every stream as it is (not encoded once per client).
const frames = new WeakMap<ReplayLogEntry, Buffer>();
function frameOf(entry: ReplayLogEntry): Buffer {
  let frame = frames.get(entry);
  if (!frame) {
    frame = Buffer.from(`id: ${entry.id}\nevent: ${entry.type}\ndata: ${entry.data}\n\n`);
    frames.set(entry, frame);
  }
  return frame;
}

/** Writes; a client that lets more than `maxBufferedBytes` pile up is cut off so it cannot slow the others. */
function write(response: ServerResponse, chunk: string | Buffer, options: SseOptions): boolean {
  if (response.destroyed || response.writableEnded) return false;
  const flushed = response.write(chunk);
  if (!flushed && response.writableLength > options.maxBufferedBytes) {
    options.logger.info({ buffered: response.writableLength }, 'SSE client too slow; closing its stream');
    response.destroy();
  }
  return flushed;
}

// One wait per stream, whoever waits: every live entry written while the client is behind waits for the same drain,
// instead of adding its own pair of listeners (over ten made Node warn of a leak).
const draining = new WeakMap<ServerResponse, Promise<void>>();
function drained(response: ServerResponse): Promise<void> {
  let waiting = draining.get(response);
  if (!waiting) {
    waiting = new Promise((resolve) => {
      const done = () => {
        response.off('drain', done);
        response.off('close', done);
        draining.delete(response);
        resolve();
      };
      response.once('drain', done);
      response.once('close', done);
    });
    draining.set(response, waiting);
  }
  return waiting;
}
