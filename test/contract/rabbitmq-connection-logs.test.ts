import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { recordingLogger } from '../support/logger.ts';
import { createProxiedVhost } from '../support/rabbitmq-vhost.ts';
import { needsRabbitMq } from '../support/services.ts';
import { until } from '../support/until.ts';

const rabbit = await needsRabbitMq();

// What an operator reads when the broker goes away for a while and comes back: an expected, self-healing reconnect is
// a warning (not an error), each line says which connection of which vhost, and the recovery says how long it took.
test(
  'a broker outage reads as: lost (warn, which connection and vhost), then re-established after so long',
  rabbit,
  async () => {
    const broker = await createProxiedVhost('logs_test');
    const { logger, logged } = recordingLogger();
    const bus = new RabbitMqMessageBus({ url: broker.url, logger, retryLowMs: 100, retryHighMs: 200 });
    const lines = () =>
      logged()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    try {
      await until(
        () => lines().filter((l) => l.msg === 'RabbitMQ connection established').length === 2,
        'both connections',
      );
      const first = lines().filter((l) => l.msg === 'RabbitMQ connection established');
      assert.deepEqual(first.map((l) => l.connection).sort(), ['consuming', 'publishing']);
      assert.ok(first.every((l) => l.vhost === broker.vhost.name));

      await broker.proxy.pause();
      await until(() => lines().some((l) => l.msg === 'RabbitMQ connection error; reconnecting'), 'the loss');
      await broker.proxy.resume();
      await until(
        () => lines().filter((l) => l.msg === 'RabbitMQ connection re-established').length === 2,
        'both reconnections',
      );
      for (const line of lines().filter((l) => l.msg === 'RabbitMQ connection error; reconnecting')) {
        assert.equal(line.level, 40, 'a reconnect the bus recovers from by itself is a warning');
        assert.equal(line.vhost, broker.vhost.name);
        assert.ok(line.connection === 'consuming' || line.connection === 'publishing');
      }
      for (const line of lines().filter((l) => l.msg === 'RabbitMQ connection re-established'))
        assert.ok(typeof line.downMs === 'number' && line.downMs >= 0);
    } finally {
      await bus.close();
      await broker.delete();
    }
  },
);
