// `npm start`: every role in one process, sharing one set of adapters (embedded by default, zero setup).
import { createWebApi, type WebApi } from './apps/webapi/main.ts';
import { loadConfigOrExit } from './config.ts';
import { createLogger } from './infrastructure/logging/logger.ts';
import { openDatabase, type Database } from './infrastructure/persistence/database.ts';
import { runUntilSignal } from './infrastructure/runtime/run-until-signal.ts';

const config = loadConfigOrExit();
const logger = createLogger(config.log);
let database: Database | undefined;
let webApi: WebApi | undefined;

await runUntilSignal(
  {
    async start() {
      database = await openDatabase(config.databaseUrl, logger);
      await database.migrate();
      webApi = await createWebApi({ config, logger, database });
      const apiUrl = await webApi.start();
      logger.info({ api: apiUrl, docs: `${apiUrl}/docs`, database: database.kind }, 'all roles running');
    },
    async stop() {
      await webApi?.stop();
      await database?.close();
    },
  },
  logger,
  config.shutdownTimeoutMs,
);
