// A client that reads a student the moment a notification tells it of the worker's change must get that change,
// not the student from before it: the notification leaves only once the cache shows what it reports, however long
// the cache takes to write. Every role in this process, embedded, as `npm start` runs them.
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { test } from 'node:test';
import type { StudentSnapshot } from '../../src/domain/student.ts';
import { createNotifications } from '../../src/apps/notifications/main.ts';
import { createWebApiOver } from '../../src/apps/webapi/main.ts';
import { createWorkerOver } from '../../src/apps/worker/main.ts';
import { parseConfig } from '../../src/config.ts';
import { openProcessResources } from '../../src/infrastructure/runtime/process-resources.ts';
import { silentLogger } from '../support/logger.ts';
import { sseClient } from '../notifications/support.ts';
import { REDIS_URL, deleteRedisKeys, needsRedis, uniqueName } from '../support/services.ts';
import { until } from '../support/until.ts';

/** How long every cache write of a changed student takes here: far longer than the pipeline's few milliseconds. */
const SLOW_CACHE_WRITE_MS = 300;

const redis = await needsRedis();

interface StudentJson {
  readonly id: string;
  readonly updates: number;
  readonly version: number;
}

async function readAfterNotification(cacheSettings: Record<string, string>): Promise<void> {
  const config = parseConfig({
    DATABASE_URL: 'pglite://memory',
    API_PORT: '0',
    NOTIFICATIONS_PORT: '0',
    WORKER_PORT: '0',
    LOG_LEVEL: 'silent',
    ...cacheSettings,
  });
  const logger = silentLogger;
  const resources = await openProcessResources(config, logger, { connectionName: 'test', bus: true });
  try {
    // A cache that answers, slowly: the worker's refresh lands long after the relay could publish.
    const { students } = resources.cache;
    const set = students.set.bind(students);
    students.set = async (student: StudentSnapshot) => {
      await delay(SLOW_CACHE_WRITE_MS);
      await set(student);
    };
    const webApi = await createWebApiOver(resources, { config, logger });
    const worker = createWorkerOver(resources, { config, logger });
    const notifications = await createNotifications({
      config,
      logger,
      bus: resources.bus,
      registry: resources.registry,
    });
    try {
      const api = await webApi.start();
      const [, pages] = await Promise.all([worker.start(), notifications.start()]);
      const sse = sseClient(pages);
      try {
        await until(() => sse.control.some((event) => event.type === 'connected'), 'the stream open');
        const created = await fetch(`${api}/api/students`, { method: 'POST' });
        assert.equal(created.status, 201);
        const { id } = (await created.json()) as StudentJson;

        await sse.arrived('StudentCached', id);
        const read = (await (await fetch(`${api}/api/students/${id}`)).json()) as StudentJson;
        assert.deepEqual(
          { updates: read.updates, version: read.version },
          { updates: 1, version: 2 },
          'the student as the notification reports it',
        );
      } finally {
        sse.close();
      }
    } finally {
      await Promise.all([notifications.stop(), webApi.stop()]);
      await worker.stop();
    }
  } finally {
    await resources.close();
  }
}

const SCENARIO =
  'a student read the moment its StudentCached notification arrives shows the change it reports, even when the cache is slow to write';

test(`${SCENARIO} (memory cache)`, () => readAfterNotification({ REDIS_URL: 'memory:' }));

test(`${SCENARIO} (Redis: L2, bus and replay log)`, { skip: redis.skip }, async () => {
  const keyPrefix = `${uniqueName('read_after_notification')}:`;
  try {
    await readAfterNotification({
      REDIS_URL,
      CACHE_KEY_PREFIX: `${keyPrefix}cache:`,
      REPLAY_LOG_KEY_PREFIX: `${keyPrefix}log:`,
    });
  } finally {
    await deleteRedisKeys(keyPrefix);
  }
});
