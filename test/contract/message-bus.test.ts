import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { Connection } from 'rabbitmq-client';
import { outcome, type ReceivedMessage } from '../../src/application/ports/message-bus.ts';
import {
  consumingQueue,
  deadLetterNames,
  mergeTopologies,
  topicExchange,
  type ExchangeType,
} from '../../src/contracts/messaging.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { brokerCheck, runHealthChecks } from '../../src/infrastructure/health/health.ts';
import { silentMessagingLogger } from '../../src/infrastructure/messaging/messaging-logger.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { checkNamed } from '../support/health.ts';
import { createProxiedVhost, createTestVhost, type TestVhost } from '../support/rabbitmq-vhost.ts';
import { needsRabbitMq } from '../support/services.ts';
import { settlesWithin } from '../support/settles-within.ts';
import { until } from '../support/until.ts';
import { messageBusContract } from './message-bus.contract.ts';

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
  test('publish rejects, consume waits for the broker, status says disconnected, and no error event crashes the process', async () => {
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
      // Nothing to refuse it: it is registered once a broker answers, and closed with the bus meanwhile.
      await bus.consume('students.worker', { prefetch: 1, handler: () => outcome.ack() });
      const status = bus.status();
      assert.equal(status.connected, false);
      assert.match(status.detail ?? '', /ECONNREFUSED/);
      assert.ok(warnings.length > 0, 'the failure is logged');
    } finally {
      await bus.close();
    }
  });
});

describe('RabbitMqMessageBus while the broker is unreachable', () => {
  /** A bus on port 1, where nothing listens, recording what it logs as warnings or errors. */
  const unreachableBus = (options: { acquireTimeoutMs: number }) => {
    const warnings: string[] = [];
    const log = (_fields: object, message: string) => warnings.push(message);
    const bus = new RabbitMqMessageBus({
      url: 'amqp://guest:guest@127.0.0.1:1',
      logger: { info: () => {}, warn: log, error: log },
      retryLowMs: 50,
      retryHighMs: 100,
      ...options,
    });
    return { bus, warnings };
  };

  test('a consume that waits for the broker ends at once when its signal aborts, and consumes nothing later', async () => {
    const { bus } = unreachableBus({ acquireTimeoutMs: 60_000 });
    const stopping = new AbortController();
    const consuming = bus.consume('students.worker', {
      prefetch: 1,
      handler: () => outcome.ack(),
      signal: stopping.signal,
    });
    await sleep(100);
    const stopped = new Error('stopping');
    stopping.abort(stopped);
    assert.equal(await settlesWithin(consuming, 1_000), 'settled');
    await assert.rejects(consuming, stopped);
    assert.equal(await settlesWithin(bus.close(), 5_000), 'settled');
  });

  test('a subscription closed while it waits for the broker tries no more, and says nothing more', async () => {
    const { bus, warnings } = unreachableBus({ acquireTimeoutMs: 300 });
    try {
      const subscription = await bus.consume('students.worker', {
        prefetch: 1,
        handler: () => outcome.ack(),
      });
      await sleep(150); // a retry under way
      await subscription.close();
      const warned = warnings.length;
      await sleep(700);
      assert.deepEqual(warnings.slice(warned), []);
    } finally {
      await bus.close();
    }
  });

  test('a consume that waits for the broker ends when the bus closes, and tries no more', async () => {
    const { bus, warnings } = unreachableBus({ acquireTimeoutMs: 2_000 });
    const consuming = bus.consume('students.worker', { prefetch: 1, handler: () => outcome.ack() });
    await sleep(200);
    assert.equal(await settlesWithin(bus.close(), 5_000), 'settled');
    await assert.rejects(consuming, /message bus is closed/);
    const warned = warnings.length;
    await sleep(500);
    assert.deepEqual(warnings.slice(warned), [], 'no consumer goes on trying');
  });

  test('a waiting publish rejects as soon as its signal aborts, and close ends at once what still waits', async () => {
    // Port 1 refuses at once; a publish would wait out the acquire timeout on each of its attempts.
    const bus = new RabbitMqMessageBus({ url: 'amqp://guest:guest@127.0.0.1:1', acquireTimeoutMs: 60_000 });
    const aborting = new AbortController();
    const publishing = bus.publish(
      [{ exchange: 'students', routingKey: 'student.created', messageId: '1', body: '{}' }],
      aborting.signal,
    );
    const stopped = new Error('stopping');
    setTimeout(() => aborting.abort(stopped), 100);
    assert.equal(await settlesWithin(publishing, 5_000), 'settled');
    await assert.rejects(publishing, stopped);
    // The abandoned send still waits for a channel: closing must not wait for it.
    assert.equal(await settlesWithin(bus.close(), 5_000), 'settled');
  });
});

