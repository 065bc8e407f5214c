import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { HubServer } from '../hub-server.ts';
import { HttpDispatcher } from './dispatcher.ts';
import { assertPathFree, listenForUpgrades, pathnameOf } from './upgrades.ts';

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * Serves the hub at `path` on a node:http server (its WebSocket upgrades included). Requests for other
 * paths go to the request listeners the server already had, or get 404 when there are none.
 */
export function mountOnHttpServer(server: Server, path: string, hub: HubServer): void {
  assertPathFree(server, path);
  const dispatcher = new HttpDispatcher(hub, path);
  const previous = server.listeners('request') as RequestListener[];
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const route = dispatcher.route(pathnameOf(req));
    if (route) {
      void dispatcher.handleRequest(req, res, route);
    } else if (previous.length > 0) {
      for (const listener of previous) listener.call(server, req, res);
    } else {
      res.writeHead(404).end();
    }
  });
  listenForUpgrades(server, dispatcher);
}
