// The one contract every MessageBus adapter passes: same tests, same expectations, for RabbitMQ and in-process.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  ConsumeOptions,
  HandlerOutcome,
  MessageBus,
  OutgoingMessage,
  ReceivedMessage,
  Subscription,
} from '../../src/application/ports/message-bus.ts';
import { MAX_DEAD_LETTER_REASON_LENGTH, outcome } from '../../src/application/ports/message-bus.ts';
import {
  DEATH_QUEUE_HEADER,
  DEATH_REASON_HEADER,
  DEFAULT_MAX_DELIVERIES,
  DELIVERY_LIMIT_REASON,
  consumingQueue,
  deadLetterNames,
  mergeTopologies,
  topicExchange,
  type QueueDeclaration,
  type Topology,
} from '../../src/contracts/messaging.ts';

export interface MessageBusHarness {
  /** A new, empty-handed bus on the adapter's broker; the suite closes it. */
  createBus(): Promise<MessageBus>;
  /** Cuts every connection from the server side; only adapters with a connection provide it. */
  dropConnections?(): Promise<void>;
}

export interface MessageBusContractOptions {
  /** Skip reason (e.g. the broker is unreachable). */
  readonly skip?: string;
  /** The adapter talks to a server over a connection that a test can cut (RabbitMQ, not the in-process bus). */
  readonly hasConnection?: boolean;
  setUp(): Promise<MessageBusHarness>;
  tearDown(): Promise<void>;
}

/** Time allowed for something that should happen; generous, as a shared broker can be slow. */
const EVENTUALLY_MS = 10_000;
/** Time we watch for something that must not happen (a redelivery, an extra message). */
const QUIET_MS = 250;

