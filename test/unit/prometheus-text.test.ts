// The strict exposition parser the metrics tests rely on: it must accept what prom-client writes and refuse
// what a Prometheus server would refuse.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ExpositionError, parseExposition } from '../support/prometheus-text.ts';

describe('the Prometheus text parser used by the metrics tests', () => {
  test("accepts prom-client's output and reads values back by name and labels", async () => {
    const registry = new Registry();
    new Counter({ name: 'jobs_total', help: 'Jobs', labelNames: ['kind'], registers: [registry] }).inc(
      { kind: 'a "quoted"\\\nvalue' },
      3,
    );
    new Gauge({ name: 'queue_depth', help: 'Depth', registers: [registry] }).set(-1.5e-3);
    const histogram = new Histogram({
      name: 'latency_seconds',
      help: 'Latency',
      labelNames: ['route'],
      buckets: [0.1, 1],
      registers: [registry],
    });
    histogram.observe({ route: '/a' }, 0.5);
    histogram.observe({ route: '/a' }, 5);

    const parsed = parseExposition(await registry.metrics());
    assert.equal(parsed.types.get('latency_seconds'), 'histogram');
    assert.equal(parsed.value('jobs_total', { kind: 'a "quoted"\\\nvalue' }), 3);
    assert.equal(parsed.value('queue_depth'), -0.0015);
    assert.equal(parsed.value('latency_seconds_count', { route: '/a' }), 2);
    assert.equal(parsed.value('latency_seconds_bucket', { route: '/a', le: '+Inf' }), 2);
    assert.equal(parsed.sum('latency_seconds_bucket', { le: '1' }), 1);
  });

  test('reads Inf and NaN as a Prometheus server does, in any case (prom-client writes an empty gauge as Nan)', () => {
    const parsed = parseExposition(
      '# TYPE g gauge\ng{a="1"} Nan\ng{a="2"} NaN\ng{a="3"} +Inf\ng{a="4"} -inf\ng{a="5"} Infinity\n',
    );
    assert.ok(Number.isNaN(parsed.value('g', { a: '1' })));
    assert.ok(Number.isNaN(parsed.value('g', { a: '2' })));
    assert.equal(parsed.value('g', { a: '3' }), Infinity);
    assert.equal(parsed.value('g', { a: '4' }), -Infinity);
    assert.equal(parsed.value('g', { a: '5' }), Infinity);
    assert.throws(() => parseExposition('# TYPE g gauge\ng -nan\n'), ExpositionError);
  });

  const family = '# HELP up Up\n# TYPE up gauge\n';
  for (const [what, text] of [
    ['a sample of an undeclared family', 'up 1\n'],
    ['a TYPE after its samples', '# TYPE up gauge\nup 1\n# TYPE up gauge\n'],
    ['an unknown type', '# TYPE up meter\nup 1\n'],
    ['a bad metric name', `${family}1up 1\n`],
    ['a bad label name', `${family}up{1a="x"} 1\n`],
    ['an unquoted label value', `${family}up{a=x} 1\n`],
    ['a bad escape', `${family}up{a="\\t"} 1\n`],
    ['a bad value', `${family}up one\n`],
    ['trailing garbage', `${family}up 1 2 3\n`],
    ['a duplicate series', `${family}up{a="1"} 1\nup{a="1"} 2\n`],
    ['no final line feed', `${family}up 1`],
    [
      'a histogram whose +Inf bucket is not its count',
      '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 3\n',
    ],
    [
      'a histogram whose buckets are not cumulative',
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 3\nh_count 1\n',
    ],
  ] as const)
    test(`refuses ${what}`, () => {
      assert.throws(() => parseExposition(text), ExpositionError);
    });
});
