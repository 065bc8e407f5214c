// The worker's start() and stop() when they overlap: a stop while the start still waits on the broker (or is
// declaring its topology) ends the start, and leaves nothing consuming behind.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createWorker } from '../../src/apps/worker/main.ts';
import { parseConfig } from '../../src/config.ts';
import { Queues } from '../../src/contracts/messaging.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { openTestDatabase } from '../support/databases.ts';
import { silentLogger } from '../support/logger.ts';

test('a stop while the start declares the topology ends the start, and leaves nothing consuming', async () => {
  const { database, dispose } = await openTestDatabase('pglite');
  const bus = new InProcessMessageBus();
  const declare = bus.declareTopology.bind(bus);
  let declared!: () => void;
  const declaring = new Promise<void>((resolve) => (declared = resolve));
  // The broker answers slowly: the stop comes while the declaration is under way.
  bus.declareTopology = async (topology) => {
    declared();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await declare(topology);
  };
  const worker = createWorker({
    config: parseConfig({ WORKER_PORT: '0' }),
    logger: silentLogger,
    database,
    bus,
  });
  try {
    const starting = worker.start();
    await declaring;
    await worker.stop();
    await assert.rejects(starting, /stopped while it started/);
    assert.equal((await bus.inspectQueue(Queues.studentsWorker))?.consumers ?? 0, 0, 'nothing consumes');
  } finally {
    await bus.close();
    await dispose();
  }
});
