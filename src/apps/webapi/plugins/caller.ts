import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('base64url');
}

/**
 * A request body's fingerprint: its media type and its JSON text as it arrived (other media types are refused
 * before any route). Bodies that parse alike are still different bodies.
 */
export function bodyFingerprint(request: FastifyRequest): string {
  const text = request.bodyText;
  const type = request.headers['content-type'];
  // A GET has neither: no hash on the cached read's path.
  if (text === undefined && type === undefined) return '';
  return sha256(`${type ?? ''}\n${text ?? ''}`);
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
export const REPLAYED_HEADERS = ['content-type', 'etag', 'location'] as const;

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
