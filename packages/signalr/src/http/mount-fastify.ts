import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { HubServer } from '../hub-server.ts';
import { HttpDispatcher, HUB_METHODS, NEGOTIATE_METHOD, type HubRoute } from './dispatcher.ts';
import { listenForUpgrades } from './upgrades.ts';

/**
 * Registers the hub's routes at `path` on a Fastify instance, plus the WebSocket upgrade on its
 * underlying server. Fastify's close (preClose) closes the hub's connections, so it does not hang on them.
 */
export async function registerFastifyHub(
  fastify: FastifyInstance,
  path: string,
  hub: HubServer,
): Promise<void> {
  const dispatcher = new HttpDispatcher(hub, path);
  const handler =
    (route: HubRoute) =>
    (request: FastifyRequest, reply: FastifyReply): void => {
      // Headers set by earlier hooks (CORS, security headers) would be lost with the hijack; carry them over.
      for (const [name, value] of Object.entries(reply.getHeaders())) {
        if (value !== undefined) reply.raw.setHeader(name, value);
      }
      reply.hijack();
      void dispatcher.handleRequest(request.raw, reply.raw, route);
    };
  await fastify.register(async (scope) => {
    // The dispatcher streams bodies itself (records are parsed as they arrive), so Fastify must not read them.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    // Only the methods each route takes (no HEAD either): any other is the app's to answer, like a method any of its
    // routes does not take, so that what the app says a path takes (`Allow`, OPTIONS) stays true.
    const hubRoute = { method: [...HUB_METHODS], exposeHeadRoute: false, handler: handler('hub') };
    scope.route({ ...hubRoute, url: path });
    // `${path}/` is the hub too, as on ASP.NET and the node mount; an instance with ignoreTrailingSlash has it already.
    if (!scope.hasRoute({ method: 'GET', url: `${path}/` })) scope.route({ ...hubRoute, url: `${path}/` });
    scope.route({ method: NEGOTIATE_METHOD, url: `${path}/negotiate`, handler: handler('negotiate') });
  });
  listenForUpgrades(fastify.server, dispatcher);
  fastify.addHook('preClose', async () => hub.close());
}
