import { HubError, HubServer, defineHub } from '@tbe/signalr';
import type { ReplayLogEntry } from '../../application/ports/replay-log.ts';
import { HubNames, type ConnectedMessage } from '../../contracts/notifications.ts';
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

/**
 * The hub `/hubs/notifications`, without a backplane: every instance tails the replay log and sends each entry
 * to its own connections, so a backplane would deliver every notification twice.
 */
export async function createNotificationsHub(): Promise<HubServer> {
  return HubServer.create({ hub: notificationsHub });
}

/** Sends tailed entries to group `Students` and to each student's own group (once per connection). */
export function sendToHub(hub: HubServer, entries: readonly ReplayLogEntry[], logger: Logger): void {
  for (const entry of entries) {
    hub.clients
      .groups([HubNames.studentsGroup, HubNames.studentGroup(entry.subject)])
      .send(entry.type, JSON.parse(entry.data))
      .catch((error: unknown) => logger.warn({ err: error, id: entry.id }, 'hub send failed'));
  }
}
