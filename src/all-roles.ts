// Every role in one process over one set of adapters: what `npm start` runs (embedded by default).
import { createNotifications, type Notifications } from './apps/notifications/main.ts';
import { createWebApiOver, type WebApi } from './apps/webapi/main.ts';
import { createWorkerOver, type Worker } from './apps/worker/main.ts';
import type { Config } from './config.ts';
import type { Logger } from './infrastructure/logging/logger.ts';
import { openProcessResources, type ProcessResources } from './infrastructure/runtime/process-resources.ts';
import type { StopSummary } from './infrastructure/runtime/run-until-signal.ts';
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
  let starting = false;
  let stopping: Promise<StopSummary> | undefined;
  /** What each role's stop handed on, by role: the shutdown's log line. */
  const stopped: Record<string, unknown> = {};
  const stopOnce = async (name: string, role: { stop(): Promise<unknown> } | undefined) => {
    if (!role || name in stopped) return;
    // Marked before its stop ends: a second call meanwhile must not stop it again.
    stopped[name] = undefined;
    stopped[name] = await role.stop();
  };
  return {
    start(): Promise<AllRolesUrls> {
      starting = true;
      // Each part is kept before the check that follows it, for stop() to undo.
      const running = startup.run(async (step) => {
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
      return running.finally(() => (starting = false));
    },
    /**
     * Front doors first, both at once (each drains for at most half the shutdown time), so nothing new arrives
     * while the worker and the adapters wind down. A stop during the start ends it first.
     */
    stop(): Promise<StopSummary> {
      stopping ??= (async () => {
        const startEnded = startup.stop('all roles stopped while they started');
        // A consuming role's start (waiting for the broker, say) ends only once the role is stopped; the webapi's
        // (a listen) is waited for, so that its stop closes what it opened.
        try {
          if (starting)
            await Promise.all([stopOnce('notifications', notifications), stopOnce('worker', worker)]);
          await startEnded;
          await Promise.all([stopOnce('notifications', notifications), stopOnce('webapi', webApi)]);
          await stopOnce('worker', worker);
        } finally {
          Object.assign(stopped, await resources?.close());
        }
        return stopped;
      })();
      return stopping;
    },
  };
}
