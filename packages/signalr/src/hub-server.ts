import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Backplane, BackplaneMessage } from './backplane/backplane.ts';
import { Connection, type ConnectionHost, type ConnectionLimits, type HubMethodEntry } from './connection.ts';
import type {
  CallerClients,
  ClientProxy,
  GroupManager,
  HubCallContext,
  HubClients,
  HubDefinition,
  HubUser,
  SendScope,
  SingleClientProxy,
} from './hub.ts';
import { OutgoingMessage } from './outgoing-message.ts';
import { MessageType } from './protocol/messages.ts';
import { TRANSPORT_KINDS, type TransportKind, WriteBatcher } from './transports/transport.ts';

/** What the `authenticate` hook sees of a request. */
export interface AuthRequest {
  /** The bearer token from `Authorization: Bearer …`, else the `access_token` query parameter. */
  readonly token: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly url: URL;
}

/**
 * Returns the caller (`{}` for anonymous) or null to reject the request with 401; throw ForbiddenError for 403, and
 * AuthenticationUnavailableError for 503 (the hook cannot decide now).
 */
export type Authenticate = (request: AuthRequest) => HubUser | null | Promise<HubUser | null>;

/**
 * Called for every new connection (a negotiate, or a WebSocket without an id) with its user: returns what the hub
 * calls, once, when that connection ends; throws ConnectionRefusedError to turn it away. How many connections a
 * user or the server may hold is the app's to count, as it may share the limit with endpoints of its own.
 */
export type Admit = (user: HubUser | undefined) => () => void;

export interface HubServerOptions {
  readonly hub: HubDefinition;
  readonly authenticate?: Authenticate;
  readonly admit?: Admit;
  /** Fans sends to all / groups / users / other instances' connections out across server instances. */
  readonly backplane?: Backplane;
  /** Server pings after this long without sending (not on long polling). Default 15 s. */
  readonly keepAliveIntervalMs?: number;
  /** Armed after the client's first ping: silence this long closes the connection. Default 30 s. */
  readonly clientTimeoutMs?: number;
  /** Default 15 s. */
  readonly handshakeTimeoutMs?: number;
  /** A connection with no attached transport (no socket, no poll) this long is disposed. Default 15 s. */
  readonly disconnectTimeoutMs?: number;
  /**
   * Connections negotiated whose client has not attached a transport yet: past this many, the oldest is disposed to
   * make room. Such a connection holds no socket, only memory and its `admit` slot, so without a bound a client that
   * only negotiates could take every slot at no cost to itself, for `disconnectTimeoutMs` at a time. A real client
   * attaches within milliseconds of its negotiate. Default 1,000.
   */
  readonly maxUnattachedConnections?: number;
  /** How long a poll is held without data. Default 90 s. */
  readonly longPollTimeoutMs?: number;
  /** Largest inbound hub message. Default 32 KiB. */
  readonly maxMessageSize?: number;
  /**
   * Outbound bytes that may pile up behind what a client has not taken yet before it is closed as too slow
   * (a single large message or burst does not count). Default 1 MiB.
   */
  readonly maxBufferedBytes?: number;
  /** Offer stateful reconnect to clients that ask for it. Default true. */
  readonly allowStatefulReconnect?: boolean;
  /**
   * Unacked outbound bytes kept per stateful connection; past it, sends to it wait for the client's Acks. It is
   * closed with allowReconnect when no Ack frees space within `clientTimeoutMs`, or within 5 s while what waits
   * passes `maxBufferedBytes`. Default 1 MiB.
   */
  readonly statefulReconnectBufferSize?: number;
  /** Transports offered by negotiate, in preference order. Default all three. */
  readonly transports?: readonly TransportKind[];
  /**
   * Exceptions from hub methods (other than HubError) and hooks, and failures answering an HTTP request of the hub
   * (a 500, a WebSocket upgrade dropped): clients only get a generic text, so this is where the app logs them.
   * `target` is the hub method, undefined for hooks; a failure answering a request has `request` (its method and
   * path) instead of `connectionId`.
   */
  readonly onError?: (error: unknown, where: ErrorSite) => void;
  /**
   * Once per WebSocket upgrade request the hub takes, when it is answered: 101, or the status it was refused with.
   * Such a request never reaches the app's HTTP framework (its hooks, its access log, its metrics): this is where
   * the app logs and counts it. `durationMs`: from the request to its answer.
   */
  readonly onUpgrade?: (request: IncomingMessage, status: number, durationMs: number) => void;
}

export type ErrorSite =
  | { readonly connectionId: string; readonly target?: string; readonly request?: undefined }
  | { readonly request: string; readonly connectionId?: undefined; readonly target?: undefined };

