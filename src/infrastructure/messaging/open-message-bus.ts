import type { MessageBus } from '../../application/ports/message-bus.ts';
import type { Logger } from '../logging/logger.ts';
import { InProcessMessageBus } from './in-process-message-bus.ts';
import { RabbitMqMessageBus } from './rabbitmq-message-bus.ts';

/**
 * `memory:` is the in-process bus (embedded mode, one process); anything else is a RabbitMQ URL. `deployment`: the
 * one whose vhost it is (see RabbitMqMessageBusOptions); one process has nothing to claim.
 */
export function openMessageBus(
  url: string,
  logger: Logger,
  connectionName: string,
  deployment?: string,
): MessageBus {
  return url === 'memory:'
    ? new InProcessMessageBus({ logger })
    : new RabbitMqMessageBus({ url, logger, connectionName, ...(deployment ? { deployment } : {}) });
}
