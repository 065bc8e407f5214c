// The pipeline under faults: RabbitMQ stopped and started twice mid-load (`rabbitmqctl stop_app` / `start_app`
// on a RabbitMQ node of the test's own), the worker SIGKILLed once and restarted.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  privateServersAndPostgres,
  startPrivateRabbitMq,
  type PrivateServer,
} from '../support/private-servers.ts';
import { startPipeline, tally } from './pipeline-harness.ts';
import { until } from '../support/until.ts';

const servers = await privateServersAndPostgres();
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('the event pipeline under faults', servers, () => {
  let rabbitMq: PrivateServer | undefined;
  let pipeline: Awaited<ReturnType<typeof startPipeline>>;

  async function restartRabbitMq(downForMs: number) {
    await rabbitMq!.stop();
    try {
      await pause(downForMs);
    } finally {
      await rabbitMq!.start();
    }
  }

  before(async () => {
    rabbitMq = await startPrivateRabbitMq();
    pipeline = await startPipeline({ amqpUrl: rabbitMq.url });
  });
  after(async () => {
    await pipeline?.dispose();
    await rabbitMq?.dispose();
  });

  test('broker restarted twice and worker killed once mid-load: every write 201, nothing lost, nothing twice', async () => {
    const writes = pipeline.createStudents(2_000, 10);

    await pause(2_000);
    await restartRabbitMq(3_000);
    await pause(2_000);
    await pipeline.worker.kill();
    await pause(1_000);
    await pipeline.restartWorker();
    await pause(2_000);
    await restartRabbitMq(3_000);

    const { statuses, ids } = await writes;
    const failed = statuses.filter((status) => status !== 201);
    assert.deepEqual(failed, [], 'every API write during the outages returned 201');

    await until(
      () => tally(pipeline.deliveries, ids).distinct >= 2 * ids.length,
      'every notification',
      300_000,
      200,
    );
    await pause(1_000);
    const result = tally(pipeline.deliveries, ids);
    console.log(
      `pipeline under faults: ${ids.length} writes, ${result.distinct} notifications, ${result.missing} missing, ` +
        `${result.twice} twice, ${result.redelivered} redelivered copies (de-duplicated by message id)`,
    );
    assert.equal(result.missing, 0, 'none missing');
    assert.equal(result.twice, 0, 'none twice');
    const updates = await pipeline.updatesPerStudent();
    const wrong = ids.filter((id) => updates.get(id) !== 1);
    assert.deepEqual(wrong, [], 'every student ends with updates == 1');
  });
});
