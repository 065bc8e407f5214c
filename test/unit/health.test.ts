import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import Fastify from 'fastify';
import { Routes } from '../../src/contracts/routes.ts';
import {
  brokerCheck,
  databaseCheck,
  runHealthChecks,
  type HealthCheck,
  type HealthStatus,
} from '../../src/infrastructure/health/health.ts';
import { registerHealthRoutes } from '../../src/infrastructure/http/health.routes.ts';

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

  test('a check that throws is Unhealthy with its error as description; the others are still reported', async () => {
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
    assert.equal(report.checks.database?.status, 'Unhealthy');
    assert.equal(report.checks.database?.description, 'connection refused');
    assert.equal(report.checks.cache?.status, 'Healthy');
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
    assert.deepEqual(
      { status: report.checks.hung?.status, description: report.checks.hung?.description },
      { status: 'Unhealthy', description: 'no answer within 100 ms' },
    );
    assert.equal(report.checks.fine?.status, 'Healthy');
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
      assert.equal(detailed.json().checks.hung.description, 'no answer within 2000 ms');
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
    assert.equal(report.checks.broker?.description, 'no answer within 200 ms');
  });
});
