import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runPeriodically } from '../../src/infrastructure/runtime/periodic.ts';

test('runs at once and then on schedule, one run at a time (a tick during a run is skipped); stop() waits for the run under way', async () => {
  let runs = 0;
  let concurrent = 0;
  let mostAtOnce = 0;
  let finished = 0;
  const periodic = runPeriodically(async () => {
    runs++;
    mostAtOnce = Math.max(mostAtOnce, ++concurrent);
    await sleep(30); // longer than the period: runs would overlap if ticks during a run were not skipped
    concurrent--;
    finished++;
  }, 10);
  assert.equal(runs, 1, 'the first run starts at once');
  await periodic.first;
  assert.equal(finished, 1);
  await sleep(200);
  await periodic.stop();
  assert.ok(runs >= 3, `ran on schedule (${runs} runs)`);
  assert.equal(mostAtOnce, 1, 'never two runs at once');
  assert.equal(finished, runs, 'stop() waited for the run under way');
  const stoppedAt = runs;
  await sleep(50);
  assert.equal(runs, stoppedAt, 'nothing runs after stop()');
});

test('stop() aborts the signal the run under way was given: a long run (a retention catching up) ends early', async () => {
  let aborted = false;
  const periodic = runPeriodically(
    (stopping) =>
      new Promise<void>((resolve) => {
        const done = setTimeout(resolve, 60_000);
        stopping.addEventListener('abort', () => {
          aborted = true;
          clearTimeout(done);
          resolve();
        });
      }),
    120_000,
  );
  await periodic.stop();
  assert.ok(aborted, 'the run was told to stop');
});