export function messageBusContract(adapter: string, options: MessageBusContractOptions): void {
  describe(`MessageBus contract: ${adapter}`, { skip: options.skip }, () => {
    let harness: MessageBusHarness;
    let counter = 0;
    const buses: MessageBus[] = [];

    before(async () => {
      harness = await options.setUp();
    });
    after(async () => {
      await Promise.allSettled(buses.map((bus) => bus.close()));
      await options.tearDown();
    });

    /** A fresh bus and unique names for one test. */
    async function fixture(): Promise<{ bus: MessageBus; name: (suffix: string) => string }> {
      const bus = await harness.createBus();
      buses.push(bus);
      const prefix = `t${++counter}`;
      return { bus, name: (suffix) => `${prefix}.${suffix}` };
    }

    test('routes by topic: * matches one word, # zero or more, and an unroutable publish still confirms', async () => {
      const { bus, name } = await fixture();
      const exchange = name('events');
      const patterns = {
        star: 'student.*',
        hash: 'student.#',
        exact: 'student.created',
        anyDeleted: '*.deleted',
      };
      await bus.declareTopology(
        mergeTopologies(
          { exchanges: [topicExchange(exchange)], queues: [], bindings: [] },
          ...Object.entries(patterns).map(([queue, routingKey]) =>
            consumingQueue(name(queue), { exchange, routingKeys: [routingKey] }),
          ),
        ),
      );
      const keys = [
        'student.created',
        'student.created.v2',
        'student.deleted',
        'teacher.deleted',
        'student',
        'x.y',
      ];
      await bus.publish(keys.map((routingKey, i) => message(exchange, routingKey, `m${i}`)));

      const expected = {
        star: ['student.created', 'student.deleted'],
        hash: ['student.created', 'student.created.v2', 'student.deleted', 'student'],
        exact: ['student.created'],
        anyDeleted: ['student.deleted', 'teacher.deleted'],
      };
      for (const [queue, routingKeys] of Object.entries(expected)) {
        const inbox = await collect(bus, name(queue));
        await inbox.waitFor(routingKeys.length);
        await sleep(QUIET_MS);
        assert.deepEqual(inbox.messages.map((m) => m.routingKey).sort(), [...routingKeys].sort(), queue);
        await inbox.close();
      }
    });

    test('publish resolves once confirmed, rejects for a missing exchange, and the bus keeps publishing', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      await bus.publish(range(20).map((i) => message(exchange, 'student.created', `m${i}`)));

      await assert.rejects(bus.publish([message(name('missing'), 'student.created', 'lost')]));
      await assert.rejects(
        // The failing message first: the ones after it still go out.
        bus.publish([
          message(name('missing'), 'student.created', 'x'),
          message(exchange, 'student.created', 'm20'),
        ]),
      );
      await bus.publish([message(exchange, 'student.created', 'm21')]);

      const inbox = await collect(bus, queue);
      await inbox.waitFor(22);
      await sleep(QUIET_MS);
      assert.deepEqual(inbox.ids().sort(), [...range(22).map((i) => `m${i}`)].sort());
    });

    test('a publish whose signal has aborted sends nothing and rejects with its reason', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      const stopped = new Error('stopping');
      await assert.rejects(
        bus.publish([message(exchange, 'student.created', 'aborted')], AbortSignal.abort(stopped)),
        stopped,
      );
      await bus.publish([message(exchange, 'student.created', 'sent')], new AbortController().signal);

      const inbox = await collect(bus, queue);
      await inbox.waitFor(1);
      await sleep(QUIET_MS);
      assert.deepEqual(inbox.ids(), ['sent']);
    });

    test('an acked message arrives once with its id, key, body, headers and delivery count 1', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      await bus.publish([
        {
          exchange,
          routingKey: 'student.updated',
          messageId: 'id-1',
          body: JSON.stringify({ eventType: 'StudentUpdated', n: 1 }),
          headers: { traceparent },
        },
      ]);

      const inbox = await collect(bus, queue);
      await inbox.waitFor(1);
      const [received] = inbox.messages;
      assert.ok(received);
      assert.equal(received.messageId, 'id-1');
      assert.equal(received.exchange, exchange);
      assert.equal(received.routingKey, 'student.updated');
      assert.deepEqual(JSON.parse(received.body.toString()), { eventType: 'StudentUpdated', n: 1 });
      assert.equal(received.contentType, 'application/json');
      assert.equal(received.headers.traceparent, traceparent);
      assert.equal(received.deliveryCount, 1);
      assert.equal(received.redelivered, false);
      await inbox.close();

      const again = await collect(bus, queue);
      await sleep(QUIET_MS);
      assert.equal(again.messages.length, 0, 'an acked message must not come back');
    });

    test('retry requeues with a growing delivery count until the handler succeeds; a throw counts as retry', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name, { maxDeliveries: 5 });
      await bus.publish([message(exchange, 'student.created', 'flaky')]);

      const inbox = await collect(bus, queue, {
        handler: (m) => {
          if (m.deliveryCount === 1) throw new Error('transient: database busy');
          return m.deliveryCount === 2 ? outcome.retry('still busy') : outcome.ack();
        },
      });
      await inbox.waitFor(3);
      await sleep(QUIET_MS);
      assert.deepEqual(
        inbox.messages.map((m) => [m.messageId, m.deliveryCount, m.redelivered]),
        [
          ['flaky', 1, false],
          ['flaky', 2, true],
          ['flaky', 3, true],
        ],
      );
      assert.deepEqual(
        inbox.messages.map((m) => m.headers),
        [{}, {}, {}],
        'headers as published: the broker bookkeeping (x-delivery-count) is not one of them',
      );
      const dead = await collect(bus, deadLetterNames(queue).queue);
      await sleep(QUIET_MS);
      assert.equal(dead.messages.length, 0);
    });

    test('with prefetch 1 a retried message is redelivered before the messages behind it (strict FIFO)', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name, { maxDeliveries: 5 });
      await bus.publish(['a', 'b', 'c'].map((id) => message(exchange, 'student.updated', id)));

      const inbox = await collect(bus, queue, {
        prefetch: 1,
        handler: (m) => (m.messageId === 'a' && m.deliveryCount < 3 ? outcome.retry() : outcome.ack()),
      });
      await inbox.waitFor(5);
      await sleep(QUIET_MS);
      assert.deepEqual(inbox.ids(), ['a', 'a', 'a', 'b', 'c']);
    });

    test('a message that keeps failing is dead-lettered after maxDeliveries, headers and body kept', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name, { maxDeliveries: 3 });
      await bus.publish([
        {
          ...message(exchange, 'student.deleted', 'poison'),
          headers: { traceparent: 'tp-1', 'x-custom': 'kept' },
        },
      ]);

      const inbox = await collect(bus, queue, { handler: () => outcome.retry('always failing') });
      const dead = await collect(bus, deadLetterNames(queue).queue);
      await dead.waitFor(1);
      await sleep(QUIET_MS);
      assert.deepEqual(
        inbox.messages.map((m) => m.deliveryCount),
        [1, 2, 3],
      );
      const [buried] = dead.messages;
      assert.ok(buried);
      assert.equal(buried.messageId, 'poison');
      assert.equal(buried.routingKey, 'student.deleted');
      assert.equal(buried.body.toString(), message(exchange, 'student.deleted', 'poison').body);
      assert.equal(buried.exchange, deadLetterNames(queue).exchange);
      assert.equal(buried.headers[DEATH_REASON_HEADER], DELIVERY_LIMIT_REASON);
      assert.equal(buried.headers[DEATH_QUEUE_HEADER], queue);
      assert.equal(buried.headers.traceparent, 'tp-1');
      assert.equal(buried.headers['x-custom'], 'kept');
      assert.equal(dead.messages.length, 1);
    });

    test('deadLetter(reason) sends the message to the dead-letter queue at once, with the reason', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name, { maxDeliveries: 5 });
      const original = {
        ...message(exchange, 'student.updated', 'invalid'),
        headers: { traceparent: 'tp-2' },
      };
      await bus.publish([original]);

      const inbox = await collect(bus, queue, {
        handler: () => outcome.deadLetter('student id is not a UUID'),
      });
      const dead = await collect(bus, deadLetterNames(queue).queue);
      await dead.waitFor(1);
      await sleep(QUIET_MS);
      assert.equal(inbox.messages.length, 1, 'dead-lettered on the first delivery, never retried');
      const [buried] = dead.messages;
      assert.ok(buried);
      assert.equal(buried.messageId, 'invalid');
      assert.equal(buried.routingKey, 'student.updated');
      assert.equal(buried.body.toString(), original.body);
      assert.equal(buried.exchange, deadLetterNames(queue).exchange);
      assert.equal(buried.headers[DEATH_REASON_HEADER], 'student id is not a UUID');
      assert.equal(buried.headers[DEATH_QUEUE_HEADER], queue);
      assert.equal(buried.headers.traceparent, 'tp-2');
      assert.equal(buried.deliveryCount, 1);
    });

    test('a reason too long for a message header is cut, and the message is still dead-lettered at once', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name, { maxDeliveries: 5 });
      await bus.publish([message(exchange, 'student.updated', 'long-reason')]);
      // As a validation error listing every problem with a large body can be: past RabbitMQ's frame for a header.
      const reason = `invalid: ${'x'.repeat(20_000)}`;
      const inbox = await collect(bus, queue, { handler: () => outcome.deadLetter(reason) });
      const dead = await collect(bus, deadLetterNames(queue).queue);
      await dead.waitFor(1);
      await sleep(QUIET_MS);
      assert.equal(inbox.messages.length, 1, 'dead-lettered on the first delivery, never retried');
      const kept = String(dead.messages[0]?.headers[DEATH_REASON_HEADER]);
      assert.ok(kept.startsWith('invalid: xxx'), kept.slice(0, 40));
      assert.ok(kept.length <= MAX_DEAD_LETTER_REASON_LENGTH, `${kept.length} characters`);
    });

    test('a handler can dead-letter an unparseable body; the dead-letter queue keeps its exact bytes', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      const garbage = '{"eventType": "StudentCreated", "student": {'; // truncated JSON
      await bus.publish([{ ...message(exchange, 'student.created', 'garbage'), body: garbage }]);
      await bus.publish([message(exchange, 'student.created', 'fine')]);

      const parsed: unknown[] = [];
      await collect(bus, queue, {
        handler: (m) => {
          try {
            parsed.push(JSON.parse(m.body.toString()));
            return outcome.ack();
          } catch (error) {
            return outcome.deadLetter(`unparseable body: ${(error as Error).message}`);
          }
        },
      });
      const dead = await collect(bus, deadLetterNames(queue).queue);
      await dead.waitFor(1);
      await waitUntil(() => parsed.length === 1, 'the next message is handled');
      const [buried] = dead.messages;
      assert.ok(buried);
      assert.equal(buried.messageId, 'garbage');
      assert.equal(buried.body.toString(), garbage);
      assert.match(buried.headers[DEATH_REASON_HEADER] ?? '', /^unparseable body: /);
    });

    test('never more than prefetch messages are in flight, and prefetch are used', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      await bus.publish(range(40).map((i) => message(exchange, 'student.created', `m${i}`)));

      let inFlight = 0;
      let maxInFlight = 0;
      const inbox = await collect(bus, queue, {
        prefetch: 4,
        handler: async () => {
          maxInFlight = Math.max(maxInFlight, ++inFlight);
          await sleep(5);
          inFlight--;
          return outcome.ack();
        },
      });
      await inbox.waitFor(40);
      assert.equal(maxInFlight, 4);
    });

    test('with prefetch 50, messages of one key are handled in order while different keys run concurrently', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      const keys = range(20).map((k) => `student-${k}`);
      const perKey = 25;
      // Interleaved like real traffic: k0#0, k1#0, ..., k19#0, k0#1, ...
      const outgoing = range(perKey).flatMap((seq) =>
        keys.map((key) => ({
          ...message(exchange, 'student.updated', `${key}/${seq}`),
          headers: { subject: key },
        })),
      );
      await bus.publish(outgoing);

      const seen = new Map<string, number[]>();
      const running = new Set<string>();
      let inFlight = 0;
      let maxInFlight = 0;
      let overlapWithinKey = false;
      const inbox = await collect(bus, queue, {
        prefetch: 50,
        orderingKey: (m) => m.headers.subject,
        handler: async (m) => {
          const key = m.headers.subject ?? '';
          if (running.has(key)) overlapWithinKey = true;
          running.add(key);
          maxInFlight = Math.max(maxInFlight, ++inFlight);
          await sleep(Math.random() * 3);
          seen.set(key, [...(seen.get(key) ?? []), Number(m.messageId.split('/')[1])]);
          running.delete(key);
          inFlight--;
          return outcome.ack();
        },
      });
      await inbox.waitFor(outgoing.length);
      const handled = () => [...seen.values()].reduce((sum, seqs) => sum + seqs.length, 0);
      await waitUntil(() => handled() === outgoing.length, 'every handler finished');
      assert.equal(overlapWithinKey, false, 'two messages of one key ran at the same time');
      for (const key of keys) assert.deepEqual(seen.get(key), range(perKey), key);
      assert.ok(maxInFlight > 1, `different keys should run concurrently (max in flight ${maxInFlight})`);
      assert.ok(maxInFlight <= 50, `prefetch exceeded: ${maxInFlight}`);
    });

    test('a message that goes back to the queue takes the ones of its key delivered behind it along, so the key stays in order', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      const keyed = (key: string, seq: number) => ({
        ...message(exchange, 'student.updated', `${key}/${seq}`),
        headers: { subject: key },
      });
      await bus.publish(range(5).flatMap((seq) => [keyed('a', seq), keyed('b', seq)]));

      const calls: string[] = [];
      const handled = new Map<string, number[]>();
      let failedOnce = false;
      const inbox = await collect(bus, queue, {
        prefetch: 50,
        orderingKey: (m) => m.headers.subject,
        handler: async (m) => {
          calls.push(m.messageId);
          const [key, seq] = m.messageId.split('/') as [string, string];
          // a/1 fails once, after a/2..a/4 have arrived behind it.
          if (m.messageId === 'a/1' && !failedOnce) {
            await sleep(50);
            failedOnce = true;
            return outcome.retry('transient');
          }
          handled.set(key, [...(handled.get(key) ?? []), Number(seq)]);
          return outcome.ack();
        },
      });
      await waitUntil(
        () => (handled.get('a')?.length ?? 0) === 5 && handled.get('b')?.length === 5,
        'both keys',
      );
      await sleep(QUIET_MS);
      await inbox.close();
      assert.deepEqual(handled.get('a'), range(5), 'key a in order, each once');
      assert.deepEqual(handled.get('b'), range(5), 'key b untouched');
      assert.deepEqual(
        calls.filter((id) => id.startsWith('a/')),
        ['a/0', 'a/1', 'a/1', 'a/2', 'a/3', 'a/4'],
        'a/2..a/4 went back with a/1 without being handled',
      );
    });

    test('competing consumers on one queue share its messages, each delivered to one of them', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      const slowAck = async () => {
        await sleep(2);
        return outcome.ack();
      };
      const first = await collect(bus, queue, { handler: slowAck });
      const second = await collect(bus, queue, { handler: slowAck });
      await bus.publish(range(30).map((i) => message(exchange, 'student.created', `m${i}`)));
      await waitUntil(() => first.messages.length + second.messages.length >= 30, '30 messages in total');
      await sleep(QUIET_MS);
      assert.deepEqual(
        [...first.ids(), ...second.ids()].sort(),
        range(30)
          .map((i) => `m${i}`)
          .sort(),
      );
      assert.ok(first.messages.length > 0 && second.messages.length > 0, 'both consumers got work');
    });

    test('a single-active-consumer queue delivers to one consumer at a time; the next takes over when it closes', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name, { singleActiveConsumer: true });
      const first = await collect(bus, queue, { prefetch: 10 });
      const second = await collect(bus, queue, { prefetch: 10 });
      await bus.publish(range(20).map((i) => message(exchange, 'student.created', `m${i}`)));
      await first.waitFor(20);
      await sleep(QUIET_MS);
      assert.deepEqual(
        first.ids(),
        range(20).map((i) => `m${i}`),
      );
      assert.equal(second.messages.length, 0, 'the other stands by');
      await first.close();
      await bus.publish(range(5).map((i) => message(exchange, 'student.created', `n${i}`)));
      await second.waitFor(5);
      assert.deepEqual(
        second.ids(),
        range(5).map((i) => `n${i}`),
      );
    });

    test('a single active consumer that closes while holding messages hands them over before any later one', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name, { singleActiveConsumer: true });
      const handled: string[] = [];
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const keyed = { orderingKey: () => 'one student' };
      const first = await collect(bus, queue, {
        ...keyed,
        prefetch: 4,
        handler: async (m) => {
          handled.push(m.messageId);
          if (m.messageId === 'm0') await released;
          return outcome.ack();
        },
      });
      const second = await collect(bus, queue, {
        ...keyed,
        prefetch: 4,
        handler: (m) => {
          handled.push(m.messageId);
          return outcome.ack();
        },
      });
      await bus.publish(range(12).map((i) => message(exchange, 'student.updated', `m${i}`)));
      await waitUntil(() => handled.includes('m0'), 'm0 in hand');
      // The first holds m0 (being handled) and m1..m3 (delivered behind it) when it starts to close.
      await sleep(QUIET_MS);
      const closed = first.close();
      await sleep(QUIET_MS);
      release();
      await closed;
      await waitUntil(() => new Set(handled).size === 12, 'every message handled');
      await sleep(QUIET_MS);
      await second.close();
      assert.deepEqual(
        handled,
        range(12).map((i) => `m${i}`),
        'each once, in order, across the hand-over',
      );
    });

    test('a consistent-hash exchange behind a topic exchange gives each message to exactly one queue, by its hash header', async () => {
      const { bus, name } = await fixture();
      const exchange = name('students');
      const partitions = name('partitions');
      const queues = range(4).map((p) => name(`worker.${p}`));
      const topology: Topology = mergeTopologies(
        {
          exchanges: [
            topicExchange(exchange),
            { name: partitions, type: 'x-consistent-hash', durable: true, hashHeader: 'subject' },
          ],
          queues: [],
          bindings: [],
          exchangeBindings: [{ source: exchange, destination: partitions, routingKey: 'student.*' }],
        },
        ...queues.map((queue) =>
          consumingQueue(queue, { exchange: partitions, routingKeys: ['1'] }, { singleActiveConsumer: true }),
        ),
      );
      await bus.declareTopology(topology);
      await bus.declareTopology(topology); // idempotent: no second binding, no duplicates
      // A queue's binding key on a consistent-hash exchange is its weight.
      await assert.rejects(
        bus.declareTopology({
          ...topology,
          bindings: [{ exchange: partitions, queue: queues[0]!, routingKey: '#' }],
        }),
        /weight, a positive integer/,
      );

      const keys = range(100).map((k) => `student-${k}`);
      const perKey = 3;
      await bus.publish([
        ...range(perKey).flatMap((seq) =>
          keys.map((key) => ({
            ...message(exchange, 'student.updated', `${key}/${seq}`),
            headers: { subject: key },
          })),
        ),
        // The topic binding still filters: this one reaches no partition.
        { ...message(exchange, 'teacher.updated', 'not-a-student'), headers: { subject: 'student-0' } },
      ]);

      const inboxes = await Promise.all(queues.map((queue) => collect(bus, queue)));
      const total = () => inboxes.reduce((sum, inbox) => sum + inbox.messages.length, 0);
      await waitUntil(() => total() >= keys.length * perKey, 'every message in some partition');
      await sleep(QUIET_MS);
      assert.equal(total(), keys.length * perKey, 'each message in exactly one partition');
      const partitionOf = new Map<string, number>();
      inboxes.forEach((inbox, partition) => {
        assert.ok(inbox.messages.length > 0, `partition ${partition} got no student`);
        for (const received of inbox.messages) {
          const key = received.headers.subject ?? '';
          assert.equal(partitionOf.get(key) ?? partition, partition, `${key} went to two partitions`);
          partitionOf.set(key, partition);
        }
      });
      for (const key of keys) {
        const inbox = inboxes[partitionOf.get(key)!]!;
        assert.deepEqual(
          inbox.ids().filter((id) => id.startsWith(`${key}/`)),
          range(perKey).map((seq) => `${key}/${seq}`),
          `${key} in publish order`,
        );
      }

      // Stable: the same header value goes to the same partition again, also after the topology is declared again
      // (as every role of a process declares it): a key that moved would overtake its own earlier messages.
      await bus.declareTopology(topology);
      await bus.publish(
        keys.map((key) => ({
          ...message(exchange, 'student.deleted', `${key}/again`),
          headers: { subject: key },
        })),
      );
      await waitUntil(() => total() >= keys.length * (perKey + 1), 'every later message in some partition');
      for (const key of keys) {
        const again = inboxes[partitionOf.get(key)!]!;
        assert.ok(again.ids().includes(`${key}/again`), `${key} moved to another partition`);
      }
    });

    test('Subscription.close stops taking messages and waits for in-flight handlers to finish and settle', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      await bus.publish([message(exchange, 'student.created', 'slow')]);

      const release = deferred();
      const started = deferred();
      let finished = false;
      const subscription = await bus.consume(queue, {
        prefetch: 5,
        handler: async () => {
          started.resolve();
          await release.promise;
          finished = true;
          return outcome.ack();
        },
      });
      await started.promise;
      assert.equal(subscription.waitingForBroker, false);
      let closed = false;
      const closing = subscription.close().then(() => (closed = true));
      assert.equal(subscription.waitingForBroker, false, 'closing is not waiting for the broker');
      await sleep(50);
      await bus.publish([message(exchange, 'student.created', 'after-close')]);
      await sleep(QUIET_MS);
      assert.equal(closed, false, 'close() resolved while a handler was still running');
      release.resolve();
      await closing;
      assert.equal(finished, true);
      assert.equal(subscription.waitingForBroker, false, 'a closed subscription waits for nothing');

      const next = await collect(bus, queue);
      await next.waitFor(1);
      await sleep(QUIET_MS);
      assert.deepEqual(next.ids(), ['after-close'], 'the in-flight message was acked; the later one waited');
    });

    test('Subscription.close resolves with how many in-flight messages went back to the queue', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name, { maxDeliveries: 4 });
      await bus.publish(range(3).map((i) => message(exchange, 'student.created', `m${i}`)));

      // Each handler gives its message back once the stop began (as the notifications consumer does while the replay
      // log is away); the first one acks.
      const release = deferred();
      let delivered = 0;
      const subscription = await bus.consume(queue, {
        prefetch: 5,
        handler: async (received) => {
          delivered++;
          await release.promise;
          return received.messageId === 'm0' ? outcome.ack() : outcome.retry('stopping');
        },
      });
      await waitUntil(() => delivered === 3, 'three messages in flight');
      const closing = subscription.close();
      release.resolve();
      assert.equal(await closing, 2);

      const next = await collect(bus, queue);
      await next.waitFor(2);
      assert.deepEqual(next.ids().sort(), ['m1', 'm2'], 'the two went back to the queue');
    });

    test('declaring the same topology twice is harmless; a conflicting queue declaration rejects', async () => {
      const { bus, name } = await fixture();
      const first = await simpleTopology(bus, name, { maxDeliveries: 4 });
      const second = await simpleTopology(bus, name, { maxDeliveries: 4 });
      assert.deepEqual(second, first);
      await bus.publish([message(first.exchange, 'student.created', 'once')]);
      const inbox = await collect(bus, first.queue);
      await inbox.waitFor(1);
      await sleep(QUIET_MS);
      assert.deepEqual(inbox.ids(), ['once'], 'a repeated binding must not duplicate messages');

      await assert.rejects(simpleTopology(bus, name, { maxDeliveries: 9 }));
      await bus.publish([message(first.exchange, 'student.created', 'still-works')]);
      await inbox.waitFor(2);
    });

    test('inspectQueue tells the messages waiting in a queue and its consumers; no such queue is undefined', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      assert.deepEqual(await bus.inspectQueue(queue), { messages: 0, consumers: 0 });
      await bus.publish(range(3).map((i) => message(exchange, 'student.created', `m${i}`)));
      assert.deepEqual(await bus.inspectQueue(queue), { messages: 3, consumers: 0 });
      const inbox = await collect(bus, queue, { prefetch: 10 });
      await inbox.waitFor(3);
      assert.deepEqual(await bus.inspectQueue(queue), { messages: 0, consumers: 1 });
      assert.equal(await bus.inspectQueue(name('nowhere')), undefined);
      // Asking about a missing queue breaks nothing (RabbitMQ closes the channel it asked on).
      await bus.publish([message(exchange, 'student.created', 'after')]);
      await inbox.waitFor(4);
      assert.deepEqual(await bus.inspectQueue(queue), { messages: 0, consumers: 1 });
      // Nor does it fail another question asked at the same time (the worker asks about two queues at once).
      assert.deepEqual(await Promise.all([bus.inspectQueue(name('nowhere')), bus.inspectQueue(queue)]), [
        undefined,
        { messages: 0, consumers: 1 },
      ]);
    });

    test('consuming a queue that does not exist rejects; status reports the connection', async () => {
      const { bus, name } = await fixture();
      await simpleTopology(bus, name);
      assert.equal(bus.status().connected, true);
      await assert.rejects(bus.consume(name('nowhere'), { prefetch: 1, handler: () => outcome.ack() }));
      await bus.publish([]); // an empty batch is a no-op
      await bus.close();
      assert.equal(bus.status().connected, false);
    });

    test('a message dead-lettered takes none of its key along: the ones delivered behind it are handled at once', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      await bus.publish(
        range(5).map((seq) => ({
          ...message(exchange, 'student.updated', `a/${seq}`),
          headers: { subject: 'a' },
        })),
      );
      const inbox = await collect(bus, queue, {
        prefetch: 50,
        orderingKey: (m) => m.headers.subject,
        handler: async (m) => {
          // a/1 is dead-lettered after a/2..a/4 have arrived behind it.
          if (m.messageId !== 'a/1') return outcome.ack();
          await sleep(50);
          return outcome.deadLetter('invalid');
        },
      });
      const dead = await collect(bus, deadLetterNames(queue).queue);
      await inbox.waitFor(5);
      await dead.waitFor(1);
      await sleep(QUIET_MS);
      assert.deepEqual(
        inbox.messages.map((m) => [m.messageId, m.deliveryCount]),
        range(5).map((seq) => [`a/${seq}`, 1]),
        'each handled once, on its first delivery',
      );
      assert.deepEqual(dead.ids(), ['a/1']);
    });

    test('a message whose ordering key is undefined, or whose key function throws, is handled beside the others', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      await bus.publish(range(4).map((i) => message(exchange, 'student.created', `m${i}`)));
      let inFlight = 0;
      let maxInFlight = 0;
      const inbox = await collect(bus, queue, {
        prefetch: 4,
        orderingKey: (m) => {
          if (m.messageId === 'm0') throw new Error('no key in this message');
          return undefined;
        },
        handler: async () => {
          maxInFlight = Math.max(maxInFlight, ++inFlight);
          await sleep(50);
          inFlight--;
          return outcome.ack();
        },
      });
      await inbox.waitFor(4);
      await sleep(QUIET_MS);
      assert.deepEqual(inbox.ids().sort(), ['m0', 'm1', 'm2', 'm3'], 'each handled once');
      assert.ok(
        maxInFlight > 1,
        `handled one at a time as if they shared a key (max in flight ${maxInFlight})`,
      );
    });

    test('a consume whose signal has aborted rejects with its reason and takes nothing from the queue', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      await bus.publish([message(exchange, 'student.created', 'kept')]);
      const stopped = new Error('stopping');
      let handled = 0;
      await assert.rejects(
        bus.consume(queue, {
          prefetch: 1,
          handler: () => (handled++, outcome.ack()),
          signal: AbortSignal.abort(stopped),
        }),
        stopped,
      );
      await sleep(QUIET_MS);
      assert.equal(handled, 0);
      const inbox = await collect(bus, queue);
      await inbox.waitFor(1);
      assert.deepEqual(inbox.ids(), ['kept']);
    });

    test('consume refuses a prefetch that is not a positive integer', async () => {
      const { bus, name } = await fixture();
      const { queue } = await simpleTopology(bus, name);
      for (const prefetch of [0, -1, 1.5])
        await assert.rejects(
          bus.consume(queue, { prefetch, handler: () => outcome.ack() }),
          /prefetch must be a positive integer/,
          `prefetch ${prefetch}`,
        );
    });

    test('a backlog of thousands of messages is delivered whole and in order', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      const ids = range(3_000).map((i) => `m${i}`);
      await bus.publish(ids.map((id) => message(exchange, 'student.created', id)));
      const inbox = await collect(bus, queue, { prefetch: 20 });
      await inbox.waitFor(ids.length);
      await sleep(QUIET_MS);
      assert.deepEqual(inbox.ids(), ids);
    });

    test('bindings declared after messages were routed take effect for the messages published after them', async () => {
      const { bus, name } = await fixture();
      const exchange = name('students');
      const partitions = name('partitions');
      const [p0, p1] = [name('p0'), name('p1')];
      await bus.declareTopology(
        mergeTopologies(
          {
            exchanges: [
              topicExchange(exchange),
              { name: partitions, type: 'x-consistent-hash', durable: true, hashHeader: 'subject' },
            ],
            queues: [],
            bindings: [],
          },
          consumingQueue(p0, { exchange: partitions, routingKeys: ['1'] }),
        ),
      );
      const subjects = range(20).map((k) => `student-${k}`);
      const publish = (id: string) => bus.publish([message(exchange, 'student.updated', id)]);
      const publishToPartitions = (round: string) =>
        bus.publish(
          subjects.map((subject) => ({
            ...message(partitions, 'student.created', `${round}/${subject}`),
            headers: { subject },
          })),
        );
      await publish('unrouted');
      await publishToPartitions('before');
      await bus.declareTopology(consumingQueue(name('updated'), { exchange, routingKeys: ['student.*'] }));
      await publish('bound');
      await bus.declareTopology({
        exchanges: [],
        queues: [],
        bindings: [],
        exchangeBindings: [{ source: exchange, destination: partitions, routingKey: 'student.*' }],
      });
      await publish('bound-on');
      await bus.declareTopology(consumingQueue(p1, { exchange: partitions, routingKeys: ['1'] }));
      await publishToPartitions('after');

      const updated = await collect(bus, name('updated'));
      const inboxes = await Promise.all([p0, p1].map((queue) => collect(bus, queue, { prefetch: 50 })));
      const partitioned = () => inboxes.flatMap((inbox) => inbox.ids());
      await updated.waitFor(2);
      await waitUntil(() => partitioned().length >= 2 * subjects.length + 1, 'every message in a partition');
      await sleep(QUIET_MS);
      assert.deepEqual(
        updated.ids(),
        ['bound', 'bound-on'],
        'a queue bound later gets what is published after',
      );
      assert.deepEqual(
        partitioned().filter((id) => !id.includes('/')),
        ['bound-on'],
        'an exchange bound on later passes on what is published after',
      );
      assert.ok(
        inboxes[1]!.ids().some((id) => id.startsWith('after/')),
        'a queue bound later to a consistent-hash exchange takes its share',
      );
    });

    test('a body arrives byte for byte, also JSON that parsing and serializing again would change', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      const body = '{ "id": 12345678901234567890, "grade": 1.50, "name": "\\u00e9" }';
      await bus.publish([{ ...message(exchange, 'student.created', 'exact'), body }]);
      const inbox = await collect(bus, queue);
      await inbox.waitFor(1);
      assert.equal(inbox.messages[0]?.body.toString(), body);
    });

    test('closing the bus waits for the handlers in flight to finish and settle; then it refuses work', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name);
      const started = deferred();
      const release = deferred();
      let finished = false;
      await bus.consume(queue, {
        prefetch: 1,
        handler: async () => {
          started.resolve();
          await release.promise;
          finished = true;
          return outcome.ack();
        },
      });
      await bus.publish([message(exchange, 'student.created', 'in-flight')]);
      await started.promise;
      let closed = false;
      const closing = bus.close().then(() => (closed = true));
      await sleep(QUIET_MS);
      assert.equal(closed, false, 'close() resolved while a handler was still running');
      release.resolve();
      await closing;
      assert.equal(finished, true);
      await assert.rejects(bus.publish([message(exchange, 'student.created', 'late')]), /closed/);
      await assert.rejects(bus.consume(queue, { prefetch: 1, handler: () => outcome.ack() }), /closed/);
    });

    test('a declaration that conflicts with what is declared, or binds what does not exist, rejects', async () => {
      const { bus, name } = await fixture();
      const { exchange, queue } = await simpleTopology(bus, name, { singleActiveConsumer: true });
      const dead = deadLetterNames(queue);
      const declared: QueueDeclaration = {
        name: queue,
        type: 'quorum',
        durable: true,
        maxDeliveries: DEFAULT_MAX_DELIVERIES,
        deadLetterExchange: dead.exchange,
        singleActiveConsumer: true,
      };
      const only = (part: Partial<Topology>): Topology => ({
        exchanges: [],
        queues: [],
        bindings: [],
        ...part,
      });
      // Declaring it as it is changes nothing.
      await bus.declareTopology(only({ queues: [declared] }));
      const conflicting: [string, Topology][] = [
        [
          'an exchange of another type',
          only({ exchanges: [{ ...topicExchange(exchange), type: 'fanout' }] }),
        ],
        ['a queue of another type', only({ queues: [{ name: dead.queue, type: 'classic', durable: true }] })],
        [
          'another dead-letter exchange',
          only({ queues: [{ ...declared, deadLetterExchange: name('other.dlx') }] }),
        ],
        [
          'without single active consumer',
          only({ queues: [{ ...declared, singleActiveConsumer: undefined }] }),
        ],
        [
          'a binding to no queue',
          only({ bindings: [{ exchange, queue: name('nowhere'), routingKey: '#' }] }),
        ],
        [
          'a binding from no exchange',
          only({ bindings: [{ exchange: name('nowhere'), queue, routingKey: '#' }] }),
        ],
      ];
      for (const [what, topology] of conflicting) await assert.rejects(bus.declareTopology(topology), what);

      await bus.publish([message(exchange, 'student.created', 'still-works')]);
      const inbox = await collect(bus, queue);
      await inbox.waitFor(1);
    });

    test('a topology RabbitMQ would refuse or silently ignore is refused by both adapters', async () => {
      const { bus, name } = await fixture();
      const hash = { name: name('hash'), type: 'x-consistent-hash' as const, durable: true };
      const queue = { name: name('q'), type: 'quorum' as const, durable: true };
      const only = (part: Partial<Topology>): Topology => ({
        exchanges: [],
        queues: [],
        bindings: [],
        ...part,
      });
      const invalid: [string, Topology][] = [
        ['a quorum queue that is not durable', only({ queues: [{ ...queue, durable: false }] })],
        [
          'a delivery limit on a classic queue',
          only({ queues: [{ ...queue, type: 'classic', maxDeliveries: 3 }] }),
        ],
        ['a delivery limit of 0', only({ queues: [{ ...queue, maxDeliveries: 0 }] })],
        [
          'a hash header on a topic exchange',
          only({ exchanges: [{ ...topicExchange(name('t')), hashHeader: 'subject' }] }),
        ],
        [
          'a weight of 0 on a consistent-hash exchange',
          only({
            exchanges: [hash],
            queues: [queue],
            bindings: [{ exchange: hash.name, queue: queue.name, routingKey: '0' }],
          }),
        ],
        [
          'a consistent-hash exchange bound on to another exchange',
          only({
            exchanges: [hash, topicExchange(name('t'))],
            exchangeBindings: [{ source: hash.name, destination: name('t'), routingKey: '#' }],
          }),
        ],
      ];
      for (const [what, topology] of invalid) await assert.rejects(bus.declareTopology(topology), what);
    });

    if (options.hasConnection)
      test('connection lost and back: publishes confirm after recovery, the consumer resumes, nothing is lost', async () => {
        const { bus, name } = await fixture();
        const { exchange, queue } = await simpleTopology(bus, name);
        const inbox = await collect(bus, queue, { prefetch: 10 });

        await bus.publish(range(50).map((i) => message(exchange, 'student.created', `before-${i}`)));
        await inbox.waitFor(50);
        assert.equal(inbox.subscription.waitingForBroker, false);
        let sawDisconnected = false;
        let sawWaiting = false;
        let sawDetail = false;
        const watcher = setInterval(() => {
          sawDisconnected ||= !bus.status().connected;
          sawDetail ||= bus.status().detail !== undefined;
          sawWaiting ||= inbox.subscription.waitingForBroker;
        }, 1);
        try {
          await harness.dropConnections!();
          // Published while the client reconnects: confirmed once it is back.
          await bus.publish(range(50).map((i) => message(exchange, 'student.created', `after-${i}`)));
        } finally {
          clearInterval(watcher);
        }
        assert.equal(sawDisconnected, true, 'the connection was never lost: the test proves nothing');
        // RabbitMQ publishes on a connection of its own: the consumers' may be back a moment later.
        await waitUntil(() => bus.status().connected, 'connected again');
        assert.equal(sawDetail, true, 'the lost connection was never explained');
        assert.equal(
          bus.status().detail,
          undefined,
          'what went wrong is still told once the connection is back',
        );
        const expected = [...range(50).map((i) => `before-${i}`), ...range(50).map((i) => `after-${i}`)];
        await waitUntil(() => new Set(inbox.ids()).size === expected.length, 'every message consumed');
        assert.deepEqual([...new Set(inbox.ids())].sort(), expected.sort());
        assert.equal(sawWaiting, true, 'the subscription never said it waited for the broker');
        assert.equal(inbox.subscription.waitingForBroker, false, 'consuming again once the broker is back');
      });
  });
}

