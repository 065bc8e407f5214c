import {
  AuthenticationUnavailableError,
  ConnectionRefusedError,
  ForbiddenError,
  HubError,
  HubServer,
  defineHub,
  type Authenticate,
  type HubCallContext,
} from '@tbe/signalr';
import { DependencyUnavailableError } from '../../application/errors.ts';
import type { ReplayLogEntry, ReplayLogRetention } from '../../application/ports/replay-log.ts';
import {
  HubNames,
  NotificationRoutes,
  type ConnectedMessage,
  type ResetMessage,
} from '../../contracts/notifications.ts';
import { mayAct, type TokenVerifier } from '../../infrastructure/auth/jwt-verifier.ts';
import type { Logger } from '../../infrastructure/logging/logger.ts';
import type { ObserveUpgrade } from '../../infrastructure/observability/http-observability.ts';
import type { ConnectionLimits } from './connection-limits.ts';

// Group memberships live in memory for as long as a connection does: a client must not grow them without bound.
const MAX_GROUPS_PER_CONNECTION = 100;
const MAX_GROUP_NAME_LENGTH = 200;

const MISSED_BY_THIS_INSTANCE = 'notifications left the replay log before this instance could send them';

/** Clients send any JSON; ASP.NET binds `string groupName` and refuses the rest, and so do we. */
function groupName(value: unknown): string {
  if (typeof value !== 'string') throw new HubError('The group name must be a string.');
  if (value.length > MAX_GROUP_NAME_LENGTH)
    throw new HubError(`The group name must be at most ${MAX_GROUP_NAME_LENGTH} characters.`);
  // UUIDs are case-insensitive (RFC 9562 §4), and the REST API takes an id in upper case as the same student: so does
  // its group, which notifications address with the id as stored (lower case).
  const student = STUDENT_GROUP.exec(value);
  return student ? HubNames.studentGroup(student[1]!.toLowerCase()) : value;
}

const STUDENT_GROUP = /^student:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

/** The hub, with the groups each of its connections is in (to bound them). */
function notificationsHub() {
  const memberships = new Map<string, Set<string>>();
  const groupsOf = (connectionId: string) => {
    let groups = memberships.get(connectionId);
    if (!groups) memberships.set(connectionId, (groups = new Set()));
    return groups;
  };
  const join = async (context: HubCallContext, group: string) => {
    const groups = groupsOf(context.connectionId);
    if (!groups.has(group) && groups.size >= MAX_GROUPS_PER_CONNECTION)
      throw new HubError(`A connection may be in at most ${MAX_GROUPS_PER_CONNECTION} groups.`);
    groups.add(group);
    await context.groups.add(context.connectionId, group);
  };
  return defineHub({
    methods: {
      [HubNames.joinGroup]: (context, name: unknown) => join(context, groupName(name)),
      [HubNames.leaveGroup]: async (context, name: unknown) => {
        const group = groupName(name);
        memberships.get(context.connectionId)?.delete(group);
        await context.groups.remove(context.connectionId, group);
      },
    },
    async onConnected(context) {
      await join(context, HubNames.studentsGroup);
      const connected: ConnectedMessage = {
        clientId: context.connectionId,
        timestamp: new Date().toISOString(),
      };
      await context.clients.caller.send(HubNames.connected, connected);
    },
    onDisconnected(context) {
      memberships.delete(context.connectionId);
    },
  });
}

/** A reader's token, as `Authorization: Bearer` or the `access_token` query parameter the SignalR clients send. */
function readersOnly(verifier: TokenVerifier): Authenticate {
  return async ({ token }) => {
    if (!token) return null;
    // An invalid token is a 401; a key set that cannot be fetched a 503, as from the REST API, so the client
    // keeps its token and retries.
    const caller = await verifier.verify(token).catch((error: unknown) => {
      if (error instanceof DependencyUnavailableError)
        throw new AuthenticationUnavailableError(error.message, { cause: error });
      throw error;
    });
    if (!mayAct(caller, 'reader')) throw new ForbiddenError();
    return { id: caller.subject, claims: { role: caller.role } };
  };
}

/**
 * The hub `/hubs/notifications`, without a backplane: every instance tails the replay log and sends each entry
 * to its own connections, so a backplane would deliver every notification twice. With a verifier (auth on),
 * every request of a connection must carry a reader's token.
 */
export async function createNotificationsHub(
  verifier: TokenVerifier | undefined,
  limits: ConnectionLimits,
  logger: Logger,
  observeUpgrade: ObserveUpgrade,
  longPollTimeoutMs: number,
): Promise<HubServer> {
  return HubServer.create({
    hub: notificationsHub(),
    // A poll held ASP.NET's 90 s outlasts the idle timeout of the proxies in front (nginx's 60 s), which answer 504
    // and so end the client's connection: a quiet poll is answered as often as an SSE stream gets its heartbeat.
    longPollTimeoutMs,
    ...(verifier ? { authenticate: readersOnly(verifier) } : {}),
    // The client is told only that the server failed: the cause is for the log.
    onError: (error, where) => logger.error({ err: error, ...where }, 'hub failed'),
    // Its WebSocket upgrades never reach Fastify: logged and counted as the app's other requests are.
    onUpgrade: (request, status, durationMs) =>
      observeUpgrade(request, NotificationRoutes.hub, status, durationMs),
    // A tenth of the slots at most for negotiates not followed up yet: a flood of them leaves the rest to clients.
    maxUnattachedConnections: Math.min(1_000, Math.ceil(limits.maxConnections / 10)),
    admit: (user) => {
      const slot = limits.take(user?.id);
      if ('refused' in slot)
        throw new ConnectionRefusedError(slot.refused === 'user' ? 429 : 503, limits.explain(slot.refused));
      return slot.release;
    },
  });
}

/** Tells every connection, whichever groups it follows, that its notifications have a gap (`HubNames.reset`). */
export function resetHub(hub: HubServer, retention: ReplayLogRetention, logger: Logger): void {
  const message: ResetMessage = { reason: MISSED_BY_THIS_INSTANCE, oldestId: retention.firstId ?? null };
  hub.clients.all
    .send(HubNames.reset, message)
    .catch((error: unknown) => logger.warn({ err: error }, 'hub reset failed'));
}

/** Sends a tailed entry to group `Students` and to its student's own group (once per connection). */
export function sendToHub(hub: HubServer, entry: ReplayLogEntry, logger: Logger): void {
  hub.clients
    .groups([HubNames.studentsGroup, HubNames.studentGroup(entry.subject)])
    .send(entry.type, JSON.parse(entry.data))
    .catch((error: unknown) => logger.warn({ err: error, id: entry.id }, 'hub send failed'));
}
