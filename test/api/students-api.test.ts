// The Student REST API as a client sees it, over HTTP, on PGlite and on real PostgreSQL.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { asc } from 'drizzle-orm';
import { outbox, students } from '../../src/infrastructure/persistence/schema.ts';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { checkNamed, type HealthBody } from '../support/health.ts';
import { exchange } from '../support/raw-http.ts';
import { needsPostgres } from '../support/services.ts';
import { json, startWebApi, type RunningWebApi } from '../support/webapi.ts';

const jsonHeaders = { 'content-type': 'application/json' };

const ada = { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' };

function apiContract(kind: 'pglite' | 'postgres') {
  let testDb: TestDatabase;
  let api: RunningWebApi;

  before(async () => {
    testDb = await openTestDatabase(kind);
    api = await startWebApi(testDb.database);
  });
  after(async () => {
    await api?.stop();
    await testDb?.dispose();
  });

  const call = (path: string, init: RequestInit = {}) => fetch(`${api.url}${path}`, init);
  const create = (body: unknown = ada) =>
    call('/api/students', { method: 'POST', headers: jsonHeaders, body: JSON.stringify(body) });
  const counts = async () => ({
    students: (await testDb.database.db.select({ id: students.id }).from(students)).length,
    outbox: (await testDb.database.db.select({ id: outbox.id }).from(outbox)).length,
  });

  async function assertProblem(response: Response, status: number, field?: string) {
    assert.equal(response.status, status);
    // JSON is UTF-8 (RFC 8259), and every problem says so alike.
    assert.equal(response.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    const body = await json(response);
    assert.equal(body.status, status);
    assert.equal(typeof body.title, 'string');
    // One title per problem type, whichever check answered: Fastify's (malformed JSON), the schema's, ours.
    if (body.code === 'REQUEST.INVALID') assert.equal(body.title, 'The request is not valid');
    if (field) {
      const errors = body.errors as { field: string; reason: string }[];
      assert.ok(
        errors.some((error) => error.field === field && error.reason.length > 0),
        `expected an error for ${field}, got ${JSON.stringify(errors)}`,
      );
    }
    return body;
  }

  test('a name of 100 emoji (200 UTF-16 units) fits: 201, stored as sent', async () => {
    const firstName = '🎓'.repeat(100);
    const response = await create({ ...ada, firstName });
    assert.equal(response.status, 201);
    const body = await json(response);
    const stored = await json(
      await call(`/api/students/${body.id}`, { headers: { 'cache-control': 'no-cache' } }),
    );
    assert.equal(stored.firstName, firstName);
  });

  test('names with joiners between letters are accepted and stored as sent: emoji sequences, Persian names', async () => {
    const names = { firstName: '👩\u200d🎓', lastName: 'رحمانی\u200cنژاد' };
    const response = await create({ ...ada, ...names });
    assert.equal(response.status, 201);
    const body = await json(response);
    assert.deepEqual({ firstName: body.firstName, lastName: body.lastName }, names);
  });

  test("a student stored before today's text rules is still read, updated and deleted", async () => {
    const id = randomUUID();
    const old = { firstName: '\u202eevil', lastName: 'x\r\ny', email: 'a\u0001@b.c' };
    await testDb.database.db
      .insert(students)
      .values({ id, ...old, created: new Date(), createdBy: 'before', version: 1 });
    const path = `/api/students/${id}`;
    const read = await call(path, { headers: { 'cache-control': 'no-cache' } });
    assert.equal(read.status, 200);
    const { firstName, lastName, email } = await json(read);
    assert.deepEqual({ firstName, lastName, email }, old);
    const updated = await call(path, { method: 'PUT', headers: jsonHeaders, body: JSON.stringify(ada) });
    assert.equal(updated.status, 200);
    assert.equal((await call(path, { method: 'DELETE' })).status, 204);
  });

  test('POST creates a student: 201 with Location, ETag and the stored JSON', async () => {
    const response = await create();
    assert.equal(response.status, 201);
    const body = await json(response);
    assert.match(String(body.id), /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/, 'a UUIDv7 id');
    assert.equal(response.headers.get('location'), `/api/students/${body.id}`);
    assert.equal(response.headers.get('etag'), '"1"');
    assert.deepEqual(
      {
        firstName: body.firstName,
        lastName: body.lastName,
        email: body.email,
        updates: body.updates,
        version: body.version,
      },
      { ...ada, updates: 0, version: 1 },
    );
    const fetched = await call(response.headers.get('location') ?? '');
    assert.equal(fetched.status, 200);
    assert.deepEqual(await json(fetched), body);
  });

  test('fields left out are generated, and an empty POST creates a whole fake student', async () => {
    const partial = await json(await create({ firstName: 'Only' }));
    assert.equal(partial.firstName, 'Only');
    assert.ok(String(partial.lastName).length > 0);
    assert.match(String(partial.email), /@/);
    const empty = await call('/api/students', { method: 'POST' });
    assert.equal(empty.status, 201);
    const generated = await json(empty);
    assert.ok(String(generated.firstName).length > 0);
  });

  test('names are trimmed before they are stored', async () => {
    const body = await json(await create({ ...ada, firstName: '  Ada  ' }));
    assert.equal(body.firstName, 'Ada');
  });

  test('the length limits apply to the text as stored: 100 characters with spaces around them fit, 101 do not; the document says so', async () => {
    const name = 'a'.repeat(100);
    const email = `${'e'.repeat(242)}@example.com`;
    const padded = `${' '.repeat(10)}${name}\t`;
    const created = await create({ firstName: padded, lastName: padded, email: `  ${email}  ` });
    assert.equal(created.status, 201);
    const body = await json(created);
    assert.deepEqual([body.firstName, body.lastName, body.email], [name, name, email]);
    await assertProblem(await create({ ...ada, lastName: ` ${name}b ` }), 400, 'lastName');
    await assertProblem(await create({ ...ada, email: ` e${email} ` }), 400, 'email');

    // No maxLength: a client would check it on the text as sent, and refuse what the API takes.
    const spec = (await json(await call('/openapi.json'))) as {
      paths: Record<
        string,
        Record<string, { requestBody: { content: Record<string, { schema: unknown }> } }>
      >;
    };
    const input = JSON.stringify(spec.paths['/api/students']?.post?.requestBody.content['application/json']);
    assert.doesNotMatch(input, /maxLength/);
    assert.match(input, /First name, trimmed, then at most 100 characters/);
    assert.match(input, /Email address, trimmed, then at most 254 characters/);
  });

  test('the singular /api/student paths of the original are aliases', async () => {
    const created = await json(
      await call('/api/student', { method: 'POST', headers: jsonHeaders, body: JSON.stringify(ada) }),
    );
    const fetched = await call(`/api/student/${created.id}`);
    assert.equal(fetched.status, 200);
    assert.equal((await json(fetched)).id, created.id);
  });

  test('paths are matched as in the original (ASP.NET Core routing): in any letter case, and a trailing slash changes nothing', async () => {
    const created = await call('/API/Students/', {
      method: 'POST',
      headers: jsonHeaders,
      body: JSON.stringify(ada),
    });
    assert.equal(created.status, 201);
    const id = String((await json(created)).id);
    const list = await call('/api/students/?limit=1');
    assert.equal(list.status, 200);
    assert.ok(Array.isArray((await json(list)).items), 'the collection: a page of students');
    const fetched = await call(`/Api/Students/${id.toUpperCase()}/`);
    assert.equal(fetched.status, 200);
    assert.equal((await json(fetched)).id, id);
    assert.equal((await call(`/api/STUDENTS/${id}/`, { method: 'DELETE' })).status, 204);
    assert.equal((await call(`/api/students/${id}`)).status, 404);
  });

  test('PUT with the current ETag updates and returns the new version; a stale ETag gets 412', async () => {
    const created = await json(await create());
    const path = `/api/students/${created.id}`;
    const updated = await call(path, {
      method: 'PUT',
      headers: { ...jsonHeaders, 'if-match': '"1"' },
      body: JSON.stringify({ ...ada, firstName: 'Grace' }),
    });
    assert.equal(updated.status, 200);
    assert.equal(updated.headers.get('etag'), '"2"');
    const body = await json(updated);
    assert.equal(body.firstName, 'Grace');
    assert.equal(body.version, 2);
    assert.equal(body.lastModifiedBy, 'anonymous');

    const stale = await call(path, {
      method: 'PUT',
      headers: { ...jsonHeaders, 'if-match': '"1"' },
      body: JSON.stringify({ ...ada, firstName: 'Stale' }),
    });
    const problem = await assertProblem(stale, 412);
    assert.equal(problem.code, 'STUDENT.VERSION_CONFLICT');
    assert.equal(problem.currentVersion, 2, 'the problem names the version to send If-Match for');
    assert.equal(stale.headers.get('etag'), '"2"');
    assert.equal((await json(await call(path))).firstName, 'Grace', 'the stale write changed nothing');
  });

  test('If-None-Match on a write: * or the current ETag is a 412 and changes nothing; another tag lets it through', async () => {
    const created = await json(await create());
    const path = `/api/students/${created.id}`;
    const put = (headers: Record<string, string>) =>
      call(path, { method: 'PUT', headers: { ...jsonHeaders, ...headers }, body: JSON.stringify(ada) });
    for (const ifNoneMatch of ['*', '"1"', 'W/"1"', '"5", "1"']) {
      const refused = await assertProblem(await put({ 'if-none-match': ifNoneMatch }), 412);
      assert.equal(refused.code, 'STUDENT.VERSION_CONFLICT', ifNoneMatch);
    }
    await assertProblem(await call(path, { method: 'DELETE', headers: { 'if-none-match': '*' } }), 412);
    await assertProblem(await put({ 'if-none-match': 'garbage' }), 400, 'If-None-Match');
    assert.equal((await json(await call(path, { headers: { 'cache-control': 'no-cache' } }))).version, 1);
    const allowed = await put({ 'if-none-match': '"7"', 'if-match': '"1"' });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers.get('etag'), '"2"');
    // Identical PUTs are coalesced within 5 s, but not across preconditions. (fetch() would add
    // `Cache-Control: no-cache`, which bypasses deduplication, to a request with If-None-Match.)
    assert.equal((await put({})).status, 200);
    await assertProblem(await put({ 'if-none-match': '*', 'cache-control': 'max-age=0' }), 412);
    // Nor across If-Match: the same body under a stale tag, sent while the identical PUT under the current one is
    // running, is refused, not handed that PUT's answer.
    const current = (await call(path, { headers: { 'cache-control': 'no-cache' } })).headers.get('etag')!;
    const unbypassed = { 'cache-control': 'max-age=0' };
    const [fresh, stale] = await Promise.all([
      put({ 'if-match': current, ...unbypassed }),
      put({ 'if-match': '"1"', ...unbypassed }),
    ]);
    assert.equal(fresh.status, 200);
    assert.equal((await assertProblem(stale, 412)).code, 'STUDENT.VERSION_CONFLICT');
  });

  test('an id in upper case names the same student for every method, and reads through it see every write', async () => {
    const created = await json(await create());
    const upper = `/api/students/${String(created.id).toUpperCase()}`;
    const read = async (path: string) => json(await call(path));
    assert.equal((await read(upper)).id, created.id, 'read through the upper-case id');
    const updated = await call(upper, {
      method: 'PUT',
      headers: jsonHeaders,
      body: JSON.stringify({ ...ada, firstName: 'Upper' }),
    });
    assert.equal(updated.status, 200);
    assert.equal((await read(upper)).firstName, 'Upper', 'the replayed read was dropped by the write');
    assert.equal((await read(`/api/students/${created.id}`)).firstName, 'Upper');
    assert.equal((await call(`/api/students/${created.id}`, { method: 'DELETE' })).status, 204);
    await assertProblem(await call(upper), 404);
  });

  test('a GET whose If-None-Match names the current ETag is a 304 without body, one whose If-Match does not a 412; after a write the old tag is a 200 again', async () => {
    const created = await json(await create());
    const path = `/api/students/${created.id}`;
    // As a browser revalidates its cached copy. fetch() would add `Cache-Control: no-cache` to a request with
    // If-None-Match, and that bypasses the cache and deduplication (the original's BypassCache).
    const conditional = (ifNoneMatch: string, method = 'GET') =>
      call(path, { method, headers: { 'if-none-match': ifNoneMatch, 'cache-control': 'max-age=0' } });
    const assertNotModified = async (response: Response, what: string) => {
      assert.equal(response.status, 304, what);
      assert.equal(response.headers.get('etag'), '"1"', what);
      assert.equal(response.headers.get('content-type'), null, what);
      assert.equal(await response.text(), '', what);
    };

    // The first answer is conditional, so it is what deduplication stores for the unconditional ones after it.
    await assertNotModified(await conditional('"1"'), 'the exact tag');
    const full = await call(path);
    assert.equal(full.status, 200);
    assert.deepEqual(await json(full), created, 'a plain GET still gets the body');
    assert.equal(full.headers.get('x-deduplicated'), 'true', 'replayed: the stored answer is the 200');
    await assertNotModified(await conditional('"1"'), 'a replayed answer');
    await assertNotModified(await conditional('W/"1"'), 'the weak comparison');
    await assertNotModified(await conditional('"7", "1"'), 'one of a list');
    await assertNotModified(await conditional('*'), 'any current representation');
    await assertNotModified(await conditional('"1"', 'HEAD'), 'HEAD');
    const other = await conditional('"2"');
    assert.equal(other.status, 200, 'another tag');
    assert.deepEqual(await json(other), created);

    const updated = await call(path, {
      method: 'PUT',
      headers: jsonHeaders,
      body: JSON.stringify({ ...ada, firstName: 'Grace' }),
    });
    assert.equal(updated.status, 200);
    const fresh = await conditional('"1"');
    assert.equal(fresh.status, 200, 'the copy the client holds is stale now');
    assert.equal(fresh.headers.get('etag'), '"2"');
    assert.equal((await json(fresh)).firstName, 'Grace');

    const ifMatch = (header: string) =>
      call(path, { headers: { 'if-match': header, 'cache-control': 'max-age=0' } });
    const failed = await assertProblem(await ifMatch('"1"'), 412);
    assert.equal(failed.code, 'PRECONDITION.FAILED');
    assert.equal((await ifMatch('"2"')).status, 200, 'If-Match naming the current ETag');
    assert.equal((await ifMatch('*')).status, 200);
    await assertProblem(await ifMatch('W/"2"'), 412);

    const missing = await call(`/api/students/${randomUUID()}`, { headers: { 'if-none-match': '*' } });
    await assertProblem(missing, 404);
    await assertProblem(await conditional('1'), 400, 'If-None-Match');
  });

  test('when a student is updated twice concurrently with the same ETag, exactly one wins and the other gets 412', async () => {
    const created = await json(await create());
    const put = (firstName: string) =>
      call(`/api/students/${created.id}`, {
        method: 'PUT',
        headers: { ...jsonHeaders, 'if-match': '"1"' },
        body: JSON.stringify({ ...ada, firstName }),
      });
    const statuses = (await Promise.all([put('One'), put('Two')])).map((response) => response.status).sort();
    assert.deepEqual(statuses, [200, 412]);
  });

  test('the list and the collection have no ETag: If-Match holds for * alone, If-None-Match * does not (304 on the list, 412 on a POST)', async () => {
    await create();
    const list = (headers: Record<string, string>) =>
      call('/api/students?limit=1', { headers: { ...headers, 'cache-control': 'max-age=0' } });
    assert.equal((await list({ 'if-match': '"1"' })).status, 412);
    assert.equal((await list({ 'if-match': '*' })).status, 200);
    const notModified = await list({ 'if-none-match': '*' });
    assert.equal(notModified.status, 304);
    assert.equal(await notModified.text(), '');
    assert.equal((await list({ 'if-none-match': '"1"' })).status, 200);

    const before = await counts();
    const post = (headers: Record<string, string>) =>
      call('/api/students', { method: 'POST', headers: { ...jsonHeaders, ...headers }, body: '{}' });
    for (const headers of [{ 'if-match': '"1"' }, { 'if-none-match': '*' }] as Record<string, string>[]) {
      const refused = await post(headers);
      assert.equal(refused.status, 412, JSON.stringify(headers));
      assert.equal((await json(refused)).code, 'PRECONDITION.FAILED');
    }
    assert.deepEqual(await counts(), before, 'nothing created');
    assert.equal((await post({ 'if-match': '*' })).status, 201);
    assert.equal((await post({ 'if-none-match': '"1"' })).status, 201);
  });

  test('If-Match: * updates any existing student; a malformed If-Match is a 400 naming the header, and writes nothing', async () => {
    const created = await json(await create());
    const path = `/api/students/${created.id}`;
    const star = await call(path, {
      method: 'PUT',
      headers: { ...jsonHeaders, 'if-match': '*' },
      body: '{}',
    });
    assert.equal(star.status, 200);
    const malformed = await call(path, {
      method: 'PUT',
      headers: { ...jsonHeaders, 'if-match': 'v1' },
      body: '{}',
    });
    await assertProblem(malformed, 400, 'If-Match');
    const malformedDelete = await call(path, { method: 'DELETE', headers: { 'if-match': 'v1' } });
    await assertProblem(malformedDelete, 400, 'If-Match');
    const current = await call(path, { headers: { 'cache-control': 'no-cache' } });
    assert.equal(current.status, 200, 'the student is still there');
    assert.equal((await json(current)).version, 2, 'neither malformed write changed it');
  });

  test('DELETE removes the student: 204, then 404; deleting again is 404', async () => {
    const created = await json(await create());
    const path = `/api/students/${created.id}`;
    assert.equal((await call(path, { method: 'DELETE' })).status, 204);
    const problem = await assertProblem(await call(path), 404);
    assert.equal(problem.code, 'STUDENT.NOT_FOUND');
    await assertProblem(await call(path, { method: 'DELETE' }), 404);
  });

  test('a DELETE sent as application/json with an empty body (from a client set up to send that header on every request) is one without a body: 204, then 404', async () => {
    // With Content-Length: 0, and with neither Content-Length nor Transfer-Encoding.
    for (const body of ['', undefined]) {
      const created = await json(await create());
      const path = `/api/students/${created.id}`;
      const deleted = await call(path, { method: 'DELETE', headers: jsonHeaders, body });
      assert.equal(deleted.status, 204, `body ${JSON.stringify(body)}`);
      assert.equal((await assertProblem(await call(path), 404)).code, 'STUDENT.NOT_FOUND');
    }
  });

  test('a keyed DELETE retried with or without Content-Type: application/json (no body either way) is the same request', async () => {
    for (const [first, retry] of [
      [jsonHeaders, {}],
      [{}, jsonHeaders],
    ]) {
      const created = await json(await create());
      const path = `/api/students/${created.id}`;
      const key = `delete-${randomUUID()}`;
      const deleted = await call(path, { method: 'DELETE', headers: { ...first, 'idempotency-key': key } });
      assert.equal(deleted.status, 204);
      const retried = await call(path, { method: 'DELETE', headers: { ...retry, 'idempotency-key': key } });
      assert.equal(retried.status, 204, `first ${JSON.stringify(first)}, retry ${JSON.stringify(retry)}`);
      assert.equal(retried.headers.get('idempotent-replayed'), 'true');
    }
  });

  describe('a keyed write retried after a restart (its stored answer gone with the process) is answered from the database', () => {
    const keyedWrite = (url: string, path: string, method: string, key: string, body?: unknown) =>
      fetch(`${url}${path}`, {
        method,
        headers: { ...jsonHeaders, 'idempotency-key': key },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    const put = (url: string, path: string, body: unknown) =>
      fetch(`${url}${path}`, { method: 'PUT', headers: jsonHeaders, body: JSON.stringify(body) });
    /** A webapi over the same database, with the fresh memory cache and idempotency store of a restarted process. */
    async function afterRestart(check: (url: string) => Promise<void>) {
      const restarted = await startWebApi(testDb.database);
      try {
        await check(restarted.url);
      } finally {
        await restarted.stop();
      }
    }

    test('and caches nothing old: an update stays at its newest version, a deleted student stays deleted', async () => {
      const key = `restart-${randomUUID()}`;
      const created = await keyedWrite(api.url, '/api/students', 'POST', `${key}-create`, ada);
      assert.equal(created.status, 201);
      const path = `/api/students/${String((await json(created)).id)}`;
      const bob = { firstName: 'Bob', lastName: 'Lovelace', email: 'bob@example.com' };
      assert.equal((await keyedWrite(api.url, path, 'PUT', `${key}-put`, bob)).status, 200);
      assert.equal((await put(api.url, path, { ...ada, firstName: 'Cy' })).status, 200);

      await afterRestart(async (url) => {
        const retried = await keyedWrite(url, path, 'PUT', `${key}-put`, bob);
        assert.equal(retried.headers.get('idempotent-replayed'), 'true');
        assert.equal(retried.headers.get('etag'), '"2"', "the first attempt's answer");
        const read = await fetch(`${url}${path}`);
        assert.equal(
          read.headers.get('etag'),
          '"3"',
          'the newest version, not the one the retry answered with',
        );
        assert.equal((await json(read)).firstName, 'Cy');
        assert.equal((await fetch(`${url}${path}`, { method: 'DELETE' })).status, 204);
      });
      await afterRestart(async (url) => {
        const retried = await keyedWrite(url, '/api/students', 'POST', `${key}-create`, ada);
        assert.equal(retried.status, 201);
        assert.equal(retried.headers.get('idempotent-replayed'), 'true');
        assert.equal((await fetch(`${url}${path}`)).status, 404, 'the deleted student is not served again');
      });
    });

    test("and neither drops other PUTs' deduplicated answers nor stands in for them", async () => {
      const key = `restart-${randomUUID()}`;
      const path = `/api/students/${String((await json(await create())).id)}`;
      const bob = { firstName: 'Bob', lastName: 'Lovelace', email: 'bob@example.com' };
      const cy = { ...ada, firstName: 'Cy' };
      assert.equal((await keyedWrite(api.url, path, 'PUT', key, bob)).status, 200);

      await afterRestart(async (url) => {
        assert.equal((await put(url, path, cy)).headers.get('etag'), '"3"');
        const retried = await keyedWrite(url, path, 'PUT', key, bob);
        assert.equal(retried.headers.get('idempotent-replayed'), 'true');
        const cyAgain = await put(url, path, cy);
        assert.equal(
          cyAgain.headers.get('x-deduplicated'),
          'true',
          'the replay wrote nothing: Cy is still current',
        );
        assert.equal(cyAgain.headers.get('etag'), '"3"');
        const bobAgain = await put(url, path, bob);
        assert.equal(
          bobAgain.headers.get('x-deduplicated'),
          null,
          "the replay's answer (Bob at 2) is outdated",
        );
        assert.equal(bobAgain.headers.get('etag'), '"4"');
      });
    });
  });

  test('every write leaves one outbox row per domain event, with its type and payload', async () => {
    const created = await json(await create());
    const path = `/api/students/${created.id}`;
    await call(path, {
      method: 'PUT',
      headers: jsonHeaders,
      body: JSON.stringify({ ...ada, firstName: 'Grace' }),
    });
    await call(path, { method: 'DELETE' });
    const rows = (await testDb.database.db.select().from(outbox).orderBy(asc(outbox.seq))).filter(
      (row) => row.subject === created.id,
    );
    assert.deepEqual(
      rows.map((row) => [row.type, row.routingKey]),
      [
        ['StudentCreated', 'student.created'],
        ['StudentUpdated', 'student.updated'],
        ['StudentDeleted', 'student.deleted'],
      ],
    );
    const payloads = rows.map((row) => row.payload as { student: { firstName: string; version: number } });
    assert.deepEqual(
      payloads.map((payload) => [payload.student.firstName, payload.student.version]),
      [
        ['Ada', 1],
        ['Grace', 2],
        ['Grace', 2],
      ],
    );
  });

  test('the list walks all students in keyset pages via nextCursor', async () => {
    const ids: unknown[] = [];
    for (let i = 0; i < 5; i++) ids.push((await json(await create({ ...ada, firstName: `P${i}` }))).id);
    const seen: unknown[] = [];
    let cursor: string | null = null;
    do {
      const page: Record<string, unknown> = await json(
        await call(`/api/students?limit=2${cursor ? `&cursor=${cursor}` : ''}`),
      );
      seen.push(...(page.items as { id: string }[]).map((item) => item.id));
      cursor = page.nextCursor as string | null;
    } while (cursor);
    assert.deepEqual(
      seen.filter((id) => ids.includes(id)),
      ids,
    );
    assert.equal(new Set(seen).size, seen.length, 'no student twice');
  });

  describe('bad input gets a 4xx problem+json naming the field, and writes nothing', () => {
    const badPosts: [string, RequestInit, number, string][] = [
      ['malformed JSON', { body: '{"firstName":' }, 400, 'body'],
      ['a wrong type', { body: JSON.stringify({ firstName: 42 }) }, 400, 'firstName'],
      ['an unknown field', { body: JSON.stringify({ ...ada, isAdmin: true }) }, 400, 'isAdmin'],
      ['a field with an empty name', { body: JSON.stringify({ ...ada, '': 1 }) }, 400, '""'],
      ['an over-long name', { body: JSON.stringify({ ...ada, lastName: 'x'.repeat(101) }) }, 400, 'lastName'],
      ['a blank name', { body: JSON.stringify({ ...ada, firstName: '   ' }) }, 422, 'firstName'],
      ['an invalid email', { body: JSON.stringify({ ...ada, email: 'not-an-email' }) }, 422, 'email'],
      [
        'a NUL character in a name',
        { body: JSON.stringify({ ...ada, firstName: 'A\u0000da' }) },
        422,
        'firstName',
      ],
      [
        'an unpaired surrogate in the email',
        { body: JSON.stringify({ ...ada, email: 'a\ud800@b.co' }) },
        422,
        'email',
      ],
      [
        'a terminal escape in a name',
        { body: JSON.stringify({ firstName: 'a\u001b[31mred', lastName: 'x\r\ny' }) },
        422,
        'firstName',
      ],
      ['a line break inside a name', { body: JSON.stringify({ lastName: 'x\r\ny' }) }, 422, 'lastName'],
      [
        'a right-to-left override in a name',
        { body: JSON.stringify({ firstName: '\u202eevil' }) },
        422,
        'firstName',
      ],
      [
        'a name of only a zero-width space',
        { body: JSON.stringify({ firstName: '\u200b' }) },
        422,
        'firstName',
      ],
      ['a control character in the email', { body: JSON.stringify({ email: 'a\u0001@b.c' }) }, 422, 'email'],
      ['a JSON array', { body: '[]' }, 400, 'body'],
      // A route that takes a body refuses an empty one sent as JSON, rather than generating a whole student.
      ['an empty body sent as application/json', { body: '' }, 400, 'body'],
      [
        'JSON sent as text/plain (fetch without a Content-Type)',
        { headers: { 'content-type': 'text/plain;charset=UTF-8' }, body: JSON.stringify(ada) },
        415,
        'body',
      ],
      ['a body over 64 KiB', { body: JSON.stringify({ ...ada, pad: 'x'.repeat(70_000) }) }, 413, 'body'],
    ];
    for (const [name, init, status, field] of badPosts) {
      test(`POST with ${name}: ${status} for ${field}`, async () => {
        const before = await counts();
        const response = await call('/api/students', { method: 'POST', headers: jsonHeaders, ...init });
        await assertProblem(response, status, field);
        assert.deepEqual(await counts(), before);
      });
    }

    test('a body of 64 KiB is read (and judged by its fields); one byte more is a 413, and writes nothing', async () => {
      const before = await counts();
      const sized = (bytes: number) => {
        const body = JSON.stringify({ ...ada, pad: '' });
        return body.replace('"pad":""', `"pad":"${'x'.repeat(bytes - body.length)}"`);
      };
      const limit = 64 * 1024;
      const read = await call('/api/students', { method: 'POST', headers: jsonHeaders, body: sized(limit) });
      await assertProblem(read, 400, 'pad');
      const over = await call('/api/students', {
        method: 'POST',
        headers: jsonHeaders,
        body: sized(limit + 1),
      });
      await assertProblem(over, 413, 'body');
      assert.deepEqual(await counts(), before);
    });

    test('PUT with an empty body sent as application/json: 400 for body, and the student is unchanged', async () => {
      const created = await json(await create());
      const path = `/api/students/${created.id}`;
      const before = await counts();
      const problem = await assertProblem(
        await call(path, { method: 'PUT', headers: jsonHeaders, body: '' }),
        400,
        'body',
      );
      assert.match(String(problem.detail), /send the JSON object/, 'says what to send instead');
      assert.deepEqual(await counts(), before);
      const current = await json(await call(path, { headers: { 'cache-control': 'no-cache' } }));
      assert.deepEqual(current, created, 'not replaced by a generated student');
    });

    test('a control character or bidi override is a 422 saying so; a blank-looking name is empty', async () => {
      const problem = await assertProblem(
        await create({ firstName: 'a\u202eevil', lastName: 'x\r\ny', email: 'a\u001b[31m@b.c' }),
        422,
      );
      const reason = 'must not contain control characters or bidirectional overrides';
      assert.deepEqual(problem.errors, [
        { field: 'firstName', reason },
        { field: 'lastName', reason },
        { field: 'email', reason },
      ]);
      assert.equal(problem.code, 'STUDENT.INVALID');
      const blank = await assertProblem(await create({ ...ada, firstName: '\u200b' }), 422);
      assert.deepEqual(blank.errors, [{ field: 'firstName', reason: 'must not be empty' }]);
    });

    test('the reason says why a JSON body is rejected: where the syntax breaks, a prototype key, not an object', async () => {
      for (const [body, reason] of [
        ['{"firstName":', /^Body is not valid JSON: .+/],
        ['[]', /^must be a JSON object$/],
        ['"Ada"', /^must be a JSON object$/],
        ['{"firstName":"Ada","__proto__":{"isAdmin":true}}', /"__proto__"/],
        ['{"lastName":"L","constructor":{"prototype":{"isAdmin":true}}}', /"prototype"/],
        // JSON.parse would keep Eve and drop Ada unseen; a first-wins reader of the same body sees Ada.
        ['{"firstName":"Ada","firstName":"Eve"}', /"firstName" appears twice/],
        ['{"lastName":"L", "last\\u004eame" :"M"}', /"lastName" appears twice/],
      ] as const) {
        const problem = await assertProblem(
          await call('/api/students', { method: 'POST', headers: jsonHeaders, body }),
          400,
          'body',
        );
        assert.match((problem.errors as { reason: string }[])[0]?.reason ?? '', reason, body);
      }
    });

    test('a body that is not JSON is a 415 saying to send application/json', async () => {
      const problem = await assertProblem(
        await call('/api/students', {
          method: 'POST',
          headers: { 'content-type': 'text/plain' },
          body: 'Ada',
        }),
        415,
        'body',
      );
      assert.match(String(problem.detail), /"text\/plain".*application\/json/);
      assert.equal(
        (problem.errors as { reason: string }[])[0]?.reason,
        'must be sent as application/json, in UTF-8',
      );
    });

    test('a body that is not UTF-8 is a 400, and JSON in another charset a 415: nothing is stored', async () => {
      const before = await counts();
      const latin1 = Buffer.from('{"firstName":"Ren\xe9"}', 'latin1');
      const invalid = await assertProblem(
        await call('/api/students', { method: 'POST', headers: jsonHeaders, body: latin1 }),
        400,
        'body',
      );
      assert.equal((invalid.errors as { reason: string }[])[0]?.reason, 'Body is not valid UTF-8.');
      await assertProblem(
        await call('/api/students', {
          method: 'POST',
          headers: { 'content-type': 'application/json; charset=iso-8859-1' },
          body: latin1,
        }),
        415,
        'body',
      );
      assert.deepEqual(await counts(), before);
      const withCharset = await call('/api/students', {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset="UTF-8"' },
        body: Buffer.from('\ufeff{"firstName":"René"}'),
      });
      assert.equal(withCharset.status, 201, 'UTF-8 named, with a byte order mark');
      assert.equal((await json(withCharset)).firstName, 'René');
      const utf8Alias = await call('/api/students', {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=utf8' },
        body: JSON.stringify(ada),
      });
      assert.equal(utf8Alias.status, 201, 'UTF-8 under its alias utf8');
    });

    test('an invalid UUID in the path is a 400 for id', async () => {
      await assertProblem(await call('/api/students/not-a-uuid'), 400, 'id');
      await assertProblem(await call('/api/students/1', { method: 'DELETE' }), 400, 'id');
    });

    test('bad limits and cursors are 400s for limit and cursor', async () => {
      await assertProblem(await call('/api/students?limit=0'), 400, 'limit');
      await assertProblem(await call('/api/students?limit=101'), 400, 'limit');
      await assertProblem(await call('/api/students?limit=abc'), 400, 'limit');
      // Past 2^53 it fails two checks with one message: said once.
      const huge = await assertProblem(await call('/api/students?limit=100000000000000000000'), 400, 'limit');
      assert.equal((huge.errors as unknown[]).length, 1, JSON.stringify(huge.errors));
      for (const notDecimal of ['0x1', '1e1', '%205', '2.0'])
        await assertProblem(await call(`/api/students?limit=${notDecimal}`), 400, 'limit');
      assert.equal((await call('/api/students?limit=007')).status, 200, 'leading zeros are still decimal');
      await assertProblem(await call('/api/students?cursor=bm90LWEtdXVpZA'), 400, 'cursor');
      await assertProblem(await call('/api/students?=1'), 400, '""');
    });

    test('a cursor must be spelled as the API wrote it: junk appended, padding or base64 for base64url is a 400', async () => {
      await create();
      await create();
      const cursor = String((await json(await call('/api/students?limit=1'))).nextCursor);
      assert.equal((await call(`/api/students?limit=1&cursor=${cursor}`)).status, 200);
      const base64 = Buffer.from(cursor, 'base64url').toString('base64');
      for (const variant of [
        `${cursor}!!!!`,
        `${cursor}=`,
        `${cursor}==`,
        `${cursor}A`,
        base64,
        ` ${cursor}`,
      ]) {
        if (variant === cursor) continue;
        await assertProblem(await call(`/api/students?cursor=${encodeURIComponent(variant)}`), 400, 'cursor');
      }
    });

    test('a query parameter a route does not read is a 400 naming it, on both paths, and changes nothing; so is a body on a DELETE', async () => {
      const created = await json(await create());
      const before = await counts();
      for (const base of ['/api/students', '/api/student']) {
        const path = `${base}/${created.id}`;
        await assertProblem(await call(`${path}?dryRun=true`, { method: 'DELETE' }), 400, 'dryRun');
        // Nor in a body, which a DELETE's meaning cannot depend on (RFC 9110 §9.3.5).
        for (const body of ['{"dryRun":true}', '{}'])
          await assertProblem(
            await call(path, { method: 'DELETE', headers: jsonHeaders, body }),
            400,
            'body',
          );
        await assertProblem(
          await call(`${path}?foo=1`, { method: 'PUT', headers: jsonHeaders, body: JSON.stringify(ada) }),
          400,
          'foo',
        );
        await assertProblem(await call(`${path}?foo=1`), 400, 'foo');
        await assertProblem(
          await call(`${base}?foo=1`, { method: 'POST', headers: jsonHeaders, body: JSON.stringify(ada) }),
          400,
          'foo',
        );
      }
      assert.deepEqual(await counts(), before);
      assert.deepEqual(
        await json(await call(`/api/students/${created.id}?`)),
        created,
        'an empty query is none',
      );
    });

    test('a PUT with invalid input leaves the student as it was', async () => {
      const created = await json(await create());
      const path = `/api/students/${created.id}`;
      const response = await call(path, {
        method: 'PUT',
        headers: jsonHeaders,
        body: JSON.stringify({ email: 'x' }),
      });
      await assertProblem(response, 422, 'email');
      assert.deepEqual(await json(await call(path)), created);
    });

    test('a path the router cannot decode, or an over-long id, is a problem+json naming the path', async () => {
      await assertProblem(await call('/api/students/%E0%A4%A'), 400, 'path');
      await assertProblem(await call(`/api/students/${'a'.repeat(101)}`), 414, 'path');
    });

    test('the request target * is for OPTIONS, which lists the methods the API takes; GET * is a 400', async () => {
      const { port } = new URL(api.url);
      const options = await exchange(port, 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      assert.match(options, /^HTTP\/1.1 204 /);
      assert.match(options, /\r\nallow: DELETE, GET, HEAD, OPTIONS, POST, PUT\r\n/i);
      const get = await exchange(port, 'GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      assert.match(get, /^HTTP\/1.1 400 /);
      const problem = JSON.parse(get.split('\r\n\r\n')[1]!) as { errors: { field: string }[] };
      assert.deepEqual(
        problem.errors.map((error) => error.field),
        ['path'],
      );
    });

    test('CONNECT, a request for a tunnel, is a 405 problem+json naming what the server takes, not a dropped connection', async () => {
      const answer = await exchange(
        new URL(api.url).port,
        'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
      );
      const [head = '', body = ''] = answer.split('\r\n\r\n');
      assert.match(head, /^HTTP\/1.1 405 /);
      assert.match(head, /\r\nallow: DELETE, GET, HEAD, OPTIONS, POST, PUT\r\n/i);
      assert.match(head, /x-content-type-options: nosniff/i, 'the headers every response carries');
      assert.match(head, /x-request-id: [0-9a-f-]{36}/i);
      assert.match(head, /content-type: application\/problem\+json/i);
      const problem = JSON.parse(body) as { instance: string; errors: { field: string }[] };
      assert.deepEqual(
        problem.errors.map((error) => error.field),
        ['method'],
      );
      assert.equal(problem.instance, 'example.com:443');
    });

    test('a request the HTTP parser rejects is a problem+json naming the part at fault, and writes nothing', async () => {
      const before = await counts();
      const { port } = new URL(api.url);
      for (const [request, status, field] of [
        ['POST /api/students HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}', 400, 'Content-Length'],
        ['POST /api/students HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n', 400, 'headers'],
        ['BREW /api/students HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'method'],
        [`GET /api/students/${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 431, 'headers'],
        [
          'POST /api/students HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n',
          400,
          'Transfer-Encoding',
        ],
        [
          'POST /api/students HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
          400,
          'body',
        ],
      ] as const) {
        const answer = await exchange(port, request);
        assert.equal(answer.match(/^HTTP\/1\.1 \d{3} /gm)?.length, 1, `one response:\n${answer}`);
        const [head = '', body = ''] = answer.split('\r\n\r\n');
        assert.match(head, new RegExp(`^HTTP/1.1 ${status} `));
        assert.match(head, /content-type: application\/problem\+json/i);
        assert.match(head, /x-content-type-options: nosniff/i, 'the headers every response carries');
        assert.match(head, /x-request-id: [0-9a-f-]{36}/i);
        const problem = JSON.parse(body) as { status: number; errors: { field: string; reason: string }[] };
        assert.equal(problem.status, status);
        assert.equal(problem.errors[0]?.field, field);
        assert.ok(problem.errors[0]?.reason);
      }
      assert.deepEqual(await counts(), before);
      // A transfer coding llhttp cannot frame, on a path no route takes a POST on: one response, the parser's (a
      // second, the app's own refusal, would be taken by the client for the answer to its next request).
      const answered = await exchange(
        port,
        'POST /health/live HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n',
      );
      assert.equal(answered.match(/^HTTP\/1\.1 \d{3} /gm)?.length, 1, answered);
    });

    test('a request without Host or with two, with a fragment in its target, two Content-Types, an Expect it cannot meet, or a compressed body (in a content or transfer coding) is a problem+json naming the header, readable by a browser page, and writes nothing', async () => {
      const before = await counts();
      const { port } = new URL(api.url);
      const body = JSON.stringify(ada);
      const post = (headers: string) =>
        `POST /api/students HTTP/1.1\r\n${headers}Connection: close\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\n\r\n${body}`;
      for (const [request, status, field, extraHeader] of [
        [post(''), 400, 'Host', undefined],
        [post('Host: x\r\nhost: y\r\n'), 400, 'Host', undefined],
        [
          post('Host: x\r\nOrigin: http://page.example\r\n').replace('/api/students', '/api/students#x'),
          400,
          'path',
          /access-control-allow-origin: \*\r\naccess-control-expose-headers: [^\r]*X-Request-Id/i,
        ],
        [post('Host: x\r\nContent-Type: text/plain\r\n'), 400, 'Content-Type', undefined],
        [post('Host: x\r\nExpect: 200-ok\r\n'), 417, 'Expect', undefined],
        [
          post('Host: x\r\nContent-Encoding: gzip\r\n'),
          415,
          'Content-Encoding',
          /accept-encoding: identity/i,
        ],
        [
          post('Host: x\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n')
            .replace(/Content-Length: \d+\r\n/, '')
            .replace(/\r\n\r\n.*$/s, `\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`),
          415,
          'Content-Encoding',
          /accept-encoding: identity/i,
        ],
        [
          // Node takes the chunks apart, but would hand the body on still gzipped.
          post('Host: x\r\nTransfer-Encoding: gzip, chunked\r\n')
            .replace(/Content-Length: \d+\r\n/, '')
            .replace(/\r\n\r\n.*$/s, `\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`),
          400,
          'Transfer-Encoding',
          undefined,
        ],
        [
          // HTTP/1.0 has no transfer codings (RFC 9112 §6.1).
          post('Host: x\r\nTransfer-Encoding: chunked\r\n')
            .replace('HTTP/1.1', 'HTTP/1.0')
            .replace(/Content-Length: \d+\r\n/, '')
            .replace(/\r\n\r\n.*$/s, `\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`),
          400,
          'Transfer-Encoding',
          undefined,
        ],
      ] as const) {
        const answer = await exchange(port, request);
        assert.equal(answer.match(/^HTTP\/1\.1 \d{3} /gm)?.length, 1, `one response:\n${answer}`);
        const [head = '', problemText = ''] = answer.split('\r\n\r\n');
        assert.match(head, new RegExp(`^HTTP/1.1 ${status} `), request);
        assert.match(head, /content-type: application\/problem\+json/i);
        assert.match(head, /x-content-type-options: nosniff/i, 'the headers every response carries');
        if (extraHeader) assert.match(head, extraHeader);
        const problem = JSON.parse(problemText) as {
          status: number;
          detail: string;
          errors: { field: string; reason: string }[];
        };
        assert.equal(problem.status, status);
        assert.equal(problem.errors[0]?.field, field);
        assert.equal(problem.detail, `${field} ${problem.errors[0]?.reason}.`, 'the detail says it too');
      }
      assert.deepEqual(await counts(), before);
      // What HTTP/1.0 and Expect: 100-continue clients send still works.
      const [continued = ''] = (await exchange(port, post('Host: x\r\nExpect: 100-Continue\r\n'))).split(
        '\r\n\r\n{',
      );
      assert.match(continued, /^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 201 /);
      // A body refused from the head is not asked for: the refusal comes first, and the client need not send it.
      const tooLarge =
        'POST /api/students HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n';
      assert.match(await exchange(port, tooLarge), /^HTTP\/1.1 413 /);
      const [plain = ''] = (await exchange(port, post('').replace('HTTP/1.1', 'HTTP/1.0'))).split('\r\n');
      assert.match(plain, /^HTTP\/1.1 201 /);
    });

    test('a body sent as is (Content-Encoding: identity) or in chunks, a coding named without a body, an HTTP/1.0 Expect or a header whose value is "Host" is no reason to refuse', async () => {
      const { port } = new URL(api.url);
      const body = JSON.stringify(ada);
      const post = (headers: string, version = 'HTTP/1.1') =>
        `POST /api/students ${version}\r\nHost: x\r\n${headers}Connection: close\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
      for (const request of [
        post('Content-Encoding: identity\r\n'),
        post('Content-Encoding: Identity \r\n'),
        // Expect was defined in HTTP/1.1: an HTTP/1.0 request's is ignored (RFC 9110 §10.1.1).
        post('Expect: 200-ok\r\n', 'HTTP/1.0'),
        post('X-Label: Host\r\nX-Kind: content-type\r\n'),
        post('Transfer-Encoding: Chunked\r\n')
          .replace(/Content-Length: \d+\r\n/, '')
          .replace(/\r\n\r\n.*$/s, `\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`),
      ]) {
        const answer = await exchange(port, request);
        assert.match(answer, /^HTTP\/1.1 201 /, `${request}\n---\n${answer}`);
      }
      const read = await exchange(
        port,
        'GET /api/students HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
      );
      assert.match(read, /^HTTP\/1.1 200 /, 'no body, nothing to decode');
    });

    test('a refused request on a kept-alive connection closes it: its unread body is never read as another request', async () => {
      const before = await counts();
      // The body is itself a request, which a server that kept the connection would answer next.
      const smuggled = `DELETE /api/students/${randomUUID()} HTTP/1.1\r\nHost: x\r\n\r\n`;
      // Answered until the server closes the connection.
      const received = await exchange(
        new URL(api.url).port,
        'POST /api/students HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n' +
          `Content-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
      );
      const [head = ''] = received.split('\r\n\r\n');
      assert.match(head, /^HTTP\/1.1 415 /);
      assert.match(head, /\r\nconnection: close\r\n/i);
      assert.equal(received.match(/HTTP\/1.1 /g)?.length, 1, received);
      assert.deepEqual(await counts(), before);
    });

    test('Idempotency-Key sent on two header lines is a 400 saying it must be sent once, and creates nothing', async () => {
      const before = await counts();
      const { port } = new URL(api.url);
      const body = '{}';
      const request =
        'POST /api/students HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n' +
        `Idempotency-Key: a\r\nIdempotency-Key: b\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
      const [head = '', problemText = ''] = (await exchange(port, request)).split('\r\n\r\n');
      assert.match(head, /^HTTP\/1.1 400 /);
      const problem = JSON.parse(problemText) as { errors: { field: string; reason: string }[] };
      assert.deepEqual(problem.errors, [{ field: 'Idempotency-Key', reason: 'must be sent once' }]);
      assert.deepEqual(await counts(), before);
    });

    test('a retry under the same Idempotency-Key through the alias, with a charset or a bare `?`, is the same request', async () => {
      const key = `retry-${randomUUID()}`;
      const body = JSON.stringify({ firstName: 'Ada', lastName: 'Lovelace' });
      const post = (path: string, contentType: string) =>
        call(path, {
          method: 'POST',
          headers: { 'content-type': contentType, 'idempotency-key': key },
          body,
        });
      const first = await post('/api/students', 'application/json');
      assert.equal(first.status, 201);
      const created = await json(first);
      const before = await counts();
      for (const [path, contentType] of [
        ['/api/student', 'application/json'],
        ['/api/students?', 'application/json'],
        ['/api/students', 'Application/JSON; charset=utf-8'],
      ] as const) {
        const retry = await post(path, contentType);
        assert.equal(retry.status, 201, `${path} ${contentType}`);
        assert.equal(retry.headers.get('idempotent-replayed'), 'true', `${path} ${contentType}`);
        assert.equal((await json(retry)).id, created.id, `${path} ${contentType}`);
      }
      assert.deepEqual(await counts(), before, 'nothing written again');
      const updated = await call(`/api/students/${String(created.id)}`, {
        method: 'PUT',
        headers: { ...jsonHeaders, 'idempotency-key': `${key}-put` },
        body: '{"firstName":"Augusta"}',
      });
      assert.equal(updated.status, 200);
      const viaAlias = await call(`/api/student/${String(created.id)}`, {
        method: 'PUT',
        headers: { ...jsonHeaders, 'idempotency-key': `${key}-put` },
        body: '{"firstName":"Augusta"}',
      });
      assert.equal(viaAlias.headers.get('idempotent-replayed'), 'true', 'the PUT through the alias too');
      const upperCaseId = String(created.id).toUpperCase();
      for (const path of [`/api/students/${upperCaseId}`, `/api/student/${upperCaseId}`]) {
        const retry = await call(path, {
          method: 'PUT',
          headers: { ...jsonHeaders, 'idempotency-key': `${key}-put` },
          body: '{"firstName":"Augusta"}',
        });
        assert.equal(retry.status, 200, `${path}: the id in upper case names the same student`);
        assert.equal(retry.headers.get('idempotent-replayed'), 'true', path);
      }
    });

    test('a retry under the same Idempotency-Key whose target ends in a bare `?` (which fetch leaves out) is the same request', async () => {
      const key = `bare-${randomUUID()}`;
      const body = JSON.stringify({ firstName: 'Ada', lastName: 'Lovelace' });
      const first = await call('/api/students', {
        method: 'POST',
        headers: { ...jsonHeaders, 'idempotency-key': key },
        body,
      });
      assert.equal(first.status, 201);
      const created = await json(first);
      const before = await counts();
      const [head = '', retried = ''] = (
        await exchange(
          new URL(api.url).port,
          `POST /api/students? HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: ${key}\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        )
      ).split('\r\n\r\n');
      assert.match(head, /^HTTP\/1.1 201 /);
      assert.match(head, /\r\nidempotent-replayed: true\r\n/i);
      assert.equal((JSON.parse(retried) as { id: string }).id, created.id);
      assert.deepEqual(await counts(), before, 'nothing written again');
    });

    test('an unknown route is a problem+json 404', async () => {
      const missing = await assertProblem(await call('/api/nothing-here'), 404);
      assert.equal(missing.detail, 'No route GET /api/nothing-here.');
      await assertProblem(await call('/api/nothing-here', { method: 'PATCH' }), 404);
    });

    test('a QUERY without Content-Type is a 400 naming that header (RFC 10008 §2: the server must fail it)', async () => {
      const body = await assertProblem(await call('/api/students', { method: 'QUERY' }), 400, 'Content-Type');
      assert.equal(body.code, 'REQUEST.INVALID', 'our code, not the framework’s');
    });

    test('a method the path does not take is a 405 naming the methods it does, in Allow, and writes nothing', async () => {
      const before = await counts();
      const id = randomUUID();
      for (const [method, path, allow] of [
        ['PATCH', `/api/students/${id}`, 'DELETE, GET, HEAD, OPTIONS, PUT'],
        ['POST', `/api/students/${id}?x=1`, 'DELETE, GET, HEAD, OPTIONS, PUT'],
        ['PUT', '/api/students', 'GET, HEAD, OPTIONS, POST'],
        ['DELETE', '/API/Students/', 'GET, HEAD, OPTIONS, POST'],
        ['DELETE', '/api/student', 'GET, HEAD, OPTIONS, POST'],
        ['POST', '/health', 'GET, HEAD, OPTIONS'],
      ] as const) {
        const response = await call(path, { method, headers: jsonHeaders, body: '{}' });
        const body = await assertProblem(response, 405, 'method');
        assert.equal(response.headers.get('allow'), allow, `${method} ${path}`);
        assert.equal(body.code, 'ROUTE.METHOD_NOT_ALLOWED');
        assert.equal(
          body.type,
          'https://github.com/the-background-experience/problems#route.method_not_allowed',
        );
        assert.match(String(body.detail), new RegExp(`does not take ${method}; it takes ${allow}`));
      }
      assert.deepEqual(await counts(), before);
    });
  });

  test('health: /health details the database, /health/ready and /health/live answer 200', async () => {
    const health = (await json(await call('/health'))) as unknown as HealthBody;
    assert.equal(health.status, 'Healthy');
    assert.equal(checkNamed(health, 'database')?.status, 'Healthy');
    const ready = await call('/health/ready');
    assert.equal(ready.status, 200);
    assert.deepEqual(await json(ready), { status: 'Healthy' }, 'the verdict alone: /health has the detail');
    assert.equal((await call('/health/live')).status, 200);
  });

  test('OpenAPI describes the canonical routes and the docs page is served', async () => {
    const spec = await json(await call('/openapi.json'));
    const paths = Object.keys(spec.paths as object);
    assert.ok(paths.includes('/api/students') && paths.includes('/api/students/{id}'), paths.join(', '));
    assert.ok(!paths.some((path) => path.startsWith('/api/student/')), 'aliases stay out of the docs');
    const operations = spec.paths as Record<string, Record<string, { responses: object }>>;
    for (const [path, method] of [
      ['/api/students', 'post'],
      ['/api/students/{id}', 'put'],
    ])
      for (const status of ['413', '415'])
        assert.ok(status in (operations[path!]?.[method!]?.responses ?? {}), `${method} ${path}: ${status}`);
    const parameters = (operations['/api/students']!.get as unknown as { parameters: { name: string }[] })
      .parameters;
    assert.deepEqual(
      (parameters.find((parameter) => parameter.name === 'limit') as { schema?: object } | undefined)?.schema,
      { type: 'integer', minimum: 1, maximum: 100, default: 20 },
      'limit is documented as the integer it is',
    );
    const docs = await call('/docs/');
    assert.equal(docs.status, 200);
    assert.match(await docs.text(), /swagger/i);
  });

  test('browsers on another origin (the notifications pages) may create, update and delete, and read the ETag', async () => {
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const preflight = await call(`/api/students${method === 'POST' ? '' : `/${randomUUID()}`}`, {
        method: 'OPTIONS',
        headers: {
          origin: 'http://127.0.0.1:5001',
          'access-control-request-method': method,
          'access-control-request-headers': 'content-type, authorization',
        },
      });
      assert.equal(preflight.status, 204);
      // A browser sends the request only if its method is listed.
      const allowed = (preflight.headers.get('access-control-allow-methods') ?? '').split(/\s*,\s*/);
      assert.ok(allowed.includes(method), `${method} in ${allowed.join(', ')}`);
      // CORS_ORIGINS defaults to `*`: any origin, without credentials.
      assert.equal(preflight.headers.get('access-control-allow-origin'), '*');
      assert.equal(preflight.headers.get('access-control-allow-credentials'), null);
    }
    const created = await call('/api/students', {
      method: 'POST',
      headers: { origin: 'http://127.0.0.1:5001' },
    });
    assert.match(created.headers.get('access-control-expose-headers') ?? '', /ETag/i);
  });

  test('an OPTIONS request that is not a CORS preflight is answered with Allow, not a text/plain 400; on a path no route serves, 404', async () => {
    const options = await call('/api/students', { method: 'OPTIONS' });
    assert.equal(options.status, 204);
    assert.equal(options.headers.get('allow'), 'GET, HEAD, OPTIONS, POST', 'the methods the path takes');
    const one = await call(`/api/students/${randomUUID()}`, { method: 'OPTIONS' });
    assert.equal(one.headers.get('allow'), 'DELETE, GET, HEAD, OPTIONS, PUT');
    const nowhere = await call('/api/nothing-here', { method: 'OPTIONS' });
    assert.equal(nowhere.status, 404);
    assert.match(nowhere.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal((await json(nowhere)).code, 'ROUTE.NOT_FOUND');
    // The server as a whole (RFC 9110 §9.3.7): every method some route takes.
    const request = 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const [head = ''] = (await exchange(new URL(api.url).port, request)).split('\r\n\r\n');
    assert.match(head, /^HTTP\/1.1 204 /);
    assert.match(head, /^allow: DELETE, GET, HEAD, OPTIONS, POST, PUT\r?$/im);
  });

  test('a file the docs do not have is a 404, not a 405 for a method the path takes', async () => {
    for (const path of ['/docs/static/nope.css', '/docs/static/..%2fpackage.json']) {
      const missing = await call(path);
      assert.equal(missing.status, 404, path);
      assert.match(missing.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(missing.headers.get('allow'), null);
      assert.equal((await json(missing)).code, 'ROUTE.NOT_FOUND');
    }
    assert.equal((await call('/docs/static/index.css')).status, 200, 'a file it has');
  });

  test("a problem's title is its status's reason phrase, for the statuses a route of ours or a library answers with", async () => {
    const tooLarge = await call('/api/students', {
      method: 'POST',
      headers: jsonHeaders,
      body: JSON.stringify({ pad: 'x'.repeat(70_000) }),
    });
    assert.equal((await assertProblem(tooLarge, 413)).title, 'Content Too Large');
    const notJson = await call('/api/students', {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'Ada',
    });
    assert.equal((await assertProblem(notJson, 415)).title, 'Unsupported Media Type');
    // The docs' static files answer ranges; one past the end of the file is the library's 416.
    const pastTheEnd = await call('/docs/static/index.css', { headers: { range: 'bytes=99999999-' } });
    assert.equal((await assertProblem(pastTheEnd, 416)).title, 'Range Not Satisfiable');
  });

  test("a range past the end of a docs file is a 416 naming the file's length, so the client can ask again", async () => {
    const pastTheEnd = await call('/docs/static/index.css', { headers: { range: 'bytes=99999999-' } });
    await assertProblem(pastTheEnd, 416);
    // RFC 9110 §15.5.17.
    const whole = await (await call('/docs/static/index.css')).arrayBuffer();
    assert.equal(pastTheEnd.headers.get('content-range'), `bytes */${whole.byteLength}`);
  });

  test('a caller-supplied x-request-id is echoed; otherwise one is made', async () => {
    const given = await call('/health/live', { headers: { 'x-request-id': 'trace-me-123' } });
    assert.equal(given.headers.get('x-request-id'), 'trace-me-123');
    const made = await call('/health/live');
    assert.match(made.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    // One that is not safe to log as it is (spaces, quotes, over 128 characters) is replaced, not echoed.
    for (const unsafe of ['a b', 'id"}', 'x'.repeat(129)]) {
      const replaced = await call('/health/live', { headers: { 'x-request-id': unsafe } });
      assert.match(replaced.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/, unsafe);
    }
    const longest = 'x'.repeat(128);
    const kept = await call('/health/live', { headers: { 'x-request-id': longest } });
    assert.equal(kept.headers.get('x-request-id'), longest);
  });
}

describe('Student API on PGlite', () => apiContract('pglite'));
describe('Student API on PostgreSQL', await needsPostgres(), () => apiContract('postgres'));
