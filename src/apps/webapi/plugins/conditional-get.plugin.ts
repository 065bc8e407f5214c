// Conditional reads (RFC 9110 §13.1): a GET or HEAD whose If-None-Match names the ETag its 200 carries gets
// 304 Not Modified without the body, so a client (or a browser's HTTP cache) revalidates its copy for a few
// hundred bytes; one whose If-Match does not name it gets 412. A 200 without an ETag (a page of the list) is named
// by `*` alone. Decided on the response as it goes out, so replayed and coalesced responses are covered too.
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { PROBLEM_JSON, sendProblem } from '../../../infrastructure/http/problem-details.ts';
import {
  malformedPrecondition,
  namesEtag,
  preconditionFailed,
  readPreconditions,
  type Preconditions,
} from '../routes/etag.ts';
import { appWide } from './caller.ts';
import { hooksOf } from './dedup.plugin.ts';

const PRECONDITIONS = Symbol('preconditions');
type ConditionalRequest = FastifyRequest & { [PRECONDITIONS]?: Preconditions };

/** A malformed If-Match or If-None-Match is a 400 naming it, as on writes. */
function readConditions(request: FastifyRequest, reply: FastifyReply, done: () => void): void {
  const { 'if-match': ifMatch, 'if-none-match': ifNoneMatch } = request.headers;
  // The hot path: a plain GET has neither.
  if (ifMatch === undefined && ifNoneMatch === undefined) return done();
  const read = readPreconditions(request.headers);
  if ('malformed' in read) return void sendProblem(reply, malformedPrecondition(request.url, read.malformed));
  (request as ConditionalRequest)[PRECONDITIONS] = read;
  done();
}

function answerConditionally(
  request: FastifyRequest,
  reply: FastifyReply,
  payload: unknown,
  done: (error: null, payload: unknown) => void,
): void {
  const conditions = (request as ConditionalRequest)[PRECONDITIONS];
  if (conditions === undefined || reply.statusCode !== 200) return done(null, payload);
  // A 200 without one (a page of the list) has a representation all the same: only `*` names it.
  const header = reply.getHeader('etag');
  const etag = typeof header === 'string' ? header : undefined;
  if (conditions.match !== undefined && !namesEtag(conditions.match, etag, 'strong')) {
    // Sent as a string, so Fastify adds no charset: say it as every other problem does.
    void reply.code(412).type(`${PROBLEM_JSON}; charset=utf-8`);
    const failed = preconditionFailed(
      request.url,
      etag === undefined
        ? 'The representation has no ETag: If-Match can only name it as "*".'
        : `The representation is at ETag ${etag}, which If-Match does not name.`,
    );
    return done(null, JSON.stringify(failed));
  }
  if (conditions.noneMatch !== undefined && namesEtag(conditions.noneMatch, etag, 'weak')) {
    // A 304 carries the validator (ETag) but no content, so nothing that describes content either.
    void reply.code(304).removeHeader('content-type').removeHeader('content-length');
    return done(null, null);
  }
  done(null, payload);
}

/**
 * Register after the plugins whose onSend must still see the 200 (deduplication stores it for others): the hook is
 * appended to each GET route's onSend as the route is added, after theirs.
 */
async function conditionalGetPlugin(app: FastifyInstance): Promise<void> {
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = [route.method].flat();
    if (!methods.includes('GET') && !methods.includes('HEAD')) return;
    route.onRequest = [...hooksOf(route.onRequest), readConditions];
    route.onSend = [...hooksOf(route.onSend), answerConditionally];
  });
}

Object.assign(conditionalGetPlugin, { [appWide]: true });
export default conditionalGetPlugin;
