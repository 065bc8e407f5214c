// What the OpenAPI document says about the student routes: the request headers they read, and each answer with its
// headers, as the handlers and the plugins on their path (idempotency, deduplication, conditional GET) give them. The
// scope's token check and write limit list their own 401/403 and 429 (require-token.ts, write-rate-limit.ts).
import { z } from 'zod';
import {
  emptyResponse,
  jsonResponse,
  problemResponse,
  problemWith,
  RETRY_AFTER,
  serviceUnavailable,
  type ResponseHeaders,
} from '../../../infrastructure/http/openapi.ts';
import { Student, StudentPage } from './student-schemas.ts';

const ETAG: ResponseHeaders = {
  ETag: {
    type: 'string',
    description:
      'The student\'s version in quotes ("3"): send it in If-Match or If-None-Match. The worker\'s own write moves ' +
      'it on a moment after every create and update: take it from a GET once that has run.',
  },
};

/** Deduplication (GET for 30 s, PUT for 5 s by default) replays 2xx and 404 responses; a conditional GET keeps it. */
const DEDUPLICATED: ResponseHeaders = {
  'X-Deduplicated': {
    type: 'string',
    enum: ['true'],
    description:
      'Present when this is a stored response, replayed: to an identical request within the deduplication window, ' +
      'or to a retry with the same Idempotency-Key',
  },
};

/** What a write replays: any response under 500 stored for its Idempotency-Key, or PUT's deduplicated 2xx and 404. */
const REPLAYED: ResponseHeaders = {
  ...DEDUPLICATED,
  'Idempotent-Replayed': {
    type: 'string',
    enum: ['true'],
    description: "Present when this is the response stored for the request's Idempotency-Key, sent again",
  },
};

/** A request header the route reads if present (documented, and validated as text). */
const optionalHeader = (description: string) => z.string().optional().describe(description);

const ifNoneMatchOnRead = optionalHeader(
  'ETags of copies you hold, or `*`: 304 without a body while the student is at one of them',
);
const ifMatchOnRead = optionalHeader('ETags, or `*`: 412 unless the student is at one of them');
const cacheControl = optionalHeader(
  '`no-cache` reads the database, bypassing the cache and deduplicated responses',
);
const ifMatchOnWrite = optionalHeader(
  'An ETag from a previous response: the write fails with 412 if the student changed since',
);
const ifNoneMatchOnWrite = optionalHeader(
  'ETags (or `*`) the student must not be at: the write fails with 412 if it is',
);

// A page of the list, and the collection a POST adds to, exist but have no ETag: only `*` names them.
const ifMatchUntagged = optionalHeader('`*` only: any ETag is a 412, since there is none to match');
const ifNoneMatchOnList = optionalHeader('`*`: 304 without a body (a page exists); ETags: ignored');
const ifNoneMatchOnCreate = optionalHeader('`*`: 412 (the collection exists); ETags: ignored');
const listFailed = problemResponse('If-Match names an ETag: a page has none, so none can match');
const createFailed = problemResponse(
  'If-Match names an ETag (the collection has none), or If-None-Match is `*` (the collection exists)',
);

function duration(seconds: number): string {
  return seconds % 3600 === 0 ? `${seconds / 3600} h` : `${seconds} s`;
}

/** The IETF httpapi Idempotency-Key draft asks the server to publish the key's format and how long it is kept. */
function idempotencyKey(ttlSeconds: number) {
  return optionalHeader(
    'Makes a retry safe: a key of 1 to 255 characters, scoped to the caller, sent as an RFC 8941 string (`"…"`: ' +
      'printable ASCII, with `\\"` and `\\\\` escaped; the key is its unescaped content) or bare (visible ASCII other ' +
      'than `"` and `\\`); anything else is a 400. A retry with the same key and request (method, URL, body byte for ' +
      'byte, If-Match and If-None-Match) gets the stored response (Idempotent-Replayed: true); with another request, ' +
      'the same JSON written otherwise included, 422; ' +
      'while the first still runs (or its server stopped less than IDEMPOTENCY_LEASE_SECONDS ago), 409. A response ' +
      `is kept for ${duration(ttlSeconds)} after it is sent (IDEMPOTENCY_TTL_SECONDS); a 5xx is not kept, so a retry ` +
      'runs again, but a write that committed is never run twice: a retry gets it back, whenever the first attempt ' +
      'failed.',
  );
}

const invalid = (what: string, headers?: ResponseHeaders) =>
  problemResponse(`Not valid: ${what}; \`errors\` names each field`, headers);
