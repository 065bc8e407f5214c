// Request deduplication (the original's [DeduplicateRequest(seconds)]), configured per route:
// `config: { dedup: { windowSeconds, group } }`. Identical concurrent requests run once; identical requests within
// the window are replayed; both carry X-Deduplicated: true.
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import type { CacheMetrics } from '../../../infrastructure/caching/cache-metrics.ts';
import { LogThrottle } from '../../../infrastructure/logging/log-throttle.ts';
import { orderedNow, TICK } from '../../../infrastructure/caching/ordered-now.ts';
import type {
  ResponseReplayStore,
  StoredResponse,
} from '../../../infrastructure/caching/response-replay-store.ts';
import {
  appWide,
  bodyFingerprint,
  callerOf,
  pathOf,
  preconditionsOf,
  replayableHeaders,
  SAFE_METHODS,
} from './caller.ts';
import { expectedFailure } from '../../../infrastructure/logging/expected-failure.ts';

/**
 * The query string is part of the key only on routes whose schema declares one (`querystring`): a route that reads
 * its query must declare it, or every query would get the answer to the first.
 */
export interface DedupRouteOptions {
  /** 0 turns deduplication off for the route. */
  readonly windowSeconds: number;
  /** What the response shows (a student id): a write to it drops the stored response. */
  readonly group?: (request: FastifyRequest) => string;
  /** A group whose stored responses a success of this route makes stale, on every instance, before it is answered. */
  readonly invalidates?: (request: FastifyRequest) => string;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    dedup?: DedupRouteOptions;
  }
  interface FastifyRequest {
    /** A read's answer came from a cache entry of this instant: it shows no later state than that (see CachedStudent.at). */
    shownStateAt?: number;
  }
}

export interface DedupPluginOptions {
  readonly store: ResponseReplayStore;
  readonly metrics: CacheMetrics;
}

/** A request being answered, which identical ones join. */
interface Flight {
  readonly response: Promise<StoredResponse | undefined>;
  readonly group: string;
  /** When the state it answers with was read: for a write, moved past the invalidation of its own write. */
  startedAt: number;
  /** The store's `mark()` then: a write to its group heard after it makes it stale, whatever the write's instant. */
  mark: number;
}

/** The request that runs for its flight. */
interface Leader {
  readonly key: string;
  readonly flight: Flight;
  readonly windowMs: number;
  settle(response: StoredResponse | undefined): void;
}

// A directive of its own, in any case (RFC 9111 §5.2): `No-Cache` is one, `no-cache-please` is not.
const NO_CACHE = /(?:^|,)[ \t]*no-cache[ \t]*(?:,|$)/i;

/** `Cache-Control: no-cache` asks for a fresh answer: no replay, no cache (the original's BypassCache). */
export function bypassesCache(request: FastifyRequest): boolean {
  const cacheControl = request.headers['cache-control'];
  return cacheControl !== undefined && NO_CACHE.test(cacheControl);
}

/**
 * What tells requests apart: all that can change the answer, a write's preconditions included. `withQuery` false:
 * the route takes no query, so `?junk=1` is the same request, not another stored response.
 */
function requestKey(request: FastifyRequest, withQuery: boolean): string {
  const url = withQuery ? request.url : pathOf(request.url);
  return `${request.method} ${url} ${bodyFingerprint(request)} ${callerOf(request)}${preconditionsOf(request)}`;
}

function replayable(status: number): boolean {
  return (status >= 200 && status < 300) || status === 404;
}

const DEDUPLICATED = 'x-deduplicated';

/** Says that `reply` is a stored response, sent again: to an identical request, or a retry under its key. */
export function markDeduplicated(reply: FastifyReply): FastifyReply {
  return reply.header(DEDUPLICATED, 'true');
}

/**
 * Whether `reply` is the answer to an earlier request (this plugin's replay, or an Idempotency-Key's, from Redis or
 * from the database): it wrote nothing, so it makes nothing stale, and it is not stored again as this request's.
 */
