// Every routing key a role publishes under reaches the queue that consumes it. A key the queue's binding does not
// match (`student.*` takes one word after the dot) is published, confirmed and marked sent all the same, and then
// dropped by the exchange: no error, no dead letter, no log line.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  Exchanges,
  messagingTopology,
  NotificationRoutingKeys,
  Queues,
  StudentRoutingKeys,
} from '../../src/contracts/messaging.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';

const routes = [
  { exchange: Exchanges.students, keys: StudentRoutingKeys, queue: Queues.studentsWorker },
  { exchange: Exchanges.notifications, keys: NotificationRoutingKeys, queue: Queues.notifications },
];

for (const { exchange, keys, queue } of routes)
  test(`every routing key published to '${exchange}' reaches queue '${queue}'`, async () => {
    const bus = new InProcessMessageBus();
    try {
      await bus.declareTopology(messagingTopology(1));
      for (const [name, routingKey] of Object.entries(keys)) {
        const before = (await bus.inspectQueue(queue))?.messages ?? 0;
        await bus.publish([{ exchange, routingKey, messageId: `${name}-1`, body: '{}' }]);
        assert.equal(
          (await bus.inspectQueue(queue))?.messages,
          before + 1,
          `'${routingKey}' (${name}) is not routed to '${queue}': change the key or the queue's binding`,
        );
      }
    } finally {
      await bus.close();
    }
  });
