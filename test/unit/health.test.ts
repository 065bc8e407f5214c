import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import Fastify from 'fastify';
import { Routes } from '../../src/contracts/routes.ts';
import {
  brokerCheck,
  databaseCheck,
  formatTimeSpan,
  runHealthChecks,
  type HealthCheck,
  type HealthStatus,
} from '../../src/infrastructure/health/health.ts';
import { registerHealthRoutes } from '../../src/infrastructure/http/health.routes.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';

/** .NET's `TimeSpan.ToString()` of a duration under a day, as the original's `/health` writes `duration`. */
const TIME_SPAN = /^\d{2}:\d{2}:\d{2}\.\d{7}$/;

const fixed = (name: string, status: HealthStatus): HealthCheck => ({
  name,
  check: async () => ({ status }),
});

describe('health checks', () => {
  test('the report is as bad as its worst check, whatever the order', async () => {
    for (const statuses of [
      ['Healthy', 'Degraded', 'Unhealthy'],
      ['Unhealthy', 'Degraded', 'Healthy'],
      ['Degraded', 'Unhealthy', 'Healthy'],
    ] as const) {
      const report = await runHealthChecks(statuses.map((status, i) => fixed(`check-${i}`, status)));
      assert.equal(report.status, 'Unhealthy', statuses.join(', '));
    }
    assert.equal((await runHealthChecks([fixed('a', 'Healthy'), fixed('b', 'Degraded')])).status, 'Degraded');
    assert.equal((await runHealthChecks([fixed('a', 'Degraded'), fixed('b', 'Healthy')])).status, 'Degraded');
    assert.equal((await runHealthChecks([fixed('a', 'Healthy'), fixed('b', 'Healthy')])).status, 'Healthy');
  });

  test('a check that throws is Unhealthy with its error as exception and description; the others are still reported', async () => {
    const report = await runHealthChecks([
      {
        name: 'database',
        check: async () => {
          throw new Error('connection refused');
        },
      },
      fixed('cache', 'Healthy'),
    ]);
    assert.equal(report.status, 'Unhealthy');
    assert.equal(checkNamed(report, 'database')?.status, 'Unhealthy');
    assert.equal(checkNamed(report, 'database')?.description, 'connection refused');
    assert.equal(checkNamed(report, 'database')?.exception, 'connection refused');
    assert.equal(checkNamed(report, 'cache')?.status, 'Healthy');
    assert.equal(checkNamed(report, 'cache')?.exception, null);
  });

  test('a database that answers but refuses every write is reported as the role says, with what is off', async () => {
    const answering = (readOnly: boolean) => ({
      kind: 'postgres' as const,
      ping: async () => ({ readOnly }),
    });
    const whenReadOnly = { status: 'Degraded' as const, whatIsOff: 'writes are answered 503' };
    assert.deepEqual(await databaseCheck(answering(false), whenReadOnly).check(), {
      status: 'Healthy',
      data: { kind: 'postgres', readOnly: false },
    });
    assert.deepEqual(await databaseCheck(answering(true), whenReadOnly).check(), {
      status: 'Degraded',
      description: 'read-only: writes are answered 503',
      data: { kind: 'postgres', readOnly: true },
    });
  });

  test('a check that never answers is Unhealthy after the timeout, and does not hold up the report', async () => {
    const started = performance.now();
    const report = await runHealthChecks(
      [{ name: 'hung', check: () => new Promise(() => undefined) }, fixed('fine', 'Healthy')],
      100,
    );
    assert.ok(performance.now() - started < 2_000, 'answered within about the timeout');
    assert.equal(report.status, 'Unhealthy');
    const hung = checkNamed(report, 'hung');
    assert.deepEqual(
      { status: hung?.status, description: hung?.description, exception: hung?.exception },
      { status: 'Unhealthy', description: 'no answer within 100 ms', exception: null },
      'a check that did not answer in time threw nothing',
    );
    assert.equal(checkNamed(report, 'fine')?.status, 'Healthy');
  });

  test('/health and /health/ready count a check that has not answered in 2 s as not answering, as the README says', async () => {
    const app = Fastify();
    registerHealthRoutes(app, [{ name: 'hung', check: () => new Promise(() => undefined) }]);
    try {
      const started = performance.now();
      const [detailed, ready] = await Promise.all([
        app.inject({ url: Routes.health }),
        app.inject({ url: Routes.healthReady }),
      ]);
      const took = performance.now() - started;
      assert.ok(took >= 1_900 && took < 5_000, `answered after ${Math.round(took)} ms`);
      assert.equal(detailed.statusCode, 503);
      assert.equal(checkNamed(detailed.json<HealthBody>(), 'hung')?.description, 'no answer within 2000 ms');
      assert.equal(ready.statusCode, 503);
    } finally {
      await app.close();
    }
  });

  test('the broker check is Unhealthy while the bus is disconnected, naming why, and Healthy once connected and answering', async () => {
    let pinged = 0;
    const ping = async () => void (pinged += 1);
    const down = await brokerCheck({
      status: () => ({ connected: false, adapter: 'rabbitmq', detail: 'connection closed' }),
      ping,
    }).check();
    assert.deepEqual(down, {
      status: 'Unhealthy',
      description: 'connection closed',
      data: { adapter: 'rabbitmq' },
    });
    assert.equal(pinged, 0, 'nothing to ask a broker it is not connected to');
    const up = await brokerCheck({ status: () => ({ connected: true, adapter: 'rabbitmq' }), ping }).check();
    assert.deepEqual(up, { status: 'Healthy', data: { adapter: 'rabbitmq' } });
    assert.equal(pinged, 1, 'asked');
  });

  test('the broker check is Unhealthy while a connected broker does not answer (frozen, or cut off without a reset)', async () => {
    const silent = brokerCheck({
      status: () => ({ connected: true, adapter: 'rabbitmq' }),
      ping: () => new Promise(() => {}),
    });
    const report = await runHealthChecks([silent], 200);
    assert.equal(report.status, 'Unhealthy');
    assert.equal(checkNamed(report, 'rabbitmq')?.description, 'no answer within 200 ms');
  });
});

