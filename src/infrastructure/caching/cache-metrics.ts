import { Counter, Gauge, type Registry } from 'prom-client';

export interface CacheMetrics {
  readonly cacheHits: Counter;
  readonly cacheMisses: Counter;
  /** `kind`: `replayed` (stored response) or `coalesced` (joined a request in flight). */
  readonly dedupHits: Counter<'kind'>;
}

/** Registered on the caller's registry, never the global one, so several apps (and tests) can live in one process. */
export function createCacheMetrics(registry: Registry): CacheMetrics {
  const registers = [registry];
  const cacheHits = new Counter({
    name: 'student_cache_hits_total',
    help: 'Student reads served by the cache',
    registers,
  });
  const cacheMisses = new Counter({
    name: 'student_cache_misses_total',
    help: 'Student reads that went to the database',
    registers,
  });
  new Gauge({
    name: 'student_cache_hit_ratio',
    help: 'Share of student reads served by the cache since start (for a recent window, divide the rates of the two counters)',
    registers,
    async collect() {
      const [hits, misses] = await Promise.all([cacheHits.get(), cacheMisses.get()]);
      const hit = hits.values[0]?.value ?? 0;
      const total = hit + (misses.values[0]?.value ?? 0);
      this.set(total === 0 ? 0 : hit / total);
    },
  });
  return {
    cacheHits,
    cacheMisses,
    dedupHits: new Counter({
      name: 'http_dedup_hits_total',
      help: 'Requests answered by request deduplication',
      labelNames: ['kind'],
      registers,
    }),
  };
}