describe('RabbitMqMessageBus when the connection is lost between declaring and consuming', rabbit, () => {
  test('consume resolves, and its consumer gets the messages once the broker is back', async () => {
    const broker = await createProxiedVhost('message_bus_test');
    const bus = new RabbitMqMessageBus({
      url: broker.url,
      connectionName: 'consume while away test',
      retryLowMs: 100,
      retryHighMs: 500,
      acquireTimeoutMs: 500,
    });
    try {
      await bus.declareTopology(consumingQueue('away', { exchange: 'amq.topic', routingKeys: ['away.#'] }));
      await broker.proxy.pause();
      await until(() => !bus.status().connected, 'the bus saw the broker go');
      const received: string[] = [];
      const subscription = await bus.consume('away', {
        prefetch: 1,
        handler: (message) => {
          received.push(message.body.toString());
          return outcome.ack();
        },
      });
      assert.equal(subscription.waitingForBroker, true);
      await broker.proxy.resume();
      await until(() => bus.status().connected, 'the bus reconnected');
      await bus.publish([{ exchange: 'amq.topic', routingKey: 'away.1', messageId: '1', body: 'back' }]);
      await until(() => received.length > 0, 'the message consumed');
      assert.deepEqual(received, ['back']);
      assert.equal(subscription.waitingForBroker, false);
      await subscription.close();
    } finally {
      await bus.close();
      await broker.delete();
    }
  });
});

describe(
  'RabbitMqMessageBus when the broker stops answering (frozen, or cut off without a reset)',
  rabbit,
  () => {
    test("the broker's health check says so within its time limit, while the connection still counts as open", async () => {
      const broker = await createProxiedVhost('message_bus_test');
      const bus = new RabbitMqMessageBus({ url: broker.url, connectionName: 'silent broker health test' });
      try {
        await bus.declareTopology(
          consumingQueue('silent', { exchange: 'amq.topic', routingKeys: ['silent.#'] }),
        );
        assert.equal((await runHealthChecks([brokerCheck(bus)])).status, 'Healthy');
        assert.ok(broker.proxy.silence() > 0, 'the connection silenced');
        const report = await runHealthChecks([brokerCheck(bus)]);
        assert.equal(bus.status().connected, true, 'the heartbeat has not given up yet');
        assert.equal(report.status, 'Unhealthy');
        assert.equal(checkNamed(report, 'rabbitmq')?.description, 'no answer within 2000 ms');
      } finally {
        await bus.close();
        await broker.delete();
      }
    });

    test('close drops the connection after 2 s instead of waiting for its close-ok, and says so', async () => {
      const broker = await createProxiedVhost('message_bus_test');
      const warnings: string[] = [];
      const bus = new RabbitMqMessageBus({
        url: broker.url,
        connectionName: 'silent broker test',
        logger: { ...silentMessagingLogger, warn: (_fields, message) => warnings.push(message) },
      });
      try {
        await bus.declareTopology(
          consumingQueue('silent', { exchange: 'amq.topic', routingKeys: ['silent.#'] }),
        );
        const subscription = await bus.consume('silent', { prefetch: 1, handler: () => outcome.ack() });
        assert.equal(subscription.waitingForBroker, false);
        assert.ok(broker.proxy.silence() > 0, 'the connection silenced');
        // Each close (the channel's, then the connection's) waits 2 s at most; before, until the heartbeat gave up.
        assert.equal(await settlesWithin(bus.close(), 10_000), 'settled');
        assert.deepEqual(warnings, ['RabbitMQ did not confirm the close: dropping the connection']);
      } finally {
        await bus.close();
        await broker.delete();
      }
    });
  },
);

