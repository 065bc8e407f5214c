import { ForbiddenError, HubError, HubServer, defineHub, type Authenticate } from '@tbe/signalr';
import type { ReplayLogEntry } from '../../application/ports/replay-log.ts';
import { HubNames, type ConnectedMessage } from '../../contracts/notifications.ts';
import { mayAct, type TokenVerifier } from '../../infrastructure/auth/jwt-verifier.ts';
import type { Logger } from '../../infrastructure/logging/logger.ts';

/** Clients send any JSON; ASP.NET binds `string groupName` and refuses the rest, and so do we. */
function groupName(value: unknown): string {
  if (typeof value !== 'string') throw new HubError('The group name must be a string.');
  return value;
}

const notificationsHub = defineHub({
  methods: {
    [HubNames.joinGroup]: (context, name: unknown) =>
      context.groups.add(context.connectionId, groupName(name)),
    [HubNames.leaveGroup]: (context, name: unknown) =>
      context.groups.remove(context.connectionId, groupName(name)),
  },
  async onConnected(context) {
    await context.groups.add(context.connectionId, HubNames.studentsGroup);
    const connected: ConnectedMessage = {
      clientId: context.connectionId,
      timestamp: new Date().toISOString(),
    };
    await context.clients.caller.send(HubNames.connected, connected);
  },
});

/** A reader's token, as `Authorization: Bearer` or the `access_token` query parameter the SignalR clients send. */
function readersOnly(verifier: TokenVerifier): Authenticate {
  return async ({ token }) => {
    if (!token) return null;
    const caller = await verifier.verify(token); // a rejection is a 401
    if (!mayAct(caller, 'reader')) throw new ForbiddenError();
    return { id: caller.subject, claims: { role: caller.role } };
  };
}

/**
 * The hub `/hubs/notifications`, without a backplane: every instance tails the replay log and sends each entry
 * to its own connections, so a backplane would deliver every notification twice. With a verifier (auth on),
 * every request of a connection must carry a reader's token.
 */
export async function createNotificationsHub(verifier: TokenVerifier | undefined): Promise<HubServer> {
  return HubServer.create({
    hub: notificationsHub,
    ...(verifier ? { authenticate: readersOnly(verifier) } : {}),
  });
}

/** Sends a tailed entry to group `Students` and to its student's own group (once per connection). */
export function sendToHub(hub: HubServer, entry: ReplayLogEntry, logger: Logger): void {
  hub.clients
    .groups([HubNames.studentsGroup, HubNames.studentGroup(entry.subject)])
    .send(entry.type, JSON.parse(entry.data))
    .catch((error: unknown) => logger.warn({ err: error, id: entry.id }, 'hub send failed'));
}