const notFound = (headers?: ResponseHeaders) => problemResponse('No student has this id', headers);
const tooLarge = problemResponse('The body is over 64 KiB');
const notJson = problemResponse(
  'The body is not application/json in UTF-8, or is sent with a Content-Encoding other than identity',
  {
    'Accept-Encoding': {
      type: 'string',
      enum: ['identity'],
      description: 'With a compressed body (RFC 7694): send it uncompressed',
    },
  },
);
// find-my-way's limit on a path parameter (maxParamLength), met before the id is validated.
const idTooLong = problemResponse('The id is over 100 characters');
const stale = (preconditions: string, headers: ResponseHeaders, schema?: z.ZodType) =>
  problemResponse(`${preconditions}; ETag is the student's current one`, headers, schema);
const VersionConflictProblem = problemWith('VersionConflictProblem', {
  currentVersion: z.number().int().describe("The student's version: its ETag is this number in quotes"),
});
const inProgress = problemResponse(
  'A request with this Idempotency-Key is still running: retry after Retry-After seconds',
  RETRY_AFTER,
);
const keyReused = 'the Idempotency-Key was used with another request';

export interface StudentOpenApiOptions {
  /** How long a response is kept for its Idempotency-Key. */
  readonly idempotencyTtlSeconds: number;
}

/** The request headers and responses of each student route, for their `schema`. */
export function studentOpenApi({ idempotencyTtlSeconds }: StudentOpenApiOptions) {
  const key = idempotencyKey(idempotencyTtlSeconds);
  const writeHeaders = z.object({
    'if-match': ifMatchOnWrite,
    'if-none-match': ifNoneMatchOnWrite,
    'idempotency-key': key,
  });
  const replayedWithEtag = { ...ETAG, ...REPLAYED };
  const writeProblems = {
    400: invalid('the id, a query parameter (this route takes none), a header, or the body', REPLAYED),
    404: notFound(REPLAYED),
    409: inProgress,
    412: stale(
      "If-Match or If-None-Match does not hold; the problem's `currentVersion` is the student's version",
      replayedWithEtag,
      VersionConflictProblem,
    ),
    414: idTooLong,
    413: tooLarge,
    415: notJson,
    503: serviceUnavailable,
  };
  return {
    list: {
      description:
        'Follow `nextCursor` until it is null. A walk sees every student that existed when it began and still ' +
        'exists; one created during the walk may be missed, since ids are ordered by when a create began, not ' +
        'when it committed.',
      headers: z.object({ 'if-match': ifMatchUntagged, 'if-none-match': ifNoneMatchOnList }),
      response: {
        200: jsonResponse(StudentPage, 'One page of students'),
        304: emptyResponse('Not Modified: If-None-Match is `*`'),
        400: invalid('the query, If-Match or If-None-Match'),
        412: listFailed,
        503: serviceUnavailable,
      },
    },
    get: {
      headers: z.object({
        'if-none-match': ifNoneMatchOnRead,
        'if-match': ifMatchOnRead,
        'cache-control': cacheControl,
      }),
      response: {
        200: jsonResponse(Student, 'The student', { ...ETAG, ...DEDUPLICATED }),
        304: emptyResponse('Not Modified: If-None-Match names the current ETag', {
          ...ETAG,
          ...DEDUPLICATED,
        }),
        400: invalid('the id, a query parameter (this route takes none), If-Match or If-None-Match'),
        404: notFound(DEDUPLICATED),
        412: stale('If-Match does not name the current ETag', { ...ETAG, ...DEDUPLICATED }),
        414: idTooLong,
        503: serviceUnavailable,
      },
    },
    create: {
      headers: z.object({
        'if-match': ifMatchUntagged,
        'if-none-match': ifNoneMatchOnCreate,
        'idempotency-key': key,
      }),
      response: {
        201: jsonResponse(Student, 'Created', {
          ...ETAG,
          Location: { type: 'string', description: "The new student's URL" },
          ...REPLAYED,
        }),
        400: invalid('a query parameter (this route takes none), a header or the body', REPLAYED),
        409: inProgress,
        412: createFailed,
        413: tooLarge,
        415: notJson,
        422: problemResponse(`The student breaks a rule, or ${keyReused}`, REPLAYED),
        503: serviceUnavailable,
      },
    },
    update: {
      headers: writeHeaders.extend({
        'cache-control': optionalHeader(
          '`no-cache` runs the write even when an identical one was answered within the deduplication window ' +
            '(fetch adds it to a request with If-Match or If-None-Match, whose precondition keeps a repeat from ' +
            'applying twice anyway)',
        ),
      }),
      response: {
        200: jsonResponse(Student, 'Updated', replayedWithEtag),
        ...writeProblems,
        422: problemResponse(`The student breaks a rule, or ${keyReused}`, REPLAYED),
      },
    },
    remove: {
      headers: writeHeaders,
      response: {
        204: emptyResponse('Deleted', REPLAYED),
        ...writeProblems,
        // DELETE refuses a body (400 above; 413 and 415 before it is read), and an empty one is none even as
        // application/json; no rule can fail.
        422: problemResponse(`Only when ${keyReused}`),
      },
    },
  };
}