function isReplay(reply: FastifyReply): boolean {
  return reply.getHeader(DEDUPLICATED) === 'true';
}

function replay(reply: FastifyReply, response: StoredResponse): void {
  void markDeduplicated(reply.code(response.status).headers(response.headers)).send(response.body);
}

async function dedupPlugin(app: FastifyInstance, { store, metrics }: DedupPluginOptions): Promise<void> {
  const inFlight = new Map<string, Flight>();
  // While Redis is down (or refuses writes), every write would say it.
  const undropped = new LogThrottle(5_000);
  // Labelled once, not on every replay (the hot path): labels() parses them and binds a function.
  const hits = {
    coalesced: metrics.dedupHits.labels({ kind: 'coalesced' }),
    replayed: metrics.dedupHits.labels({ kind: 'replayed' }),
  };
  const leaders = new WeakMap<FastifyRequest, Leader>();
  // Declared, so that every request has the slot from the start (one shape), not only those a route sets it on.
  app.decorateRequest('shownStateAt', undefined);

  /** Resolves once the response is stored (or could not be): a write waits for it before it answers. */
  const settle = (request: FastifyRequest, response: StoredResponse | undefined): Promise<unknown> => {
    const leader = leaders.get(request);
    if (!leader) return Promise.resolve();
    leaders.delete(request);
    leader.settle(response);
    // Followers keep joining the flight until the response is stored, so none slips between the two.
    const { flight } = leader;
    const read = SAFE_METHODS.has(request.method);
    const stored =
      response && store.available
        ? store
            .put(
              flight.group,
              leader.key,
              response,
              leader.windowMs,
              read ? flight.startedAt : orderedNow(),
              read ? flight.mark : undefined,
            )
            .catch((error: unknown) =>
              request.log.warn(expectedFailure(error), 'deduplicated response not stored'),
            )
        : Promise.resolve();
    // A newer flight may have taken the key (this one had gone stale): that one is not this leader's to end.
    void stored.finally(() => inFlight.get(leader.key) === flight && inFlight.delete(leader.key));
    return stored;
  };

  /** After a successful write, before its answer goes out: a request sent after the answer finds `group` stale. */
  const invalidating =
    (groupOf: (request: FastifyRequest) => string) =>
    (
      request: FastifyRequest,
      reply: FastifyReply,
      payload: unknown,
      done: (error: null, payload: unknown) => void,
    ) => {
      if (reply.statusCode >= 300 || isReplay(reply)) return done(null, payload);
      const group = groupOf(request);
      // This request's own flight stays joinable: its answer shows this write, and is stored as current right after
      // (identical requests arriving meanwhile join it, instead of running the write again). Not if another write
      // came first.
      const flight = leaders.get(request)?.flight;
      const own = flight?.group === group && store.isCurrent(group, flight.startedAt) ? flight : undefined;
      store
        .invalidate(group, orderedNow())
        // Dropped here already; elsewhere it goes with the window, or with the recovery once Redis is back.
        .catch((error: unknown) =>
          undropped.run((unsaid, lastAt) =>
            request.log.warn(
              { ...expectedFailure(error), skippedUnlogged: unsaid, lastAt },
              'deduplicated responses not dropped',
            ),
          ),
        )
        .finally(() => done(null, payload));
      if (own) {
        own.startedAt = orderedNow();
        own.mark = store.mark();
      }
    };

  /** Whether it answered: false when the leader failed (5xx), and this request should run itself. */
  async function follow(flight: Flight, reply: FastifyReply): Promise<boolean> {
    const response = await flight.response;
    if (!response) return false;
    hits.coalesced.inc();
    replay(reply, response);
    return true;
  }

  async function lead(
    request: FastifyRequest,
    reply: FastifyReply,
    key: string,
    group: string,
    windowMs: number,
  ): Promise<boolean> {
    let resolve!: (response: StoredResponse | undefined) => void;
    const flight: Flight = {
      response: new Promise((done) => (resolve = done)),
      group,
      startedAt: orderedNow(),
      mark: store.mark(),
    };
    inFlight.set(key, flight);
    leaders.set(request, { key, flight, windowMs, settle: resolve });
    if (!store.available) return false;
    // Another instance may have answered it already.
    const shared = await store.get(group, key).catch(() => undefined);
    if (!shared) return false;
    leaders.delete(request);
    if (inFlight.get(key) === flight) inFlight.delete(key);
    resolve(shared);
    hits.replayed.inc();
    replay(reply, shared);
    return true;
  }

  app.addHook('onRoute', (route: RouteOptions) => {
    const options = route.config?.dedup;
    if (options?.invalidates) route.onSend = [...hooksOf(route.onSend), invalidating(options.invalidates)];
    if (!options || options.windowSeconds <= 0) return;
    const windowMs = options.windowSeconds * 1_000;
    const groupOf = options.group;
    // Fastify also takes `query` for `querystring`.
    const schema: { querystring?: unknown; query?: unknown } | undefined = route.schema;
    const withQuery = schema?.querystring !== undefined || schema?.query !== undefined;
    // After body parsing (the body is part of the key), before validation (a replay needs none).
    const preValidation = (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void) => {
      if (bypassesCache(request)) return done();
      const key = requestKey(request, withQuery);
      const flight = inFlight.get(key);
      // Only a read that began after the last write to what it shows: a request sent after a write's answer
      // must see that write.
      if (flight && store.isCurrent(flight.group, flight.startedAt, flight.mark))
        // Whether it answered, not `reply.sent`: with an async onSend hook on the route, a reply is sent later.
        return void follow(flight, reply).then((answered) => answered || done(), done);
      const group = groupOf ? groupOf(request) : key;
      // The hot path: a local copy is replayed synchronously.
      const local = store.available ? store.peek(group, key) : undefined;
      if (local) {
        hits.replayed.inc();
        return replay(reply, local);
      }
      void lead(request, reply, key, group, windowMs).then((answered) => answered || done(), done);
    };
    const onSend = (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: () => void) => {
      // A replay's followers run themselves: it answers another request (say, under an Idempotency-Key), and may
      // show a state the student has left since.
      const leader = leaders.get(request);
      if (!leader) return done();
      // An answer from an entry older than the read is as old as the entry: stamped so, an invalidation that the entry
      // predates (heard before or after this answer is stored) makes it stale, here and in L2. Half a tick later: an
      // entry's instant is that of its own write's invalidation, at which it is current.
      if (request.shownStateAt !== undefined)
        leader.flight.startedAt = Math.min(leader.flight.startedAt, request.shownStateAt + TICK / 2);
      const stored = settle(
        request,
        replayable(reply.statusCode) && typeof payload === 'string' && !isReplay(reply)
          ? { status: reply.statusCode, headers: replayableHeaders(reply.getHeaders()), body: payload }
          : undefined,
      );
      // A write's answer is in Redis before the client has it: its identical retry via another instance is replayed,
      // not run again. A read's may be stored after (a second read is only a fresh answer).
      if (SAFE_METHODS.has(request.method)) return done();
      void stored.then(() => done());
    };
    // A request that ended without a response (aborted, failed while sending) must not hold its followers.
    const onResponse = (request: FastifyRequest, _reply: FastifyReply, done: () => void) => {
      settle(request, undefined);
      done();
    };
    const onRequestAbort = (request: FastifyRequest, done: () => void) => {
      settle(request, undefined);
      done();
    };
    route.preValidation = [...hooksOf(route.preValidation), preValidation];
    route.onSend = [...hooksOf(route.onSend), onSend];
    route.onResponse = [...hooksOf(route.onResponse), onResponse];
    route.onRequestAbort = [...hooksOf(route.onRequestAbort), onRequestAbort];
  });
}

export function hooksOf<T>(hooks: T | T[] | undefined): T[] {
  if (hooks === undefined) return [];
  return Array.isArray(hooks) ? hooks : [hooks];
}

Object.assign(dedupPlugin, { [appWide]: true });
export default dedupPlugin;