describe("/health's body, as the original's writer gives it", () => {
  test('a TimeSpan as .NET writes it: hh:mm:ss and 7 fractional digits (ticks of 100 ns), days before a dot', () => {
    assert.equal(formatTimeSpan(0), '00:00:00.0000000');
    assert.equal(formatTimeSpan(1.2345), '00:00:00.0012345');
    assert.equal(formatTimeSpan(0.00004), '00:00:00.0000000', 'under half a tick');
    assert.equal(formatTimeSpan(1_234.56789), '00:00:01.2345679', 'to the nearest tick');
    assert.equal(formatTimeSpan(999.99999), '00:00:01.0000000', 'rounding carries into the seconds');
    assert.equal(formatTimeSpan(3_723_004.5), '01:02:03.0045000');
    assert.equal(formatTimeSpan(90_061_000), '1.01:01:01.0000000');
    assert.match(formatTimeSpan(performance.now()), /^(\d+\.)?\d{2}:\d{2}:\d{2}\.\d{7}$/);
  });

  test('status, totalDuration and checks: an array in the order they are registered, each name, status, (description,) exception, duration and data', async () => {
    const app = Fastify();
    registerHealthRoutes(app, [
      {
        name: 'database',
        check: async () => ({ status: 'Healthy', data: { kind: 'postgres', readOnly: false } }),
      },
      {
        name: 'rabbitmq',
        check: async () => {
          throw new Error('connection refused');
        },
      },
      { name: 'redis', check: async () => ({ status: 'Degraded', description: 'Redis unreachable' }) },
    ]);
    try {
      const response = await app.inject({ url: Routes.health });
      assert.equal(response.statusCode, 503);
      const body = response.json<HealthBody>();
      assert.deepEqual(Object.keys(body), ['status', 'totalDuration', 'checks']);
      assert.equal(body.status, 'Unhealthy');
      assert.match(body.totalDuration, TIME_SPAN);
      assert.ok(Array.isArray(body.checks));
      for (const check of body.checks) assert.match(check.duration, TIME_SPAN, check.name);
      const withoutDurations = body.checks.map(({ duration: _duration, ...check }) => check);
      assert.deepEqual(withoutDurations, [
        {
          name: 'database',
          status: 'Healthy',
          exception: null,
          data: { kind: 'postgres', readOnly: false },
        },
        {
          name: 'rabbitmq',
          status: 'Unhealthy',
          description: 'connection refused',
          exception: 'connection refused',
          data: {},
        },
        {
          name: 'redis',
          status: 'Degraded',
          description: 'Redis unreachable',
          exception: null,
          data: {},
        },
      ]);
      assert.deepEqual(Object.keys(body.checks[0]!), ['name', 'status', 'exception', 'duration', 'data']);
      assert.deepEqual(Object.keys(body.checks[1]!), [
        'name',
        'status',
        'description',
        'exception',
        'duration',
        'data',
      ]);
      assert.doesNotMatch(response.body, /durationMs|totalDurationMs/);
    } finally {
      await app.close();
    }
  });

  test('/health/ready answers the status alone, /health/live 200 whatever the checks say', async () => {
    const app = Fastify();
    registerHealthRoutes(app, [fixed('database', 'Unhealthy'), fixed('redis', 'Healthy')]);
    try {
      const ready = await app.inject({ url: Routes.healthReady });
      assert.equal(ready.statusCode, 503);
      assert.deepEqual(ready.json(), { status: 'Unhealthy' });
      const live = await app.inject({ url: Routes.healthLive });
      assert.equal(live.statusCode, 200);
      assert.deepEqual(live.json(), { status: 'Healthy' });
    } finally {
      await app.close();
    }
  });
});
