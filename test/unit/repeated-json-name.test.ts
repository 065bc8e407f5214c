import assert from 'node:assert/strict';
import { test } from 'node:test';
import { repeatedName } from '../../src/infrastructure/http/repeated-json-name.ts';

test('finds a name an object holds twice, compared as parsed, at any depth', () => {
  for (const [json, repeated] of [
    ['{"a":1,"a":2}', 'a'],
    ['{"a":1,"\\u0061":2}', 'a'],
    ['{"lastName":"L", "last\\u004eame" :"M"}', 'lastName'],
    ['{"outer":{"x":1,"y":{"z":[{"k":1,"k":2}]}}}', 'k'],
    ['[{"a":1},{"b":{"c":1,"c":2}}]', 'c'],
    ['{"a\\"b":1, "a\\"b"\n\t:2}', 'a"b'],
  ] as const)
    assert.equal(repeatedName(json), repeated, json);
});

test('names in different objects, strings that look like names, and brackets inside strings are no repeat', () => {
  for (const json of [
    '{"a":1,"b":{"a":2}}',
    '[{"a":1},{"a":2}]',
    '{"a":"a","b":["a","a"]}',
    '{"a":"}{\\"a\\":","b":"]["}',
    '{"a":{"b":1},"b":2}',
    '{"\\\\":1,"\\\\\\\\":2}',
    '"{\\"a\\":1,\\"a\\":2}"',
    '[]',
    '{}',
  ])
    assert.equal(repeatedName(json), undefined, json);
});
