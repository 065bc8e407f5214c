// GET /api/students/:id on the real webapi next to a bare Fastify route serving the same JSON from a Map, that
// same route on our HTTP plumbing (what every route of ours pays before any caching), and the bare route with one
// microsecond of work added (what a microsecond costs here).
import autocannon from 'autocannon';
import { startChildServer, type ChildServer } from './child-server.ts';
import type { BenchRow } from './table.ts';

export interface HttpBenchOptions {
  readonly connections?: number;
  /** Rounds of load; every server is loaded once per round, in turn. */
  readonly rounds?: number;
  readonly secondsPerRound?: number;
}

/**
 * Work added to the baseline for the calibration row. On a small machine the load generator shares the cores: each
 * response's write must then wake it, and that kernel cost grows as the server slows, so the ratio falls much faster
 * than the added CPU alone would say.
 */
const CALIBRATION_MICROSECONDS = 1;

interface Target {
  readonly variant: string;
  readonly url: string;
  readonly headers?: Record<string, string>;
  readonly note?: string;
  readonly server: ChildServer<unknown>;
}

interface Measurement {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  /** The server's CPU time (user + system) per request answered, µs. */
  readonly cpuPerRequest: number;
}

async function load(target: Target, connections: number, seconds: number): Promise<Measurement> {
  const { url, headers = {}, server } = target;
  const before = await server.cpuUsage();
  const result = await autocannon({ url, headers, connections, duration: seconds });
  const after = await server.cpuUsage();
  if (result.non2xx > 0 || result.errors > 0)
    throw new Error(`${url}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  const cpu = after.user - before.user + (after.system - before.system);
  return {
    rps: Math.round(result.requests.average),
    p50: result.latency.p50,
    p99: result.latency.p99,
    cpuPerRequest: cpu / result.requests.total,
  };
}

/** The response headers a deduplication replay sends, but those Node or the route itself writes. */
async function replayHeaders(url: string): Promise<Record<string, string>> {
  await fetch(url).then((response) => response.arrayBuffer());
  const replay = await fetch(url);
  await replay.arrayBuffer();
  if (replay.headers.get('x-deduplicated') !== 'true')
    throw new Error(`${url}: the second GET was no replay`);
  const ownedElsewhere = new Set(['date', 'connection', 'keep-alive', 'content-length', 'content-type']);
  return Object.fromEntries([...replay.headers].filter(([name]) => !ownedElsewhere.has(name)));
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * Every server runs at once (each in its own process, idle while another is loaded) and is loaded in turn, round
 * after round: the machine's own drift (on a shared host, ±30 % from one minute to the next) then weighs on the
 * baseline and the variants alike. Ratios are the median of each round's ratio to that round's baseline.
 */
export async function httpGetById(options: HttpBenchOptions = {}): Promise<BenchRow[]> {
  const connections = options.connections ?? 50;
  const rounds = options.rounds ?? 5;
  const seconds = options.secondsPerRound ?? 3;
  const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
  type WebApiInfo = { url: string; id: string; json: string };
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
  const scenario = `GET /api/students/:id (${connections} connections, median of ${rounds} rounds)`;
  const path = (id: string) => `/api/students/${id}`;
  const targets: Target[] = [];
  try {
    for (const variant of variants) {
      const server = await startChildServer<WebApiInfo>('bench/servers/webapi.ts', variant.env);
      targets.push({
        variant: variant.name,
        url: `${server.info.url}${path(server.info.id)}`,
        note: variant.note,
        server,
        ...(variant.headers ? { headers: variant.headers } : {}),
      });
    }
    // The baselines serve the first webapi's student, byte for byte.
    const { id, json } = (targets[0]!.server as ChildServer<WebApiInfo>).info;
    const studentUrl = (server: ChildServer<{ url: string }>) => `${server.info.url}${path(id)}`;
    const mapRoute = (env: Record<string, string> = {}) =>
      startChildServer<{ url: string }>('bench/servers/bare-fastify.ts', {
        BENCH_ID: id,
        BENCH_JSON: json,
        ...env,
      });
    const bare = await mapRoute();
    const calibration = await mapRoute({ BENCH_BUSY_MICROSECONDS: String(CALIBRATION_MICROSECONDS) });
    const withHeaders = await mapRoute({
      BENCH_HEADERS: JSON.stringify(await replayHeaders(targets[0]!.url)),
    });
    const plumbed = await startChildServer<{ url: string }>('bench/servers/plumbed-fastify.ts', {
      BENCH_ID: id,
      BENCH_JSON: json,
    });
    targets.unshift(
      { variant: 'bare Fastify + Map (baseline)', url: studentUrl(bare), server: bare },
      {
        variant: `bare Fastify + Map, ${CALIBRATION_MICROSECONDS} µs of work per request`,
        url: studentUrl(calibration),
        note: 'calibration: what one microsecond of CPU per request costs the baseline on this machine',
        server: calibration,
      },
      {
        variant: "bare Fastify + Map, sending the replay's headers",
        url: studentUrl(withHeaders),
        note: 'the headers a replay carries (security, CORS, request id, ETag, X-Deduplicated), set by the bare route',
        server: withHeaders,
      },
      {
        variant: 'Fastify + Map on our HTTP plumbing',
        url: studentUrl(plumbed),
        note: 'security headers, request id, metrics, CORS, problem+json: the cost every route pays',
        server: plumbed,
      },
    );
    const headersIndex = 2;
    const plumbedIndex = 3;

    // A warm-up per server so JIT and connection set-up don't count.
    for (const target of targets) await load(target, connections, 1);
    const measured = targets.map(() => [] as Measurement[]);
    for (let round = 0; round < rounds; round++)
      for (const [index, target] of targets.entries())
        measured[index]!.push(await load(target, connections, seconds));

    const ratiosTo = (index: number) =>
      median(measured[index]!.map((measurement, round) => measurement.rps / measured[0]![round]!.rps));
    return targets.map((target, index) => {
      const runs = measured[index]!;
      const ratio = ratiosTo(index);
      const relative = (to: number, what: string) => `${(ratio / ratiosTo(to)).toFixed(2)}× ${what}`;
      const toPlumbing =
        index > plumbedIndex
          ? `; ${relative(plumbedIndex, 'the plumbed route')}, ${relative(headersIndex, 'the bare route with its headers')}`
          : '';
      return {
        scenario,
        variant: target.variant,
        rps: Math.round(median(runs.map((run) => run.rps))),
        p50: median(runs.map((run) => run.p50)),
        p99: median(runs.map((run) => run.p99)),
        ratio,
        cpuPerRequest: median(runs.map((run) => run.cpuPerRequest)),
        ...(target.note ? { note: `${target.note}${toPlumbing}` } : {}),
      };
    });
  } finally {
    await Promise.all(targets.map((target) => target.server.stop()));
  }
}
