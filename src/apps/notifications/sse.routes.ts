import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { compareLogIds, isLogId, type ReplayLog } from '../../application/ports/replay-log.ts';
import { NotificationRoutes, SseEvents, type ConnectedMessage } from '../../contracts/notifications.ts';
import type { HttpServer } from '../../infrastructure/http/http-server.ts';
import { invalidRequest, sendProblem } from '../../infrastructure/http/problem-details.ts';
import type { Logger } from '../../infrastructure/logging/logger.ts';
import type { LogFanOut } from './fan-out.ts';

export interface SseOptions {
  readonly log: ReplayLog;
  readonly fanOut: LogFanOut;
  readonly heartbeatMs: number;
  /** `*` = any origin. */
  readonly corsOrigins: readonly string[];
  /** Unsent bytes a connection may hold (and, while it replays, live entries waiting for it) before it is closed as too slow. */
  readonly maxBufferedBytes: number;
  readonly logger: Logger;
}

export interface SseStreams {
  readonly count: number;
  /** Ends every stream; clients reconnect (to any instance) with their Last-Event-ID. */
  closeAll(): void;
}

/** `GET /api/notifications/stream` (and the original's alias): notifications as Server-Sent Events. */
export function registerSseRoutes(app: HttpServer, options: SseOptions): SseStreams {
  const streams = new Set<ServerResponse>();
  const heartbeat = setInterval(() => {
    for (const response of streams) write(response, ': heartbeat\n\n', options);
  }, options.heartbeatMs);
  heartbeat.unref();
  app.addHook('onClose', async () => clearInterval(heartbeat));

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    // A repeated query parameter arrives as an array.
    const query = request.query as Record<string, string | string[] | undefined>;
    const header = request.headers['last-event-id'];
    const lastEventId = typeof header === 'string' ? header : query.lastEventId;
    // `types=A&types=B` means the same as `types=A,B`.
    const types = [query.types ?? []]
      .flat()
      .flatMap((list) => list.split(','))
      .map((type) => type.trim())
      .filter(Boolean);
    const wanted = types.length > 0 ? new Set(types) : undefined;

    const invalid = (reason: string) =>
      sendProblem(
        reply,
        invalidRequest(request.url, `Last-Event-ID ${reason}.`, [{ field: 'Last-Event-ID', reason }]),
      );
    if (Array.isArray(lastEventId)) return invalid('must be given once');
    let reset: { readonly oldestId: string | undefined } | undefined;
    if (lastEventId !== undefined && lastEventId !== '') {
      if (!isLogId(lastEventId)) return invalid('must be an event id received from this stream (<ms>-<seq>)');
      const retention = await options.log.retention();
      if (compareLogIds(lastEventId, retention.lastId) > 0) return invalid('is not an id of this stream');
      if (compareLogIds(lastEventId, retention.trimmedThrough) < 0) reset = { oldestId: retention.firstId };
    }

    const response = reply.raw;
    reply.hijack();
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // Proxies such as nginx must pass events on at once.
      'x-accel-buffering': 'no',
      ...corsHeaders(request.headers.origin, options.corsOrigins),
    });
    response.socket?.setNoDelay(true);
    const clientId = randomUUID();
    const connected: ConnectedMessage = { clientId, timestamp: new Date().toISOString() };
    write(response, `event: ${SseEvents.connected}\ndata: ${JSON.stringify(connected)}\n\n`, options);
    let from = lastEventId || options.fanOut.position;
    if (reset) {
      from = options.fanOut.position;
      // The id moves the client's Last-Event-ID to where live events start.
      write(
        response,
        `id: ${from}\nevent: ${SseEvents.reset}\ndata: ${JSON.stringify({ reason: 'Last-Event-ID is older than the replay window', oldestId: reset.oldestId ?? null })}\n\n`,
        options,
      );
    }
    streams.add(response);
    const { caughtUp, unsubscribe } = options.fanOut.resume(
      from,
      async (entry) => {
        if (wanted && !wanted.has(entry.type)) return;
        const backlogged = !write(
          response,
          `id: ${entry.id}\nevent: ${entry.type}\ndata: ${entry.data}\n\n`,
          options,
        );
        // While replaying, wait for the client instead of piling the backlog up in memory.
        if (backlogged && !response.destroyed) await drained(response);
      },
      {
        maxQueuedBytes: options.maxBufferedBytes,
        // The client reconnects with its Last-Event-ID and catches up from the log, not from this queue.
        onOverflow: (queued) => {
          options.logger.info({ clientId, queued }, 'SSE client too slow to catch up; closing its stream');
          response.destroy();
        },
      },
    );
    response.once('close', () => {
      streams.delete(response);
      unsubscribe();
    });
    caughtUp.catch((error: unknown) => {
      options.logger.warn({ err: error, clientId }, 'SSE replay failed; closing the stream');
      response.destroy();
    });
  };

  app.get(NotificationRoutes.stream, { schema: { hide: true } }, handler);
  app.get(NotificationRoutes.streamAlias, { schema: { hide: true } }, handler);

  return {
    get count() {
      return streams.size;
    },
    closeAll() {
      for (const response of streams) response.end();
      streams.clear();
    },
  };
}

/** Writes; a client that lets more than `maxBufferedBytes` pile up is cut off so it cannot slow the others. */
function write(response: ServerResponse, text: string, options: SseOptions): boolean {
  if (response.destroyed || response.writableEnded) return false;
  const flushed = response.write(text);
  if (!flushed && response.writableLength > options.maxBufferedBytes) {
    options.logger.info({ buffered: response.writableLength }, 'SSE client too slow; closing its stream');
    response.destroy();
  }
  return flushed;
}

function drained(response: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      response.off('drain', done);
      response.off('close', done);
      resolve();
    };
    response.once('drain', done);
    response.once('close', done);
  });
}

function corsHeaders(origin: string | undefined, allowed: readonly string[]): Record<string, string> {
  if (allowed.includes('*')) return { 'access-control-allow-origin': '*' };
  if (origin && allowed.includes(origin)) return { 'access-control-allow-origin': origin, vary: 'Origin' };
  return {};
}