export interface HubServerStats {
  readonly connections: number;
  readonly byTransport: Readonly<Record<TransportKind, number>>;
}

/** 16 random bytes, base64url: connection ids (public) and tokens (secret). */
function randomId(): string {
  return randomBytes(16).toString('base64url');
}

/**
 * The hub runtime: connections, groups, users, sends and timers. Mount it on HTTP with
 * `mountOnHttpServer` or `registerFastifyHub`; send from outside hub calls through `clients`.
 */
export class HubServer implements ConnectionHost {
  readonly limits: ConnectionLimits;
  readonly longPollTimeoutMs: number;
  readonly allowStatefulReconnect: boolean;
  readonly transports: readonly TransportKind[];
  readonly authenticate: Authenticate | undefined;
  readonly instanceId = randomId();
  readonly batcher = new WriteBatcher();
  readonly clients: HubClients;
  readonly groups: GroupManager;
  private readonly methods = new Map<string, HubMethodEntry>();
  private readonly byToken = new Map<string, Connection>();
  private readonly byId = new Map<string, Connection>();
  /** Negotiated, no transport attached yet; oldest first. */
  private readonly unattached = new Set<Connection>();
  private readonly maxUnattached: number;
  private readonly groupMembers = new Map<string, Set<Connection>>();
  private readonly userConnections = new Map<string, Set<Connection>>();
  private readonly timer: NodeJS.Timeout;
  private clock = Date.now();
  private unsubscribe: (() => Promise<void>) | undefined;
  private closed = false;

  private constructor(private readonly options: HubServerOptions) {
    this.limits = {
      keepAliveIntervalMs: options.keepAliveIntervalMs ?? 15_000,
      clientTimeoutMs: options.clientTimeoutMs ?? 30_000,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 15_000,
      disconnectTimeoutMs: options.disconnectTimeoutMs ?? 15_000,
      maxMessageSize: options.maxMessageSize ?? 32 * 1024,
      maxBufferedBytes: options.maxBufferedBytes ?? 1024 * 1024,
      statefulReconnectBufferSize: options.statefulReconnectBufferSize ?? 1024 * 1024,
    };
    this.longPollTimeoutMs = options.longPollTimeoutMs ?? 90_000;
    this.maxUnattached = options.maxUnattachedConnections ?? 1_000;
    this.allowStatefulReconnect = options.allowStatefulReconnect ?? true;
    this.transports = options.transports ?? TRANSPORT_KINDS;
    this.authenticate = options.authenticate;
    const declared = [
      ...Object.entries(options.hub.methods).map(([name, invoke]) => ({ name, invoke, streaming: false })),
      ...Object.entries(options.hub.streams ?? {}).map(([name, invoke]) => ({
        name,
        invoke,
        streaming: true,
      })),
    ];
    for (const { name, invoke, streaming } of declared) {
      const key = name.toLowerCase();
      // Names match case-insensitively, so two declarations would silently shadow one another.
      if (this.methods.has(key)) throw new Error(`The hub declares '${name}' more than once.`);
      this.methods.set(key, { invoke, streaming });
    }
    this.clients = this.hubClients();
    this.groups = {
      add: async (connectionId, group) => this.addToGroup(connectionId, group),
      remove: async (connectionId, group) => this.removeFromGroup(connectionId, group),
    };
    const { keepAliveIntervalMs, clientTimeoutMs, handshakeTimeoutMs, disconnectTimeoutMs } = this.limits;
    const shortest = Math.min(keepAliveIntervalMs, clientTimeoutMs, handshakeTimeoutMs, disconnectTimeoutMs);
    // A 1-s tick like ASP.NET, finer when tests configure short timers.
    const tickMs = Math.max(10, Math.min(1000, Math.floor(shortest / 5)));
    this.timer = setInterval(() => this.tick(), tickMs).unref();
  }

  /** Creates the server and, with a backplane, waits until it receives other instances' sends. */
  static async create(options: HubServerOptions): Promise<HubServer> {
    const server = new HubServer(options);
    if (options.backplane) {
      server.unsubscribe = await options.backplane.subscribe((message) => server.fromBackplane(message));
    }
    return server;
  }

  now(): number {
    return this.clock;
  }

  findMethod(name: string): HubMethodEntry | undefined {
    return this.methods.get(name.toLowerCase());
  }

  /** Once close() began: new connections are refused, as its timers and sends have stopped. */
  isClosed(): boolean {
    return this.closed;
  }

