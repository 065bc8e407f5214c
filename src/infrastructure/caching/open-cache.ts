import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { HealthCheck } from '../health/health.ts';
import type { Logger } from '../logging/logger.ts';
import { BentoStudentCache } from './bento-student-cache.ts';
import { createCacheMetrics, type CacheMetrics } from './cache-metrics.ts';
import { IdempotencyStore } from './idempotency-store.ts';
import { InvalidationBus } from './invalidation-bus.ts';
import { CacheConnection, type CacheConnectionOptions } from './redis-cache-connection.ts';
import { ResponseReplayStore } from './response-replay-store.ts';
import { VersionFence } from './version-fence.ts';

export interface CacheOptions extends CacheConnectionOptions {
  /** `memory:` or `redis://…`. */
  readonly redisUrl: string;
  readonly keyPrefix: string;
  readonly ttlSeconds: number;
  readonly registry: Registry;
  /** This deployment (see deploymentIdOf), which claims the key prefix; tests that share nothing may leave it out. */
  readonly deployment?: string;
}

/** Everything the webapi and the worker cache, over one Redis connection (or memory), closed together. */
export interface Cache {
  readonly students: BentoStudentCache;
  readonly responses: ResponseReplayStore;
  readonly idempotency: IdempotencyStore;
  readonly metrics: CacheMetrics;
  /** Redis's check for a role's /health; `whatIsOff` says what that role does without it (see CacheConnection). */
  healthCheck(whatIsOff: string): HealthCheck;
  /** The command connection (fails fast while Redis is down); undefined when embedded. For other shared counters. */
  readonly redis: Redis | undefined;
  close(): Promise<void>;
}

export async function openCache(options: CacheOptions, logger: Logger): Promise<Cache> {
  const log = logger.child({ component: 'cache' });
  const connection = new CacheConnection(options.redisUrl, log, options);
  const prefix = options.keyPrefix;
  const dedupKey = (group: string) => `${prefix}dedup:${group}`;
  const invalidations = new InvalidationBus(
    connection,
    { channel: `${prefix}invalidations`, derivedKey: dedupKey },
    log,
  );
  const metrics = createCacheMetrics(options.registry);
  // Kept twice as long as a cache entry (whose TTL is jittered by a tenth) lives.
  const fence = new VersionFence(connection, `${prefix}version:`, options.ttlSeconds * 2_000);
  const students = new BentoStudentCache(connection, invalidations, fence, metrics, log, options);
  await Promise.all([connection.connected(), invalidations.ready(), students.ready()]);
  const close = async () => {
    // Our connection first: QUIT lets commands in flight finish; bentocache, closing it, would only disconnect.
    await connection.close();
    await students.close();
  };
  if (options.deployment)
    await connection.claim(prefix, options.deployment, 'CACHE_KEY_PREFIX').catch(async (error: unknown) => {
      await close();
      throw error;
    });
  return {
    students,
    responses: new ResponseReplayStore(connection, invalidations, dedupKey),
    idempotency: new IdempotencyStore(connection, `${prefix}idempotency:`),
    metrics,
    healthCheck: (whatIsOff) => connection.healthCheck(whatIsOff),
    redis: connection.redis,
    close,
  };
}
