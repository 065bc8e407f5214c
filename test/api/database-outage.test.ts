// PostgreSQL goes away under a running webapi (a TCP proxy cuts it off) and comes back.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  openDatabase,
  type Database,
  type DatabaseOptions,
} from '../../src/infrastructure/persistence/database.ts';
import { createPostgresDatabase } from '../support/databases.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { recordingLogger, silentLogger } from '../support/logger.ts';
import { settlesWithin } from '../support/settles-within.ts';
import { needsPostgres } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { json, startWebApi, type RunningWebApi } from '../support/webapi.ts';

/** A webapi on a database of its own, reached through a proxy the tests can cut: set up before, gone after. */
function webApiBehindProxy(
  options: DatabaseOptions = {},
  logger = silentLogger,
): { proxy: TcpProxy; api: RunningWebApi } {
  const running = {} as { proxy: TcpProxy; api: RunningWebApi };
  let created: Awaited<ReturnType<typeof createPostgresDatabase>> | undefined;
  let database: Database | undefined;
  before(async () => {
    created = await createPostgresDatabase();
    const through = await TcpProxy.inFrontOf(created.url, 5432);
    running.proxy = through.proxy;
    database = await openDatabase(through.url, logger, options);
    await database.migrate();
    running.api = await startWebApi(database, {}, logger);
  });
  after(async () => {
    await running.api?.stop();
    await running.proxy?.stop();
    await database?.close();
    await created?.drop();
  });
  return running;
}

describe('when the database is down, the log', await needsPostgres(), () => {
  const { logger, logged } = recordingLogger();
  const running = webApiBehindProxy({}, logger);

  test('says so once for a burst of refused requests, not once per request (each is still in the access log), and says when it is back', async () => {
    await running.proxy.pause();
    try {
      const answers = await Promise.all(
        Array.from({ length: 10 }, () => fetch(`${running.api.url}/api/students`, { method: 'POST' })),
      );
      assert.deepEqual(
        answers.map((answer) => answer.status),
        Array(10).fill(503),
      );
      assert.equal((await fetch(`${running.api.url}/health/ready`)).status, 503);
    } finally {
      await running.proxy.resume();
    }
    assert.equal((await fetch(`${running.api.url}/health/ready`)).status, 200);
    assert.equal((await fetch(`${running.api.url}/api/students`)).status, 200);
    const lines = logged()
      .split('\n')
      .filter(Boolean)
      .map(
        (line) =>
          JSON.parse(line) as { msg: string; statusCode?: number; refusedUnlogged?: number; downMs?: number },
      );
    const back = lines.filter((line) => line.msg === 'PostgreSQL reachable again');
    assert.equal(back.length, 1, `${back.length} lines`);
    assert.equal(typeof back[0]?.downMs, 'number');
    const said = lines.filter((line) => line.msg.startsWith('database unavailable'));
    // The first at once; the others at the end of the interval, counted.
    assert.equal(said.length, 1, `${said.length} lines`);
    assert.equal(said[0]?.refusedUnlogged, 0);
    assert.equal(
      lines.filter((line) => line.statusCode === 503).length,
      11,
      'one access-log line each, the failing probe too',
    );
  });
});

describe('when the database is down', await needsPostgres(), () => {
  const running = webApiBehindProxy();

  const post = () =>
    fetch(`${running.api.url}/api/students`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' }),
    });

  test('requests get 503 problem+json, readiness fails, and everything recovers when it is back', async () => {
    const before = await json(await post());
    await running.proxy.pause();

    const write = await post();
    assert.equal(write.status, 503);
    assert.match(write.headers.get('content-type') ?? '', /problem\+json/);
    assert.equal((await json(write)).code, 'DEPENDENCY.UNAVAILABLE');
    // no-cache: a cached student is still served while the database is down; this asks the database.
    const read = await fetch(`${running.api.url}/api/students/${before.id}`, {
      headers: { 'cache-control': 'no-cache' },
    });
    assert.equal(read.status, 503);
    assert.equal((await fetch(`${running.api.url}/health/ready`)).status, 503);
    const health = (await json(await fetch(`${running.api.url}/health`))) as unknown as HealthBody;
    assert.equal(checkNamed(health, 'database')?.status, 'Unhealthy');
    assert.equal((await fetch(`${running.api.url}/health/live`)).status, 200, 'the process itself is fine');

    await running.proxy.resume();
    const after = await post();
    assert.equal(after.status, 201, 'no restart needed');
    assert.equal((await fetch(`${running.api.url}/health/ready`)).status, 200);
    const list = await json(await fetch(`${running.api.url}/api/students?limit=100`));
    assert.equal((list.items as unknown[]).length, 2, 'the write during the outage left nothing behind');
  });

  test('a read the cache does not hold gets 503 too, not a 500: the database error under the cache is the one answered', async () => {
    await running.proxy.pause();
    try {
      const missed = await fetch(`${running.api.url}/api/students/${randomUUID()}`);
      assert.equal(missed.status, 503);
      assert.match(missed.headers.get('content-type') ?? '', /problem\+json/);
      assert.equal((await json(missed)).code, 'DEPENDENCY.UNAVAILABLE');
    } finally {
      await running.proxy.resume();
    }
  });
});

describe(
  'when the database connections go silent (its host died: no FIN, no RST)',
  await needsPostgres(),
  () => {
    // Shorter than the default 30 s, to keep the test short.
    const UNANSWERED_AFTER_MS = 3_000;
    const running = webApiBehindProxy({ unansweredAfterMs: UNANSWERED_AFTER_MS });

    test('a request on a silent connection gets 503 instead of hanging, and the API recovers without a restart', async () => {
      const created = await fetch(`${running.api.url}/api/students`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      const { id } = await json(created);
      // no-cache: from the database, not the cache the write filled.
      const read = () =>
        fetch(`${running.api.url}/api/students/${String(id)}`, {
          headers: { 'cache-control': 'no-cache' },
          signal: AbortSignal.timeout(20_000),
        });
      assert.equal((await read()).status, 200);
      assert.ok(running.proxy.silence() > 0, 'the pool had connections to silence');

      // A transaction: its ROLLBACK, queued behind the statement that got no answer, must not wait as long again.
      const update = fetch(`${running.api.url}/api/students/${String(id)}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: '{}',
        signal: AbortSignal.timeout(20_000),
      });
      assert.equal(await settlesWithin(update, UNANSWERED_AFTER_MS * 1.6), 'settled');
      const updated = await update;
      assert.equal(updated.status, 503);
      assert.equal((await json(updated)).code, 'DEPENDENCY.UNAVAILABLE');
      // Each dead connection fails one request; new connections work.
      const deadline = Date.now() + 60_000;
      let status = updated.status;
      while (status !== 200 && Date.now() < deadline) {
        const response = await read();
        status = response.status;
        if (status !== 200) assert.equal((await json(response)).code, 'DEPENDENCY.UNAVAILABLE');
      }
      assert.equal(status, 200, 'the pool replaced its dead connections');
      assert.equal((await fetch(`${running.api.url}/health/ready`)).status, 200);
    });
  },
);