describe('RabbitMqMessageBus when a consume waiting for the broker is given up on', rabbit, () => {
  test('the broker back, it takes no message from the queue (one it handed back would come after later ones)', async () => {
    const broker = await createProxiedVhost('message_bus_test');
    const bus = new RabbitMqMessageBus({
      url: broker.url,
      connectionName: 'consume given up on test',
      retryLowMs: 100,
      retryHighMs: 500,
      acquireTimeoutMs: 60_000,
    });
    try {
      await bus.declareTopology(
        consumingQueue('abandoned', { exchange: 'amq.topic', routingKeys: ['abandoned.#'] }),
      );
      await bus.publish([
        { exchange: 'amq.topic', routingKey: 'abandoned.1', messageId: '1', body: 'waiting' },
      ]);
      await broker.proxy.pause();
      await until(() => !bus.status().connected, 'the bus saw the broker go');
      const givingUp = new AbortController();
      const consuming = bus.consume('abandoned', {
        prefetch: 10,
        handler: () => outcome.ack(),
        signal: givingUp.signal,
      });
      await sleep(100);
      givingUp.abort(new Error('given up'));
      await assert.rejects(consuming, /given up/);
      await broker.proxy.resume();
      await until(() => bus.status().connected, 'the bus reconnected');
      await sleep(500); // the channel the abandoned consume asked for has come
      const received: ReceivedMessage[] = [];
      const subscription = await bus.consume('abandoned', {
        prefetch: 1,
        handler: (message) => (received.push(message), outcome.ack()),
      });
      await until(() => received.length > 0, 'the message consumed');
      assert.equal(received[0]?.redelivered, false, 'delivered once: nobody took it before');
      await subscription.close();
    } finally {
      await bus.close();
      await broker.delete();
    }
  });
});

describe('RabbitMqMessageBus and a foreign publisher', rabbit, () => {
  test('headers of other AMQP types become strings or are left out; a "__proto__" table adds no header', async () => {
    const vhost = await createTestVhost();
    const bus = new RabbitMqMessageBus({ url: vhost.url, connectionName: 'foreign publisher test' });
    const foreign = new Connection({ url: vhost.url, connectionName: 'foreign publisher' });
    const publisher = foreign.createPublisher({ confirm: true });
    try {
      await bus.declareTopology(consumingQueue('foreign', { exchange: 'amq.topic', routingKeys: ['#'] }));
      const received: ReceivedMessage[] = [];
      await bus.consume('foreign', {
        prefetch: 1,
        handler: (message) => (received.push(message), outcome.ack()),
      });
      const headers: Record<string, unknown> = { text: 'a', count: 7, flag: true, table: { nested: 'x' } };
      // rabbitmq-client decodes a header by assignment: one named __proto__ replaced the headers' prototype.
      Object.defineProperty(headers, '__proto__', { value: { injected: 'yes' }, enumerable: true });
      await publisher.send({ exchange: 'amq.topic', routingKey: 'x', headers }, Buffer.from('{}'));
      for (let i = 0; i < 200 && received.length === 0; i++)
        await new Promise((resolve) => setTimeout(resolve, 25));
      assert.deepEqual(received[0]?.headers, { text: 'a', count: '7', flag: 'true' });
      assert.equal(Object.getPrototypeOf(received[0]?.headers), Object.prototype);
    } finally {
      await publisher.close();
      await foreign.close();
      await bus.close();
      await vhost.delete();
    }
  });
});

describe('RabbitMqMessageBus and an exchange type the broker lacks', rabbit, () => {
  test('declaring it rejects with an error that names the type and says to enable a plugin', async () => {
    const vhost = await createTestVhost();
    const bus = new RabbitMqMessageBus({
      url: vhost.url,
      connectionName: 'exchange type test',
      retryLowMs: 200,
    });
    try {
      const exchange = { name: 'odd', type: 'x-no-such-type' as ExchangeType, durable: true };
      await assert.rejects(
        bus.declareTopology({ exchanges: [exchange], queues: [], bindings: [] }),
        /RabbitMQ does not know the exchange type 'x-no-such-type' of exchange 'odd': enable the RabbitMQ plugin/,
      );
    } finally {
      await bus.close();
      await vhost.delete();
    }
  });
});

