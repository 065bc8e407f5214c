import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import Fastify, {
  errorCodes,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
} from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { scan } from 'secure-json-parse';
import type { Logger } from '../logging/logger.ts';
import { registerProblemDetails, sendErrorProblem, writeMalformedRequestProblem } from './problem-details.ts';

export const BODY_LIMIT_BYTES = 64 * 1024;
const SAFE_REQUEST_ID = /^[\w.:-]{1,128}$/;

export type HttpServer = FastifyInstance<
  Server,
  IncomingMessage,
  ServerResponse,
  FastifyBaseLogger,
  ZodTypeProvider
>;

/** A Fastify instance with the project's conventions: zod schemas, problem+json errors, request ids. */
export function createHttpServer(logger: Logger): HttpServer {
  const app = Fastify<Server, IncomingMessage, ServerResponse, FastifyBaseLogger>({
    loggerInstance: logger,
    bodyLimit: BODY_LIMIT_BYTES,
    // A caller's x-request-id is kept when it is safe to log; otherwise we make one.
    requestIdHeader: false,
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Requests the router turns away (undecodable path, over-long parameter) get problem+json like the rest.
    frameworkErrors: sendErrorProblem,
    clientErrorHandler: writeMalformedRequestProblem,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  }).withTypeProvider<ZodTypeProvider>();
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, parseJsonBody);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id);
  });
  registerProblemDetails(app);
  return app;
}

/**
 * Fastify's JSON parser, saying why a body is rejected: its own says "not valid JSON" even for valid JSON with a
 * `__proto__` key. Same error codes; a leading byte order mark is ignored as before.
 */
function parseJsonBody(
  _request: FastifyRequest,
  body: string,
  done: (error: Error | null, body?: unknown) => void,
): void {
  if (body.length === 0) return done(new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(), undefined);
  const invalid = (message: string) =>
    done(Object.assign(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), { message }), undefined);
  let value: unknown;
  try {
    value = JSON.parse(body.charCodeAt(0) === 0xfeff ? body.slice(1) : body);
  } catch (error) {
    return invalid(`Body is not valid JSON: ${(error as Error).message}`);
  }
  try {
    // Once merged into an object, such a key would replace its prototype.
    if (value !== null && typeof value === 'object')
      scan(value, { protoAction: 'error', constructorAction: 'error' });
  } catch {
    return invalid(
      'Body must not contain a "__proto__" key, or a "constructor" key holding a "prototype" key',
    );
  }
  done(null, value);
}
