// A relay in its own process, so a test can SIGKILL it: prints "leader" once it leads.
import { createLogger } from '../../src/infrastructure/logging/logger.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { startOutboxRelay } from '../../src/infrastructure/outbox/outbox-relay.ts';
import { openDatabase } from '../../src/infrastructure/persistence/database.ts';
import { DEFAULT_RESILIENCE } from '../../src/infrastructure/resilience/resilience-policy.ts';

const logger = createLogger({ level: 'silent', pretty: false });
const database = await openDatabase(process.env.RELAY_DATABASE_URL ?? '', logger);
const bus = new RabbitMqMessageBus({ url: process.env.RELAY_AMQP_URL ?? '' });
const relay = startOutboxRelay({
  database,
  bus,
  logger,
  resilience: DEFAULT_RESILIENCE,
  options: { standbyRetryMs: 200, pollIntervalMs: 200 },
});
const timer = setInterval(() => {
  if (relay.status().role === 'leader') {
    process.stdout.write('leader\n');
    clearInterval(timer);
  }
}, 50);
