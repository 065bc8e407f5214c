import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { needsRabbitMq } from '../support/services.ts';
import { messageBusContract } from './message-bus.contract.ts';
import { createTestVhost, type TestVhost } from './message-bus-rabbitmq-vhost.ts';

messageBusContract('in-process', {
  setUp: async () => ({ createBus: async () => new InProcessMessageBus() }),
  tearDown: async () => {},
});

const rabbit = await needsRabbitMq();
let vhost: TestVhost | undefined;
messageBusContract('RabbitMQ', {
  ...rabbit,
  setUp: async () => {
    const created = await createTestVhost();
    vhost = created;
    return {
      createBus: async () =>
        new RabbitMqMessageBus({
          url: created.url,
          connectionName: 'message-bus contract test',
          retryLowMs: 200,
        }),
      dropConnections: () => created.dropConnections(),
    };
  },
  tearDown: async () => {
    await vhost?.delete();
  },
});