  /** `negotiateVersion` 0 sends no token, so the client uses the connection id as `id=` (as in ASP.NET). */
  /** Throws ConnectionRefusedError when the `admit` hook turns the connection away. */
  createConnection(user: HubUser | undefined, statefulAllowed: boolean, negotiateVersion = 1): Connection {
    const release = this.options.admit?.(user);
    // Once admitted: a negotiate refused (say, past its user's cap) must not cost another client its connection.
    if (this.unattached.size >= this.maxUnattached) this.unattached.values().next().value?.close();
    const id = randomId();
    const token = negotiateVersion === 0 ? id : randomId();
    const connection = new Connection(this, id, token, user, statefulAllowed, release);
    this.byToken.set(connection.token, connection);
    this.unattached.add(connection);
    return connection;
  }

  attached(connection: Connection): void {
    this.unattached.delete(connection);
  }

  findConnection(token: string): Connection | undefined {
    return this.byToken.get(token);
  }

  /** Drops a closed connection's token right away (its transport has said its last word). */
  forget(connection: Connection): void {
    if (this.byToken.get(connection.token) === connection) this.byToken.delete(connection.token);
  }

  contextFor(connection: Connection, signal?: AbortSignal): HubCallContext {
    const self = [connection.id];
    const clients: CallerClients = {
      ...this.hubClients(),
      caller: this.singleProxy(connection.id),
      others: this.proxy({ kind: 'all', except: self }),
      othersInGroup: (name) => this.proxy({ kind: 'groups', names: [name], except: self }),
    };
    return {
      connectionId: connection.id,
      user: connection.user,
      clients,
      groups: this.groups,
      // Read lazily: most calls never look, and an idle connection then carries no AbortController.
      get signal() {
        return signal ?? connection.signal;
      },
    };
  }

  async connected(connection: Connection): Promise<void> {
    this.byId.set(connection.id, connection);
    const userId = connection.user?.id;
    if (userId !== undefined) addToIndex(this.userConnections, userId, connection);
    await this.options.hub.onConnected?.(this.contextFor(connection));
  }

  disconnected(connection: Connection, error: Error | undefined): void {
    this.unattached.delete(connection);
    // Only long polling needs the token after the end (to answer the last poll with 204, not 404).
    if (connection.transportKind !== 'LongPolling') this.forget(connection);
    if (this.byId.get(connection.id) !== connection) return;
    const hook = this.options.hub.onDisconnected;
    // The hook runs while the connection can still be found, then membership goes.
    const finish = (): void => {
      this.byId.delete(connection.id);
      const userId = connection.user?.id;
      if (userId !== undefined) removeFromIndex(this.userConnections, userId, connection);
      for (const group of connection.groups ?? []) removeFromIndex(this.groupMembers, group, connection);
      connection.groups = undefined;
    };
    if (!hook) return finish();
    void Promise.resolve()
      .then(() => hook(this.contextFor(connection), error))
      .catch((hookError: unknown) => this.reportError(hookError, connection, undefined))
      .finally(finish);
  }

  reportError(error: unknown, connection: Connection, target: string | undefined): void {
    this.report(error, { connectionId: connection.id, target });
  }

  /** A failure answering an HTTP request of the hub (`request`: its method and path), other than the client's. */
  reportRequestError(error: unknown, request: string): void {
    this.report(error, { request });
  }

  /** A WebSocket upgrade answered (see HubServerOptions.onUpgrade). */
  reportUpgrade(request: IncomingMessage, status: number, durationMs: number): void {
    try {
      this.options.onUpgrade?.(request, status, durationMs);
    } catch (error) {
      this.report(error, { request: `${request.method ?? 'GET'} ${request.url ?? ''} (WebSocket)` });
    }
  }

  private report(error: unknown, where: ErrorSite): void {
    try {
      this.options.onError?.(error, where);
    } catch {
      // A failing error handler must not take the connection (or the request) down with it.
    }
  }

  /** Sends an invocation of `target` to everyone in `scope`, on this instance and through the backplane. */
  async send(scope: SendScope, target: string, args: readonly unknown[]): Promise<void> {
    if (this.closed) return;
    this.deliver(scope, OutgoingMessage.of({ type: MessageType.Invocation, target, arguments: args }));
    const backplane = this.options.backplane;
    if (!backplane) return;
    if (scope.kind === 'connections' && scope.ids.every((id) => this.byId.has(id))) return;
    await backplane.publish({ origin: this.instanceId, scope, target, arguments: args });
  }

  /**
   * Ends a connection on this instance with a Close message. With `allowReconnect`, clients using
   * automatic reconnect come back (with a new connection id); without it the close is final.
   */
  closeConnection(connectionId: string, error?: string, allowReconnect = false): boolean {
    const connection = this.byId.get(connectionId);
    connection?.close(error, allowReconnect);
    return connection !== undefined;
  }

  stats(): HubServerStats {
    const byTransport: Record<TransportKind, number> = { WebSockets: 0, ServerSentEvents: 0, LongPolling: 0 };
    for (const connection of this.byId.values()) {
      if (connection.transportKind) byTransport[connection.transportKind]++;
    }
    return { connections: this.byId.size, byTransport };
  }

