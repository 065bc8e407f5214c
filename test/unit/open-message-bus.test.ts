// The bus a process opens from AMQP_URL logs through the process's logger, whichever adapter it is: what goes wrong
// in messaging (a handler that throws, a broker that is away) reaches the logs.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { outcome } from '../../src/application/ports/message-bus.ts';
import { consumingQueue, mergeTopologies, topicExchange } from '../../src/contracts/messaging.ts';
import { openMessageBus } from '../../src/infrastructure/messaging/open-message-bus.ts';
import { recordingLogger } from '../support/logger.ts';
import { until } from '../support/until.ts';

describe('openMessageBus', () => {
  test('memory: opens the in-process bus, which logs a handler that throws', async () => {
    const { logger, logged } = recordingLogger();
    const bus = openMessageBus('memory:', logger, 'test');
    try {
      assert.equal(bus.status().adapter, 'in-process');
      await bus.declareTopology(
        mergeTopologies(
          { exchanges: [topicExchange('events')], queues: [], bindings: [] },
          consumingQueue('events.handled', { exchange: 'events', routingKeys: ['#'] }),
        ),
      );
      let deliveries = 0;
      await bus.consume('events.handled', {
        prefetch: 1,
        handler: () => {
          if (++deliveries === 1) throw new Error('database busy');
          return outcome.ack();
        },
      });
      await bus.publish([{ exchange: 'events', routingKey: 'x', messageId: '1', body: '{}' }]);
      await until(() => deliveries === 2, 'the message handled again');
      assert.match(logged(), /"message handler threw; will retry"/);
      assert.match(logged(), /database busy/);
    } finally {
      await bus.close();
    }
  });

  test('an AMQP URL opens the RabbitMQ bus, which logs a broker it cannot reach', async () => {
    const { logger, logged } = recordingLogger();
    // Port 1: nothing listens, the connection is refused at once.
    const bus = openMessageBus('amqp://guest:guest@127.0.0.1:1', logger, 'test');
    try {
      assert.equal(bus.status().adapter, 'rabbitmq');
      await until(() => /RabbitMQ connection error/.test(logged()), 'the refused connection logged', 5_000);
    } finally {
      await bus.close();
    }
  });
});
