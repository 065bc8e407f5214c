// `npm start`: every role in one process, sharing one set of adapters (embedded by default, zero setup).
import type { MessageBus } from './application/ports/message-bus.ts';
import { createWebApi, type WebApi } from './apps/webapi/main.ts';
import { loadConfigOrExit } from './config.ts';
import { MESSAGING_TOPOLOGY } from './contracts/messaging.ts';
import { createLogger } from './infrastructure/logging/logger.ts';
import { openMessageBus } from './infrastructure/messaging/open-message-bus.ts';
import { startOutboxRelay, type OutboxRelay } from './infrastructure/outbox/outbox-relay.ts';
import { openDatabase, type Database } from './infrastructure/persistence/database.ts';
import { runUntilSignal } from './infrastructure/runtime/run-until-signal.ts';

const config = loadConfigOrExit();
const logger = createLogger(config.log);
let database: Database | undefined;
let bus: MessageBus | undefined;
let relay: OutboxRelay | undefined;
let webApi: WebApi | undefined;

await runUntilSignal(
  {
    async start() {
      database = await openDatabase(config.databaseUrl, logger);
      await database.migrate();
      bus = openMessageBus(config.amqpUrl, logger, 'all-roles');
      await bus.declareTopology(MESSAGING_TOPOLOGY);
      relay = startOutboxRelay({ database, bus, resilience: config.resilience, logger });
      webApi = await createWebApi({ config, logger, database, healthChecks: [relay.healthCheck()] });
      const apiUrl = await webApi.start();
      logger.info({ api: apiUrl, docs: `${apiUrl}/docs`, database: database.kind }, 'all roles running');
    },
    async stop() {
      await webApi?.stop();
      await relay?.stop();
      await bus?.close();
      await database?.close();
    },
  },
  logger,
  config.shutdownTimeoutMs,
);
