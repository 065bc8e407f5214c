import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
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
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id);
  });
  registerProblemDetails(app);
  return app;
}
