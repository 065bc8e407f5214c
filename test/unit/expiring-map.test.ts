import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ExpiringMap } from '../../src/infrastructure/caching/expiring-map.ts';

test('an entry is there until its TTL runs out', async () => {
  const map = new ExpiringMap<string>(10);
  map.set('a', 'first', 30);
  assert.equal(map.get('a'), 'first');
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(map.get('a'), undefined);
});

test('past its size, the entry written longest ago goes first; writing again makes an entry the newest', () => {
  const map = new ExpiringMap<number>(2);
  map.set('a', 1, 60_000);
  map.set('b', 2, 60_000);
  map.set('a', 3, 60_000);
  map.set('c', 4, 60_000);
  assert.deepEqual(
    ['a', 'b', 'c'].map((key) => map.get(key)),
    [3, undefined, 4],
  );
  map.delete('a');
  assert.equal(map.get('a'), undefined);
});

test('an entry written again is the newest also before the map is full', () => {
  const map = new ExpiringMap<number>(3);
  map.set('a', 1, 60_000);
  map.set('b', 2, 60_000);
  map.set('a', 3, 60_000);
  map.set('c', 4, 60_000);
  map.set('d', 5, 60_000);
  assert.deepEqual(
    ['a', 'b', 'c', 'd'].map((key) => map.get(key)),
    [3, undefined, 4, 5],
  );
});
