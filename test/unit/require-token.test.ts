import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withoutQuerySecrets } from '../../src/infrastructure/http/access-token.ts';

test('withoutQuerySecrets masks access_token by its decoded name, as the query parser reads it', () => {
  assert.equal(
    withoutQuerySecrets('/stream?types=A&access_token=t&x=1'),
    '/stream?types=A&access_token=[redacted]&x=1',
  );
  assert.equal(withoutQuerySecrets('/stream?access%5Ftoken=t'), '/stream?access%5Ftoken=[redacted]');
  assert.equal(withoutQuerySecrets('/stream?%61ccess_token=t&x=1'), '/stream?%61ccess_token=[redacted]&x=1');
  assert.equal(withoutQuerySecrets('/stream?ACCESS_TOKEN=t'), '/stream?ACCESS_TOKEN=[redacted]');
});

test('withoutQuerySecrets leaves other parameters alone and tolerates malformed percent-encoding', () => {
  for (const url of ['/stream', '/stream?', '/stream?access_tokens=t', '/stream?%zz=1&%=2&access_token'])
    assert.equal(withoutQuerySecrets(url), url);
  assert.equal(
    withoutQuerySecrets('/stream?%zz=1&access%5ftoken=t'),
    '/stream?%zz=1&access%5ftoken=[redacted]',
  );
});

test('withoutQuerySecrets masks the other names it is given, in any case and encoding', () => {
  const names = ['access_token', 'id'];
  assert.equal(withoutQuerySecrets('/hub?id=t&_=1', names), '/hub?id=[redacted]&_=1');
  assert.equal(withoutQuerySecrets('/hub?ID=t&%69d=u', names), '/hub?ID=[redacted]&%69d=[redacted]');
  assert.equal(withoutQuerySecrets('/hub?ids=t&x=id', names), '/hub?ids=t&x=id');
  // Without the names, `id` is not a secret.
  assert.equal(withoutQuerySecrets('/hub?id=t'), '/hub?id=t');
});