async function simpleTopology(
  bus: MessageBus,
  name: (suffix: string) => string,
  options: { maxDeliveries?: number; singleActiveConsumer?: boolean } = {},
): Promise<{ exchange: string; queue: string }> {
  const exchange = name('students');
  const queue = name('worker');
  const topology: Topology = mergeTopologies(
    { exchanges: [topicExchange(exchange)], queues: [], bindings: [] },
    consumingQueue(queue, { exchange, routingKeys: ['student.*'] }, options),
  );
  await bus.declareTopology(topology);
  return { exchange, queue };
}

function message(exchange: string, routingKey: string, messageId: string): OutgoingMessage {
  return {
    exchange,
    routingKey,
    messageId,
    body: JSON.stringify({ id: messageId, routingKey, at: '2025-01-01T00:00:00.000Z' }),
  };
}

interface Inbox {
  readonly messages: ReceivedMessage[];
  readonly subscription: Subscription;
  ids(): string[];
  waitFor(count: number): Promise<void>;
  close(): Promise<number>;
}

/** Consumes `queue`, recording every delivery; acks unless a handler says otherwise. */
async function collect(
  bus: MessageBus,
  queue: string,
  options: Partial<Omit<ConsumeOptions, 'handler'>> & {
    handler?: (m: ReceivedMessage) => Promise<HandlerOutcome> | HandlerOutcome;
  } = {},
): Promise<Inbox> {
  const messages: ReceivedMessage[] = [];
  const handler = options.handler ?? (() => outcome.ack());
  const subscription: Subscription = await bus.consume(queue, {
    prefetch: options.prefetch ?? 1,
    ...(options.orderingKey ? { orderingKey: options.orderingKey } : {}),
    handler: async (m) => {
      messages.push(m);
      return handler(m);
    },
  });
  return {
    messages,
    subscription,
    ids: () => messages.map((m) => m.messageId),
    waitFor: (count) => waitUntil(() => messages.length >= count, `${count} messages on ${queue}`, messages),
    close: () => subscription.close(),
  };
}

async function waitUntil(
  condition: () => boolean,
  what: string,
  seen?: readonly ReceivedMessage[],
): Promise<void> {
  const deadline = Date.now() + EVENTUALLY_MS;
  while (!condition()) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${seen ? ` (got ${seen.length})` : ''}`);
    await sleep(5);
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
