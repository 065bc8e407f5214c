// Redis going away mid-run is an outage the webapi rides out: every line it writes about it says what is skipped and
// why (`reason`, `code`), without a stack trace. The stacks said nothing the message had not, on every such line.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { openTestDatabase } from '../support/databases.ts';
import { recordingLogger } from '../support/logger.ts';
import { privateServersAvailable, startPrivateRedis } from '../support/private-servers.ts';
import { until } from '../support/until.ts';
import { startWebApi } from '../support/webapi.ts';

/** What the webapi says while Redis is down and it writes (keyed, updating a student whose reads were deduplicated). */
const OUTAGE_LINES = [
  'idempotency key held by the database only',
  'deduplicated responses not dropped',
  'cache write skipped; dropped once the cache is back',
];

test(
  'Redis stopped mid-run: the lines about what is skipped give the reason, not a stack',
  privateServersAvailable(),
  async () => {
    const redis = await startPrivateRedis();
    const { database, dispose } = await openTestDatabase('pglite');
    const { logger, logged } = recordingLogger();
    const api = await startWebApi(database, { REDIS_URL: redis.url }, logger);
    try {
      const created = await fetch(`${api.url}/api/students`, { method: 'POST' });
      assert.equal(created.status, 201);
      const { id } = (await created.json()) as { id: string };
      assert.equal((await fetch(`${api.url}/api/students/${id}`)).status, 200);

      await redis.stop();
      const lineOf = (message: string) =>
        logged()
          .split('\n')
          .find((line) => line.includes(`"msg":"${message}"`));
      await until(
        async () => {
          const updated = await fetch(`${api.url}/api/students/${id}`, {
            method: 'PUT',
            headers: { 'content-type': 'application/json', 'idempotency-key': randomUUID() },
            body: JSON.stringify({ firstName: 'Ada', lastName: 'King', email: 'ada@example.com' }),
          });
          assert.equal(updated.status, 200, await updated.text());
          return OUTAGE_LINES.every((message) => lineOf(message) !== undefined);
        },
        `${OUTAGE_LINES.join(', ')} in:\n${logged()}`,
      );

      for (const message of OUTAGE_LINES) {
        const line = JSON.parse(lineOf(message)!) as Record<string, unknown>;
        assert.equal(line.err, undefined, `${message}: ${JSON.stringify(line)}`);
        assert.equal(typeof line.reason, 'string', `${message}: ${JSON.stringify(line)}`);
      }
      assert.doesNotMatch(logged(), /"stack":/);
    } finally {
      await api.stop();
      await dispose();
      await redis.dispose();
    }
  },
);
