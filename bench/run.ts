// `npm run bench [-- name ...]`: runs the named scenarios (default: all) and prints one table, each
// measurement next to a baseline measured in the same run on this machine.
import { httpGetById } from './http-get-by-id.ts';
import { messagingBaseline } from './messaging-baseline.ts';
import { notificationsLatency } from './notifications-latency.ts';
import { pipelineBench } from './pipeline.ts';
import { replayLogCatchUp } from './replay-log-catch-up.ts';
import { sseFanOut } from './sse-fanout.ts';
import { spawnSync } from 'node:child_process';
import { printTable, type BenchRow } from './table.ts';

/** A package's own benchmark, in its own process; it prints its own table (next to its baselines). */
function packageBench(script: string, args: string[] = []): () => Promise<BenchRow[]> {
  return async () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], { stdio: 'inherit' });
    if (result.status !== 0) throw new Error(`${script} exited with ${result.status}`);
    return [];
  };
}

const scenarios: Record<string, () => Promise<BenchRow[]>> = {
  http: () => httpGetById(),
  messaging: () => messagingBaseline(),
  pipeline: () => pipelineBench(),
  'notifications-latency': () => notificationsLatency(),
  'sse-fanout': () => sseFanOut(),
  'replay-log': () => replayLogCatchUp(),
  signalr: packageBench('packages/signalr/bench/fanout.ts'),
  'signalr-idle': packageBench('packages/signalr/bench/fanout.ts', ['--idle', '--clients', '19500']),
  // 10× the offered rate of the main scenario: peak memory must stay within idle + 256 MB.
  'signalr-overload': packageBench('packages/signalr/bench/fanout.ts', [
    '--libs',
    'signalr',
    '--rate',
    '200',
    '--duration',
    '5',
  ]),
};

const requested = process.argv.slice(2);
const unknown = requested.filter((name) => !(name in scenarios));
if (unknown.length > 0) {
  console.error(`unknown scenario ${unknown.join(', ')}; choose from ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}

const rows: BenchRow[] = [];
for (const name of requested.length > 0 ? requested : Object.keys(scenarios)) {
  console.error(`running ${name} ...`);
  rows.push(...(await scenarios[name]!()));
}
if (rows.length > 0) printTable(rows);
