import { Counter, type Registry } from 'prom-client';

export interface CacheMetrics {
  readonly cacheHits: Counter;
  readonly cacheMisses: Counter;
  /** `kind`: `replayed` (stored response) or `coalesced` (joined a request in flight). */
  readonly dedupHits: Counter<'kind'>;
}

/** Registered on the caller's registry, never the global one, so several apps (and tests) can live in one process. */
export function createCacheMetrics(registry: Registry): CacheMetrics {
  const registers = [registry];
  return {
    cacheHits: new Counter({
      name: 'student_cache_hits_total',
      help: 'Student reads served by the cache',
      registers,
    }),
    cacheMisses: new Counter({
      name: 'student_cache_misses_total',
      help: 'Student reads that went to the database',
      registers,
    }),
    dedupHits: new Counter({
      name: 'http_dedup_hits_total',
      help: 'Requests answered by request deduplication',
      labelNames: ['kind'],
      registers,
    }),
  };
}
