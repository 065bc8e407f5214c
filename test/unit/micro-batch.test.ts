import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { microBatch } from '../../src/apps/worker/micro-batch.ts';

describe('microBatch', () => {
  test('calls made in one turn of the event loop run as one batch, each caller gets its own output', async () => {
    const batches: number[][] = [];
    const double = microBatch(async (inputs: readonly number[]) => {
      batches.push([...inputs]);
      return inputs.map((input) => input * 2);
    }, 10);

    const outputs = await Promise.all([1, 2, 3].map(double));

    assert.deepEqual(outputs, [2, 4, 6]);
    assert.deepEqual(batches, [[1, 2, 3]]);
  });

  test('a batch never exceeds its maximum size', async () => {
    const sizes: number[] = [];
    const echo = microBatch(async (inputs: readonly number[]) => {
      sizes.push(inputs.length);
      return inputs;
    }, 2);

    assert.deepEqual(await Promise.all([1, 2, 3, 4, 5].map(echo)), [1, 2, 3, 4, 5]);
    assert.deepEqual(sizes, [2, 2, 1]);
  });

  test('when a batch fails, its inputs run again one by one: only the bad one fails', async () => {
    const batches: number[][] = [];
    const check = microBatch(async (inputs: readonly number[]) => {
      batches.push([...inputs]);
      if (inputs.includes(13)) throw new Error('13 is bad');
      return inputs.map(String);
    }, 10);

    const outcomes = await Promise.allSettled([12, 13, 14].map(check));

    assert.deepEqual(
      outcomes.map((outcome) => (outcome.status === 'fulfilled' ? outcome.value : String(outcome.reason))),
      ['12', 'Error: 13 is bad', '14'],
    );
    assert.deepEqual(batches, [[12, 13, 14], [12], [13], [14]]);
  });

  test('a call alone in its turn that fails runs once', async () => {
    let runs = 0;
    const fail = microBatch(async (): Promise<readonly number[]> => {
      runs++;
      throw new Error('bad');
    }, 10);

    await assert.rejects(fail(1), /bad/);
    assert.equal(runs, 1);
  });

  test('calls in later turns form new batches', async () => {
    const batches: number[][] = [];
    const echo = microBatch(async (inputs: readonly number[]) => {
      batches.push([...inputs]);
      return inputs;
    }, 10);

    await echo(1);
    await Promise.all([echo(2), echo(3)]);

    assert.deepEqual(batches, [[1], [2, 3]]);
  });
});
