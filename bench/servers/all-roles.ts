// Every role in one process on the embedded adapters, exactly as `npm start` composes them:
// prints {"api","notifications"}.
import { createAllRoles } from '../../src/all-roles.ts';
import { parseConfig } from '../../src/config.ts';
import { createLogger } from '../../src/infrastructure/logging/logger.ts';

const config = parseConfig({
  API_PORT: '0',
  NOTIFICATIONS_PORT: '0',
  WORKER_PORT: '0',
  LOG_LEVEL: 'warn',
  DATABASE_URL: 'pglite://memory',
  AMQP_URL: 'memory:',
  REDIS_URL: 'memory:',
});
const roles = createAllRoles({ config, logger: createLogger({ ...config.log, name: 'bench-all-roles' }) });
const { api, pages } = await roles.start();
process.stdout.write(`${JSON.stringify({ api, notifications: pages })}\n`);
process.on('SIGTERM', () => void roles.stop().then(() => process.exit(0)));
