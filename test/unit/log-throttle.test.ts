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
