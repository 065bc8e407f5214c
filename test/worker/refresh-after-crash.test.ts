// A worker that dies between its commit and its cache refresh: the event comes back, as a duplicate, to the next
// worker, which changes nothing; the cache must still come up to date (the relay caches the student before it
// publishes the notifications that commit wrote), or readers would get the student from before the worker's change
// until the cache entry's TTL. Every role a real process, on PostgreSQL, RabbitMQ and Redis.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import pg from 'pg';
import { createPostgresDatabase } from '../support/databases.ts';
import { parseExposition } from '../support/prometheus-text.ts';
import { createTestVhost } from '../support/rabbitmq-vhost.ts';
import { startRole, type RoleProcess } from '../support/role-process.ts';
import {
  REDIS_URL,
  deleteRedisKeys,
  needsPostgres,
  needsRabbitMq,
  needsRedis,
  uniqueName,
} from '../support/services.ts';
import { eventually } from './worker-harness.ts';

interface StudentJson {
  readonly id: string;
  readonly updates: number;
  readonly version: number;
}

const [postgres, rabbit, redis] = await Promise.all([needsPostgres(), needsRabbitMq(), needsRedis()]);

test(
  'a worker killed between its commit and its cache refresh: the cache still comes up to date, so a read gets the change',
  { skip: postgres.skip ?? rabbit.skip ?? redis.skip },
  async () => {
    const [database, vhost] = await Promise.all([createPostgresDatabase(), createTestVhost('worker_test')]);
    const keyPrefix = `${uniqueName('refresh_after_crash')}:`;
    const env = {
      DATABASE_URL: database.url,
      AMQP_URL: vhost.url,
      REDIS_URL,
      CACHE_KEY_PREFIX: keyPrefix,
      API_PORT: '0',
      WORKER_PORT: '0',
    };
    const roles: RoleProcess[] = [];
    const client = new pg.Client({ connectionString: database.url });
    try {
      const webapi = await startRole('src/apps/webapi/main.ts', env);
      roles.push(webapi);
      const crashing = await startRole('test/worker/crash-after-commit-worker.ts', env);
      roles.push(crashing);
      const crashed = once(crashing.child, 'exit');

      // The webapi caches the student it created (updates 0); the worker's commit makes it updates 1.
      const created = await fetch(`${webapi.url}/api/students`, { method: 'POST' });
      assert.equal(created.status, 201);
      const { id } = (await created.json()) as StudentJson;
      assert.deepEqual(await crashed, [null, 'SIGKILL']);
      await client.connect();
      const { rows } = await client.query<{ updates: number; version: number }>(
        'select updates, version from students where id = $1',
        [id],
      );
      assert.deepEqual(rows, [{ updates: 1, version: 2 }], 'the crashed worker committed');

      const worker = await startRole('src/apps/worker/main.ts', env);
      roles.push(worker);
      await eventually('the next worker got the event again, as a duplicate', async () => {
        const metrics = parseExposition(await (await fetch(`${worker.url}/metrics`)).text());
        return metrics.value('worker_messages_total', { outcome: 'duplicate' }) === 1;
      });
      // Should it fail: which relay led, and whether a cache write was skipped (before the reads' own lines).
      const telling = roles
        .flatMap((role) => role.output().split('\n'))
        .filter((line) => /leading|leadership|cache write skipped/.test(line));
      // Within seconds, not the entry's 15 minutes: on a busy machine the relay's cache write may miss its second,
      // and the entry is then dropped once Redis answers (dropping the replays of its reads with it).
      let read: StudentJson | undefined;
      await eventually(
        'a read gets the change',
        async () => {
          read = (await (await fetch(`${webapi.url}/api/students/${id}`)).json()) as StudentJson;
          return read.updates === 1;
        },
        15_000,
      ).catch(() => undefined);
      assert.deepEqual(
        { updates: read?.updates, version: read?.version },
        { updates: 1, version: 2 },
        `read ${JSON.stringify(read)}; the roles said:\n${telling.join('\n')}`,
      );
    } finally {
      await Promise.all(roles.map((role) => role.stop()));
      await client.end().catch(() => undefined);
      await Promise.all([database.drop(), vhost.delete(), deleteRedisKeys(keyPrefix)]);
    }
  },
);
