// The pipeline under faults: RabbitMQ stopped and started twice mid-load, the worker SIGKILLed once and
// restarted. Runs in the serial fault phase (it stops the shared broker), and always restarts what it stopped.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { needsPostgres, needsRabbitMq } from '../support/services.ts';
import { startPipeline, tally, until } from './pipeline-harness.ts';

const run = promisify(execFile);
const servers = [await needsPostgres(), await needsRabbitMq()].find((requirement) => requirement.skip) ?? {};
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function restartRabbitMq(downForMs: number) {
  await run('rabbitmqctl', ['stop_app']);
  try {
    await pause(downForMs);
  } finally {
    await run('rabbitmqctl', ['start_app']);
    await run('rabbitmqctl', ['await_startup', '--timeout', '60']);
  }
}

describe('the event pipeline under faults', servers, () => {
  let pipeline: Awaited<ReturnType<typeof startPipeline>>;
  before(async () => {
    pipeline = await startPipeline();
  });
  after(async () => {
    await run('rabbitmqctl', ['start_app']).catch(() => undefined); // whatever happened, leave the broker up
    await pipeline?.dispose();
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
