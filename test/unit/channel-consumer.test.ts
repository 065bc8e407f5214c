// consumeOnChannel given up on (its signal aborted) while it waits for the broker: the channel it gets afterwards
// must not consume, or it takes messages the consumers that took over meanwhile should have had.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Connection } from 'rabbitmq-client';
import { consumeOnChannel } from '../../src/infrastructure/messaging/channel-consumer.ts';

/** A connection whose broker answers only when `answer()` is called; `consumed` counts basic.consume calls. */
function brokerAway() {
  const channel = {
    active: true,
    consumed: 0,
    on() {},
    once() {},
    async close() {
      channel.active = false;
    },
    async basicQos() {},
    async basicConsume() {
      channel.consumed++;
      return { consumerTag: 'c' };
    },
  };
  let answer!: () => void;
  const answered = new Promise<void>((resolve) => (answer = resolve));
  const connection = {
    acquire: async () => (await answered, channel),
  } as unknown as Connection;
  return { connection, channel, answer };
}

test('a consume given up on while it waits for the broker does not consume once the broker answers', async () => {
  const { connection, channel, answer } = brokerAway();
  const stopping = new AbortController();
  const consuming = consumeOnChannel({
    connection,
    queue: 'notifications',
    prefetch: 10,
    declare: async () => undefined,
    handle: async () => 'ack',
    onError: () => undefined,
    signal: stopping.signal,
    retryLowMs: 10,
    retryHighMs: 100,
  });
  stopping.abort(new Error('given up'));
  await assert.rejects(consuming, /given up/);
  answer();
  await sleep(20);
  assert.equal(channel.consumed, 0, 'no consumer registered on the channel it got');
  assert.equal(channel.active, false, 'that channel closed');
});
