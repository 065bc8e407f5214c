// GET /api/students/:id on the real webapi next to a bare Fastify route serving the same JSON from a Map, and that
// same route on our HTTP plumbing (what every route of ours pays before any caching).
import autocannon from 'autocannon';
import { startChildServer } from './child-server.ts';
import type { BenchRow } from './table.ts';

export interface HttpBenchOptions {
  readonly connections?: number;
  readonly durationSeconds?: number;
}

async function load(url: string, options: Required<HttpBenchOptions>, headers: Record<string, string> = {}) {
  // A short warm-up so JIT and connection set-up don't count.
  await autocannon({ url, headers, connections: options.connections, duration: 1 });
  const result = await autocannon({
    url,
    headers,
    connections: options.connections,
    duration: options.durationSeconds,
  });
  if (result.non2xx > 0 || result.errors > 0)
    throw new Error(`${url}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  return { rps: Math.round(result.requests.average), p50: result.latency.p50, p99: result.latency.p99 };
}

export async function httpGetById(options: HttpBenchOptions = {}): Promise<BenchRow[]> {
  const settings = { connections: options.connections ?? 50, durationSeconds: options.durationSeconds ?? 10 };
  const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
  type WebApiInfo = { url: string; id: string; json: string };
  // Each variant in its own process, so one's caches and JIT state don't help another.
  const variants: {
    name: string;
    env: Record<string, string>;
    headers?: Record<string, string>;
    note: string;
  }[] = [
    { name: 'webapi, memory cache', env: {}, note: 'within the 30 s window: a deduplication replay' },
    {
      name: 'webapi, memory cache, dedup off',
      env: { BENCH_DEDUP_GET_WINDOW_SECONDS: '0' },
      note: 'a bentocache L1 hit',
    },
    { name: 'webapi, Redis L2 + bus', env: { BENCH_REDIS_URL: redisUrl }, note: 'deduplication replay' },
    {
      name: 'webapi, Redis L2 + bus, dedup off',
      env: { BENCH_REDIS_URL: redisUrl, BENCH_DEDUP_GET_WINDOW_SECONDS: '0' },
      note: 'a bentocache L1 hit',
    },
    {
      name: 'webapi, Cache-Control: no-cache',
      env: {},
      headers: { 'cache-control': 'no-cache' },
      note: 'uncached: PGlite read + serialization',
    },
  ];
  const scenario = `GET /api/students/:id (${settings.connections} connections)`;
  const first = await startChildServer<WebApiInfo>('bench/servers/webapi.ts');
  const bare = await startChildServer<{ url: string }>('bench/servers/bare-fastify.ts', {
    BENCH_ID: first.info.id,
    BENCH_JSON: first.info.json,
  });
  const plumbed = await startChildServer<{ url: string }>('bench/servers/plumbed-fastify.ts', {
    BENCH_ID: first.info.id,
    BENCH_JSON: first.info.json,
  });
  await first.stop();
  try {
    const path = (id: string) => `/api/students/${id}`;
    const baseline = await load(`${bare.info.url}${path(first.info.id)}`, settings);
    const onPlumbing = await load(`${plumbed.info.url}${path(first.info.id)}`, settings);
    await plumbed.stop();
    const rows: BenchRow[] = [
      { scenario, variant: 'bare Fastify + Map (baseline)', ...baseline, ratio: 1 },
      {
        scenario,
        variant: 'Fastify + Map on our HTTP plumbing',
        ...onPlumbing,
        ratio: onPlumbing.rps / baseline.rps,
        note: 'security headers, request id, metrics, CORS, problem+json: the cost every route pays',
      },
    ];
    for (const variant of variants) {
      const webapi = await startChildServer<WebApiInfo>('bench/servers/webapi.ts', variant.env);
      try {
        const measured = await load(`${webapi.info.url}${path(webapi.info.id)}`, settings, variant.headers);
        rows.push({
          scenario,
          variant: variant.name,
          ...measured,
          ratio: measured.rps / baseline.rps,
          note: `${variant.note}; ${(measured.rps / onPlumbing.rps).toFixed(2)}× the plumbed route`,
        });
      } finally {
        await webapi.stop();
      }
    }
    return rows;
  } finally {
    await bare.stop();
  }
}
