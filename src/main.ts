// `npm start`: every role in one process, sharing one set of adapters (embedded by default, zero setup).
import { createWebApi, type WebApi } from './apps/webapi/main.ts';
import { createNotifications, type Notifications } from './apps/notifications/main.ts';
import { createWorker, refreshCache, type Worker } from './apps/worker/main.ts';
import { loadConfigOrExit } from './config.ts';
import { createLogger } from './infrastructure/logging/logger.ts';
import { openProcessResources, type ProcessResources } from './infrastructure/runtime/process-resources.ts';
import { runUntilSignal } from './infrastructure/runtime/run-until-signal.ts';

const config = loadConfigOrExit();
const logger = createLogger(config.log);
let resources: ProcessResources | undefined;
let worker: Worker | undefined;
let webApi: WebApi | undefined;
let notifications: Notifications | undefined;

await runUntilSignal(
  {
    async start() {
      const opened = await openProcessResources(config, logger, { connectionName: 'all-roles', bus: true });
      resources = opened;
      const { database, bus, cache, registry, relay } = opened;
      worker = createWorker({
        config,
        logger,
        database,
        bus,
        registry,
        afterProcessed: refreshCache(cache.students),
      });
      const workerHealth = await worker.start();
      webApi = await createWebApi({ config, logger, database, cache, healthChecks: [relay.healthCheck()] });
      const apiUrl = await webApi.start();
      notifications = await createNotifications({ config, logger, bus });
      const pagesUrl = await notifications.start();
      logger.info(
        {
          api: apiUrl,
          docs: `${apiUrl}/docs`,
          pages: pagesUrl,
          worker: workerHealth,
          database: database.kind,
        },
        'all roles running',
      );
    },
    async stop() {
      await notifications?.stop();
      await webApi?.stop();
      await worker?.stop();
      await resources?.close();
    },
  },
  logger,
  config.shutdownTimeoutMs,
);
