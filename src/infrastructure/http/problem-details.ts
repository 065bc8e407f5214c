import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import {
  DependencyBusyError,
  DependencyUnavailableError,
  IdempotencyKeyReusedError,
} from '../../application/errors.ts';
import type { DomainError, FieldIssue } from '../../domain/errors.ts';
import { withoutQuerySecrets } from './access-token.ts';
import type { AllowedMethods } from './allowed-methods.ts';
import { LogThrottle } from '../logging/log-throttle.ts';
import { expectedFailure } from '../logging/expected-failure.ts';

/** RFC 9457 problem details, with `code` (stable, machine-readable) and `errors` for field-level detail. */
export interface ProblemDetails {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail?: string;
  readonly instance?: string;
  readonly code: string;
  readonly errors?: readonly FieldIssue[];
}

/** RFC 9457 §3: the media type of every problem this server sends. */
export const PROBLEM_JSON = 'application/problem+json';

/** Extension members (RFC 9457 §3.2), e.g. `dependency` or `currentVersion`. */
export type ProblemExtensions = Readonly<Record<string, unknown>>;

const PROBLEM_BASE = 'https://github.com/the-background-experience/problems#';

const domainStatus: Record<DomainError['code'], { status: number; title: string }> = {
  'STUDENT.INVALID': { status: 422, title: 'The student is not valid' },
  'STUDENT.NOT_FOUND': { status: 404, title: 'Student not found' },
  'STUDENT.VERSION_CONFLICT': { status: 412, title: 'The student has changed' },
};

export function problem(input: Omit<ProblemDetails, 'type'> & ProblemExtensions): ProblemDetails {
  return { type: `${PROBLEM_BASE}${input.code.toLowerCase()}`, ...input };
}

const INVALID_REQUEST_TITLE = 'The request is not valid';

/**
 * A problem's title names its type (RFC 9457 §3.1.3): one per code, whichever check answered. `REQUEST.INVALID` has
 * its own; any other client error the HTTP reason phrase of its status.
 */
export function clientErrorTitle(status: number, code: string): string {
  return code === 'REQUEST.INVALID' ? INVALID_REQUEST_TITLE : httpTitle(status);
}

/** 400 for input the client must fix, naming each field and what is wrong with it. */
export function invalidRequest(
  instance: string,
  detail: string,
  errors: readonly FieldIssue[],
): ProblemDetails {
  return problem({
    status: 400,
    title: INVALID_REQUEST_TITLE,
    code: 'REQUEST.INVALID',
    detail,
    instance,
    errors,
  });
}

/** 401: no token, or one that is not valid (forged, expired, not for us); the client needs a (new) token. */
export function unauthenticated(instance: string, detail: string): ProblemDetails {
  return problem({ status: 401, title: 'Unauthorized', code: 'AUTH.UNAUTHENTICATED', detail, instance });
}

/** 403: a valid token whose role may not do this. */
export function forbidden(instance: string, detail: string): ProblemDetails {
  return problem({ status: 403, title: 'Forbidden', code: 'AUTH.FORBIDDEN', detail, instance });
}

export function domainProblem(error: DomainError, instance: string): ProblemDetails {
  const { status, title } = domainStatus[error.code];
  if (error.code === 'STUDENT.INVALID')
    return problem({
      status,
      title,
      code: error.code,
      detail: error.message,
      instance,
      errors: error.issues,
    });
  const { code, message, ...extensions } = error;
  return problem({ status, title, code, detail: message, instance, ...extensions });
}

/** An `Idempotency-Key` sent again with another request (the draft's 422). */
export function idempotencyKeyReused(instance: string): ProblemDetails {
  return problem({
    status: 422,
    title: 'Idempotency key reused',
    code: 'IDEMPOTENCY.KEY_REUSED',
    detail: 'This Idempotency-Key was already used with a different request.',
    instance,
  });
}

export function sendProblem(reply: FastifyReply, details: ProblemDetails): FastifyReply {
  // The instance is the request's URL, which may carry the caller's token (EventSource and SignalR clients send one).
  const instance = details.instance && withoutQuerySecrets(details.instance);
  const shown = instance === details.instance ? details : { ...details, instance };
  return reply.code(details.status).type(PROBLEM_JSON).send(shown);
}

