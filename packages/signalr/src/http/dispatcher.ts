import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Connection } from '../connection.ts';
import { AuthenticationUnavailableError, ConnectionRefusedError, ForbiddenError } from '../errors.ts';
import type { HubUser } from '../hub.ts';
import type { HubServer } from '../hub-server.ts';
import { LongPollingTransport } from '../transports/long-polling-transport.ts';
import { ServerSentEventsTransport } from '../transports/sse-transport.ts';
import type { TransportKind } from '../transports/transport.ts';
import { WebSocketTransport } from '../transports/websocket-transport.ts';

const TRANSFER_FORMATS: Readonly<Record<TransportKind, readonly string[]>> = {
  WebSockets: ['Text', 'Binary'],
  ServerSentEvents: ['Text'],
  LongPolling: ['Text', 'Binary'],
};

export type HubRoute = 'hub' | 'negotiate';

/**
 * Rejected requests carry the status the spec gives (400/401/403/404/405/409), or 503 from a closed hub or an
 * `authenticate` hook that cannot decide now.
 */
class HttpFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** A 405's `Allow`: the methods the path does take. */
    readonly allow?: string,
  ) {
    super(message);
  }
}

/** The methods each route takes: the hub's transports, and negotiate. */
export const HUB_METHODS = ['GET', 'POST', 'DELETE'] as const;
export const NEGOTIATE_METHOD = 'POST';

/**
 * ws holds a whole WebSocket message before the hub sees it, so this is what one socket can make the server hold.
 * Above what a .NET client sends in one message: its transport pauses the writer at 1 MB buffered.
 */
const MIN_WEBSOCKET_PAYLOAD = 2 * 1024 * 1024;

function ignore(): void {}

/** ASP.NET's answer (400) when a request is for another transport than the connection's. */
function cannotChangeTransports(): HttpFailure {
  return new HttpFailure(400, 'Cannot change transports mid-connection');
}

/**
 * As ASP.NET Core's JwtBearer reads it: the scheme in any case, else the `access_token` query parameter. Two
 * Authorization lines are one header there, the non-empty ones joined by a comma (`Bearer a,Bearer b`: a token no
 * verifier takes); Node keeps only the first, which would let a client's second credential pass unseen. Two
 * `access_token` parameters are joined alike.
 */
function bearerToken(req: IncomingMessage, url: URL): string | undefined {
  const header = joined(req.headersDistinct.authorization ?? []);
  if (header !== undefined && /^Bearer /i.test(header)) return header.slice('Bearer '.length).trim();
  return joined(url.searchParams.getAll('access_token'));
}

/** ASP.NET's StringValues read as one string: the non-empty values, joined by a comma; none is no value. */
function joined(values: readonly string[]): string | undefined {
  const present = values.filter((value) => value !== '');
  return present.length === 0 ? undefined : present.join(',');
}

/**
 * When a 503 says to try again (RFC 9110 §10.2.3), whether the hub is closing, full, or cannot check tokens now: the
 * official clients ignore it, a load balancer or another client may not.
 */
const RETRY_AFTER_SECONDS = '5';

/** The headers of a failure's answer, the same over plain HTTP and to a refused WebSocket upgrade. */
function failureHeaders(status: number, allow: string | undefined): Record<string, string> {
  // A refusal is for this request only (a token, the hub's state now): no cache may answer the next one with it.
  const headers: Record<string, string> = {
    'Content-Type': 'text/plain; charset=utf-8',
    'Cache-Control': 'no-store',
  };
  if (status === 401) headers['WWW-Authenticate'] = 'Bearer';
  if (status === 503) headers['Retry-After'] = RETRY_AFTER_SECONDS;
  if (allow !== undefined) headers.Allow = allow;
  return headers;
}

function sendText(res: ServerResponse, status: number, text: string, allow?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, failureHeaders(status, allow));
  res.end(text);
}

function sendJson(res: ServerResponse, body: unknown): void {
  const json = JSON.stringify(body);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(json) });
  res.end(json);
}

