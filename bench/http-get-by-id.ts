// GET /api/students/:id on the real webapi next to a bare Fastify route serving the same JSON from a Map.
import autocannon from 'autocannon';
import { startChildServer } from './child-server.ts';
import type { BenchRow } from './table.ts';

export interface HttpBenchOptions {
  readonly connections?: number;
  readonly durationSeconds?: number;
}

async function load(url: string, options: Required<HttpBenchOptions>) {
  // A short warm-up so JIT and connection set-up don't count.
  await autocannon({ url, connections: options.connections, duration: 1 });
  const result = await autocannon({
    url,
    connections: options.connections,
    duration: options.durationSeconds,
  });
  if (result.non2xx > 0 || result.errors > 0)
    throw new Error(`${url}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  return { rps: Math.round(result.requests.average), p50: result.latency.p50, p99: result.latency.p99 };
}

export async function httpGetById(options: HttpBenchOptions = {}): Promise<BenchRow[]> {
  const settings = { connections: options.connections ?? 50, durationSeconds: options.durationSeconds ?? 10 };
  const webapi = await startChildServer<{ url: string; id: string; json: string }>('bench/servers/webapi.ts');
  const bare = await startChildServer<{ url: string }>('bench/servers/bare-fastify.ts', {
    BENCH_ID: webapi.info.id,
    BENCH_JSON: webapi.info.json,
  });
  try {
    const path = `/api/students/${webapi.info.id}`;
    const baseline = await load(`${bare.info.url}${path}`, settings);
    const measured = await load(`${webapi.info.url}${path}`, settings);
    const scenario = `GET /api/students/:id (${settings.connections} connections)`;
    return [
      { scenario, variant: 'bare Fastify + Map (baseline)', ...baseline, ratio: 1 },
      { scenario, variant: 'webapi', ...measured, ratio: measured.rps / baseline.rps },
    ];
  } finally {
    await Promise.all([webapi.stop(), bare.stop()]);
  }
}
