// JWT bearer auth for a Fastify scope: who is calling (request.caller) and whether their role may do this.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  InvalidTokenError,
  mayAct,
  type Caller,
  type Role,
  type TokenVerifier,
} from '../auth/jwt-verifier.ts';
import { addResponses, amendResponse, problemResponse, type ResponseHeaders } from './openapi.ts';
import { ACCESS_TOKEN } from './access-token.ts';
import { headerLines } from './header-lines.ts';
import { forbidden, invalidRequest, sendProblem, unauthenticated } from './problem-details.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified caller on routes that require a token; undefined elsewhere and when auth is off. */
    caller: Caller | undefined;
  }
  interface FastifyContextConfig {
    /** Also take the token from the `access_token` query parameter or cookie (EventSource cannot set headers). */
    tokenFromQueryOrCookie?: boolean;
  }
}

const READ_METHODS = new Set(['GET', 'HEAD']);
const BEARER = /^Bearer\s+(\S+)\s*$/i;
const BEARER_SCHEME = /^Bearer(?:\s|$)/i;

function cookie(header: string | undefined, name: string): string | undefined {
  for (const pair of header?.split(';') ?? []) {
    const separator = pair.indexOf('=');
    if (separator !== -1 && pair.slice(0, separator).trim() === name) return pair.slice(separator + 1).trim();
  }
  return undefined;
}

/**
 * The token a request carries, or why none can be read from it. The Authorization header wins over the query and
 * the cookie: clients (the SignalR client among them) may send a token both ways, and it is the same one.
 */
function tokenOf(
  request: FastifyRequest,
): string | { readonly field: string; readonly malformed: string } | undefined {
  // Node keeps the first of two Authorization lines: which credential the client meant is anybody's guess.
  if (headerLines(request.raw.rawHeaders, 'authorization') > 1)
    return { field: 'Authorization', malformed: 'must be sent once' };
  const { authorization } = request.headers;
  if (authorization !== undefined && BEARER_SCHEME.test(authorization)) {
    const bearer = BEARER.exec(authorization)?.[1];
    // None, or two: malformed, not missing (RFC 6750 §3.1).
    return bearer ?? { field: 'Authorization', malformed: 'must be Bearer and one token' };
  }
  if (!request.routeOptions.config.tokenFromQueryOrCookie) return undefined;
  // A repeated query parameter arrives as an array: as two Authorization lines, not as no token.
  const query = (request.query as Record<string, unknown> | undefined)?.[ACCESS_TOKEN];
  if (Array.isArray(query)) return { field: ACCESS_TOKEN, malformed: 'must be sent once' };
  return (typeof query === 'string' && query) || cookie(request.headers.cookie, ACCESS_TOKEN) || undefined;
}

const WWW_AUTHENTICATE: ResponseHeaders = {
  'WWW-Authenticate': {
    type: 'string',
    description: 'The Bearer challenge, with the error when a token was sent',
  },
};

const TOKEN_PROBLEMS = {
  401: problemResponse(
    'No bearer token, or one that is not valid (expired, forged, not for this API)',
    WWW_AUTHENTICATE,
  ),
  403: problemResponse(
    "The token's role may not do this: reading needs the role reader or writer, any other method writer",
    WWW_AUTHENTICATE,
  ),
};

/** A 400 for a token that cannot be read as sent (RFC 6750 §3.1: invalid_request). */
function refuseAuthorization(request: FastifyRequest, reply: FastifyReply, field: string, reason: string) {
  void reply.header('www-authenticate', 'Bearer error="invalid_request"');
  return sendProblem(reply, invalidRequest(request.url, `${field} ${reason}.`, [{ field, reason }]));
}

/**
 * Requires a valid token on the routes `scope` registers after this call: a reader's for GET and HEAD, a
 * writer's for anything else. 401 without a valid token, 403 when its role may not; routes outside the scope
 * (health, docs, pages) stay public.
 */
export function requireToken(scope: FastifyInstance, verifier: TokenVerifier): void {
  scope.decorateRequest('caller', undefined);
  scope.addHook('onRoute', (route) => {
    addResponses(route, TOKEN_PROBLEMS);
    amendResponse(
      route,
      400,
      route.config?.tokenFromQueryOrCookie
        ? 'Also the answer to a token that cannot be read as sent: an Authorization header or `access_token` sent twice, or `Bearer` without exactly one token'
        : 'Also the answer to an Authorization header no token can be read from (sent twice, or `Bearer` without exactly one token)',
      WWW_AUTHENTICATE,
    );
  });
  scope.addHook('onRequest', async (request, reply) => {
    const token = tokenOf(request);
    if (typeof token === 'object') return refuseAuthorization(request, reply, token.field, token.malformed);
    if (!token) {
      void reply.header('www-authenticate', 'Bearer');
      return sendProblem(reply, unauthenticated(request.url, 'This needs a bearer token.'));
    }
    let caller: Caller;
    try {
      caller = await verifier.verify(token);
    } catch (error) {
      if (!(error instanceof InvalidTokenError)) throw error;
      void reply.header('www-authenticate', 'Bearer error="invalid_token"');
      return sendProblem(reply, unauthenticated(request.url, error.message));
    }
    const required: Role = READ_METHODS.has(request.method) ? 'reader' : 'writer';
    if (!mayAct(caller, required)) {
      void reply.header('www-authenticate', 'Bearer error="insufficient_scope"');
      const has = caller.role ? `the token's role is "${caller.role}"` : 'the token has no known role';
      return sendProblem(reply, forbidden(request.url, `This needs the role "${required}"; ${has}.`));
    }
    request.caller = caller;
  });
}
