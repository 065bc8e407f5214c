import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('base64url');
}

/**
 * A request body's fingerprint: its media type and its JSON text as it arrived (other media types are refused
 * before any route). Bodies that parse alike are still different bodies. The media type without its parameters:
 * the only one honoured is charset, and only UTF-8 gets this far, so `; charset=utf-8` changes nothing.
 */
export function bodyFingerprint(request: FastifyRequest): string {
  const text = request.bodyText;
  // An empty body is none, whatever Content-Type says (only a route that takes no body accepts one): a DELETE
  // retried with and without `Content-Type: application/json` is the same request. No hash on a GET's path.
  if (!text) return '';
  const type = request.headers['content-type'];
  const essence = type?.split(';', 1)[0]!.trim().toLowerCase() ?? '';
  return sha256(`${essence}\n${text}`);
}

/** A request target's path, without its query. */
export function pathOf(url: string): string {
  const queryAt = url.indexOf('?');
  return queryAt === -1 ? url : url.slice(0, queryAt);
}

/** A request target's query, without the `?`: empty when there is none, or only a `?`. */
export function queryOf(url: string): string {
  const queryAt = url.indexOf('?');
  return queryAt === -1 ? '' : url.slice(queryAt + 1);
}

export const SAFE_METHODS = new Set(['GET', 'HEAD']);

const READ_PRECONDITIONS = ['if-match'] as const;
const WRITE_PRECONDITIONS = ['if-match', 'if-none-match'] as const;

/**
 * The preconditions a request was sent with, as sent, a `\nname: value` line each (no header value holds a line
 * break); empty without any. What a write does depends on them as much as on its body. A read's If-None-Match is
 * left out: its 304 is made from the shared 200 (conditional-get.plugin.ts).
 */
export function preconditionsOf(request: FastifyRequest): string {
  let sent = '';
  for (const name of SAFE_METHODS.has(request.method) ? READ_PRECONDITIONS : WRITE_PRECONDITIONS) {
    const value = request.headers[name];
    if (value !== undefined) sent += `\n${name}: ${value}`;
  }
  return sent;
}

/**
 * Who is asking, so a stored response is only ever replayed to the same caller: the verified subject when auth is
 * on (any of its tokens); with auth off, the credentials as sent (a proxy in front may check them), else anonymous.
 */
export function callerOf(request: FastifyRequest): string {
  if (request.caller) return `subject:${sha256(request.caller.subject)}`;
  const authorization = request.headers.authorization;
  return authorization ? sha256(authorization) : 'anonymous';
}

/** The headers a replayed response must carry to be the same response. */
const REPLAYED_HEADERS = ['content-type', 'etag', 'location'] as const;

export function replayableHeaders(headers: Record<string, unknown>): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const name of REPLAYED_HEADERS) {
    const value = headers[name];
    if (value !== undefined) kept[name] = String(value);
  }
  return kept;
}

/** Fastify's marker for a plugin whose hooks apply to the whole app (what `fastify-plugin` sets). */
export const appWide = Symbol.for('skip-override');
