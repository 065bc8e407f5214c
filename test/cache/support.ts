import { Registry } from 'prom-client';
import type { StudentQueries } from '../../src/application/ports/student-queries.ts';
import { createWebApi } from '../../src/apps/webapi/main.ts';
import { parseConfig } from '../../src/config.ts';
import { openCache, type Cache } from '../../src/infrastructure/caching/open-cache.ts';
import type { Logger } from '../../src/infrastructure/logging/logger.ts';
import type { Database } from '../../src/infrastructure/persistence/database.ts';
import { SqlStudentQueries } from '../../src/infrastructure/persistence/sql-student-queries.ts';
import { silentLogger } from '../support/logger.ts';

export interface CachedApi {
  readonly url: string;
  readonly cache: Cache;
  stop(): Promise<void>;
}

/** A webapi with its own cache (its own L1), on `redisUrl` under `keyPrefix`; `env` adds settings. */
export async function startCachedApi(
  database: Database,
  options: {
    redisUrl: string;
    keyPrefix: string;
    queries?: StudentQueries;
    halfOpenAfterMs?: number;
    /** How often the cache checks that its idle Redis connections still answer. */
    pingIntervalMs?: number;
    env?: Record<string, string>;
    logger?: Logger;
  },
): Promise<CachedApi> {
  const config = parseConfig({
    API_PORT: '0',
    LOG_LEVEL: 'silent',
    REDIS_URL: options.redisUrl,
    CACHE_KEY_PREFIX: options.keyPrefix,
    ...options.env,
  });
  const cache = await openCache(
    {
      redisUrl: options.redisUrl,
      ...config.cache,
      registry: new Registry(),
      ...(options.halfOpenAfterMs ? { halfOpenAfterMs: options.halfOpenAfterMs } : {}),
      ...(options.pingIntervalMs ? { pingIntervalMs: options.pingIntervalMs } : {}),
    },
    options.logger ?? silentLogger,
  );
  const webApi = await createWebApi({
    config,
    logger: options.logger ?? silentLogger,
    database,
    cache,
    ...(options.queries ? { queries: options.queries } : {}),
  });
  const url = await webApi.start();
  return {
    url,
    cache,
    async stop() {
      await webApi.stop();
      await cache.close();
    },
  };
}

/**
 * Counts database reads by id (the acceptance criterion is "exactly one"); `holdNextRead` keeps the next read's
 * row from its caller until `released` settles, as a slow network or a long pause would.
 */
export function countingQueries(database: Database): StudentQueries & {
  readonly findByIdCalls: number;
  holdNextRead(released: Promise<void>): void;
} {
  const inner = new SqlStudentQueries(database.sql);
  let calls = 0;
  let hold: Promise<void> | undefined;
  return {
    get findByIdCalls() {
      return calls;
    },
    holdNextRead(released) {
      hold = released;
    },
    async findById(id) {
      calls += 1;
      const held = hold;
      hold = undefined;
      const row = await inner.findById(id);
      await held;
      return row;
    },
    findByIds: (ids) => inner.findByIds(ids),
    list: (input) => inner.list(input),
  };
}
