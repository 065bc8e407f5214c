// End to end on real PostgreSQL and RabbitMQ, webapi and worker as separate processes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startRole } from '../support/role-process.ts';
import { needsPostgres, needsRabbitMq } from '../support/services.ts';
import { startPipeline, tally } from './pipeline-harness.ts';
import { until } from '../support/until.ts';

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

    await until(
      () => tally(pipeline.deliveries, ids).distinct >= 4_000,
      'all 4,000 notifications',
      240_000,
      200,
    );
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

  test('with a second worker running, each student is still notified in the order it was written', async () => {
    const STUDENTS = 300;
    // A backlog first: each student's two events side by side in the queue, which competing workers would take
    // one each and commit in either order.
    await pipeline.worker.stop();
    const ids: string[] = [];
    while (ids.length < STUDENTS) {
      const created = await fetch(`${pipeline.webapi.url}/api/students`, { method: 'POST' });
      const { id } = (await created.json()) as { id: string };
      const updated = await fetch(`${pipeline.webapi.url}/api/students/${id}`, { method: 'PUT' });
      assert.equal(updated.status, 200);
      ids.push(id);
    }
    const [, second] = await Promise.all([
      pipeline.restartWorker(),
      startRole('src/apps/worker/main.ts', pipeline.env),
    ]);
    try {
      const written = new Set(ids);
      const ofThese = () => pipeline.deliveries.filter((delivery) => written.has(delivery.studentId));
      await until(
        () => new Set(ofThese().map((d) => d.messageId)).size >= 4 * STUDENTS,
        'every notification',
        120_000,
        200,
      );
      const order = new Map<string, string[]>();
      const seen = new Set<string>();
      for (const { messageId, studentId, eventType } of ofThese()) {
        if (seen.has(messageId)) continue;
        seen.add(messageId);
        order.set(studentId, [...(order.get(studentId) ?? []), eventType]);
      }
      const expected = 'StudentCreated,StudentCached,StudentUpdated,StudentCached';
      const wrong = ids.filter((id) => order.get(id)?.join() !== expected);
      assert.deepEqual(
        wrong.slice(0, 3).map((id) => order.get(id)),
        [],
        `${wrong.length} of ${STUDENTS} students out of order`,
      );
    } finally {
      await second.stop();
    }
  });
});
