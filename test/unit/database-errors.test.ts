// Which PostgreSQL failures the database layer reports as the database being unavailable (a 503 to an API request).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DependencyBusyError, DependencyUnavailableError } from '../../src/application/errors.ts';
import {
  guardDatabase,
  isConnectRefused,
  isPassingRefusal,
} from '../../src/infrastructure/persistence/database-errors.ts';

const refused = (code: string, message: string) =>
  Promise.reject(Object.assign(new Error(message), { code }));

describe('guardDatabase', () => {
  for (const [code, message] of [
    ['25006', 'cannot execute INSERT in a read-only transaction'],
    ['53100', 'could not extend file: No space left on device'],
    ['53200', 'out of memory'],
    ['53300', 'sorry, too many clients already'],
  ] as const) {
    test(`a server refusing every write for now (${code}) is the database unavailable, not one transaction's refusal`, async () => {
      const error = await guardDatabase(() => refused(code, message)).catch((caught: unknown) => caught);
      assert.ok(error instanceof DependencyUnavailableError, `${code} reported as ${String(error)}`);
      assert.equal(error.dependency, 'database');
      assert.equal(
        isPassingRefusal(error),
        false,
        'a consumer waits for the server, as for one that is down',
      );
    });
  }

  for (const [code, message] of [
    ['55P03', 'canceling statement due to lock timeout'],
    ['40P01', 'deadlock detected'],
    ['40001', 'could not serialize access due to concurrent update'],
  ] as const) {
    test(`a transaction refused for now (${code}) is a retry for the caller (503 to an API request), still passing`, async () => {
      const error = await guardDatabase(() => refused(code, message)).catch((caught: unknown) => caught);
      assert.ok(error instanceof DependencyBusyError, `${code} reported as ${String(error)}`);
      assert.ok(error instanceof DependencyUnavailableError, 'answered as an unavailable dependency is');
      assert.equal(
        isPassingRefusal(error),
        true,
        'a consumer tries its message again, it does not wait for the server',
      );
    });
  }

  test("a request's own failure (a constraint, a syntax error) is passed on as it is", async () => {
    for (const code of ['23505', '42601']) {
      const error = await guardDatabase(() => refused(code, 'no')).catch((caught: unknown) => caught);
      assert.ok(!(error instanceof DependencyUnavailableError), code);
    }
  });
});

test('a refused connection is told from a busy pool or one lost session (what "PostgreSQL reachable again" follows)', () => {
  const coded = (code: string) => Object.assign(new Error(code), { code });
  for (const refused of [
    coded('ECONNREFUSED'),
    coded('57P03'),
    coded('53300'),
    new AggregateError([coded('ECONNREFUSED'), coded('ECONNREFUSED')]),
    new Error('wrapped', { cause: coded('ENOTFOUND') }),
  ])
    assert.equal(isConnectRefused(refused), true, refused.message);
  for (const other of [
    new Error('timeout exceeded when trying to connect'),
    coded('57P01'),
    coded('57014'),
    new Error('Query read timeout'),
  ])
    assert.equal(isConnectRefused(other), false, other.message);
});
