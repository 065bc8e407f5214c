// `Idempotency-Key` (IETF httpapi draft) on the routes with `config: { idempotency: true }`: the first request with
// a key runs; a retry with the same key and request (method, target, body, If-Match and If-None-Match) gets the
// stored response; another request 422; one arriving while the first still runs 409. A request refused as malformed
// (its body or its fields) did not run, and leaves the key free, as a 5xx does. Keys are scoped per caller and
// expire after `ttlSeconds`; a request holds its key on a lease of `leaseSeconds` that it renews while it runs, so a
// key whose process died is free again soon.
// The responses live in Redis. The write itself is bound to its key in the database, in its own transaction
// (`request.keyedWrite`, see application/students/write-once.ts): a retry after a crash between the commit and the
// response being stored, or after Redis lost it, gets that write's outcome again instead of running it twice.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { z } from 'zod';
import { IdempotencyKeyReusedError } from '../../../application/errors.ts';
import type { KeyedRequest } from '../../../application/ports/idempotency-keys.ts';
import type { IdempotencyStore } from '../../../infrastructure/caching/idempotency-store.ts';
import { headerLines } from '../../../infrastructure/http/header-lines.ts';
import { LogThrottle } from '../../../infrastructure/logging/log-throttle.ts';
import {
  idempotencyKeyReused,
  invalidRequest,
  problem,
  sendProblem,
} from '../../../infrastructure/http/problem-details.ts';
import {
  appWide,
  bodyFingerprint,
  callerOf,
  preconditionsOf,
  queryOf,
  replayableHeaders,
  sha256,
} from './caller.ts';
import { hooksOf, markDeduplicated } from './dedup.plugin.ts';
import { expectedFailure } from '../../../infrastructure/logging/expected-failure.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `aliasOf`: the canonical URL of a route that is another path to the same resources (one key space). */
    idempotency?: boolean | { readonly aliasOf: string };
  }
  interface FastifyRequest {
    /** The write's Idempotency-Key, for the use case to record with the write; absent without one. */
    keyedWrite?: KeyedRequest;
  }
}

export interface IdempotencyPluginOptions {
  readonly store: IdempotencyStore;
  /** Whether a committed write used a key (a `KeyedRequest`'s): then its request is over, whatever Redis says. */
  readonly isKeyUsed: (key: string) => Promise<boolean>;
  readonly ttlSeconds: number;
  readonly leaseSeconds: number;
}

const HEADER = 'Idempotency-Key';
const MAX_KEY_LENGTH = 255;

/** The key a header names, or why it names none (the `reason` of the 400). */
type KeyRead = { readonly key: string } | { readonly invalid: string };

// RFC 8941 §3.3.3: printable ASCII in double quotes, where `"` and `\` are escaped and nothing else may be.
const SF_STRING = /^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$/;
// Our leniency: a bare key is visible ASCII without `"` and `\`, the two characters that mean something in a string,
// so a broken quoted key is never taken for a bare one, and a bare key is its own text.
const BARE_KEY = /^[\x21\x23-\x5b\x5d-\x7e]*$/;