  /** Closes every connection (with allowReconnect, so clients come back to another instance) and stops timers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    // Closing forgets each token, except long polling's: its next poll still fetches the Close, then gets 204 (a
    // 404 would hide the reason from the client).
    for (const connection of this.byToken.values()) connection.close('Server is shutting down.', true);
    await this.unsubscribe?.();
  }

  private proxy(scope: SendScope): ClientProxy {
    return { send: (target, ...args) => this.send(scope, target, args) };
  }

  private singleProxy(connectionId: string): SingleClientProxy {
    const invoke = (target: string, args: readonly unknown[], signal?: AbortSignal) => {
      const connection = this.byId.get(connectionId);
      if (!connection)
        return Promise.reject(new Error(`Connection '${connectionId}' is not on this instance.`));
      return connection.invokeClient(target, args, signal);
    };
    return {
      ...this.proxy({ kind: 'connections', ids: [connectionId] }),
      invoke: (target, ...args) => invoke(target, args),
      invokeUntil: (signal, target, ...args) => invoke(target, args, signal),
    };
  }

  private hubClients(): HubClients {
    return {
      all: this.proxy({ kind: 'all' }),
      allExcept: (ids) => this.proxy({ kind: 'all', except: ids }),
      client: (id) => this.singleProxy(id),
      clients: (ids) => this.proxy({ kind: 'connections', ids }),
      group: (name) => this.proxy({ kind: 'groups', names: [name] }),
      groups: (names) => this.proxy({ kind: 'groups', names }),
      groupExcept: (name, ids) => this.proxy({ kind: 'groups', names: [name], except: ids }),
      user: (id) => this.proxy({ kind: 'users', ids: [id] }),
      users: (ids) => this.proxy({ kind: 'users', ids }),
    };
  }

  private fromBackplane(message: BackplaneMessage): void {
    if (message.origin === this.instanceId || this.closed) return;
    const invocation = { type: MessageType.Invocation, target: message.target, arguments: message.arguments };
    this.deliver(message.scope, OutgoingMessage.of(invocation));
  }

  /** Local delivery; the message is serialized at most once per protocol whatever the audience. */
  private deliver(scope: SendScope, out: OutgoingMessage): void {
    const except =
      scope.kind !== 'connections' && scope.kind !== 'users' && scope.except?.length
        ? new Set(scope.except)
        : undefined;
    const sendTo = (connection: Connection): void => {
      if (!except?.has(connection.id)) connection.send(out);
    };
    switch (scope.kind) {
      case 'all':
        for (const connection of this.byId.values()) sendTo(connection);
        return;
      case 'connections':
        for (const id of new Set(scope.ids)) {
          const connection = this.byId.get(id);
          if (connection) sendTo(connection);
        }
        return;
      case 'groups':
        for (const connection of union(this.groupMembers, scope.names)) sendTo(connection);
        return;
      case 'users':
        for (const connection of union(this.userConnections, scope.ids)) sendTo(connection);
        return;
    }
  }

  private addToGroup(connectionId: string, group: string): void {
    const connection = this.byId.get(connectionId);
    if (!connection) return;
    (connection.groups ??= new Set()).add(group);
    addToIndex(this.groupMembers, group, connection);
  }

  private removeFromGroup(connectionId: string, group: string): void {
    const connection = this.byId.get(connectionId);
    if (!connection?.groups?.delete(group)) return;
    removeFromIndex(this.groupMembers, group, connection);
  }

  private tick(): void {
    const now = (this.clock = Date.now());
    const linger = this.limits.disconnectTimeoutMs;
    for (const [token, connection] of this.byToken) {
      // Closed long-polling connections stay findable a while so the client gets its final 204, not a 404.
      if (connection.state === 'closed') {
        if (now - connection.closedAt >= linger) this.byToken.delete(token);
      } else {
        connection.tick(now);
      }
    }
  }
}

function addToIndex(index: Map<string, Set<Connection>>, key: string, connection: Connection): void {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(connection);
}

function removeFromIndex(index: Map<string, Set<Connection>>, key: string, connection: Connection): void {
  const set = index.get(key);
  if (!set) return;
  set.delete(connection);
  if (set.size === 0) index.delete(key);
}

/** The members of several keys, each once; a single key is iterated without copying. */
function union(index: Map<string, Set<Connection>>, keys: readonly string[]): Iterable<Connection> {
  if (keys.length === 1) return index.get(keys[0]!) ?? [];
  const members = new Set<Connection>();
  for (const key of keys) for (const connection of index.get(key) ?? []) members.add(connection);
  return members;
}