describe('RabbitMqMessageBus and a queue an earlier version declared with other arguments', rabbit, () => {
  test('declaring it rejects with an error that names the queue and says how to replace it', async () => {
    const vhost = await createTestVhost();
    const bus = new RabbitMqMessageBus({
      url: vhost.url,
      connectionName: 'queue arguments test',
      retryLowMs: 200,
    });
    try {
      const queue = { name: 'changed', type: 'quorum' as const, durable: true };
      await bus.declareTopology({ exchanges: [], queues: [queue], bindings: [] });
      await assert.rejects(
        bus.declareTopology({
          exchanges: [],
          queues: [{ ...queue, singleActiveConsumer: true }],
          bindings: [],
        }),
        /RabbitMQ has queue 'changed' declared with other arguments, by an earlier version \(.*inequivalent arg 'x-single-active-consumer'.*\): .*rabbitmqctl delete_queue changed/,
      );
    } finally {
      await bus.close();
      await vhost.delete();
    }
  });
});

describe('RabbitMqMessageBus when the connection is lost while a handler runs', rabbit, () => {
  test('the message, delivered again, is handled only once its first delivery is done, never beside it', async () => {
    const vhost = await createTestVhost();
    const bus = new RabbitMqMessageBus({
      url: vhost.url,
      connectionName: 'redelivery during a handler test',
      retryLowMs: 100,
      retryHighMs: 500,
    });
    try {
      await bus.declareTopology(consumingQueue('slow', { exchange: 'amq.topic', routingKeys: ['slow.#'] }));
      const handling: string[] = [];
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      await bus.consume('slow', {
        prefetch: 1,
        handler: async () => {
          handling.push('start');
          await released;
          handling.push('end');
          return outcome.ack();
        },
      });
      await bus.publish([{ exchange: 'amq.topic', routingKey: 'slow.1', messageId: '1', body: '{}' }]);
      await until(() => handling.length === 1, 'the first delivery');
      // The broker takes the unacked message back with the connection; the client reconnects within 500 ms.
      await vhost.dropConnections();
      await sleep(1_500);
      release();
      await until(() => handling.length === 4, 'the message handled again');
      assert.deepEqual(handling, ['start', 'end', 'start', 'end']);
    } finally {
      await bus.close();
      await vhost.delete();
    }
  });
});

describe('RabbitMqMessageBus when the queue it consumes is deleted', rabbit, () => {
  test('the consumer declares it again and gets what is published afterwards', async () => {
    const vhost = await createTestVhost();
    const bus = new RabbitMqMessageBus({
      url: vhost.url,
      connectionName: 'queue deleted test',
      retryLowMs: 100,
    });
    const admin = new Connection({ url: vhost.url, connectionName: 'queue deleter' });
    try {
      await bus.declareTopology(
        consumingQueue('deleted', { exchange: 'amq.topic', routingKeys: ['deleted.#'] }),
      );
      const received: ReceivedMessage[] = [];
      await bus.consume('deleted', {
        prefetch: 1,
        handler: (message) => (received.push(message), outcome.ack()),
      });
      await admin.queueDelete({ queue: 'deleted' });
      await until(
        async () => (await bus.inspectQueue('deleted'))?.consumers === 1,
        'the queue declared and consumed again',
        10_000,
      );
      await bus.publish([{ exchange: 'amq.topic', routingKey: 'deleted.1', messageId: '1', body: '{}' }]);
      await until(() => received.length === 1, 'the message consumed');
    } finally {
      await admin.close();
      await bus.close();
      await vhost.delete();
    }
  });
});

