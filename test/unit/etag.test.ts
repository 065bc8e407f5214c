import assert from 'node:assert/strict';
import { test } from 'node:test';
import { etagOf, parseIfMatch } from '../../src/apps/webapi/routes/etag.ts';

test('If-Match accepts *, one or several strong tags; weak and foreign tags match no version', () => {
  assert.equal(etagOf(3), '"3"');
  assert.deepEqual(parseIfMatch('*'), { any: true });
  assert.deepEqual(parseIfMatch('"3"'), { versions: [3] });
  assert.deepEqual(parseIfMatch(' "3", "5" '), { versions: [3, 5] });
  assert.deepEqual(parseIfMatch('W/"3"'), { versions: [] });
  assert.deepEqual(parseIfMatch('"abc"'), { versions: [] });
});

test('a malformed If-Match is rejected rather than guessed', () => {
  for (const header of ['3', 'v1', '"3', '"3",', '', '**'])
    assert.equal(parseIfMatch(header), undefined, header);
});
