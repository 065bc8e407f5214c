// Every role in one process on the embedded adapters, composed like src/main.ts: prints {"api","notifications"}.
import { createNotifications } from '../../src/apps/notifications/main.ts';
import { createWebApi } from '../../src/apps/webapi/main.ts';
import { createWorker, refreshCache } from '../../src/apps/worker/main.ts';
import { parseConfig } from '../../src/config.ts';
import { createLogger } from '../../src/infrastructure/logging/logger.ts';
import { openProcessResources } from '../../src/infrastructure/runtime/process-resources.ts';

const config = parseConfig({
  API_PORT: '0',
  NOTIFICATIONS_PORT: '0',
  WORKER_PORT: '0',
  LOG_LEVEL: 'warn',
  DATABASE_URL: 'pglite://memory',
  AMQP_URL: 'memory:',
  REDIS_URL: 'memory:',
});
const logger = createLogger({ ...config.log, name: 'bench-all-roles' });
const resources = await openProcessResources(config, logger, { connectionName: 'bench', bus: true });
const { database, bus, cache, registry, relay } = resources;
const worker = createWorker({
  config,
  logger,
  database,
  bus,
  registry,
  afterProcessed: refreshCache(cache.students),
});
await worker.start();
const webApi = await createWebApi({ config, logger, database, cache, healthChecks: [relay.healthCheck()] });
const api = await webApi.start();
const notifications = await createNotifications({ config, logger, bus });
process.stdout.write(`${JSON.stringify({ api, notifications: await notifications.start() })}\n`);
process.on('SIGTERM', async () => {
  await notifications.stop();
  await webApi.stop();
  await worker.stop();
  await resources.close();
  process.exit(0);
});
