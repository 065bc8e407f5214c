// The broker-publish policy: a stop (its signal) ends the wait at once, also between two attempts; the back-off delay.
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  backoffDelay,
  createResiliencePolicy,
  DEFAULT_RESILIENCE,
  waitToRetry,
} from '../../src/infrastructure/resilience/resilience-policy.ts';
import { silentLogger } from '../support/logger.ts';

// Back-off of 5 s before each retry: far longer than a stop may take.
const slowRetries = { ...DEFAULT_RESILIENCE, baseDelayMs: 5_000, maxDelayMs: 5_000 };

test('aborted during its back-off, execute rejects at once with the reason, and no attempt starts after', async (t) => {
  // The jitter may draw a first back-off shorter than the wait below (about 1 run in 70); a fixed draw makes it ~270 ms.
  t.mock.method(Math, 'random', () => 0.5);
  // A back-off short enough to see its end: the retry loop still runs in the background then.
  const policy = createResiliencePolicy(
    'test',
    { ...DEFAULT_RESILIENCE, baseDelayMs: 300, maxDelayMs: 300 },
    silentLogger,
  );
  const stopping = new AbortController();
  let attempts = 0;
  const execution = policy.execute(async () => {
    attempts++;
    throw new Error('broker unreachable');
  }, stopping.signal);
  await sleep(50); // the first attempt failed; the back-off runs
  const stopped = new Error('stopping');
  stopping.abort(stopped);
  // Not the back-off's end: the next attempt would reject with cockatiel's own cancellation.
  await assert.rejects(execution, stopped);
  await sleep(600); // past the back-off's end
  assert.equal(attempts, 1);
});

test('with its signal aborted already, execute rejects without calling', async () => {
  const policy = createResiliencePolicy('test', slowRetries, silentLogger);
  let calls = 0;
  const stopped = new Error('stopping');
  await assert.rejects(
    policy.execute(async () => calls++, AbortSignal.abort(stopped)),
    stopped,
  );
  assert.equal(calls, 0);
});

test('an attempt in progress ends when the signal aborts; its own signal aborts too', async () => {
  const policy = createResiliencePolicy(
    'test',
    { ...slowRetries, maxRetryAttempts: 0, timeoutMs: 10_000 },
    silentLogger,
  );
  const stopping = new AbortController();
  let attemptSignal: AbortSignal | undefined;
  const execution = policy.execute((signal) => {
    attemptSignal = signal;
    return new Promise<never>(() => {}); // a publish that never hears back
  }, stopping.signal);
  await sleep(10);
  const stopped = new Error('stopping');
  stopping.abort(stopped);
  await assert.rejects(execution, stopped);
  assert.equal(attemptSignal?.aborted, true, 'the call is told to stop');
});

test('retries waiting at once on one signal share one abort listener, which ends them all at once', async () => {
  const stopping = new AbortController();
  // As many as a consumer's prefetch lets wait out an outage at once: a listener each would pass Node's ten.
  const waits = Array.from({ length: 50 }, () => waitToRetry(10, stopping.signal));
  assert.equal(getEventListeners(stopping.signal, 'abort').length, 1);
  const started = Date.now();
  stopping.abort();
  assert.deepEqual(new Set(await Promise.all(waits)), new Set([false]));
  assert.ok(Date.now() - started < 1_000, 'not waiting out the 5 s back-off');
  assert.equal(await waitToRetry(0, stopping.signal), false, 'aborted already');
});

test('a retry wait not stopped ends after its back-off, and adds no abort listener of its own', async () => {
  const stopping = new AbortController();
  for (let round = 0; round < 12; round++) assert.equal(await waitToRetry(0, stopping.signal), true);
  assert.equal(getEventListeners(stopping.signal, 'abort').length, 1, 'the shared one');
});

test('backoffDelay doubles from the base up to the cap; with jitter it is a random half to all of that', () => {
  const options = { baseMs: 250, maxMs: 30_000 };
  assert.deepEqual(
    [0, 1, 2, 6, 7, 50, 2_000].map((attempt) => backoffDelay(attempt, options)),
    [250, 500, 1_000, 16_000, 30_000, 30_000, 30_000],
  );
  for (let round = 0; round < 100; round++) {
    const jittered = backoffDelay(3, { ...options, jitter: true });
    assert.ok(jittered >= 1_000 && jittered <= 2_000, `${jittered}`);
  }
});

test("the breaker opens once the sampling window holds the minimum throughput's calls, half of them failed", async () => {
  const noRetries = { ...DEFAULT_RESILIENCE, maxRetryAttempts: 0 };
  const failedCalls = async (minimumThroughput: number, calls: number) => {
    const policy = createResiliencePolicy('test', { ...noRetries, minimumThroughput }, silentLogger);
    for (let call = 0; call < calls; call++)
      await policy
        .execute(async () => {
          throw new Error('broker unreachable');
        })
        .catch(() => undefined);
    return policy.breakerState();
  };
  assert.equal(await failedCalls(DEFAULT_RESILIENCE.minimumThroughput, 4), 'open', 'the default: 4 calls');
  // The original's 10: four failed calls are too few to tell.
  assert.equal(await failedCalls(10, 4), 'closed');
  assert.equal(await failedCalls(10, 10), 'open');
});
