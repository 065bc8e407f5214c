// Writes per client per minute (@fastify/rate-limit): counted in Redis when there is one, so every webapi instance
// shares the count, in memory otherwise. Reads are not limited: they are cheap and mostly served from the cache.
import rateLimit from '@fastify/rate-limit';
import type { FastifyRequest, RouteOptions } from 'fastify';
import type { Redis } from 'ioredis';
import type { HttpServer } from '../../../infrastructure/http/http-server.ts';
import {
  addResponseHeaders,
  addResponses,
  problemResponse,
  RETRY_AFTER,
  type ResponseHeaders,
} from '../../../infrastructure/http/openapi.ts';

export interface WriteRateLimitOptions {
  readonly writesPerMinute: number;
  /** Shared counters; absent = this process's memory. */
  readonly redis?: Redis;
  readonly keyPrefix: string;
}

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** What the plugin sets on every write it counts, whatever the answer. */
export const RATE_LIMIT_HEADERS: ResponseHeaders = {
  'X-RateLimit-Limit': {
    type: 'integer',
    description:
      'Writes allowed per minute; on every counted write (one refused for its framing before it is counted has none)',
  },
  'X-RateLimit-Remaining': { type: 'integer', description: 'Writes left in this minute' },
  'X-RateLimit-Reset': { type: 'integer', description: 'Seconds until the budget is full again' },
};

const TOO_MANY_WRITES = {
  429: problemResponse(
    'Over the write budget of this client (its token subject, else its IP) for the minute: X-RateLimit-Remaining is 0',
    RETRY_AFTER,
  ),
};

/** The verified subject when auth is on (so clients behind one NAT do not share a budget), else the IP. */
function clientOf(request: FastifyRequest): string {
  return request.caller ? `subject:${request.caller.subject}` : `ip:${request.ip}`;
}

/**
 * Limits the writes of the routes registered after it in `scope`, all of them against one budget per client;
 * answers 429 problem+json with Retry-After. The document lists the X-RateLimit headers on each response a write
 * route lists when it is added: register this before plugins whose answers come before the count (the token check).
 */
export async function limitWrites(
  scope: HttpServer,
  { writesPerMinute, redis, keyPrefix }: WriteRateLimitOptions,
): Promise<void> {
  // Before the plugin's own onRoute hook: read routes get no rate-limit hook at all (the hot path stays as it was).
  scope.addHook('onRoute', (route: RouteOptions) => {
    if ([route.method].flat().every((method) => READ_METHODS.has(method)))
      route.config = { ...route.config, rateLimit: false };
    else {
      addResponses(route, TOO_MANY_WRITES);
      addResponseHeaders(route, RATE_LIMIT_HEADERS);
    }
  });
  await scope.register(rateLimit, {
    max: writesPerMinute,
    timeWindow: 60_000,
    keyGenerator: clientOf,
    ...(redis ? { redis, nameSpace: `${keyPrefix}rate-limit:` } : {}),
    // Redis down: let writes through rather than fail them; the limit is a guard, not a guarantee.
    skipOnError: true,
    errorResponseBuilder: (_request, { max, after }) =>
      // Thrown by the plugin, so the problem-details error handler shapes the 429.
      Object.assign(new Error(`At most ${max} writes per minute; retry in ${after}.`), {
        statusCode: 429,
        code: 'RATE_LIMIT.EXCEEDED',
      }),
  });
}
