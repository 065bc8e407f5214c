import { HubServer, defineHub } from '@tbe/signalr';
import type { ReplayLogEntry } from '../../application/ports/replay-log.ts';
import { HubNames, type ConnectedMessage } from '../../contracts/notifications.ts';
import type { Logger } from '../../infrastructure/logging/logger.ts';

const notificationsHub = defineHub({
  methods: {
    [HubNames.joinGroup]: (context, name: string) => context.groups.add(context.connectionId, name),
    [HubNames.leaveGroup]: (context, name: string) => context.groups.remove(context.connectionId, name),
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

/** Sends a tailed entry to group `Students` and to its student's own group (once per connection). */
export function sendToHub(hub: HubServer, entry: ReplayLogEntry, logger: Logger): void {
  hub.clients
    .groups([HubNames.studentsGroup, HubNames.studentGroup(entry.subject)])
    .send(entry.type, JSON.parse(entry.data))
    .catch((error: unknown) => logger.warn({ err: error, id: entry.id }, 'hub send failed'));
}
