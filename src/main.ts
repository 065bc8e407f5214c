// `npm start`: every role in one process, sharing one set of adapters (embedded by default, zero setup).
import { createAllRoles } from './all-roles.ts';
import { authSummary, loadConfigOrExit } from './config.ts';
import { createLogger } from './infrastructure/logging/logger.ts';
import { startTracing } from './infrastructure/observability/tracing.ts';
import { runUntilSignal } from './infrastructure/runtime/run-until-signal.ts';

const config = loadConfigOrExit({ allRoles: true });
const logger = createLogger(config.log);
const tracing = startTracing(config.tracing, 'all-roles', logger);
const roles = createAllRoles({ config, logger });

await runUntilSignal(
  {
    async start() {
      const { api, pages, workerHealth } = await roles.start();
      logger.info(
        { api, docs: `${api}/docs`, pages, worker: workerHealth, auth: authSummary(config.auth) },
        'all roles running',
      );
    },
    async stop() {
      const stopped = await roles.stop();
      await tracing.shutdown();
      return stopped;
    },
  },
  logger,
  config.shutdownTimeoutMs,
);
