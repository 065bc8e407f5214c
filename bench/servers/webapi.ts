// The real webapi in its own process for the benchmark: prints {"url","id","json"} once it is ready.
import { Redis } from 'ioredis';
import { createWebApi } from '../../src/apps/webapi/main.ts';
import { parseConfig } from '../../src/config.ts';
import { createLogger } from '../../src/infrastructure/logging/logger.ts';
import { openDatabase } from '../../src/infrastructure/persistence/database.ts';
import { deleteRedisKeys } from '../../test/support/services.ts';

const keyPrefix = `bench_${process.pid}:student:`;
const config = parseConfig({
  API_PORT: '0',
  LOG_LEVEL: 'warn',
  DATABASE_URL: process.env.BENCH_DATABASE_URL ?? 'pglite://memory',
  REDIS_URL: process.env.BENCH_REDIS_URL ?? 'memory:',
  CACHE_KEY_PREFIX: keyPrefix,
  ...(process.env.BENCH_DEDUP_GET_WINDOW_SECONDS
    ? { DEDUP_GET_WINDOW_SECONDS: process.env.BENCH_DEDUP_GET_WINDOW_SECONDS }
    : {}),
});
const logger = createLogger({ ...config.log, name: 'bench-webapi' });
const database = await openDatabase(config.databaseUrl, logger);
await database.migrate();
const webApi = await createWebApi({ config, logger, database });
const url = await webApi.start();
const created = await fetch(`${url}/api/students`, { method: 'POST' });
const json = await created.text();
process.stdout.write(`${JSON.stringify({ url, id: (JSON.parse(json) as { id: string }).id, json })}\n`);
/** What this run cached in a shared Redis goes with it, instead of lingering until its TTL. */
async function deleteOwnKeys(): Promise<void> {
  if (config.redisUrl === 'memory:') return;
  const redis = new Redis(config.redisUrl);
  try {
    await deleteRedisKeys(keyPrefix, redis);
  } finally {
    redis.disconnect();
  }
}

process.on(
  'SIGTERM',
  () =>
    void webApi
      .stop()
      .then(() => Promise.all([database.close(), deleteOwnKeys()]))
      .then(() => process.exit(0)),
);
