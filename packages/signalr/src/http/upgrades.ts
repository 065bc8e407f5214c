import { ServerResponse, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { closeAfterWrites, refuseOnSocket, type HttpDispatcher } from './dispatcher.ts';

export function pathnameOf(req: IncomingMessage): string {
  const raw = req.url ?? '/';
  const query = raw.indexOf('?');
  return query === -1 ? raw : raw.slice(0, query);
}

/** The hubs mounted on each server: one 'upgrade' listener serves them all. */
const mountedHubs = new WeakMap<Server, HttpDispatcher[]>();

/**
 * Takes the hub's WebSocket upgrades off `server`. Once a server has an 'upgrade' listener, Node hands it every
 * request that asks to switch protocols, whatever its path or protocol (`curl --http2` asks for h2c on every
 * plain-HTTP request): one no other listener is there to see is answered as the plain request it also is, since a
 * server may ignore Upgrade (RFC 9110 §7.8), rather than dropped unanswered. Every hub of a server shares one
 * listener, so that with several hubs such a request is still answered rather than left to each of the others.
 */
export function listenForUpgrades(server: Server, dispatcher: HttpDispatcher): void {
  const mounted = mountedHubs.get(server);
  if (mounted) {
    mounted.push(dispatcher);
    return;
  }
  const dispatchers = [dispatcher];
  mountedHubs.set(server, dispatchers);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const pathname = pathnameOf(req);
    const hub =
      req.headers.upgrade?.toLowerCase() === 'websocket'
        ? dispatchers.find((candidate) => candidate.route(pathname) === 'hub')
        : undefined;
    if (hub) void hub.handleUpgrade(req, socket, head);
    else if (server.listenerCount('upgrade') === 1) answerWithoutUpgrade(server, req, socket);
  });
}

/** Throws when a hub is mounted on `server` at `path` already: the later one would take only some of its requests. */
export function assertPathFree(server: Server, path: string): void {
  if (mountedHubs.get(server)?.some((mounted) => mounted.route(path) === 'hub'))
    throw new Error(`A hub is mounted at '${path}' on this server already.`);
}

type UpgradedSocket = Duplex & { readonly _httpMessage?: ServerResponse | null };

/**
 * Hands an upgrade request to the server's request listeners. Node's parser has let go of the connection, so it
 * closes after this response, and a body (its bytes are no longer read as the request's) cannot be taken.
 */
function answerWithoutUpgrade(server: Server, req: IncomingMessage, socket: UpgradedSocket): void {
  // Node leaves an upgraded socket without an error listener: a client gone meanwhile must not crash the process.
  socket.on('error', () => socket.destroy());
  // A response to an earlier request on this connection (pipelined) is still being written: this one comes after it.
  const earlier = socket._httpMessage;
  if (earlier) earlier.once('finish', () => process.nextTick(answerInTurn, server, req, socket));
  else answerInTurn(server, req, socket);
}

function answerInTurn(server: Server, req: IncomingMessage, socket: Duplex): void {
  const { 'content-length': length, 'transfer-encoding': chunked } = req.headers;
  if (chunked !== undefined || (length !== undefined && length !== '0'))
    return refuseOnSocket(
      socket,
      400,
      'This server does not switch protocols here: send a request with a body without Upgrade.',
    );
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.once('finish', () => closeAfterWrites(socket));
  // A client gone before the answer is whole aborted its request, as on any other connection.
  socket.once('close', () => res.writableFinished || req.destroy());
  server.emit('request', req, res);
}
