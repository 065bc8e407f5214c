import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DependencyUnavailableError } from '../../src/application/errors.ts';
import { expectedFailure } from '../../src/infrastructure/logging/expected-failure.ts';

test('a failure the message explains is logged as its reason, with its causes and code, and no stack', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });
  assert.deepEqual(expectedFailure(new DependencyUnavailableError('cache', { cause: refused })), {
    reason: 'cache is unavailable: connect ECONNREFUSED 127.0.0.1:6379',
    code: 'ECONNREFUSED',
  });
  assert.deepEqual(expectedFailure(new Error('cache unavailable')), { reason: 'cache unavailable' });
});

test('a programming error, also as a cause, or a thrown value that is no Error keeps err (and its stack)', () => {
  const bug = new TypeError("Cannot read properties of undefined (reading 'id')");
  assert.deepEqual(expectedFailure(bug), { err: bug });
  const wrapped = new DependencyUnavailableError('cache', { cause: bug });
  assert.deepEqual(expectedFailure(wrapped), { err: wrapped });
  assert.deepEqual(expectedFailure('down'), { err: 'down' });
});

test("fetch's TypeError around a network failure (an identity provider down) is that failure, not a programming error", () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8443'), { code: 'ECONNREFUSED' });
  const fetchFailed = new TypeError('fetch failed', { cause: refused });
  assert.deepEqual(
    expectedFailure(new DependencyUnavailableError('identity provider', { cause: fetchFailed })),
    {
      reason: 'identity provider is unavailable: fetch failed: connect ECONNREFUSED 127.0.0.1:8443',
      code: 'ECONNREFUSED',
    },
  );
});

test('a cause that leads back to itself is read once', () => {
  const looping = new Error('lost');
  looping.cause = looping;
  assert.deepEqual(expectedFailure(looping), { reason: 'lost' });
});
