// `npm start`: every role in one process, sharing one set of adapters (embedded by default, zero setup).
import { Registry } from 'prom-client';
import type { MessageBus } from './application/ports/message-bus.ts';
import { createWebApi, type WebApi } from './apps/webapi/main.ts';
import { createWorker, refreshCache, type Worker } from './apps/worker/main.ts';
import { loadConfigOrExit } from './config.ts';
import { MESSAGING_TOPOLOGY } from './contracts/messaging.ts';
import { openCache, type Cache } from './infrastructure/caching/open-cache.ts';
import { createLogger } from './infrastructure/logging/logger.ts';
import { openMessageBus } from './infrastructure/messaging/open-message-bus.ts';
import { startOutboxRelay, type OutboxRelay } from './infrastructure/outbox/outbox-relay.ts';
import { openDatabase, type Database } from './infrastructure/persistence/database.ts';
import { runUntilSignal } from './infrastructure/runtime/run-until-signal.ts';

const config = loadConfigOrExit();
const logger = createLogger(config.log);
let database: Database | undefined;
let bus: MessageBus | undefined;
let cache: Cache | undefined;
let relay: OutboxRelay | undefined;
let worker: Worker | undefined;
let webApi: WebApi | undefined;

await runUntilSignal(
  {
    async start() {
      database = await openDatabase(config.databaseUrl, logger);
      await database.migrate();
      bus = openMessageBus(config.amqpUrl, logger, 'all-roles');
      await bus.declareTopology(MESSAGING_TOPOLOGY);
      const registry = new Registry();
      cache = await openCache({ redisUrl: config.redisUrl, ...config.cache, registry }, logger);
      relay = startOutboxRelay({ database, bus, resilience: config.resilience, logger });
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
      logger.info(
        { api: apiUrl, docs: `${apiUrl}/docs`, worker: workerHealth, database: database.kind },
        'all roles running',
      );
    },
    async stop() {
      await webApi?.stop();
      await worker?.stop();
      await relay?.stop();
      await cache?.close();
      await bus?.close();
      await database?.close();
    },
  },
  logger,
  config.shutdownTimeoutMs,
);
