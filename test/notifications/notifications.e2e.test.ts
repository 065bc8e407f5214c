// End to end on real PostgreSQL, RabbitMQ and Redis: webapi, worker and TWO notifications instances as processes.
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { startPipeline } from '../e2e/pipeline-harness.ts';
import { launchChromium, pageErrors } from '../support/browser.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { startRole, type RoleProcess } from '../support/role-process.ts';
import {
  REDIS_URL,
  deleteRedisKeys,
  needsPostgres,
  needsRabbitMq,
  needsRedis,
  uniqueName,
} from '../support/services.ts';
import { hubClient, sseClient, type Received } from './support.ts';
import { until } from '../support/until.ts';

const servers =
  [await needsPostgres(), await needsRabbitMq(), await needsRedis()].find(
    (requirement) => requirement.skip,
  ) ?? {};

/** Per student, the notification types in arrival order. */
function perStudent(received: readonly Received[]): Map<string, string[]> {
  const byStudent = new Map<string, string[]>();
  for (const event of received) {
    const list = byStudent.get(event.data.student.id) ?? [];
    list.push(event.type);
    byStudent.set(event.data.student.id, list);
  }
  return byStudent;
}

function assertCreatedThenCachedOnce(received: readonly Received[], ids: readonly string[], client: string) {
  const byStudent = perStudent(received);
  const wrong = ids.filter((id) => byStudent.get(id)?.join() !== 'StudentCreated,StudentCached');
  assert.deepEqual(wrong.slice(0, 5), [], `${client}: every student exactly Created then Cached`);
  assert.equal(received.length, ids.length * 2, `${client}: nothing else, nothing twice`);
}

describe('notifications across processes and instances', servers, () => {
  let pipeline: Awaited<ReturnType<typeof startPipeline>>;
  const instances: RoleProcess[] = [];
  const keyPrefix = `${uniqueName('tbe_notifications_test')}:`;

  before(async () => {
    pipeline = await startPipeline({ workerPrefetch: 20 });
    const env = {
      ...pipeline.env,
      REDIS_URL,
      REPLAY_LOG_KEY_PREFIX: keyPrefix,
      NOTIFICATIONS_PORT: '0',
    };
    instances.push(
      ...(await Promise.all([
        startRole('src/apps/notifications/main.ts', env),
        startRole('src/apps/notifications/main.ts', env),
      ])),
    );
  });
  after(async () => {
    await Promise.all(instances.map((instance) => instance.stop()));
    await pipeline?.dispose();
    await deleteRedisKeys(keyPrefix);
  });

  test('500 writes: an SSE client on one instance and a SignalR client on the other get every notification once, in per-student order', async () => {
    const [a, b] = instances;
    const sse = sseClient(a!.url);
    const hub = await hubClient(b!.url);
    try {
      await until(() => sse.control.length === 1 && hub.connected.length === 1, 'both clients connected');
      const { statuses, ids } = await pipeline.createStudents(500);
      assert.deepEqual(new Set(statuses), new Set([201]));
      await until(
        () => sse.received.length >= 1_000 && hub.received.length >= 1_000,
        '1,000 notifications on each client',
        180_000,
      );
      await new Promise((resolve) => setTimeout(resolve, 1_000)); // room for a stray duplicate to show up
      assertCreatedThenCachedOnce(sse.received, ids, 'SSE');
      assertCreatedThenCachedOnce(hub.received, ids, 'SignalR');
      const health = await Promise.all(
        instances.map(
          async (instance) => (await (await fetch(`${instance.url}/health`)).json()) as HealthBody,
        ),
      );
      assert.deepEqual(
        health.map((report) => report.status),
        ['Healthy', 'Healthy'],
      );
      assert.deepEqual(
        health.map((report) => checkNamed<{ state: string }>(report, 'consumer')?.data.state).sort(),
        ['consuming', 'standby'],
        'one instance holds the writer lease, the other stands by',
      );
    } finally {
      sse.close();
      await hub.close();
    }
  });

  test('an SSE client that missed 100 writes resumes on the OTHER instance with Last-Event-ID: exactly the missed ones, then live', async () => {
    const [a, b] = instances;
    const first = sseClient(a!.url);
    await until(() => first.control.length === 1, 'connected');
    const warmUp = await pipeline.createStudents(1);
    await until(() => first.received.length === 2, 'the warm-up notifications');
    const lastEventId = first.lastEventId;
    first.close();

    const missed = await pipeline.createStudents(100);
    // All 200 are in the log before the client comes back, so they can only arrive as replay.
    const redis = new Redis(REDIS_URL);
    await until(
      async () => (await redis.xrange(`${keyPrefix}log`, `(${lastEventId}`, '+')).length >= 200,
      'the 200 missed notifications in the log',
      120_000,
    );
    await redis.quit();
    const resumed = sseClient(b!.url, { lastEventId });
    try {
      const live = await pipeline.createStudents(10);
      await until(() => resumed.received.length >= 220, '200 missed + 20 live', 120_000);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      assert.equal(resumed.control.filter((event) => event.type === 'reset').length, 0, 'no reset');
      assert.ok(
        resumed.received.every((event) => !warmUp.ids.includes(event.data.student.id)),
        'nothing from before Last-Event-ID',
      );
      assertCreatedThenCachedOnce(resumed.received, [...missed.ids, ...live.ids], 'resumed SSE');
      const ids = resumed.received.map((event) => event.id ?? '');
      assert.equal(new Set(ids).size, ids.length, 'every log id once');
    } finally {
      resumed.close();
    }
  });

  test('in headless Chromium, a write through the API shows up on the SSE page and on the SignalR page', async () => {
    const [a, b] = instances;
    const browser = await launchChromium();
    try {
      const api = encodeURIComponent(pipeline.webapi.url);
      const ssePage = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const hubPage = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const errors = [ssePage, hubPage].map(pageErrors);
      await ssePage.goto(`${a!.url}/sse-test.html?api=${api}`);
      await hubPage.goto(`${b!.url}/signalr-test.html?api=${api}`);
      for (const page of [ssePage, hubPage]) {
        await page.locator('#status.on').waitFor();
        await page.locator('#client-id', { hasNotText: '–' }).waitFor();
      }
      const { ids } = await pipeline.createStudents(1);
      const id = ids[0]!;
      for (const page of [ssePage, hubPage]) {
        await page.waitForSelector(`#events li[data-student-id="${id}"][data-type="StudentCached"]`, {
          timeout: 30_000,
        });
        assert.equal(
          await page.locator(`#events li[data-student-id="${id}"][data-type="StudentCreated"]`).count(),
          1,
        );
        assert.equal(await page.textContent('#count-StudentCreated'), '1');
        assert.equal(await page.textContent('#student-id'), id, 'the Update and Delete buttons act on it');
        assert.match((await page.textContent('#events li pre')) ?? '', new RegExp(id));
      }
      assert.deepEqual(errors.flat(), [], 'no failed load, no script error, nothing the CSP blocked');
      await mkdir('test-artifacts', { recursive: true });
      await ssePage.screenshot({ path: 'test-artifacts/sse-test.png', fullPage: true });
      await hubPage.screenshot({ path: 'test-artifacts/signalr-test.png', fullPage: true });
      const landing = await browser.newPage({ viewport: { width: 1200, height: 700 } });
      const landingErrors = pageErrors(landing);
      await landing.goto(a!.url);
      await landing.waitForLoadState('networkidle');
      assert.deepEqual(landingErrors, []);
      await landing.screenshot({ path: 'test-artifacts/notifications-landing.png' });
    } finally {
      await browser.close();
    }
  });
});
