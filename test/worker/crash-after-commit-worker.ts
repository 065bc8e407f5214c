// `npm run start:worker`, except that the process dies right after its first commit, before its cache refresh and
// its ack: as a SIGKILL, an OOM kill or a crash at that moment would.
import { createWorker } from '../../src/apps/worker/main.ts';
import { loadConfigOrExit } from '../../src/config.ts';
import { createLogger } from '../../src/infrastructure/logging/logger.ts';
import { openProcessResources } from '../../src/infrastructure/runtime/process-resources.ts';

const config = loadConfigOrExit();
const logger = createLogger({ ...config.log, name: 'crashing worker' });
const { database, bus, registry } = await openProcessResources(config, logger, {
  connectionName: 'crashing worker',
  bus: true,
});
const worker = createWorker({
  config,
  logger,
  database,
  bus,
  registry,
  afterProcessed: () => void process.kill(process.pid, 'SIGKILL'),
});
logger.info({ health: await worker.start() }, 'worker consuming');
