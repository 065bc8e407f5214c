import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withoutAccessToken } from '../../src/infrastructure/http/access-token.ts';

test('withoutAccessToken masks access_token by its decoded name, as the query parser reads it', () => {
  assert.equal(
    withoutAccessToken('/stream?types=A&access_token=t&x=1'),
    '/stream?types=A&access_token=[redacted]&x=1',
  );
  assert.equal(withoutAccessToken('/stream?access%5Ftoken=t'), '/stream?access%5Ftoken=[redacted]');
  assert.equal(withoutAccessToken('/stream?%61ccess_token=t&x=1'), '/stream?%61ccess_token=[redacted]&x=1');
  assert.equal(withoutAccessToken('/stream?ACCESS_TOKEN=t'), '/stream?ACCESS_TOKEN=[redacted]');
});

test('withoutAccessToken leaves other parameters alone and tolerates malformed percent-encoding', () => {
  for (const url of ['/stream', '/stream?', '/stream?access_tokens=t', '/stream?%zz=1&%=2&access_token'])
    assert.equal(withoutAccessToken(url), url);
  assert.equal(
    withoutAccessToken('/stream?%zz=1&access%5ftoken=t'),
    '/stream?%zz=1&access%5ftoken=[redacted]',
  );
});
