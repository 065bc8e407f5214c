// A Redis that answers but takes no writes (full under `noeviction`; a replica after a failover): every request still
// works from the database, and the cache stays off until Redis takes writes again. It used to come back at every
// half-open trial (reads answered), drop L1, and go off at the next write: the log and /health flapping with it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { openTestDatabase } from '../support/databases.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { recordingLogger } from '../support/logger.ts';
import { privateServersAndPostgres, startPrivateRedis } from '../support/private-servers.ts';
import { until } from '../support/until.ts';
import { startCachedApi } from './support.ts';

const HALF_OPEN_MS = 300;

test(
  'Redis out of memory: requests keep working from the database, the cache stays off (said once) until Redis takes writes',
  await privateServersAndPostgres(),
  async () => {
    const redisServer = await startPrivateRedis();
    const admin = new Redis(redisServer.url);
    const { database, dispose } = await openTestDatabase('postgres');
    const { logger, logged } = recordingLogger();
    const api = await startCachedApi(database, {
      redisUrl: redisServer.url,
      keyPrefix: 'refusal:',
      halfOpenAfterMs: HALF_OPEN_MS,
      logger,
    });
    const said = (message: string) =>
      logged()
        .split('\n')
        .filter((line) => line.includes(`"msg":"${message}"`)).length;
    const redisHealth = async () =>
      checkNamed((await (await fetch(`${api.url}/health`)).json()) as HealthBody, 'redis');
    const get = (id: string) => fetch(`${api.url}/api/students/${id}`);
    try {
      const created = await fetch(`${api.url}/api/students`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ firstName: 'Grace', lastName: 'Hopper', email: 'gh@example.com' }),
      });
      const { id } = (await created.json()) as { id: string };

      await admin.config('SET', 'maxmemory', '1');
      // Ten half-open periods of writes and reads, each answered from the database as written.
      const deadline = Date.now() + 10 * HALF_OPEN_MS;
      for (let round = 0; Date.now() < deadline; round++) {
        const lastName = `Hopper ${round}`;
        const updated = await fetch(`${api.url}/api/students/${id}`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json', 'idempotency-key': randomUUID() },
          body: JSON.stringify({ firstName: 'Grace', lastName, email: 'gh@example.com' }),
        });
        assert.equal(updated.status, 200, await updated.text());
        const read = await get(id);
        assert.equal(read.status, 200);
        assert.equal(((await read.json()) as { lastName: string }).lastName, lastName);
        await new Promise((resolve) => setTimeout(resolve, HALF_OPEN_MS / 3));
      }
      const refused = await redisHealth();
      assert.equal(refused?.status, 'Degraded');
      assert.match(refused?.description ?? '', /Redis refuses writes \(OOM /);
      assert.equal(said('cache unavailable (Redis refuses writes): reading from the database'), 1, logged());
      assert.equal(said('cache available again (Redis)'), 0, logged());

      await admin.config('SET', 'maxmemory', '0');
      await until(async () => (await redisHealth())?.status === 'Healthy', 'Redis Healthy again');
      assert.equal(said('cache available again (Redis)'), 1, logged());
      // Caching again: the second read within the window is a replay.
      assert.equal((await get(id)).status, 200);
      assert.equal((await get(id)).headers.get('x-deduplicated'), 'true');
    } finally {
      await api.stop();
      admin.disconnect();
      await dispose();
      await redisServer.dispose();
    }
  },
);
