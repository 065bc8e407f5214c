// End to end on real PostgreSQL and RabbitMQ, webapi and worker as separate processes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { needsPostgres, needsRabbitMq } from '../support/services.ts';
import { startPipeline, tally, until } from './pipeline-harness.ts';

const servers = [await needsPostgres(), await needsRabbitMq()].find((requirement) => requirement.skip) ?? {};

describe('the event pipeline across processes', servers, () => {
  let pipeline: Awaited<ReturnType<typeof startPipeline>>;
  before(async () => {
    pipeline = await startPipeline();
  });
  after(() => pipeline?.dispose());

  test('2,000 concurrent creates: every student processed once, one created and one cached notification each', async () => {
    const { statuses, ids } = await pipeline.createStudents(2_000);
    assert.deepEqual(new Set(statuses), new Set([201]), 'every write returned 201');
    assert.equal(ids.length, 2_000);

    await until(() => tally(pipeline.deliveries, ids).distinct >= 4_000, 'all 4,000 notifications', 240_000);
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // room for a stray extra one to arrive
    const result = tally(pipeline.deliveries, ids);
    console.log(
      `pipeline: ${ids.length} writes, ${result.distinct} notifications, ${result.missing} missing, ` +
        `${result.twice} twice, ${result.redelivered} redelivered copies`,
    );
    assert.equal(result.missing, 0, 'none missing');
    assert.equal(result.twice, 0, 'none twice');
    assert.equal(result.distinct, 4_000);

    const updates = await pipeline.updatesPerStudent();
    assert.ok(
      ids.every((id) => updates.get(id) === 1),
      'every student ends with updates == 1',
    );
  });
});
