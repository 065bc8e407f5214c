// The outbox relay in its own process, as it runs inside a webapi process in production: prints one JSON
// line once it leads.
import { parseConfig } from '../../src/config.ts';
import { createLogger } from '../../src/infrastructure/logging/logger.ts';
import { openProcessResources } from '../../src/infrastructure/runtime/process-resources.ts';

const config = parseConfig({
  DATABASE_URL: process.env.BENCH_DATABASE_URL,
  AMQP_URL: process.env.BENCH_AMQP_URL,
  // Declares the same topology as the workers it feeds.
  WORKER_PARTITIONS: process.env.BENCH_WORKER_PARTITIONS,
  LOG_LEVEL: 'warn',
});
const logger = createLogger({ ...config.log, name: 'bench-relay' });
const resources = await openProcessResources(config, logger, { connectionName: 'bench-relay', bus: true });
while (resources.relay.status().role !== 'leader') await new Promise((resolve) => setTimeout(resolve, 20));
process.stdout.write(`${JSON.stringify({ role: 'leader' })}\n`);
process.on('SIGTERM', () => void resources.close().then(() => process.exit(0)));