describe(
  'RabbitMqMessageBus when the broker lost the exchanges in front of the queue it consumes',
  rabbit,
  () => {
    test('the consumer declares them again with their bindings, and gets what is published to the first', async () => {
      const vhost = await createTestVhost();
      const bus = new RabbitMqMessageBus({
        url: vhost.url,
        connectionName: 'definitions lost test',
        retryLowMs: 100,
      });
      const admin = new Connection({ url: vhost.url, connectionName: 'definitions deleter' });
      try {
        // As the worker's partitions: students → (exchange binding) → students.partitions → the queue.
        await bus.declareTopology(
          mergeTopologies(
            {
              exchanges: [
                topicExchange('events'),
                {
                  name: 'events.partitions',
                  type: 'x-consistent-hash',
                  durable: true,
                  hashHeader: 'subject',
                },
              ],
              queues: [],
              bindings: [],
              exchangeBindings: [
                { source: 'events', destination: 'events.partitions', routingKey: 'student.*' },
              ],
            },
            consumingQueue('events.0', { exchange: 'events.partitions', routingKeys: ['1'] }),
          ),
        );
        const received: ReceivedMessage[] = [];
        await bus.consume('events.0', {
          prefetch: 1,
          handler: (message) => (received.push(message), outcome.ack()),
        });
        // A broker that lost its definitions (a node reset, one without its data directory) has none of them.
        await admin.exchangeDelete({ exchange: 'events' });
        await admin.exchangeDelete({ exchange: 'events.partitions' });
        await admin.queueDelete({ queue: 'events.0' });
        await until(
          async () => (await bus.inspectQueue('events.0'))?.consumers === 1,
          'the queue declared and consumed again',
          10_000,
        );
        await until(
          () =>
            bus
              .publish([
                {
                  exchange: 'events',
                  routingKey: 'student.created',
                  messageId: '1',
                  body: '{}',
                  headers: { subject: 's' },
                },
              ])
              .then(
                () => true,
                () => false,
              ),
          'the exchange declared again',
          10_000,
        );
        await until(() => received.length === 1, 'the message consumed', 10_000);
      } finally {
        await admin.close();
        await bus.close();
        await vhost.delete();
      }
    });
  },
);

describe('RabbitMqMessageBus consuming a queue declared by another', rabbit, () => {
  test('a message its handler dead-letters goes to the dead-letter queue at once, handled once', async () => {
    const vhost = await createTestVhost();
    const declaring = new RabbitMqMessageBus({ url: vhost.url, connectionName: 'declaring bus' });
    // Knows nothing of the queue's dead-letter exchange: it can only reject the message.
    const bus = new RabbitMqMessageBus({ url: vhost.url, connectionName: 'consuming bus' });
    try {
      await declaring.declareTopology(
        consumingQueue('elsewhere', { exchange: 'amq.topic', routingKeys: ['elsewhere.#'] }),
      );
      let handled = 0;
      await bus.consume('elsewhere', {
        prefetch: 1,
        handler: () => (handled++, outcome.deadLetter('unusable')),
      });
      const dead: ReceivedMessage[] = [];
      await declaring.consume(deadLetterNames('elsewhere').queue, {
        prefetch: 1,
        handler: (message) => (dead.push(message), outcome.ack()),
      });
      await declaring.publish([
        { exchange: 'amq.topic', routingKey: 'elsewhere.1', messageId: '1', body: '{}' },
      ]);
      await until(() => dead.length === 1, 'the dead letter');
      await sleep(250); // room for a redelivery to show up
      assert.equal(handled, 1, 'handled once, not redelivered');
      assert.equal(dead[0]?.messageId, '1');
    } finally {
      await bus.close();
      await declaring.close();
      await vhost.delete();
    }
  });
});

describe('RabbitMqMessageBus when an exchange of its topology is deleted under it', rabbit, () => {
  test('the next publish declares it and its bindings again, and the message is delivered', async () => {
    const created = await createTestVhost('exchange_lost');
    const bus = new RabbitMqMessageBus({ url: created.url, retryLowMs: 200 });
    const operator = new Connection(created.url);
    try {
      const exchange = 'events';
      const queue = 'events.q';
      await bus.declareTopology(
        mergeTopologies(
          { exchanges: [topicExchange(exchange)], queues: [], bindings: [] },
          consumingQueue(queue, { exchange, routingKeys: ['student.*'] }),
        ),
      );
      const received: string[] = [];
      const subscription = await bus.consume(queue, {
        prefetch: 1,
        handler: (message) => {
          received.push(message.messageId);
          return outcome.ack();
        },
      });
      // An operator's mistake, a restore of the broker's definitions: the exchange goes, and its bindings with it.
      await operator.exchangeDelete({ exchange });
      await bus.publish([{ exchange, routingKey: 'student.created', messageId: 'after-delete', body: '{}' }]);
      await until(() => received.length === 1, 'the message');
      assert.deepEqual(received, ['after-delete']);
      await subscription.close();
    } finally {
      await bus.close();
      await operator.close();
      await created.delete();
    }
  });
});
