// Every role in one process over one set of adapters: what `npm start` runs (embedded by default).
import { createNotifications, type Notifications } from './apps/notifications/main.ts';
import { createWebApiOver, type WebApi } from './apps/webapi/main.ts';
import { createWorkerOver, type Worker } from './apps/worker/main.ts';
import type { Config } from './config.ts';
import type { Logger } from './infrastructure/logging/logger.ts';
import { openProcessResources, type ProcessResources } from './infrastructure/runtime/process-resources.ts';
import { createStartup } from './infrastructure/runtime/startup.ts';

export interface AllRolesUrls {
  readonly api: string;
  readonly pages: string;
  readonly workerHealth: string;
}

export function createAllRoles({ config, logger }: { config: Config; logger: Logger }) {
  const startup = createStartup();
  let resources: ProcessResources | undefined;
  let worker: Worker | undefined;
  let webApi: WebApi | undefined;
  let notifications: Notifications | undefined;
  const stopped = new WeakSet<object>();
  const stopOnce = async (role: { stop(): Promise<void> } | undefined) => {
    if (!role || stopped.has(role)) return;
    stopped.add(role);
    await role.stop();
  };
  /**
   * Front doors first, both at once (each drains for at most half the shutdown time), so nothing new arrives
   * while the worker and the adapters wind down.
   */
  const stopRoles = async () => {
    await Promise.all([stopOnce(notifications), stopOnce(webApi)]);
    await stopOnce(worker);
  };
  return {
    start(): Promise<AllRolesUrls> {
      // Each part is kept before the check that follows it, for stop() to undo.
      return startup.run(async (step) => {
        const opened = await openProcessResources(config, logger, { connectionName: 'all-roles', bus: true });
        resources = opened;
        startup.signal.throwIfAborted();
        const { bus, registry } = opened;
        // The API first: it takes writes while the consuming roles wait for a broker that does not answer yet.
        webApi = await createWebApiOver(opened, { config, logger });
        startup.signal.throwIfAborted();
        const api = await step(webApi.start());
        worker = createWorkerOver(opened, { config, logger });
        notifications = await createNotifications({
          config,
          logger,
          bus,
          registry,
          // URL leaves http's default port out: bound to 80, `port` is ''.
          apiPort: Number(new URL(api).port || 80),
        });
        startup.signal.throwIfAborted();
        const [workerHealth, pages] = await step(Promise.all([worker.start(), notifications.start()]));
        return { api, pages, workerHealth };
      });
    },
    async stop(): Promise<void> {
      // The start ends at its next step, the roles' own starts (waiting for the broker, say) once they are stopped:
      // so the roles are stopped before the start is awaited, and again after it, for any it created meanwhile.
      const startEnded = startup.stop('all roles stopped while they started');
      await stopRoles();
      await startEnded;
      await stopRoles();
      await resources?.close();
    },
  };
}
