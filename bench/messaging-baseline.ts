// Raw messaging throughput on the real RabbitMQ, through the MessageBus adapter and through rabbitmq-client
// directly, so the adapter's overhead shows as a ratio. Own vhost, deleted afterwards.
// Run alone: npx tsx bench/messaging-baseline.ts [messages]
import { pathToFileURL } from 'node:url';
import { Connection } from 'rabbitmq-client';
import { outcome } from '../src/application/ports/message-bus.ts';
import { consumingQueue, mergeTopologies, topicExchange } from '../src/contracts/messaging.ts';
import { RabbitMqMessageBus } from '../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { createTestVhost } from '../test/support/rabbitmq-vhost.ts';
import { printTable, type BenchRow } from './table.ts';

export interface MessagingBaselineOptions {
  readonly messages?: number;
  readonly inFlight?: number;
}

const EXCHANGE = 'bench.students';

export async function messagingBaseline(options: MessagingBaselineOptions = {}): Promise<BenchRow[]> {
  const total = options.messages ?? 20_000;
  const inFlight = options.inFlight ?? 500;
  const vhost = await createTestVhost('messaging_bench');
  const rows: BenchRow[] = [];
  const rate = (variant: string, started: number) =>
    rows.push({
      scenario: 'raw RabbitMQ messaging',
      variant,
      rps: Math.round(total / ((performance.now() - started) / 1000)),
    });

  const raw = new Connection({ url: vhost.url, connectionName: 'messaging bench (raw)' });
  raw.on('error', (error: unknown) => console.error('raw connection error', error));
  const bus = new RabbitMqMessageBus({ url: vhost.url, connectionName: 'messaging bench (adapter)' });
  try {
    // Quorum is what the topology declares; classic shows what the queue type itself costs.
    for (const type of ['quorum', 'classic'] as const) {
      const queue = `bench.worker.${type}`;
      await bus.declareTopology(
        mergeTopologies(
          { exchanges: [topicExchange(EXCHANGE)], queues: [], bindings: [] },
          consumingQueue(queue, { exchange: EXCHANGE, routingKeys: [`${type}.*`] }, { type }),
        ),
      );
      await measureQueue(type, queue);
    }
  } finally {
    await bus.close();
    await raw.close();
    await vhost.delete();
  }

  async function measureQueue(type: string, queue: string): Promise<void> {
    const routingKey = `${type}.updated`;
    const publisher = raw.createPublisher({ confirm: true });
    const rawPublish = (i: number) =>
      publisher.send(
        {
          exchange: EXCHANGE,
          routingKey,
          messageId: `m${i}`,
          contentType: 'application/json',
          contentEncoding: 'utf-8',
          headers: { traceparent: TRACEPARENT },
          durable: true,
        },
        Buffer.from(body(i)),
      );

    let started = performance.now();
    await windowed(total, inFlight, rawPublish);
    rate(`${type}: rabbitmq-client confirmed publish, ${inFlight} in flight`, started);
    for (const prefetch of [1, 50]) {
      started = performance.now();
      await new Promise<void>((resolve, reject) => {
        let count = 0;
        const consumer = raw.createConsumer(
          {
            queue,
            queueOptions: { queue, passive: true },
            qos: { prefetchCount: prefetch },
            concurrency: prefetch,
          },
          () => {
            if (++count === total) consumer.close().then(resolve, reject);
          },
        );
        consumer.on('error', reject);
      });
      rate(`${type}: rabbitmq-client consume, prefetch ${prefetch}`, started);
      if (prefetch === 1) await windowed(total, inFlight, rawPublish); // refill for the next round
    }
    await publisher.close();

    started = performance.now();
    await windowed(total, inFlight, (i) => bus.publish([outgoing(routingKey, i)]));
    rate(`${type}: adapter confirmed publish, ${inFlight} in flight`, started);
    for (const prefetch of [1, 50]) {
      started = performance.now();
      let count = 0;
      let done!: () => void;
      const finished = new Promise<void>((resolve) => (done = resolve));
      const subscription = await bus.consume(queue, {
        prefetch,
        handler: () => {
          if (++count === total) done();
          return outcome.ack();
        },
      });
      await finished;
      await subscription.close();
      rate(`${type}: adapter consume, prefetch ${prefetch}`, started);
      if (prefetch === 1) {
        // As the outbox relay sends: one publish() per batch, the next batch after all confirms.
        started = performance.now();
        const batch = 500;
        for (let from = 0; from < total; from += batch)
          await bus.publish(
            Array.from({ length: Math.min(batch, total - from) }, (_, i) => outgoing(routingKey, from + i)),
          );
        rate(`${type}: adapter confirmed publish, batches of ${batch}`, started);
      }
    }
  }
  return rows;
}

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

function body(i: number): string {
  return JSON.stringify({
    specversion: '1.0',
    id: `m${i}`,
    source: '/students',
    type: 'StudentUpdated',
    subject: '0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b',
    time: '2025-01-01T00:00:00.000Z',
    data: { id: '0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b', firstName: 'Ada', lastName: 'Lovelace', updates: i },
  });
}

function outgoing(routingKey: string, i: number) {
  return {
    exchange: EXCHANGE,
    routingKey,
    messageId: `m${i}`,
    body: body(i),
    headers: { traceparent: TRACEPARENT },
  };
}

/** Runs `send(0..total-1)` keeping at most `inFlight` unconfirmed at any time. */
async function windowed(total: number, inFlight: number, send: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < total) await send(next++);
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, total) }, lane));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const messages = process.argv[2] ? Number(process.argv[2]) : undefined;
  const rows = await messagingBaseline({ messages });
  printTable(rows);
}
