import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { outcome } from '../../src/application/ports/message-bus.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { needsRabbitMq } from '../support/services.ts';
import { messageBusContract } from './message-bus.contract.ts';
import { createTestVhost, type TestVhost } from '../support/rabbitmq-vhost.ts';

messageBusContract('in-process', {
  setUp: async () => ({ createBus: async () => new InProcessMessageBus() }),
  tearDown: async () => {},
});

const rabbit = await needsRabbitMq();
let vhost: TestVhost | undefined;
messageBusContract('RabbitMQ', {
  ...rabbit,
  hasConnection: true,
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

describe('RabbitMqMessageBus without a broker', () => {
  test('publish and consume reject, status says disconnected, and no error event crashes the process', async () => {
    const warnings: string[] = [];
    const logger = {
      info: () => {},
      warn: (_fields: object, message: string) => warnings.push(message),
      error: (_fields: object, message: string) => warnings.push(message),
    };
    // Port 1: nothing listens, the connection is refused at once.
    const bus = new RabbitMqMessageBus({
      url: 'amqp://guest:guest@127.0.0.1:1',
      logger,
      acquireTimeoutMs: 300,
    });
    try {
      await assert.rejects(
        bus.publish([{ exchange: 'students', routingKey: 'student.created', messageId: '1', body: '{}' }]),
      );
      await assert.rejects(bus.consume('students.worker', { prefetch: 1, handler: () => outcome.ack() }));
      const status = bus.status();
      assert.equal(status.connected, false);
      assert.match(status.detail ?? '', /ECONNREFUSED/);
      assert.ok(warnings.length > 0, 'the failure is logged');
    } finally {
      await bus.close();
    }
  });
});
