/** The authenticated caller, as returned by the `authenticate` hook. */
export interface HubUser {
  /** Used by `clients.user(id)`; connections without an id are anonymous. */
  readonly id?: string;
  readonly claims?: Readonly<Record<string, unknown>>;
}

/** Who a send reaches. "except" lists hold connection ids. */
export type SendScope =
  | { readonly kind: 'all'; readonly except?: readonly string[] }
  | { readonly kind: 'connections'; readonly ids: readonly string[] }
  | { readonly kind: 'groups'; readonly names: readonly string[]; readonly except?: readonly string[] }
  | { readonly kind: 'users'; readonly ids: readonly string[] };

export interface ClientProxy {
  /** Invokes `target` on every client in scope (no result). Resolves once handed to local sockets and the backplane. */
  send(target: string, ...args: unknown[]): Promise<void>;
}

/** One connection: besides sending, it can invoke a client handler and await its return value. */
export interface SingleClientProxy extends ClientProxy {
  /**
   * Calls `target` on the client and resolves with what its handler returns ("client results"). Rejects
   * with the client's error, or when the connection ends first or is not on this instance.
   */
  invoke(target: string, ...args: unknown[]): Promise<unknown>;
  /**
   * `invoke`, given up once `signal` aborts (ASP.NET's `InvokeAsync` with a `CancellationToken`): it rejects with the
   * signal's reason, and the client's answer, should it come later, is ignored. `AbortSignal.timeout(ms)` bounds a
   * client result in time.
   */
  invokeUntil(signal: AbortSignal, target: string, ...args: unknown[]): Promise<unknown>;
}

export interface HubClients {
  readonly all: ClientProxy;
  allExcept(connectionIds: readonly string[]): ClientProxy;
  client(connectionId: string): SingleClientProxy;
  clients(connectionIds: readonly string[]): ClientProxy;
  /** A connection in several of the groups gets the message once. */
  group(name: string): ClientProxy;
  groups(names: readonly string[]): ClientProxy;
  groupExcept(name: string, connectionIds: readonly string[]): ClientProxy;
  /** Every connection of the user (`HubUser.id`). */
  user(userId: string): ClientProxy;
  users(userIds: readonly string[]): ClientProxy;
}

/** The clients as seen from one connection's hub call. */
export interface CallerClients extends HubClients {
  readonly caller: SingleClientProxy;
  readonly others: ClientProxy;
  othersInGroup(name: string): ClientProxy;
}

export interface GroupManager {
  /** Adding twice or removing a non-member is harmless; only connections on this instance can be managed. */
  add(connectionId: string, group: string): Promise<void>;
  remove(connectionId: string, group: string): Promise<void>;
}

export interface HubCallContext {
  readonly connectionId: string;
  readonly user: HubUser | undefined;
  readonly clients: CallerClients;
  readonly groups: GroupManager;
  /**
   * Aborted when the call should stop: for a `streams` method, when the client cancels the stream or the
   * connection ends; for the others and the hooks, when the connection ends. Pass it to what the method
   * awaits (`events.on(emitter, name, { signal })`, `fetch`), as ASP.NET hubs use their CancellationToken.
   */
  readonly signal: AbortSignal;
}

/**
 * A hub method: the context, then the client's arguments, then one AsyncIterable per uploaded stream.
 * Their count must match the declared parameter count (`Function.length - 1`). Returns a value (or a
 * promise) for `invoke()` and `send()`.
 */
export type HubMethod = (context: HubCallContext, ...args: never[]) => unknown;

/** A method that serves `stream()`: parameters as a HubMethod; it returns (or resolves to) the items to send. */
export type HubStreamMethod = (
  context: HubCallContext,
  ...args: never[]
) => AsyncIterable<unknown> | Promise<AsyncIterable<unknown>>;

export interface HubDefinition {
  /** Matched case-insensitively, as ASP.NET does. */
  readonly methods: Readonly<Record<string, HubMethod>>;
  /**
   * Server-to-client streams, callable only with `stream()` (and `methods` only without it): declared apart
   * so that the wrong kind of call is refused before the method runs, as ASP.NET does.
   */
  readonly streams?: Readonly<Record<string, HubStreamMethod>>;
  /** Runs after the handshake; a throw closes the connection with an error. */
  readonly onConnected?: (context: HubCallContext) => void | Promise<void>;
  readonly onDisconnected?: (context: HubCallContext, error: Error | undefined) => void | Promise<void>;
}

/** Identity helper that keeps the hub's literal type while checking it against HubDefinition. */
export function defineHub<const T extends HubDefinition>(hub: T): T {
  return hub;
}
