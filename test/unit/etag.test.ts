import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  etagOf,
  namesEtag,
  parseEntityTags,
  readPreconditions,
  versionsNamed,
} from '../../src/apps/webapi/routes/etag.ts';

/** The versions a header names, as a write reads them; undefined when malformed. */
function versionsIn(header: 'if-match' | 'if-none-match', value: string) {
  const read = readPreconditions({ [header]: value });
  if ('malformed' in read) return undefined;
  const { match, noneMatch } = versionsNamed(read);
  return header === 'if-match' ? match : noneMatch;
}
const parseIfMatch = (value: string) => versionsIn('if-match', value);

test('If-Match accepts *, one or several strong tags; weak and foreign tags match no version', () => {
  assert.equal(etagOf(3), '"3"');
  assert.deepEqual(parseIfMatch('*'), '*');
  assert.deepEqual(parseIfMatch('"3"'), [3]);
  assert.deepEqual(parseIfMatch(' "3", "5" '), [3, 5]);
  assert.deepEqual(parseIfMatch('W/"3"'), []);
  assert.deepEqual(parseIfMatch('"abc"'), []);
});

test('a tag names a version only as we issue it: "07" or "0" is not version 7 or any version', () => {
  assert.deepEqual(parseIfMatch('"07", "0", "+7", "7.0"'), []);
  assert.deepEqual(versionsIn('if-none-match', '"07", W/"00"'), []);
  assert.deepEqual(parseIfMatch('"7", "07"'), [7]);
});

test('a malformed If-Match is rejected rather than guessed', () => {
  for (const header of ['3', 'v1', '"3', '', ',', '**', '"3" "4"', '"a b"', 'W/ "3"'])
    assert.equal(parseIfMatch(header), undefined, header);
});

test('If-None-Match compares weakly: a weak tag names its version too', () => {
  assert.deepEqual(versionsIn('if-none-match', 'W/"3", "4"'), [3, 4]);
  assert.equal(versionsIn('if-none-match', '*'), '*');
  assert.deepEqual(readPreconditions({ 'if-match': '"3"', 'if-none-match': 'x' }), {
    malformed: 'If-None-Match',
  });
});

test('If-Match compares strongly: a weak tag on either side names nothing', () => {
  const tags = (header: string) => parseEntityTags(header) ?? [];
  assert.equal(namesEtag(tags('"3"'), '"3"', 'strong'), true);
  assert.equal(namesEtag(tags('W/"3"'), '"3"', 'strong'), false);
  assert.equal(namesEtag(tags('"3"'), 'W/"3"', 'strong'), false);
  assert.equal(namesEtag('*', '"3"', 'strong'), true);
});

test('entity-tag lists ignore empty elements and whitespace around commas; a tag may hold a comma', () => {
  assert.deepEqual(parseIfMatch('"3",'), [3]);
  assert.deepEqual(parseIfMatch(', "3" ,, "5"'), [3, 5]);
  assert.deepEqual(parseEntityTags('"a,b", W/"c"'), [
    { weak: false, opaque: 'a,b' },
    { weak: true, opaque: 'c' },
  ]);
});

test('If-None-Match fails (the copy is current) for *, or a tag equal in the weak comparison', () => {
  const condition = (header: string) => {
    const parsed = parseEntityTags(header);
    assert.ok(parsed !== undefined, header);
    return parsed;
  };
  assert.equal(namesEtag(condition('*'), '"3"', 'weak'), true);
  assert.equal(namesEtag(condition('"3"'), '"3"', 'weak'), true);
  assert.equal(namesEtag(condition('W/"3"'), '"3"', 'weak'), true);
  assert.equal(namesEtag(condition('"1", W/"3"'), '"3"', 'weak'), true);
  assert.equal(namesEtag(condition('"2"'), '"3"', 'weak'), false);
  assert.equal(namesEtag(condition('"33"'), '"3"', 'weak'), false);
  for (const header of ['3', '"3', '', 'W/3']) assert.equal(parseEntityTags(header), undefined, header);
});
