// The watch for worker queues of another WORKER_PARTITIONS layout, over a broker the test answers for: what it says
// in the logs and in /health while such a queue stays, while the broker does not answer, and once the queue is gone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { QueueState } from '../../src/application/ports/message-bus.ts';
import { watchOtherLayoutQueues } from '../../src/apps/worker/other-layout-queues.ts';
import { Queues } from '../../src/contracts/messaging.ts';
import { recordingLogger } from '../support/logger.ts';
import { until } from '../support/until.ts';

test('a queue of another layout is warned about once while it stays, and kept in /health while the broker does not answer', async () => {
  // With 4 partitions, the one queue of the default layout is another layout's.
  let answer: () => Promise<QueueState | undefined> = async () => ({ messages: 3, consumers: 0 });
  let asked = 0;
  const bus = {
    inspectQueue: (queue: string) => {
      asked++;
      return queue === Queues.studentsWorker ? answer() : Promise.resolve(undefined);
    },
  };
  const { logger, logged } = recordingLogger();
  const warnings = () => logged().match(/not this worker's layout/g)?.length ?? 0;
  const watch = watchOtherLayoutQueues(bus, 4, logger, 10);
  const status = async () => (await watch.healthCheck.check()).status;
  await watch.start();
  try {
    assert.equal(await status(), 'Degraded');
    // Each look asks about two queues.
    const looked = (looks: number) => {
      const from = asked;
      return until(() => asked >= from + 2 * looks, `${looks} more looks`);
    };
    await looked(3);
    assert.equal(warnings(), 1, 'said once, not at every look');

    answer = () => Promise.reject(new Error('the broker does not answer'));
    await looked(3);
    assert.equal(await status(), 'Degraded', 'what it saw last');

    answer = () => Promise.resolve(undefined);
    await until(async () => (await status()) === 'Healthy', 'the queue gone');
    assert.equal(warnings(), 1, 'its going is no warning');
  } finally {
    await watch.stop();
  }
});

test("a partition queue the layout lacks is Unhealthy: on the hash ring, it takes its students' events from every worker", async () => {
  // Left from WORKER_PARTITIONS=8 after a change to 4: students.worker.4 … 7 stay bound to the ring.
  const bus = {
    inspectQueue: (queue: string) =>
      Promise.resolve(queue === `${Queues.studentsWorker}.4` ? { messages: 88, consumers: 0 } : undefined),
  };
  const { logger, logged } = recordingLogger();
  const watch = watchOtherLayoutQueues(bus, 4, logger, 60_000);
  await watch.start();
  try {
    const result = await watch.healthCheck.check();
    assert.equal(result.status, 'Unhealthy');
    assert.match(
      result.description ?? '',
      /^students\.worker\.4 \(88 waiting, 0 consumers\), and any numbered above: .*whose events no worker of this layout processes/,
    );
    assert.doesNotMatch(result.description ?? '', /copy/);
    assert.match(logged(), /"level":50.*whose events no worker of this layout processes/);
  } finally {
    await watch.stop();
  }
});
