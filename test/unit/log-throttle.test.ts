import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { LogThrottle } from '../../src/infrastructure/logging/log-throttle.ts';

test('a repeated failure is said at once, then once at the end of the interval with how many more there were', async () => {
  const throttle = new LogThrottle(50);
  const said: string[] = [];
  for (let call = 1; call <= 5; call++) throttle.run((unsaid) => said.push(`call ${call}, ${unsaid} more`));
  assert.deepEqual(said, ['call 1, 0 more'], 'the first at once, the next four held');
  await sleep(80);
  assert.deepEqual(said, ['call 1, 0 more', 'call 5, 3 more'], 'the last held one, with the three before it');
  await sleep(80);
  // A later outage starts afresh: nothing of the earlier one is carried into it.
  throttle.run((unsaid) => said.push(`later, ${unsaid} more`));
  assert.deepEqual(said.at(-1), 'later, 0 more');
  assert.equal(said.length, 3);
});

test('a summary said at the end of the interval says when the last failure it sums up happened', async () => {
  const throttle = new LogThrottle(50);
  const said: { unsaid: number; lastAt: string | undefined; writtenAt: number }[] = [];
  const say = (unsaid: number, lastAt?: string) => said.push({ unsaid, lastAt, writtenAt: Date.now() });
  throttle.run(say);
  throttle.run(say);
  const lastFailure = Date.now();
  await sleep(80);
  assert.equal(said.length, 2);
  assert.equal(said[0]!.lastAt, undefined, 'said at once: the line is written when it happened');
  const summaryLastAt = Date.parse(said[1]!.lastAt ?? '');
  assert.ok(
    summaryLastAt >= lastFailure - 5 && summaryLastAt <= lastFailure + 5,
    `lastAt ${said[1]!.lastAt} is the held failure's time`,
  );
  assert.ok(said[1]!.writtenAt - summaryLastAt >= 40, 'written later than it happened');
});

test('reset: what is held back is dropped, not said after the recovery, and the next failure is said at once', async () => {
  const throttle = new LogThrottle(50);
  const said: string[] = [];
  throttle.run(() => said.push('outage'));
  throttle.run(() => said.push('held'));
  throttle.reset();
  said.push('back');
  await sleep(80);
  assert.deepEqual(said, ['outage', 'back'], 'the held summary is not said after the recovery line');
  throttle.run((unsaid) => said.push(`new outage, ${unsaid} more`));
  throttle.run(() => said.push('held again'));
  assert.deepEqual(said, ['outage', 'back', 'new outage, 0 more']);
  throttle.reset();
  throttle.run((unsaid) => said.push(`right after a reset, ${unsaid} more`));
  assert.deepEqual(said.at(-1), 'right after a reset, 0 more', 'said at once, within the interval');
});
