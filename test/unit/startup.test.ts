// A role's start that its stop cuts short: the start ends at its next step, saying it was stopped, and the stop
// resolves only once the start has ended, so nothing the start makes afterwards outlives the stop.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createStartup } from '../../src/infrastructure/runtime/startup.ts';

describe('a start that a stop cuts short', () => {
  test('a stop during a step ends the start there: what follows the step never runs, and the stop waits for it', async () => {
    const startup = createStartup();
    let finishStep!: () => void;
    const slowStep = new Promise<void>((resolve) => (finishStep = resolve));
    let inStep!: () => void;
    const stepBegun = new Promise<void>((resolve) => (inStep = resolve));
    const done: string[] = [];
    const started = startup.run(async (step) => {
      const waiting = step(slowStep);
      inStep();
      await waiting;
      done.push('what follows the step');
    });
    const outcome = started.then(
      () => 'started',
      (error: unknown) => String(error),
    );
    void outcome.then(() => done.push('start ended'));

    await stepBegun;
    const stopped = startup.stop('the role stopped while it started').then(() => done.push('stop resolved'));
    finishStep();
    await stopped;

    assert.match(await outcome, /the role stopped while it started/);
    assert.deepEqual(done, ['start ended', 'stop resolved']);
    assert.equal(startup.signal.aborted, true, 'waits inside a step are told too');
  });

  test("a step that fails because the stop closed what it used still ends the start with the stop's reason", async () => {
    const startup = createStartup();
    let closeConnection!: (error: Error) => void;
    const declaring = new Promise<void>((_, reject) => (closeConnection = reject));
    const started = startup.run((step) => step(declaring));
    const stopped = startup.stop('the worker stopped while it started');
    closeConnection(new Error('connection closed'));
    await assert.rejects(started, /the worker stopped while it started/);
    await stopped;
  });

  test('a stop that came first leaves nothing to start', async () => {
    const startup = createStartup();
    await startup.stop('stopped before it started');
    let ran = false;
    await assert.rejects(
      startup.run(async () => {
        ran = true;
      }),
      /stopped before it started/,
    );
    assert.equal(ran, false);
  });

  test('a start no stop interrupts resolves with what it made; a failure of its own keeps its reason', async () => {
    const startup = createStartup();
    assert.equal(
      await startup.run(async (step) => step(Promise.resolve('http://127.0.0.1:5000'))),
      'http://127.0.0.1:5000',
    );
    await assert.rejects(
      startup.run(async (step) => step(Promise.reject(new Error('EADDRINUSE')))),
      /EADDRINUSE/,
    );
  });
});
