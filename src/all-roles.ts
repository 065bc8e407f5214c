// Every role in one process over one set of adapters: what `npm start` runs (embedded by default).
import { createNotifications, type Notifications } from './apps/notifications/main.ts';
import { createWebApiOver, type WebApi } from './apps/webapi/main.ts';
import { createWorkerOver, type Worker } from './apps/worker/main.ts';
import type { Config } from './config.ts';
import type { Logger } from './infrastructure/logging/logger.ts';
import { openProcessResources, type ProcessResources } from './infrastructure/runtime/process-resources.ts';

export interface AllRolesUrls {
  readonly api: string;
  readonly pages: string;
  readonly workerHealth: string;
}

export function createAllRoles({ config, logger }: { config: Config; logger: Logger }) {
  let resources: ProcessResources | undefined;
  let worker: Worker | undefined;
  let webApi: WebApi | undefined;
  let notifications: Notifications | undefined;
  return {
    async start(): Promise<AllRolesUrls> {
      const opened = await openProcessResources(config, logger, { connectionName: 'all-roles', bus: true });
      resources = opened;
      const { bus, registry } = opened;
      // The API first: it takes writes while the consuming roles wait for a broker that does not answer yet.
      webApi = await createWebApiOver(opened, { config, logger });
      const api = await webApi.start();
      worker = createWorkerOver(opened, { config, logger });
      notifications = await createNotifications({
        config,
        logger,
        bus,
        registry,
        // URL leaves http's default port out: bound to 80, `port` is ''.
        apiPort: Number(new URL(api).port || 80),
      });
      const [workerHealth, pages] = await Promise.all([worker.start(), notifications.start()]);
      return { api, pages, workerHealth };
    },
    /**
     * Front doors first, both at once (each drains for at most half the shutdown time), so nothing new arrives
     * while the worker and the adapters wind down.
     */
    async stop(): Promise<void> {
      await Promise.all([notifications?.stop(), webApi?.stop()]);
      await worker?.stop();
      await resources?.close();
    },
  };
}
