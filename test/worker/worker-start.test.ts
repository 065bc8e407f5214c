// The worker's start() and stop() when they overlap: a stop while the start still waits on the broker (or is
// declaring its topology, or subscribing) ends the start, and leaves nothing consuming behind.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createWorker } from '../../src/apps/worker/main.ts';
import { parseConfig } from '../../src/config.ts';
import { Queues } from '../../src/contracts/messaging.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { openTestDatabase } from '../support/databases.ts';
import { silentLogger } from '../support/logger.ts';
import { settlesWithin } from '../support/settles-within.ts';

/** A worker on PGlite and the in-process bus; `prepare` slows the bus down where the test needs it. */
async function workerOver(prepare: (bus: InProcessMessageBus) => void) {
  const { database, dispose } = await openTestDatabase('pglite');
  const bus = new InProcessMessageBus();
  prepare(bus);
  const worker = createWorker({
    config: parseConfig({ WORKER_PORT: '0' }),
    logger: silentLogger,
    database,
    bus,
  });
  return {
    worker,
    consumers: async () => (await bus.inspectQueue(Queues.studentsWorker))?.consumers ?? 0,
    async dispose() {
      await bus.close();
      await dispose();
    },
  };
}

test('a stop while the start declares the topology ends the start, and leaves nothing consuming', async () => {
  let declared!: () => void;
  const declaring = new Promise<void>((resolve) => (declared = resolve));
  const { worker, consumers, dispose } = await workerOver((bus) => {
    const declare = bus.declareTopology.bind(bus);
    // The broker answers slowly: the stop comes while the declaration is under way.
    bus.declareTopology = async (topology) => {
      declared();
      await new Promise((resolve) => setTimeout(resolve, 200));
      await declare(topology);
    };
  });
  try {
    const starting = worker.start();
    await declaring;
    await worker.stop();
    await assert.rejects(starting, /stopped while it started/);
    assert.equal(await consumers(), 0, 'nothing consumes');
  } finally {
    await dispose();
  }
});

test('a stop while the start subscribes and waits for the broker (gone since the declaration) ends the wait', async () => {
  let subscribing!: () => void;
  const waiting = new Promise<void>((resolve) => (subscribing = resolve));
  const { worker, consumers, dispose } = await workerOver((bus) => {
    // As RabbitMQ's bus does: the subscribing waits for the broker until the consumer's signal ends it.
    bus.consume = (_queue, options) => {
      subscribing();
      return new Promise((_resolve, reject) =>
        options.signal?.addEventListener('abort', () => reject(options.signal?.reason as Error)),
      );
    };
  });
  try {
    const starting = worker.start();
    await waiting;
    assert.equal(
      await settlesWithin(worker.stop(), 5_000),
      'settled',
      'the stop does not wait for the broker',
    );
    await assert.rejects(starting, /stopped while it started/);
    assert.equal(await consumers(), 0, 'nothing consumes');
  } finally {
    await dispose();
  }
});

test('a stop that comes just as the subscribing succeeds still ends the start, and leaves nothing consuming', async () => {
  let stopped: Promise<unknown> | undefined;
  const { worker, consumers, dispose } = await workerOver((bus) => {
    const consume = bus.consume.bind(bus);
    bus.consume = async (queue, options) => {
      const subscription = await consume(queue, options);
      stopped = worker.stop();
      return subscription;
    };
  });
  try {
    await assert.rejects(worker.start(), /stopped while it started/);
    await stopped;
    assert.equal(await consumers(), 0, 'nothing consumes');
  } finally {
    await dispose();
  }
});