/** The draft defines the value as a structured-field string (`"…"`), whose key is its unescaped content. */
function parseKey(header: string): KeyRead {
  let key = header;
  if (header.startsWith('"')) {
    const quoted = SF_STRING.exec(header);
    if (!quoted)
      return { invalid: 'must be a string ("…") of printable ASCII, with only \\" and \\\\ escaped' };
    key = quoted[1]!.replace(/\\(["\\])/g, '$1');
  } else if (!BARE_KEY.test(header))
    return { invalid: 'must be visible ASCII other than " and \\ when not quoted' };
  return key.length > 0 && key.length <= MAX_KEY_LENGTH
    ? { key }
    : { invalid: `must be 1 to ${MAX_KEY_LENGTH} characters` };
}

function readKey(request: FastifyRequest, header: string | string[]): KeyRead {
  // Node joins repeated header lines into one value with ", ": the raw headers tell them apart.
  return typeof header === 'string' && headerLines(request.raw.rawHeaders, 'idempotency-key') === 1
    ? parseKey(header)
    : { invalid: 'must be sent once' };
}

/** Says that `reply` answers an earlier request with the same key, without running this one. */
export function markReplayed(reply: FastifyReply): FastifyReply {
  // The draft names no replay header; Idempotent-Replayed is the common convention (Stripe and others).
  return markDeduplicated(reply).header('idempotent-replayed', 'true');
}

async function idempotencyPlugin(
  app: FastifyInstance,
  { store, isKeyUsed, ttlSeconds, leaseSeconds }: IdempotencyPluginOptions,
): Promise<void> {
  const ttlMs = ttlSeconds * 1_000;
  const leaseMs = leaseSeconds * 1_000;
  // While Redis is down (or refuses writes), every keyed write would say it.
  const heldByDatabaseOnly = new LogThrottle(5_000);
  app.decorateRequest('keyedWrite', undefined);
  const claimed = new WeakMap<
    FastifyRequest,
    { key: string; fingerprint: string; renewal: NodeJS.Timeout }
  >();

  const finish = (request: FastifyRequest, reply: FastifyReply | undefined, payload: unknown) => {
    const claim = claimed.get(request);
    if (!claim) return;
    claimed.delete(request);
    clearInterval(claim.renewal);
    // A server failure frees the key so the client's retry can succeed; anything else is the answer for good.
    const done =
      reply && reply.statusCode < 500 && (typeof payload === 'string' || payload == null)
        ? store.complete(
            claim.key,
            {
              fingerprint: claim.fingerprint,
              response: {
                status: reply.statusCode,
                headers: replayableHeaders(reply.getHeaders()),
                body: payload ?? '',
              },
            },
            ttlMs,
          )
        : store.release(claim.key, { fingerprint: claim.fingerprint, leaseMs });
    void done.catch((error: unknown) =>
      request.log.warn(expectedFailure(error), 'idempotency key not recorded'),
    );
  };

  app.addHook('onRoute', (route: RouteOptions) => {
    const idempotency = route.config?.idempotency;
    if (!idempotency) return;
    // What the request is for: the route (its canonical URL for an alias) and its parameters, not the path as
    // spelled, so `/api/student/…`, a bare trailing `?` and an id in upper case are the same request as the
    // canonical one.
    const target = typeof idempotency === 'object' ? idempotency.aliasOf : route.url;
    // The parameters as the handler gets them, parsed by the route's own schema (an id in upper case is the same
    // student's); ones it refuses stay as sent: the request is a 400 either way.
    const paramsSchema = route.schema?.params instanceof z.ZodType ? route.schema.params : undefined;
    const paramsOf = (request: FastifyRequest): unknown => {
      const parsed = paramsSchema?.safeParse(request.params);
      return parsed?.success ? parsed.data : request.params;
    };
    const preValidation = async (request: FastifyRequest, reply: FastifyReply) => {
      const header = request.headers['idempotency-key'];
      if (header === undefined) return;
      const instance = request.url;
      const read = readKey(request, header);
      if ('invalid' in read)
        return sendProblem(
          reply,
          invalidRequest(instance, `The ${HEADER} header ${read.invalid}.`, [
            { field: HEADER, reason: read.invalid },
          ]),
        );
      const { key } = read;
      const scopedKey = `${callerOf(request)}:${sha256(key)}`;
      // The preconditions come last: a key used before they were part of it (none sent) still matches its retry.
      const fingerprint = sha256(
        `${request.method} ${target} ${JSON.stringify(paramsOf(request))} ${queryOf(request.url)} ${bodyFingerprint(request)}${preconditionsOf(request)}`,
      );
      // What the use case records with the write, if this request runs: the database refuses another request too.
      const keyedWrite = { key: sha256(scopedKey), fingerprint, ttlSeconds };
      let existing;
      try {
        existing = await store.begin(scopedKey, fingerprint, leaseMs);
      } catch (error) {
        // Redis is down: the database still runs the write at most once. A duplicate running meanwhile waits for
        // this one (instead of a 409), and answers that are not a write's own are not kept for replay.
        heldByDatabaseOnly.run((unsaid, lastAt) =>
          request.log.warn(
            { ...expectedFailure(error), skippedUnlogged: unsaid, lastAt },
            'idempotency key held by the database only',
          ),
        );
        request.keyedWrite = keyedWrite;
        return;
      }
      if (!existing) {
        // Three renewals a lease: one lost to a Redis blip does not free the key under a running request.
        const renewal = setInterval(() => {
          store
            .extend(scopedKey, fingerprint, leaseMs)
            .catch((error: unknown) =>
              request.log.warn(expectedFailure(error), 'idempotency key lease not renewed'),
            );
        }, leaseMs / 3).unref();
        claimed.set(request, { key: scopedKey, fingerprint, renewal });
        request.keyedWrite = keyedWrite;
        return;
      }
      if (existing.fingerprint !== fingerprint) return sendProblem(reply, idempotencyKeyReused(instance));
      if (!existing.response) {
        // The write may have committed, its answer never stored: its process died in between (the claim stays until
        // its lease ends), or Redis was away. Then it runs again only to get that write's outcome back.
        const used = await isKeyUsed(keyedWrite.key).catch((error: unknown) => {
          request.log.warn(expectedFailure(error), 'idempotency key not looked up in the database');
          return false;
        });
        if (used) {
          request.keyedWrite = keyedWrite;
          return;
        }
        void reply.header('retry-after', '1');
        return sendProblem(
          reply,
          problem({
            status: 409,
            title: 'Request in progress',
            code: 'IDEMPOTENCY.IN_PROGRESS',
            detail: `A request with this ${HEADER} is still being processed; retry later.`,
            instance,
          }),
        );
      }
      const { status, headers, body } = existing.response;
      return markReplayed(reply.code(status).headers(headers)).send(body);
    };
    route.preValidation = [preValidation, ...hooksOf(route.preValidation)];
    route.onSend = [
      ...hooksOf(route.onSend),
      async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
        finish(request, reply, payload);
        return payload;
      },
    ];
    route.onRequestAbort = [
      ...hooksOf(route.onRequestAbort),
      async (request: FastifyRequest) => finish(request, undefined, undefined),
    ];
    // Answers that are not this key's, so they leave it free. A request its schema refuses never ran, as one whose
    // body could not be parsed (which never gets here): its corrected retry may use the key. And the database found
    // the key used with another request (Redis had lost it): its 422 must not be stored as this key's answer, or the
    // retry of the request that did use it would get the 422 too.
    route.onError = [
      ...hooksOf(route.onError),
      async (request: FastifyRequest, _reply: FastifyReply, error: FastifyError) => {
        if (error.validation || error instanceof IdempotencyKeyReusedError)
          finish(request, undefined, undefined);
      },
    ];
  });
}

Object.assign(idempotencyPlugin, { [appWide]: true });
export default idempotencyPlugin;