function rejectUpgrade(socket: Duplex, { status, message, allow }: HttpFailure): void {
  const headers = {
    ...failureHeaders(status, allow),
    Connection: 'close',
    'Content-Length': Buffer.byteLength(message),
  };
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
  closeAfterWrites(
    socket,
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${lines.join('')}\r\n${message}`,
  );
}

/**
 * Ends a connection Node's HTTP parser has let go of, once what is written is sent. Closed, not half-closed: nothing
 * reads it any more, and Node's server no longer counts it among the connections it closes when it stops.
 */
export function closeAfterWrites(socket: Duplex, last?: string): void {
  socket.once('finish', () => socket.destroy());
  socket.end(last);
}

/** Answers `status` with `message` (plain text) on a socket Node's HTTP parser has let go of, and closes it. */
export function refuseOnSocket(socket: Duplex, status: number, message: string): void {
  rejectUpgrade(socket, new HttpFailure(status, message));
}

/** The HTTP side of a hub at one path: negotiate, the three transports and their upstream POSTs. */
export class HttpDispatcher {
  private readonly wss: WebSocketServer;
  /** Per connection, the POST whose turn ends last; a new POST reads its body only after it. */
  private readonly lastPost = new WeakMap<Connection, Promise<void>>();

  /** The hub's path in lower case: requests for it match in any letter case, as on ASP.NET. */
  private readonly path: string;

  constructor(
    private readonly hub: HubServer,
    path: string,
  ) {
    this.path = path.toLowerCase();
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      clientTracking: false,
      // Bounds each socket's inbound memory. Far above the hub's own limit, so that the hub decides: an oversized
      // message gets a final Close message, as from ASP.NET, where a bare 1009 would send clients with automatic
      // reconnect back for more.
      maxPayload: Math.max(MIN_WEBSOCKET_PAYLOAD, 8 * hub.limits.maxMessageSize),
    });
  }

  route(pathname: string): HubRoute | undefined {
    const path = pathname.toLowerCase();
    if (path === this.path || path === `${this.path}/`) return 'hub';
    if (path === `${this.path}/negotiate`) return 'negotiate';
    return undefined;
  }

  async handleRequest(req: IncomingMessage, res: ServerResponse, route: HubRoute): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    try {
      if (route === 'negotiate') await this.negotiate(req, res, url);
      else if (req.method === 'GET') await this.get(req, res, url);
      else if (req.method === 'POST') await this.post(req, res, url);
      else if (req.method === 'DELETE') await this.delete(req, res, url);
      else throw new HttpFailure(405, 'Method not allowed.', HUB_METHODS.join(', '));
    } catch (error) {
      // A body left unread (a POST cut short by its connection's close) could go on for good: the answer ends the
      // connection, so the client sends its next request on another rather than after bytes nobody reads.
      if (!req.complete) res.setHeader('Connection', 'close');
      req.resume();
      if (error instanceof HttpFailure) return sendText(res, error.status, error.message, error.allow);
      // A client gone mid-request (a body cut off by a navigation or a lost network) is no failure of ours.
      if (req.socket.destroyed || res.destroyed) return;
      this.hub.reportRequestError(error, `${req.method} ${url.pathname}`);
      sendText(res, 500, 'Internal server error.');
    }
  }

  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const started = performance.now();
    const answered = (status: number) => this.hub.reportUpgrade(req, status, performance.now() - started);
    // Until ws takes the socket over, an error (client gone during auth) must not crash the process.
    socket.on('error', ignore);
    const url = new URL(req.url ?? '/', 'http://localhost');
    let connection: Connection;
    try {
      connection = await this.upgradeTarget(req, url);
    } catch (error) {
      if (error instanceof HttpFailure) {
        rejectUpgrade(socket, error);
        return answered(error.status);
      }
      this.hub.reportRequestError(error, `GET ${url.pathname} (WebSocket)`);
      socket.destroy();
      return answered(500);
    }
    let upgraded = false;
    // ws refuses a handshake it cannot complete itself (405 for a method other than GET, else 400: a missing or
    // malformed Sec-WebSocket-Key, an unsupported version) and closes the socket without calling back.
    socket.once('close', () => upgraded || answered(req.method === 'GET' ? 400 : 405));
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      upgraded = true;
      socket.off('error', ignore);
      connection.attach(new WebSocketTransport(ws, socket, this.hub.batcher, connection));
      answered(101);
    });
  }

  /** Finds the connection a WebSocket belongs to: new (no id), first transport, or a stateful resume. */
  private async upgradeTarget(req: IncomingMessage, url: URL): Promise<Connection> {
    const user = await this.authorize(req, url);
    if (!this.hub.transports.includes('WebSockets'))
      throw new HttpFailure(404, 'WebSockets are not enabled.');
    const token = url.searchParams.get('id');
    // Without an id (or with an empty one, as ASP.NET reads it) the client skipped negotiate: it starts here.
    if (!token) return this.createConnection(user, false);
    const connection = this.existing(token, user);
    if (connection.transportKind === undefined || connection.canResume()) return connection;
    if (connection.transportKind === 'WebSockets')
      throw new HttpFailure(409, 'A WebSocket is already active.');
    throw cannotChangeTransports();
  }

  private async negotiate(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    req.resume();
    if (req.method !== NEGOTIATE_METHOD)
      throw new HttpFailure(405, 'Negotiate requires POST.', NEGOTIATE_METHOD);
    const user = await this.authorize(req, url);
    const requested = url.searchParams.get('negotiateVersion');
    if (requested !== null && !/^\d+$/.test(requested)) {
      sendJson(res, { error: `The client requested an invalid protocol version '${requested}'` });
      return;
    }
    const version = Math.min(Number(requested ?? 0), 1);
    const stateful =
      this.hub.allowStatefulReconnect && url.searchParams.get('useStatefulReconnect') === 'true';
    const connection = this.createConnection(user, stateful, version);
    sendJson(res, {
      negotiateVersion: version,
      connectionId: connection.id,
      ...(version >= 1 ? { connectionToken: connection.token } : {}),
      availableTransports: this.hub.transports.map((transport) => ({
        transport,
        transferFormats: TRANSFER_FORMATS[transport],
      })),
      ...(stateful ? { useStatefulReconnect: true } : {}),
    });
  }

  /** SSE stream or long poll. */
  private async get(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const user = await this.authorize(req, url);
    const connection = this.existing(this.requireToken(url), user, true);
    const wantsEvents = req.headers.accept?.includes('text/event-stream') === true;
    if (wantsEvents) {
      if (!this.hub.transports.includes('ServerSentEvents') || connection.state === 'closed') {
        throw new HttpFailure(404, 'No such connection.');
      }
      if (connection.transportKind === 'ServerSentEvents')
        throw new HttpFailure(409, 'An event stream is already active.');
      if (connection.transportKind !== undefined) throw cannotChangeTransports();
      connection.attach(new ServerSentEventsTransport(res, this.hub.batcher, connection));
      return;
    }
    if (!this.hub.transports.includes('LongPolling'))
      throw new HttpFailure(404, 'Long polling is not enabled.');
    let transport = connection.transport;
    if (connection.transportKind === undefined) {
      if (connection.state === 'closed') throw new HttpFailure(404, 'No such connection.');
      transport = new LongPollingTransport(this.hub.longPollTimeoutMs, this.hub.batcher);
      connection.attach(transport);
    } else if (connection.transportKind !== 'LongPolling') {
      throw cannotChangeTransports();
    }
    if (!(transport instanceof LongPollingTransport)) throw new HttpFailure(404, 'No such connection.');
    // A poll answered at once (data was waiting) is never held when the tick looks: it still shows the client is there.
    connection.polled();
    if (transport.poll(res)) this.hub.forget(connection);
  }

  /** Upstream for SSE and long polling: one or more records, fed to the connection as they arrive. */
  private async post(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const user = await this.authorize(req, url);
    const connection = this.existing(this.requireToken(url), user);
    if (connection.transportKind === 'WebSockets')
      throw new HttpFailure(405, 'POST is not allowed on a WebSocket connection.');
    if (connection.transportKind === undefined) throw new HttpFailure(400, 'No transport is attached yet.');
    // ASP.NET's ProcessSend waits on the connection's write lock: an overlapping POST is read after the
    // earlier ones, whole, so records keep their order (some clients, like Java's, do not wait for replies).
    const previous = this.lastPost.get(connection);
    let endTurn!: () => void;
    const turn = new Promise<void>((resolve) => (endTurn = resolve));
    const last = previous ? previous.then(() => turn) : turn;
    this.lastPost.set(connection, last);
    try {
      await previous;
      if (connection.isClosed()) throw new HttpFailure(404, 'No such connection.');
      for await (const chunk of req) {
        // Ended meanwhile (an oversized or malformed record, a Close): ASP.NET's write to the disposed pipe fails with
        // 404, and the rest of the body is not read (it could go on for good).
        if (connection.isClosed()) throw new HttpFailure(404, 'No such connection.');
        // While an upload is full the rest of the body stays unread, and the POST unanswered, as in ASP.NET.
        await connection.receive(chunk as Buffer);
      }
    } finally {
      endTurn();
      if (this.lastPost.get(connection) === last) this.lastPost.delete(connection);
    }
    res.writeHead(200, { 'Content-Length': 0 });
    res.end();
  }

  /** Long polling's stop(): 202, and any held poll ends with 204. */
  private async delete(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    req.resume();
    const user = await this.authorize(req, url);
    const connection = this.existing(this.requireToken(url), user, true);
    const transport = connection.transport;
    if (!(transport instanceof LongPollingTransport))
      throw new HttpFailure(400, 'DELETE is only for long polling.');
    transport.abort();
    connection.close();
    this.hub.forget(connection);
    res.writeHead(202, { 'Content-Length': 0 });
    res.end();
  }

  /**
   * A closed hub would park a connection where nothing is sent and no timer runs: a client reconnecting at once
   * gets 503 and tries again later (behind a load balancer, at another instance).
   */
  private createConnection(
    user: HubUser | undefined,
    stateful: boolean,
    negotiateVersion?: number,
  ): Connection {
    if (this.hub.isClosed()) throw new HttpFailure(503, 'The server is shutting down.');
    try {
      return this.hub.createConnection(user, stateful, negotiateVersion);
    } catch (error) {
      if (error instanceof ConnectionRefusedError) throw new HttpFailure(error.status, error.message);
      throw error;
    }
  }

  private requireToken(url: URL): string {
    const token = url.searchParams.get('id');
    if (!token) throw new HttpFailure(400, 'Connection ID required.');
    return token;
  }

  /**
   * The connection `token` names, for `user`. Another user (another `id`) gets 403: the token alone does not hand a
   * connection to someone else. ASP.NET only logs that change, and goes on as the new user.
   */
  private existing(token: string, user: HubUser | undefined, allowClosed = false): Connection {
    const connection = this.hub.findConnection(token);
    if (!connection || (!allowClosed && connection.state === 'closed'))
      throw new HttpFailure(404, 'No such connection.');
    if (connection.user?.id !== user?.id)
      throw new HttpFailure(403, 'The connection belongs to another user.');
    return connection;
  }

  /** Runs the authenticate hook on every request; undefined means no hook (anonymous). */
  private async authorize(req: IncomingMessage, url: URL): Promise<HubUser | undefined> {
    const authenticate = this.hub.authenticate;
    if (!authenticate) return undefined;
    let user: HubUser | null;
    try {
      user = await authenticate({ token: bearerToken(req, url), headers: req.headers, url });
    } catch (error) {
      if (error instanceof ForbiddenError) throw new HttpFailure(403, 'Forbidden.');
      if (error instanceof AuthenticationUnavailableError)
        throw new HttpFailure(503, 'Authentication is unavailable; try again later.');
      user = null;
    }
    if (user === null) throw new HttpFailure(401, 'Unauthorized.');
    return user;
  }
}