function validationIssues(error: FastifyError): FieldIssue[] {
  if (!hasZodFastifySchemaValidationErrors(error)) {
    return [{ field: error.validationContext ?? 'request', reason: error.message }];
  }
  const issues = error.validation.flatMap((issue): FieldIssue[] => {
    const path = issue.instancePath.replace(/^\//, '').replaceAll('/', '.');
    const field = path || error.validationContext || 'body';
    if (issue.keyword === 'unrecognized_keys') {
      const keys = (issue.params as { keys?: string[] }).keys ?? [];
      // An empty key is named as JSON writes it, so no field is ever blank.
      const name = (key: string) => key || '""';
      return keys.map((key) => ({
        field: path ? `${path}.${name(key)}` : name(key),
        reason: 'is not a known field',
      }));
    }
    return [{ field, reason: issue.message ?? 'is not valid' }];
  });
  // Checks that share a message say it once: 1e20 as a `limit` fails both "an integer" and "at most 100".
  const said = new Set<string>();
  return issues.filter(({ field, reason }) => {
    const key = `${field}\n${reason}`;
    if (said.has(key)) return false;
    said.add(key);
    return true;
  });
}

/** What a Fastify client error says; its 415 message is the bare status text, which does not say what to send. */
function clientErrorText(error: FastifyError, request: FastifyRequest): { detail: string; reason: string } {
  if (error.code === 'FST_ERR_BAD_URL') {
    // The router's message quotes the target, query and all, as it routed it (an absolute-form one without its
    // origin, so no replacement can find it there): said again here, with a token in the query masked.
    const message = `'${withoutQuerySecrets(request.url)}' is not a valid url component`;
    return { detail: message, reason: message };
  }
  // Fastify's text says what is wrong, not what to send instead.
  if (error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY')
    return {
      detail: 'The body is empty, yet Content-Type says it is JSON: send the JSON object this route takes.',
      reason: 'is empty while Content-Type is application/json',
    };
  if (error.code !== 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return { detail: error.message, reason: error.message };
  const type = JSON.stringify(request.headers['content-type'] ?? '');
  return {
    detail: `A body of type ${type} is not accepted here; send it as application/json, in UTF-8.`,
    reason: 'must be sent as application/json, in UTF-8',
  };
}

/**
 * Our codes for the client errors Fastify and Node's HTTP parser answer: theirs (`FST_ERR_CTP_INVALID_JSON_BODY`,
 * `HPE_HEADER_OVERFLOW`, ...) belong to their versions, and a client must be able to rely on a problem's code. Theirs
 * stays in the reason (and the log).
 */
const CLIENT_ERROR_CODES: Readonly<Record<number, string>> = {
  400: 'REQUEST.INVALID',
  // 403, 412 and 416 come from the docs' static files: a path outside them, a precondition, a range.
  403: 'REQUEST.FORBIDDEN',
  404: 'ROUTE.NOT_FOUND',
  408: 'REQUEST.TIMEOUT',
  412: 'PRECONDITION.FAILED',
  413: 'REQUEST.TOO_LARGE',
  414: 'REQUEST.URI_TOO_LONG',
  415: 'REQUEST.UNSUPPORTED_MEDIA_TYPE',
  416: 'REQUEST.RANGE_NOT_SATISFIABLE',
  431: 'REQUEST.HEADERS_TOO_LARGE',
};

function clientErrorCode(status: number, code: string | undefined): string {
  // Ours (`RATE_LIMIT.EXCEEDED`, thrown by a plugin of ours) have a dot; Fastify's and Node's do not.
  if (code?.includes('.')) return code;
  return CLIENT_ERROR_CODES[status] ?? 'REQUEST.INVALID';
}

/** What a 4xx answer may need to say (RFC 9110 §15.5): the methods allowed, the length, when to retry, the scheme. */
const CLIENT_ERROR_HEADERS = new Set(['allow', 'content-range', 'retry-after', 'www-authenticate']);

/** The part of the request a Fastify client error is about, when it is about one part. */
function fastifyErrorField(code: string | undefined): string | undefined {
  // FST_ERR_CTP_*: the body could not be read (malformed JSON, too large, wrong media type).
  if (code?.startsWith('FST_ERR_CTP_')) return 'body';
  // The router could not decode the path, or a path parameter is too long.
  if (code === 'FST_ERR_BAD_URL' || code === 'FST_ERR_MAX_PARAM_LENGTH') return 'path';
  // A QUERY must say what its body is (RFC 10008 §2), with or without one.
  if (code === 'FST_ERR_ROUTE_MISSING_CONTENT_TYPE') return 'Content-Type';
  return undefined;
}

/**
 * Every request a down dependency refuses would log the same stack: each server (one per role, several in one
 * process) says it once per dependency every 5 s, counted.
 */
const unavailableLogs = new WeakMap<object, Map<string, LogThrottle>>();
function unavailableLog(request: FastifyRequest, dependency: string): LogThrottle {
  let byDependency = unavailableLogs.get(request.server.server);
  if (!byDependency) unavailableLogs.set(request.server.server, (byDependency = new Map()));
  let throttle = byDependency.get(dependency);
  if (!throttle) byDependency.set(dependency, (throttle = new LogThrottle(5_000)));
  return throttle;
}

/**
 * The one mapper from errors to problem+json: client mistakes become 4xx with the field and reason,
 * an unreachable dependency 503, anything else 500 without internals (the log has them). It is the app's error
 * handler and, passed as Fastify's `frameworkErrors`, also answers requests the router rejects before any route.
 */
export function sendErrorProblem(
  error: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  const instance = request.url;
  if (error.validation) {
    const detail = `The request ${error.validationContext ?? 'input'} failed validation.`;
    return sendProblem(reply, invalidRequest(instance, detail, validationIssues(error)));
  }
  if (error instanceof IdempotencyKeyReusedError) return sendProblem(reply, idempotencyKeyReused(instance));
  if (error instanceof DependencyUnavailableError) {
    // A busy database is said apart from a down one: neither hides the other's first line in its throttle.
    const busy = error instanceof DependencyBusyError;
    unavailableLog(request, busy ? `${error.dependency} busy` : error.dependency).run((unsaid, lastAt) =>
      request.log.warn(
        { ...expectedFailure(error), refusedUnlogged: unsaid, lastAt },
        busy
          ? `${error.dependency} busy (a lock held past the lock timeout, a deadlock): answering 503 to what it refuses`
          : `${error.dependency} unavailable: answering 503 until it is back`,
      ),
    );
    void reply.header('retry-after', '5');
    return sendProblem(
      reply,
      problem({
        status: 503,
        title: 'Service temporarily unavailable',
        code: 'DEPENDENCY.UNAVAILABLE',
        // Down, refusing writes, or every connection busy (a hot row): the caller's answer is the same.
        detail: `The ${error.dependency} cannot serve this request right now; try again shortly.`,
        instance,
        dependency: error.dependency,
      }),
    );
  }
  const status = error.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    // Fastify's own client errors: malformed JSON, body too large, undecodable path, ... A library's may carry
    // headers its status needs (a 416's Content-Range), which Fastify's default handler would have sent; only
    // those, so that no error's headers replace ours (security, CORS, request id) or set a cookie.
    const { headers } = error as { headers?: Record<string, string> };
    for (const [name, value] of Object.entries(headers ?? {}))
      if (CLIENT_ERROR_HEADERS.has(name.toLowerCase())) void reply.header(name, value);
    const field = fastifyErrorField(error.code);
    const { detail, reason } = clientErrorText(error, request);
    const code = clientErrorCode(status, error.code);
    return sendProblem(
      reply,
      problem({
        status,
        title: clientErrorTitle(status, code),
        code,
        detail,
        instance,
        ...(field ? { errors: [{ field, reason }] } : {}),
      }),
    );
  }
  request.log.error({ err: error }, 'unhandled error');
  return sendProblem(
    reply,
    problem({
      status: 500,
      title: 'Internal Server Error',
      code: 'INTERNAL',
      detail: 'An unexpected error occurred.',
      instance,
    }),
  );
}

/** The part of the request each of Node's HTTP parser (llhttp) errors is about; any other is "request". */
const PARSER_ERROR_FIELDS: Readonly<Record<string, string>> = {
  HPE_INVALID_METHOD: 'method',
  HPE_INVALID_URL: 'url',
  HPE_INVALID_VERSION: 'version',
  HPE_INVALID_HEADER_TOKEN: 'headers',
  HPE_HEADER_OVERFLOW: 'headers',
  HPE_INVALID_CONTENT_LENGTH: 'Content-Length',
  HPE_INVALID_TRANSFER_ENCODING: 'Transfer-Encoding',
  HPE_INVALID_CHUNK_SIZE: 'body',
  HPE_INVALID_EOF_STATE: 'body',
};

/**
 * Fastify's `clientErrorHandler`: a request Node's HTTP parser rejects (bytes HTTP forbids, framing that contradicts
 * itself, headers too large) never reaches a route or the error handler, so its problem is written to the socket.
 * Returns that problem, or undefined when the client is gone.
 */
export function writeMalformedRequestProblem(
  error: Error & { readonly code?: string; readonly reason?: string },
  socket: Socket,
  headers: Readonly<Record<string, string>> = {},
): ProblemDetails | undefined {
  if (error.code === 'ECONNRESET' || socket.destroyed) return undefined;
  const status =
    error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  // llhttp's reason names the exact fault, e.g. "Invalid header value char".
  const reason = error.reason ?? error.message;
  const code = clientErrorCode(status, error.code);
  const details = problem({
    status,
    title: clientErrorTitle(status, code),
    code,
    detail:
      status === 408
        ? 'The request did not arrive in time: send it whole, without pauses.'
        : `The request is not valid HTTP/1.1: ${reason}.`,
    errors: [{ field: PARSER_ERROR_FIELDS[error.code ?? ''] ?? 'request', reason }],
  });
  writeProblemAndClose(socket, details, headers, error);
  return details;
}

/** Answers on the bare socket, for a request Node gives no response object to, and closes it. */
export function writeProblemAndClose(
  socket: Duplex,
  details: ProblemDetails,
  headers: Readonly<Record<string, string>> = {},
  error?: Error,
): void {
  const body = JSON.stringify(details);
  const head = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${details.status} ${STATUS_CODES[details.status]}\r\n${head}` +
        `Content-Type: application/problem+json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  socket.destroy(error);
}

export function registerProblemDetails(app: FastifyInstance, allowedMethods: AllowedMethods): void {
  app.setErrorHandler(sendErrorProblem);
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    const allowed = allowedMethods(request.url);
    // The asterisk-form target names the server itself, and only OPTIONS takes it (RFC 9112 §3.2.4).
    if (request.url === '*') {
      if (request.method === 'OPTIONS') return reply.header('allow', allowed.join(', ')).code(204).send();
      return sendProblem(
        reply,
        invalidRequest(request.url, 'The request target * is for OPTIONS only.', [
          { field: 'path', reason: 'can be * only in an OPTIONS request' },
        ]),
      );
    }
    // A route that takes the method found nothing there (a file the docs' static route does not have): 404 too.
    if (allowed.length === 0 || allowed.includes(request.method))
      return sendProblem(
        reply,
        problem({
          status: 404,
          title: 'Not Found',
          code: 'ROUTE.NOT_FOUND',
          detail: allowed.length === 0 ? `No route ${request.method} ${path}.` : `Nothing at ${path}.`,
          instance: request.url,
        }),
      );
    const list = allowed.join(', ');
    void reply.header('allow', list);
    return sendProblem(
      reply,
      problem({
        status: 405,
        title: 'Method Not Allowed',
        code: 'ROUTE.METHOD_NOT_ALLOWED',
        detail: `${path} does not take ${request.method}; it takes ${list}.`,
        instance: request.url,
        errors: [{ field: 'method', reason: `must be one of ${list}` }],
      }),
    );
  });
}

const titles: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  417: 'Expectation Failed',
  422: 'Unprocessable Content',
  428: 'Precondition Required',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
};

/** The RFC 9110 reason phrase of a status this server sends (Node's, for one the table does not name). */
export function httpTitle(status: number): string {
  return titles[status] ?? STATUS_CODES[status] ?? 'Bad Request';
}
