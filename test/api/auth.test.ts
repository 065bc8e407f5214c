// Authentication and roles on the Student API over HTTP: HS256 with AUTH_JWT_SECRET, and a JWKS served locally.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { SignJWT } from 'jose';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import {
  authEnv,
  bearer,
  serveKeySet,
  sign,
  signingKey,
  TEST_JWT_SECRET,
  tokenFor,
  unreachableKeySet,
  type SigningKey,
} from '../support/auth.ts';
import { exchange } from '../support/raw-http.ts';
import { json, startWebApi, type RunningWebApi } from '../support/webapi.ts';

const jsonHeaders = { 'content-type': 'application/json' };

async function assertProblem(response: Response, status: number, code: string) {
  assert.equal(response.status, status);
  assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
  const body = await json(response);
  assert.equal(body.status, status);
  assert.equal(body.code, code);
  return body;
}

describe('the Student API with auth on (AUTH_JWT_SECRET, HS256)', () => {
  let testDb: TestDatabase;
  let api: RunningWebApi;

  before(async () => {
    testDb = await openTestDatabase('pglite');
    api = await startWebApi(testDb.database, authEnv);
  });
  after(async () => {
    await api?.stop();
    await testDb?.dispose();
  });

  const post = (headers: Record<string, string> = {}, body: unknown = {}) =>
    fetch(`${api.url}/api/students`, {
      method: 'POST',
      headers: { ...jsonHeaders, ...headers },
      body: JSON.stringify(body),
    });
  const studentCount = async (token: string) =>
    ((await json(await fetch(`${api.url}/api/students?limit=100`, { headers: bearer(token) }))).items as [])
      .length;

  test('an anonymous write is 401 problem+json with WWW-Authenticate: Bearer, and stores nothing', async () => {
    const reader = await tokenFor('reader');
    const before = await studentCount(reader);
    const response = await post();
    assert.equal(response.headers.get('www-authenticate'), 'Bearer');
    await assertProblem(response, 401, 'AUTH.UNAUTHENTICATED');
    for (const [method, path] of [
      ['PUT', '/api/students/00000000-0000-7000-8000-000000000000'],
      ['DELETE', '/api/students/00000000-0000-7000-8000-000000000000'],
      ['GET', '/api/students'],
    ] as const) {
      assert.equal((await fetch(`${api.url}${path}`, { method })).status, 401, `${method} ${path}`);
    }
    // One that waits for 100 Continue before its body is told 401 instead, and need not send it.
    const head =
      'POST /api/students HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n';
    assert.match(await exchange(new URL(api.url).port, head), /^HTTP\/1.1 401 /);
    assert.equal(await studentCount(reader), before);
  });

  test('a reader reads (200) but may not write (403); a writer writes (201) as its subject', async () => {
    const reader = await tokenFor('reader');
    const writer = await tokenFor('writer', { subject: 'alice' });
    const forbidden = await post(bearer(reader));
    assert.match(forbidden.headers.get('www-authenticate') ?? '', /^Bearer error="insufficient_scope"/);
    // Readable by a page on another origin, which must tell a refused token from a missing role.
    assert.match(forbidden.headers.get('access-control-expose-headers') ?? '', /WWW-Authenticate/i);
    const problem = await assertProblem(forbidden, 403, 'AUTH.FORBIDDEN');
    assert.match(String(problem.detail), /needs the role "writer"; the token's role is "reader"/);

    const created = await post(bearer(writer), { firstName: 'Ada', lastName: 'Lovelace' });
    assert.equal(created.status, 201);
    const student = await json(created);
    assert.equal(student.createdBy, 'alice', 'the verified subject is the actor');

    const read = await fetch(`${api.url}/api/students/${String(student.id)}`, { headers: bearer(reader) });
    assert.equal(read.status, 200);
    assert.equal((await json(read)).id, student.id);
    const asWriter = await fetch(`${api.url}/api/students/${String(student.id)}`, {
      headers: bearer(writer),
    });
    assert.equal(asWriter.status, 200, 'a writer may read too');
    const head = await fetch(`${api.url}/api/students/${String(student.id)}`, {
      method: 'HEAD',
      headers: bearer(reader),
    });
    assert.equal(head.status, 200, 'HEAD is a read');
  });

  test('an expired token, one signed with another key, one with another algorithm and a garbled one are 401', async () => {
    const expired = await tokenFor('writer', { expires: '-5m' });
    const otherKey = await tokenFor('writer', { secret: 'another-secret-that-is-also-long-enough' });
    const hs512 = await new SignJWT({ role: 'writer' })
      .setProtectedHeader({ alg: 'HS512' })
      .setSubject('mallory')
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(TEST_JWT_SECRET));
    const withoutExpiry = await new SignJWT({ role: 'writer' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('mallory')
      .sign(new TextEncoder().encode(TEST_JWT_SECRET));
    const unsigned = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"mallory","role":"writer"}').toString('base64url')}.`;
    for (const [name, token] of Object.entries({ expired, otherKey, hs512, withoutExpiry, unsigned })) {
      const response = await post(bearer(token));
      assert.match(response.headers.get('www-authenticate') ?? '', /^Bearer error="invalid_token"/, name);
      await assertProblem(response, 401, 'AUTH.UNAUTHENTICATED');
    }
    const response = await post(bearer(expired));
    assert.match(String((await json(response)).detail), /expired/);
    assert.equal((await post({ authorization: 'Basic dXNlcjpwYXNz' })).status, 401, 'not a bearer token');
  });

  test("an issuer's clock up to a minute off ours is tolerated: a token valid from seconds ahead, or expired seconds ago, writes", async () => {
    const now = Math.floor(Date.now() / 1000);
    const signed = ({ notBefore, expires }: { notBefore?: number; expires: number }) => {
      let jwt = new SignJWT({ role: 'writer' })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('skewed')
        .setIssuedAt(notBefore ?? now)
        .setExpirationTime(expires);
      if (notBefore !== undefined) jwt = jwt.setNotBefore(notBefore);
      return jwt.sign(new TextEncoder().encode(TEST_JWT_SECRET));
    };
    const fromSecondsAhead = await signed({ notBefore: now + 5, expires: now + 300 });
    assert.equal((await post(bearer(fromSecondsAhead))).status, 201);
    const expiredSecondsAgo = await signed({ expires: now - 5 });
    assert.equal((await post(bearer(expiredSecondsAgo))).status, 201);

    const fromMinutesAhead = await signed({ notBefore: now + 600, expires: now + 900 });
    const problem = await assertProblem(await post(bearer(fromMinutesAhead)), 401, 'AUTH.UNAUTHENTICATED');
    assert.match(String(problem.detail), /"nbf" claim/);
    const expiredMinutesAgo = await signed({ expires: now - 120 });
    const expired = await assertProblem(await post(bearer(expiredMinutesAgo)), 401, 'AUTH.UNAUTHENTICATED');
    assert.match(String(expired.detail), /expired/);
    // A minute, not more: half a minute past it is refused either way.
    const fromPastTheMinute = await signed({ notBefore: now + 90, expires: now + 300 });
    assert.equal((await post(bearer(fromPastTheMinute))).status, 401);
    const expiredPastTheMinute = await signed({ expires: now - 90 });
    assert.equal((await post(bearer(expiredPastTheMinute))).status, 401);
  });

  test('a validly signed token whose "sub" is no string of 1 to 255 storable, plain characters is 401 and stores nothing', async () => {
    const reader = await tokenFor('reader');
    const before = await studentCount(reader);
    for (const sub of [
      42,
      { id: 1 },
      true,
      '',
      'a\u0000b',
      'a\ud800b',
      'a\u001b[31mb',
      '\u202eevil',
      'x'.repeat(256),
    ]) {
      const token = await new SignJWT({ sub: sub as string, role: 'writer' })
        .setProtectedHeader({ alg: 'HS256' })
        .setExpirationTime('5m')
        .sign(new TextEncoder().encode(TEST_JWT_SECRET));
      const response = await post(bearer(token));
      const problem = await assertProblem(response, 401, 'AUTH.UNAUTHENTICATED');
      assert.match(String(problem.detail), /"sub" claim/, JSON.stringify(sub));
    }
    assert.equal(await studentCount(reader), before);
    const longest = 'x'.repeat(255);
    const created = await post(bearer(await tokenFor('writer', { subject: longest })));
    assert.equal(created.status, 201, 'a subject of 255 characters is the longest taken');
    assert.equal((await json(created)).createdBy, longest);
  });

  test('the token is read from Authorization only: ?access_token= alone is a 401, beside one an unknown field (400); no problem shows the token', async () => {
    const writer = await tokenFor('writer');
    const created = await json(await post(bearer(writer)));
    const query = `?access_token=${writer}`;
    for (const [method, path] of [
      ['GET', '/api/students'],
      ['POST', '/api/students'],
      ['GET', `/api/students/${String(created.id)}`],
      ['PUT', `/api/students/${String(created.id)}`],
      ['DELETE', `/api/student/${String(created.id)}`],
    ] as const) {
      const what = `${method} ${path}`;
      const unauthenticated = await assertProblem(
        await fetch(`${api.url}${path}${query}`, { method }),
        401,
        'AUTH.UNAUTHENTICATED',
      );
      assert.equal(unauthenticated.instance, `${path}?access_token=[redacted]`, what);
      const refused = await assertProblem(
        await fetch(`${api.url}${path}${query}`, { method, headers: bearer(writer) }),
        400,
        'REQUEST.INVALID',
      );
      assert.deepEqual(refused.errors, [{ field: 'access_token', reason: 'is not a known field' }], what);
      assert.equal(refused.instance, `${path}?access_token=[redacted]`, what);
    }
  });

  test('Authorization sent on two header lines is a 400 naming it, whichever token comes first, and stores nothing', async () => {
    const reader = await tokenFor('reader');
    const writer = await tokenFor('writer');
    const before = await studentCount(reader);
    for (const [first, second] of [
      [writer, reader],
      [reader, writer],
    ]) {
      const [head = '', problemText = ''] = (
        await exchange(
          new URL(api.url).port,
          `POST /api/students HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${first}\r\nAuthorization: Bearer ${second}\r\n` +
            'Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}',
        )
      ).split('\r\n\r\n');
      assert.match(head, /^HTTP\/1.1 400 /);
      assert.match(head, /\r\nwww-authenticate: Bearer error="invalid_request"\r\n/i);
      const problem = JSON.parse(problemText) as { errors: { field: string; reason: string }[] };
      assert.deepEqual(problem.errors, [{ field: 'Authorization', reason: 'must be sent once' }]);
    }
    assert.equal(await studentCount(reader), before);
  });

  test('a Bearer credential that is not one token is a 400 naming Authorization (malformed, not missing), and stores nothing', async () => {
    const writer = await tokenFor('writer');
    const reader = await tokenFor('reader');
    const before = await studentCount(reader);
    for (const authorization of ['Bearer', 'bearer   ', `Bearer ${writer} ${writer}`]) {
      const response = await post({ authorization });
      assert.equal(response.headers.get('www-authenticate'), 'Bearer error="invalid_request"', authorization);
      const problem = await assertProblem(response, 400, 'REQUEST.INVALID');
      assert.deepEqual(problem.errors, [{ field: 'Authorization', reason: 'must be Bearer and one token' }]);
    }
    assert.equal(await studentCount(reader), before);
  });

  test('the Bearer scheme is matched in any case, as HTTP authentication schemes are', async () => {
    const writer = await tokenFor('writer');
    for (const scheme of ['bearer', 'BEARER']) {
      const created = await post({ authorization: `${scheme} ${writer}` });
      assert.equal(created.status, 201, scheme);
    }
  });

  test('a valid token without a known role may neither read nor write (403)', async () => {
    const nobody = await tokenFor('admin');
    await assertProblem(await post(bearer(nobody)), 403, 'AUTH.FORBIDDEN');
    const read = await fetch(`${api.url}/api/students`, { headers: bearer(nobody) });
    await assertProblem(read, 403, 'AUTH.FORBIDDEN');
  });

  test('a "role" claim listing several roles (as IdentityServer sends them) grants the most a listed one may', async () => {
    const listing = (roles: string[]) =>
      new SignJWT({ role: roles })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('listed')
        .setExpirationTime('5m')
        .sign(new TextEncoder().encode(TEST_JWT_SECRET));
    assert.equal((await post(bearer(await listing(['reader', 'writer'])))).status, 201);
    const readerAndOther = await listing(['auditor', 'reader']);
    assert.equal((await fetch(`${api.url}/api/students`, { headers: bearer(readerAndOther) })).status, 200);
    await assertProblem(await post(bearer(readerAndOther)), 403, 'AUTH.FORBIDDEN');
    await assertProblem(await post(bearer(await listing([]))), 403, 'AUTH.FORBIDDEN');
  });

  test('health, /openapi.json and /docs stay public; the document declares the bearer scheme', async () => {
    for (const path of ['/health', '/health/ready', '/health/live', '/openapi.json', '/docs/']) {
      assert.equal((await fetch(`${api.url}${path}`)).status, 200, path);
    }
    const spec = await json(await fetch(`${api.url}/openapi.json`));
    assert.deepEqual(spec.security, [{ bearer: [] }]);
  });

  test('deduplicated and idempotent responses belong to the verified subject: two callers get their own', async () => {
    const alice = await tokenFor('writer', { subject: 'alice' });
    const aliceAgain = await tokenFor('writer', { subject: 'alice', expires: '6m' });
    const bob = await tokenFor('writer', { subject: 'bob' });
    assert.notEqual(alice, aliceAgain, 'two different tokens of one subject');
    const id = String((await json(await post(bearer(alice)))).id);
    const get = (token: string) => fetch(`${api.url}/api/students/${id}`, { headers: bearer(token) });

    assert.equal((await get(alice)).headers.get('x-deduplicated'), null, 'first read');
    assert.equal((await get(bob)).headers.get('x-deduplicated'), null, "bob does not get alice's response");
    assert.equal((await get(bob)).headers.get('x-deduplicated'), 'true', 'bob gets his own replayed');
    assert.equal(
      (await get(aliceAgain)).headers.get('x-deduplicated'),
      'true',
      "alice's, with her other token",
    );

    const key = { 'idempotency-key': `create-${id}` };
    const first = await json(await post({ ...bearer(alice), ...key }));
    const bobs = await post({ ...bearer(bob), ...key });
    assert.equal(bobs.status, 201);
    assert.equal(bobs.headers.get('idempotent-replayed'), null, "the same key is bob's own");
    assert.notEqual((await json(bobs)).id, first.id);
    const retried = await post({ ...bearer(aliceAgain), ...key });
    assert.equal(retried.headers.get('idempotent-replayed'), 'true');
    assert.equal((await json(retried)).id, first.id, "alice's retry gets her response");
  });

  test('`npm run token -- --role writer` prints only a token, and it writes; --help prints how to use it', async () => {
    const { stdout } = await promisify(execFile)(
      'npm',
      ['run', '-s', 'token', '--', '--role', 'writer', '--sub', 'script-user', '--expires', '10m'],
      { env: { ...process.env, AUTH_JWT_SECRET: TEST_JWT_SECRET } },
    );
    assert.match(stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const created = await post(bearer(stdout.trim()));
    assert.equal(created.status, 201);
    assert.equal((await json(created)).createdBy, 'script-user');
    // Asked how, it says so, and succeeds (no secret needed for that).
    const { stdout: help } = await promisify(execFile)('npm', ['run', '-s', 'token', '--', '--help']);
    assert.match(help, /^usage: npm run token -- \[--role reader\|writer\]/);
  });
});

describe('the Student API with auth on (AUTH_JWKS_URL, issuer and audience)', () => {
  let testDb: TestDatabase;
  let api: RunningWebApi;
  let keySet: Server;
  let rs256: SigningKey;
  let es256: SigningKey;
  let unpublished: SigningKey;
  const aud = 'student-api';

  before(async () => {
    [rs256, es256, unpublished] = await Promise.all([
      signingKey('RS256', 'rsa-1'),
      signingKey('ES256', 'ec-1'),
      signingKey('ES256', 'ec-1'), // same kid, but not the published key
    ]);
    const served = await serveKeySet([rs256.jwk, es256.jwk]);
    keySet = served.server;
    testDb = await openTestDatabase('pglite');
    api = await startWebApi(testDb.database, {
      AUTH_JWKS_URL: served.url,
      AUTH_ISSUER: 'https://idp.test',
      AUTH_AUDIENCE: aud,
    });
  });
  after(async () => {
    await api?.stop();
    await testDb?.dispose();
    keySet?.close();
  });

  const post = (token: string) =>
    fetch(`${api.url}/api/students`, {
      method: 'POST',
      headers: { ...jsonHeaders, ...bearer(token) },
      body: '{}',
    });

  test("tokens signed with the set's RS256 and ES256 keys work, with their roles", async () => {
    assert.equal((await post(await sign(rs256, { sub: 'svc', role: 'writer', aud }))).status, 201);
    const reader = await sign(es256, { sub: 'viewer', role: 'reader', aud });
    assert.equal((await post(reader)).status, 403);
    assert.equal((await fetch(`${api.url}/api/students`, { headers: bearer(reader) })).status, 200);
  });

  test('a key outside the set, another audience or issuer, or an HS256 token are 401', async () => {
    const rejected = {
      unpublishedKey: await sign(unpublished, { sub: 'mallory', role: 'writer', aud }),
      otherAudience: await sign(rs256, { sub: 'svc', role: 'writer', aud: 'another-api' }),
      noAudience: await sign(rs256, { sub: 'svc', role: 'writer' }),
      otherIssuer: await sign(rs256, { sub: 'svc', role: 'writer', aud }, 'https://elsewhere.test'),
      hs256: await tokenFor('writer'),
    };
    for (const [name, token] of Object.entries(rejected)) {
      assert.equal((await post(token)).status, 401, name);
    }
  });
});

test('an unreachable key set, or one that answers an error or no key set, is 503 (the identity provider is down), not 401 (the token is fine)', async () => {
  const testDb = await openTestDatabase('pglite');
  const answering = (status: number, body: string) =>
    createServer((_request, response) =>
      response.writeHead(status, { 'content-type': 'application/json' }).end(body),
    ).listen(0, '127.0.0.1');
  const broken = [
    answering(500, '{"error":"down"}'),
    answering(200, '{"keys":"none"}'),
    // Takes the request and never answers: the key set times out.
    createServer(() => undefined).listen(0, '127.0.0.1'),
  ];
  try {
    await Promise.all(broken.map((server) => once(server, 'listening')));
    const keySets = [
      await unreachableKeySet(),
      ...broken.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`),
    ];
    const key = await signingKey('ES256', 'k');
    const token = await sign(key, { sub: 'svc', role: 'reader' });
    for (const keySet of keySets) {
      const api = await startWebApi(testDb.database, {
        AUTH_JWKS_URL: keySet,
        AUTH_ISSUER: 'https://idp.test',
        AUTH_AUDIENCE: 'student-api',
      });
      try {
        const response = await fetch(`${api.url}/api/students`, { headers: bearer(token) });
        assert.equal(response.headers.get('retry-after'), '5', keySet);
        const problem = await assertProblem(response, 503, 'DEPENDENCY.UNAVAILABLE');
        assert.equal(problem.dependency, 'identity provider (JWKS)', keySet);
      } finally {
        await api.stop();
      }
    }
  } finally {
    for (const server of broken) {
      server.close();
      server.closeAllConnections();
    }
    await testDb.dispose();
  }
});

test('with AUTH_ISSUER and AUTH_AUDIENCE set, `npm run token` mints a token for them, and an API checking them takes it', async () => {
  const settings = { ...authEnv, AUTH_ISSUER: 'https://idp.test', AUTH_AUDIENCE: 'student-api' };
  const testDb = await openTestDatabase('pglite');
  const api = await startWebApi(testDb.database, settings);
  try {
    const { stdout } = await promisify(execFile)(
      'npm',
      ['run', '-s', 'token', '--', '--role', 'writer', '--sub', 'script-user'],
      { env: { ...process.env, ...settings } },
    );
    const post = (token: string) =>
      fetch(`${api.url}/api/students`, {
        method: 'POST',
        headers: { ...jsonHeaders, ...bearer(token) },
        body: '{}',
      });
    assert.equal((await post(stdout.trim())).status, 201);
    assert.equal((await post(await tokenFor('writer'))).status, 401, 'one without them is not taken');
  } finally {
    await api.stop();
    await testDb.dispose();
  }
});
