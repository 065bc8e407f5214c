// A strict parser of the Prometheus text exposition format (0.0.4), so a test can tell that /metrics is what a
// Prometheus server accepts: every family typed before its samples, well-formed names, labels and values, no
// duplicate series, and histograms with cumulative buckets ending in +Inf equal to their _count.

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Exposition {
  readonly types: ReadonlyMap<string, MetricType>;
  readonly samples: readonly Sample[];
  /** The value of the one series with exactly these labels; undefined if there is none. */
  value(name: string, labels?: Readonly<Record<string, string>>): number | undefined;
  /** The sum over every series of `name` whose labels include `labels`. */
  sum(name: string, labels?: Readonly<Record<string, string>>): number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<MetricType>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const SUFFIXES: Record<MetricType, readonly string[]> = {
  counter: [''],
  gauge: [''],
  untyped: [''],
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['', '_sum', '_count'],
};

export class ExpositionError extends Error {
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = 'ExpositionError';
  }
}

export function parseExposition(text: string): Exposition {
  if (!text.endsWith('\n')) throw new ExpositionError(0, 'the exposition must end with a line feed');
  const types = new Map<string, MetricType>();
  const helped = new Set<string>();
  const withSamples = new Set<string>();
  const samples: Sample[] = [];
  const series = new Set<string>();
  const lines = text.slice(0, -1).split('\n');

  lines.forEach((line, index) => {
    const number = index + 1;
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const [, keyword, name, rest] = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line) ?? [];
      if (!keyword) return; // a plain comment
      if (!name || !METRIC_NAME.test(name)) throw new ExpositionError(number, `bad metric name in ${line}`);
      if (keyword === 'HELP') {
        if (helped.has(name)) throw new ExpositionError(number, `second HELP for ${name}`);
        helped.add(name);
        return;
      }
      if (!TYPES.has(rest as MetricType)) throw new ExpositionError(number, `unknown type ${rest}`);
      if (types.has(name)) throw new ExpositionError(number, `second TYPE for ${name}`);
      if (withSamples.has(name)) throw new ExpositionError(number, `TYPE for ${name} after its samples`);
      types.set(name, rest as MetricType);
      return;
    }
    const sample = parseSample(line, number);
    const family = familyOf(sample.name, types);
    if (!family) throw new ExpositionError(number, `sample ${sample.name} of no declared family`);
    withSamples.add(family);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (series.has(key)) throw new ExpositionError(number, `duplicate series ${key}`);
    series.add(key);
    if (sample.name.endsWith('_bucket') && types.get(family) === 'histogram' && !('le' in sample.labels))
      throw new ExpositionError(number, `histogram bucket without le: ${line}`);
    samples.push(sample);
  });

  checkHistograms(samples, types);
  const matches = (sample: Sample, labels: Readonly<Record<string, string>>) =>
    Object.entries(labels).every(([key, value]) => sample.labels[key] === value);
  return {
    types,
    samples,
    value(name, labels = {}) {
      const wanted = Object.keys(labels).length;
      return samples.find(
        (sample) =>
          sample.name === name && Object.keys(sample.labels).length === wanted && matches(sample, labels),
      )?.value;
    },
    sum(name, labels = {}) {
      return samples
        .filter((sample) => sample.name === name && matches(sample, labels))
        .reduce((total, sample) => total + sample.value, 0);
    },
  };
}

function familyOf(sampleName: string, types: ReadonlyMap<string, MetricType>): string | undefined {
  for (const [family, type] of types)
    if (SUFFIXES[type].some((suffix) => `${family}${suffix}` === sampleName)) return family;
  return undefined;
}

function parseSample(line: string, number: number): Sample {
  const name = /^[^\s{]+/.exec(line)?.[0] ?? '';
  if (!METRIC_NAME.test(name)) throw new ExpositionError(number, `bad metric name in ${line}`);
  let rest = line.slice(name.length);
  const labels: Record<string, string> = {};
  if (rest.startsWith('{')) {
    let position = 1;
    while (rest[position] !== '}') {
      const labelName = /^[^=]*/.exec(rest.slice(position))?.[0] ?? '';
      if (!LABEL_NAME.test(labelName)) throw new ExpositionError(number, `bad label name in ${line}`);
      if (labelName in labels) throw new ExpositionError(number, `label ${labelName} twice in ${line}`);
      position += labelName.length;
      if (rest.slice(position, position + 2) !== '="')
        throw new ExpositionError(number, `label ${labelName} without a quoted value in ${line}`);
      position += 2;
      let value = '';
      for (;;) {
        const char = rest[position];
        if (char === undefined) throw new ExpositionError(number, `unterminated label value in ${line}`);
        position++;
        if (char === '"') break;
        if (char !== '\\') {
          value += char;
          continue;
        }
        const escaped = rest[position++];
        if (escaped === 'n') value += '\n';
        else if (escaped === '\\' || escaped === '"') value += escaped;
        else throw new ExpositionError(number, `bad escape \\${escaped} in ${line}`);
      }
      labels[labelName] = value;
      if (rest[position] === ',') position++;
      else if (rest[position] !== '}') throw new ExpositionError(number, `expected , or } in ${line}`);
    }
    rest = rest.slice(position + 1);
  }
  const [, value, extra] = /^ (\S+)(?: -?\d+)?(.*)$/.exec(rest) ?? [];
  if (value === undefined || extra)
    throw new ExpositionError(number, `expected " value [timestamp]" in ${line}`);
  return { name, labels, value: parseValue(value, line, number) };
}

// As a Prometheus server reads values (Go's strconv.ParseFloat): Inf and NaN in any case. prom-client writes `Nan`
// (a gauge with nothing to report yet, such as the event loop lag just after start).
const SPECIAL_VALUE = /^(?:([-+]?)(?:inf|infinity)|(nan))$/i;

function parseValue(text: string, line: string, number: number): number {
  const special = SPECIAL_VALUE.exec(text);
  if (special) return special[2] ? NaN : special[1] === '-' ? -Infinity : Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text))
    throw new ExpositionError(number, `bad value ${text} in ${line}`);
  return Number(text);
}

function checkHistograms(samples: readonly Sample[], types: ReadonlyMap<string, MetricType>): void {
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const groups = new Map<string, { le: number; value: number }[]>();
    for (const sample of samples) {
      if (sample.name !== `${family}_bucket`) continue;
      const { le, ...rest } = sample.labels;
      const key = JSON.stringify(Object.entries(rest).sort());
      const buckets = groups.get(key) ?? [];
      buckets.push({ le: parseValue(le ?? '', family, 0), value: sample.value });
      groups.set(key, buckets);
    }
    for (const [key, buckets] of groups) {
      buckets.sort((a, b) => a.le - b.le);
      if (buckets.at(-1)?.le !== Infinity) throw new ExpositionError(0, `${family}${key}: no +Inf bucket`);
      buckets.reduce((previous, bucket) => {
        if (bucket.value < previous)
          throw new ExpositionError(0, `${family}${key}: buckets are not cumulative`);
        return bucket.value;
      }, 0);
      const labels = Object.fromEntries(JSON.parse(key) as [string, string][]);
      const count = samples.find(
        (sample) =>
          sample.name === `${family}_count` &&
          JSON.stringify(Object.entries(sample.labels).sort()) ===
            JSON.stringify(Object.entries(labels).sort()),
      );
      if (count?.value !== buckets.at(-1)?.value)
        throw new ExpositionError(0, `${family}${key}: the +Inf bucket is not the _count`);
    }
  }
}
