export interface BenchRow {
  readonly scenario: string;
  readonly variant: string;
  /** Requests or messages per second. */
  readonly rps?: number;
  readonly p50?: number;
  readonly p99?: number;
  /** Throughput relative to the scenario's baseline measured in the same run. */
  readonly ratio?: number;
  /** The server's own CPU time per request (user + system, µs): what it costs, however the cores are shared. */
  readonly cpuPerRequest?: number;
  readonly note?: string;
}

export function printTable(rows: readonly BenchRow[]): void {
  const header = [
    'scenario',
    'variant',
    'per s',
    'p50 ms',
    'p99 ms',
    '× baseline',
    'server CPU µs/req',
    'note',
  ];
  const cells = rows.map((row) => [
    row.scenario,
    row.variant,
    row.rps?.toLocaleString('en-US') ?? '',
    row.p50?.toString() ?? '',
    row.p99?.toString() ?? '',
    row.ratio === undefined ? '' : row.ratio.toFixed(2),
    row.cpuPerRequest === undefined ? '' : row.cpuPerRequest.toFixed(1),
    row.note ?? '',
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...cells.map((line) => line[column]!.length)),
  );
  const format = (line: string[]) =>
    `| ${line.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;
  console.log(format(header));
  console.log(`|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`);
  for (const line of cells) console.log(format(line));
}
