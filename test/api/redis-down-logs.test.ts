// A webapi whose Redis is down. Every keyed write is held by the database alone, and no write can drop the
// deduplicated reads of its student elsewhere: each would say so. Said once, then once every 5 s with how many went
// unsaid, as the cache's skipped writes are: a log that repeats per request buries what else happens. And its stop
// must not wait for Redis.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { openTestDatabase } from '../support/databases.ts';
import { recordingLogger } from '../support/logger.ts';
import { settlesWithin } from '../support/settles-within.ts';
import { startWebApi } from '../support/webapi.ts';

test('Redis down: the keyed writes and the writes whose replays stay elsewhere say so once, not per request', async () => {
  const { database, dispose } = await openTestDatabase('pglite');
  const { logger, logged } = recordingLogger();
  // Nothing listens on port 1: every Redis command fails at once.
  const api = await startWebApi(database, { REDIS_URL: 'redis://127.0.0.1:1' }, logger);
  try {
    const writes = 6;
    for (let index = 0; index < writes; index++) {
      const created = await fetch(`${api.url}/api/students`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': randomUUID() },
        body: JSON.stringify({
          firstName: `Ada ${index}`,
          lastName: 'Lovelace',
          email: `ada${index}@example.com`,
        }),
      });
      assert.equal(created.status, 201);
      const { id } = (await created.json()) as { id: string };
      const updated = await fetch(`${api.url}/api/students/${id}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ firstName: 'Ada', lastName: 'King', email: `ada${index}@example.com` }),
      });
      assert.equal(updated.status, 200);
    }
    const lines = logged().split('\n');
    const count = (message: string) => lines.filter((line) => line.includes(`"msg":"${message}"`)).length;
    assert.equal(count('idempotency key held by the database only'), 1, logged());
    assert.equal(count('deduplicated responses not dropped'), 1, logged());
  } finally {
    await api.stop();
    await dispose();
  }
});

test('a webapi whose Redis never answered stops promptly (the cache library would wait for ever to say goodbye)', async () => {
  const { database, dispose } = await openTestDatabase('pglite');
  const api = await startWebApi(database, { REDIS_URL: 'redis://127.0.0.1:1' });
  try {
    // A request, so the cache's connections have tried (and queued work for) Redis.
    assert.equal((await fetch(`${api.url}/api/students/${randomUUID()}`)).status, 404);
    assert.equal(await settlesWithin(api.stop(), 5_000), 'settled');
  } finally {
    await dispose();
  }
});
