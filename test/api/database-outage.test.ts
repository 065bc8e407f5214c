// PostgreSQL goes away under a running webapi (a TCP proxy cuts it off) and comes back.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openDatabase, type Database } from '../../src/infrastructure/persistence/database.ts';
import { createPostgresDatabase } from '../support/databases.ts';
import { silentLogger } from '../support/logger.ts';
import { needsPostgres, POSTGRES_URL } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { json, startWebApi, type RunningWebApi } from '../support/webapi.ts';

describe('when the database is down', await needsPostgres(), () => {
  let proxy: TcpProxy;
  let created: Awaited<ReturnType<typeof createPostgresDatabase>>;
  let database: Database;
  let api: RunningWebApi;

  before(async () => {
    created = await createPostgresDatabase();
    const target = new URL(POSTGRES_URL);
    proxy = await TcpProxy.start(target.hostname, Number(target.port || 5432));
    const viaProxy = new URL(created.url);
    viaProxy.host = `127.0.0.1:${proxy.port}`;
    database = await openDatabase(viaProxy.toString(), silentLogger);
    await database.migrate();
    api = await startWebApi(database);
  });
  after(async () => {
    await api?.stop();
    await proxy?.stop();
    await database?.close();
    await created?.drop();
  });

  const post = () =>
    fetch(`${api.url}/api/students`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' }),
    });

  test('requests get 503 problem+json, readiness fails, and everything recovers when it is back', async () => {
    const before = await json(await post());
    await proxy.pause();

    const write = await post();
    assert.equal(write.status, 503);
    assert.match(write.headers.get('content-type') ?? '', /problem\+json/);
    assert.equal((await json(write)).code, 'DEPENDENCY.UNAVAILABLE');
    // no-cache: a cached student is still served while the database is down; this asks the database.
    const read = await fetch(`${api.url}/api/students/${before.id}`, {
      headers: { 'cache-control': 'no-cache' },
    });
    assert.equal(read.status, 503);
    assert.equal((await fetch(`${api.url}/health/ready`)).status, 503);
    const health = await json(await fetch(`${api.url}/health`));
    assert.equal((health.checks as Record<string, { status: string }>).database?.status, 'Unhealthy');
    assert.equal((await fetch(`${api.url}/health/live`)).status, 200, 'the process itself is fine');

    await proxy.resume();
    const after = await post();
    assert.equal(after.status, 201, 'no restart needed');
    assert.equal((await fetch(`${api.url}/health/ready`)).status, 200);
    const list = await json(await fetch(`${api.url}/api/students?limit=100`));
    assert.equal((list.items as unknown[]).length, 2, 'the write during the outage left nothing behind');
  });
});
