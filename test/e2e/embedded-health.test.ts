// `npm start`'s roles in one process, embedded (PGlite, the in-process bus, memory caches): /health in the original's
// shape, its checks under the original's names, and the embedded adapters saying which mode they run in.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { AllRolesUrls } from '../../src/all-roles.ts';
import { embeddedRoles } from '../support/all-roles.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';

const TIME_SPAN = /^\d{2}:\d{2}:\d{2}\.\d{7}$/;

describe('/health of the embedded roles', () => {
  const roles = embeddedRoles();
  let urls: AllRolesUrls;
  before(async () => {
    urls = await roles.start();
  });
  after(() => roles.stop());

  test("the webapi's: database, rabbitmq, redis (the original's checks, in its order), the bus and the cache in memory", async () => {
    const response = await fetch(`${urls.api}/health`);
    assert.equal(response.status, 200);
    const body = (await response.json()) as HealthBody;
    assert.equal(body.status, 'Healthy');
    assert.match(body.totalDuration, TIME_SPAN);
    assert.deepEqual(
      body.checks.map((check) => check.name),
      ['database', 'rabbitmq', 'redis'],
    );
    for (const check of body.checks) {
      assert.equal(check.status, 'Healthy', check.name);
      assert.equal(check.exception, null, check.name);
      assert.match(check.duration, TIME_SPAN, check.name);
    }
    assert.equal(checkNamed(body, 'rabbitmq')?.data.adapter, 'in-process');
    assert.equal(checkNamed(body, 'redis')?.data.mode, 'memory');
  });

  test("the worker's reports the in-process bus as rabbitmq too", async () => {
    const body = (await (await fetch(urls.workerHealth)).json()) as HealthBody;
    assert.equal(body.status, 'Healthy', JSON.stringify(body));
    assert.equal(checkNamed(body, 'rabbitmq')?.status, 'Healthy');
    assert.equal(checkNamed(body, 'rabbitmq')?.data.adapter, 'in-process');
    assert.equal(checkNamed(body, 'broker'), undefined, 'no check under the old name');
  });
});
