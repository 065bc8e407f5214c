// RabbitMQ low on memory (a resource alarm) blocks every connection that publishes. Consumers must keep draining
// their queues meanwhile, and publishes must fail rather than pile up in the blocked socket, to be sent all at once
// (every retry a copy) when the alarm clears. A private broker: the alarm would block everyone on a shared one.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { outcome } from '../../src/application/ports/message-bus.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { privateServersAvailable, startPrivateRabbitMq } from '../support/private-servers.ts';

const topology = {
  exchanges: [{ name: 'alarm', type: 'direct' as const, durable: true }],
  queues: [{ name: 'alarm.q', type: 'quorum' as const, durable: true }],
  bindings: [{ exchange: 'alarm', queue: 'alarm.q', routingKey: 'k' }],
};
const message = (n: number) => ({
  exchange: 'alarm',
  routingKey: 'k',
  messageId: `m${n}`,
  body: `{"n":${n}}`,
});
const until = async (what: string, check: () => boolean, timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};

describe('RabbitMqMessageBus under a memory alarm', privateServersAvailable(), () => {
  let rabbitMq: Awaited<ReturnType<typeof startPrivateRabbitMq>>;
  before(async () => {
    rabbitMq = await startPrivateRabbitMq();
  });
  after(async () => {
    await rabbitMq?.dispose();
  });

  test('consumers keep draining while publishing is blocked; a blocked publish fails, and is not sent later', async () => {
    const bus = new RabbitMqMessageBus({ url: rabbitMq.url, heartbeatSeconds: 5 });
    try {
      await bus.declareTopology(topology);
      await bus.publish([1, 2, 3, 4, 5, 6, 7, 8].map(message));
      await rabbitMq.ctl('set_vm_memory_high_watermark', '0.0001');
      // The first publish during the alarm is what gets the connection blocked; then what the relay does: retry.
      for (let attempt = 0; attempt < 3; attempt++)
        await bus.publish([message(100)], AbortSignal.timeout(1_000)).catch(() => undefined);

      const seen: string[] = [];
      const subscription = await bus.consume('alarm.q', {
        prefetch: 1,
        handler: async (received) => {
          seen.push(received.messageId);
          return outcome.ack();
        },
      });
      await until(
        'the queue drained during the alarm',
        () => seen.filter((id) => id !== 'm100').length === 8,
      );
      assert.match(bus.status().detail ?? '', /blocks publishing/, 'health says why nothing is published');
      assert.equal(bus.status().connected, true, 'blocked is not disconnected');

      await rabbitMq.ctl('set_vm_memory_high_watermark', '0.4');
      await until('publishing again', () => bus.status().detail === undefined);
      await bus.publish([message(200)]);
      await until('the publish after the alarm', () => seen.includes('m200'));
      await new Promise((resolve) => setTimeout(resolve, 500));
      // At most the one publish that was in the socket when the block arrived, never one per retry.
      assert.ok(
        seen.filter((id) => id === 'm100').length <= 1,
        `m100 delivered ${seen.filter((id) => id === 'm100').length} times`,
      );
      await subscription.close();
    } finally {
      await rabbitMq.ctl('set_vm_memory_high_watermark', '0.4').catch(() => undefined);
      await bus.close();
    }
  });
});
