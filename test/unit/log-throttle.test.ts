import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { LogThrottle } from '../../src/infrastructure/logging/log-throttle.ts';

test('a repeated failure is said once per interval, then with how many times it went unsaid', async () => {
  const throttle = new LogThrottle(50);
  const said: number[] = [];
  for (let i = 0; i < 5; i++) throttle.run((unsaid) => said.push(unsaid));
  assert.deepEqual(said, [0], 'the first is said at once, the next four only counted');
  await sleep(60);
  throttle.run((unsaid) => said.push(unsaid));
  throttle.run((unsaid) => said.push(unsaid));
  assert.deepEqual(said, [0, 4]);
});
