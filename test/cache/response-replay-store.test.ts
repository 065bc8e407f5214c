// The deduplication store's in-process copy (L1), in the embedded (memory) mode: what any client can make it hold.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { InvalidationBus } from '../../src/infrastructure/caching/invalidation-bus.ts';
import { CacheConnection } from '../../src/infrastructure/caching/redis-cache-connection.ts';
import {
  ResponseReplayStore,
  type ResponseReplayStoreOptions,
  type StoredResponse,
} from '../../src/infrastructure/caching/response-replay-store.ts';
import { silentLogger } from '../support/logger.ts';

const MiB = 1024 * 1024;
const response = (body: string): StoredResponse => ({
  status: 404,
  headers: { 'content-type': 'application/problem+json; charset=utf-8' },
  body,
});

describe('response replay store (L1)', () => {
  const connections: CacheConnection[] = [];
  after(async () => {
    await Promise.all(connections.map((connection) => connection.close()));
  });

  const open = (options?: ResponseReplayStoreOptions) => {
    const connection = new CacheConnection('memory:', silentLogger);
    connections.push(connection);
    const bus = new InvalidationBus(
      connection,
      { channel: 'test', derivedKey: (group) => group },
      silentLogger,
    );
    return { store: new ResponseReplayStore(connection, bus, (group) => group, options), bus };
  };

  test('filled with 20,000 distinct callers and query strings, it replays at most 32 MiB of them, the newest', async () => {
    const { store } = open();
    const body = 'x'.repeat(8 * 1024);
    const keys: [string, string][] = [];
    for (let i = 0; i < 20_000; i++) {
      const group = `student-${i % 1_000}`;
      const key = `GET /api/students/${group}?junk=${i}  caller-${i}`;
      keys.push([group, key]);
      await store.put(group, key, response(body), 30_000, Date.now());
    }
    const replayable = keys.filter(([group, key]) => store.peek(group, key) !== undefined);
    assert.ok(
      replayable.length * body.length <= 32 * MiB,
      `${replayable.length} responses of ${body.length} bytes replayable`,
    );
    assert.ok(store.held.bytes <= 32 * MiB, `${store.held.bytes} bytes held`);
    assert.equal(store.held.entries, replayable.length);
    assert.ok(store.peek(...keys.at(-1)!), 'the newest is kept');
    assert.equal(store.peek(...keys[0]!), undefined, 'the oldest went first');
  });

  test('expired responses are removed after their window, not only skipped; fresh ones stay and replay', async () => {
    const { store } = open({ sweepEveryMs: 20 });
    for (let i = 0; i < 100; i++) await store.put(`g${i}`, `k${i}`, response('{}'), 30, Date.now());
    await store.put('kept', 'k', response('{"kept":true}'), 60_000, Date.now());
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(store.held.entries, 1);
    assert.equal(store.peek('kept', 'k')?.body, '{"kept":true}');
    assert.equal(store.peek('g0', 'k0'), undefined);
  });

  test('a write to a group drops its responses and frees their bytes; a key is replayed only in its own group', async () => {
    const { store, bus } = open();
    const empty = store.held.bytes;
    await store.put('a', 'GET /a', response('{"a":1}'), 60_000, Date.now() - 1);
    await store.put('a', 'GET /a?x', response('{"a":2}'), 60_000, Date.now() - 1);
    await store.put('b', 'GET /b', response('{"b":1}'), 60_000, Date.now() - 1);
    assert.equal(store.peek('a', 'GET /a')?.body, '{"a":1}');
    assert.equal(store.peek('b', 'GET /a'), undefined, 'another group');
    const withB = store.held.bytes;
    await bus.invalidate('b', Date.now());
    assert.equal(store.peek('b', 'GET /b'), undefined);
    assert.ok(store.held.bytes < withB);
    await bus.invalidate('a', Date.now());
    assert.deepEqual(store.held, { entries: 0, bytes: empty });
  });

  test('an invalidation heard late, stamped before the last one (another clock), makes nothing read since current again', async () => {
    const { store, bus } = open();
    const now = Date.now();
    await bus.invalidate('a', now);
    await bus.invalidate('a', now - 10);
    await store.put('a', 'GET /a', response('{"a":1}'), 60_000, now - 5);
    assert.equal(store.peek('a', 'GET /a'), undefined, 'read before the newer invalidation');
    assert.equal(store.isCurrent('a', now - 5), false);
    assert.equal(store.isCurrent('a', now + 1), true);
  });

  test("a read stamped at a write's very instant (another instance's clock) may show the state before it: not current", async () => {
    const { store, bus } = open();
    const at = Date.now();
    await bus.invalidate('a', at);
    await store.put('a', 'GET /a', response('{"a":1}'), 60_000, at);
    assert.equal(store.peek('a', 'GET /a'), undefined, 'not replayed');
    assert.equal(store.isCurrent('a', at), false);
  });
});
