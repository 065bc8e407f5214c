// Conditional GET (RFC 9110 §13.1.2): a GET or HEAD whose If-None-Match names the ETag its 200 carries gets
// 304 Not Modified without the body, so a client (or a browser's HTTP cache) revalidates its copy for a few
// hundred bytes. Decided on the response as it goes out, so replayed and coalesced responses are covered too.
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { sendProblem } from '../../../infrastructure/http/problem-details.ts';
import { malformedPrecondition, noneMatchFails, parseEntityTags, type EntityTag } from '../routes/etag.ts';
import { appWide } from './caller.ts';
import { hooksOf } from './dedup.plugin.ts';

const CONDITION = Symbol('if-none-match');
type ConditionalRequest = FastifyRequest & { [CONDITION]?: '*' | EntityTag[] };

/** A malformed If-None-Match is a 400 naming it, like a malformed If-Match. */
function readCondition(request: FastifyRequest, reply: FastifyReply, done: () => void): void {
  const header = request.headers['if-none-match'];
  if (header === undefined) return done();
  const condition = parseEntityTags(header);
  if (condition === undefined)
    return void sendProblem(reply, malformedPrecondition(request.url, 'If-None-Match'));
  (request as ConditionalRequest)[CONDITION] = condition;
  done();
}

function answerNotModified(
  request: FastifyRequest,
  reply: FastifyReply,
  payload: unknown,
  done: (error: null, payload: unknown) => void,
): void {
  const condition = (request as ConditionalRequest)[CONDITION];
  const etag = reply.getHeader('etag');
  if (condition === undefined || reply.statusCode !== 200 || typeof etag !== 'string')
    return done(null, payload);
  if (!noneMatchFails(condition, etag)) return done(null, payload);
  // A 304 carries the validator (ETag) but no content, so nothing that describes content either.
  void reply.code(304).removeHeader('content-type').removeHeader('content-length');
  done(null, null);
}

/**
 * Register after the plugins whose onSend must still see the 200 (deduplication stores it for others): the hook is
 * appended to each GET route's onSend as the route is added, after theirs.
 */
async function conditionalGetPlugin(app: FastifyInstance): Promise<void> {
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = [route.method].flat();
    if (!methods.includes('GET') && !methods.includes('HEAD')) return;
    route.onRequest = [...hooksOf(route.onRequest), readCondition];
    route.onSend = [...hooksOf(route.onSend), answerNotModified];
  });
}

Object.assign(conditionalGetPlugin, { [appWide]: true });
export default conditionalGetPlugin;
