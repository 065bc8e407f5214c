// The student routes' real answers, checked against what /openapi.json declares for them, as a generated client
// would read it: the status is listed, the media type is the declared one, the body validates against the declared
// schema (JSON Schema 2020-12, formats included), and every header a client acts on is declared with its type.
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { json, startWebApi, type RunningWebApi } from '../support/webapi.ts';

interface DeclaredHeader {
  readonly schema?: { readonly type?: string };
}
interface DeclaredResponse {
  readonly content?: Record<string, { readonly schema: object }>;
  readonly headers?: Record<string, DeclaredHeader>;
}
interface Operation {
  readonly operationId?: string;
  readonly responses: Record<string, DeclaredResponse>;
}
interface Document {
  readonly paths: Record<string, Record<string, Operation>>;
  readonly components?: object;
}

/** The response headers a client acts on: each must be declared on the response that carries it. */
const CLIENT_HEADERS = [
  'etag',
  'location',
  'retry-after',
  'x-deduplicated',
  'idempotent-replayed',
  'accept-encoding',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
  'www-authenticate',
];

describe('every answer of the student routes is one /openapi.json declares', () => {
  let testDb: TestDatabase;
  let api: RunningWebApi;
  let document: Document;
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);

  before(async () => {
    testDb = await openTestDatabase('pglite');
    api = await startWebApi(testDb.database, {});
    document = (await json(await fetch(`${api.url}/openapi.json`))) as unknown as Document;
  });
  after(async () => {
    await api?.stop();
    await testDb?.dispose();
  });

  /**
   * Asserts that `response` to `method path` (the document's path template) has `status` and is declared; returns
   * its JSON body.
   */
  async function conforms(
    status: number,
    method: string,
    path: string,
    response: Response,
  ): Promise<unknown> {
    const where = `${method.toUpperCase()} ${path} ${response.status}`;
    assert.equal(response.status, status, `${method.toUpperCase()} ${path}`);
    const operation = document.paths[path]?.[method];
    assert.ok(operation, `${method.toUpperCase()} ${path} is in the document`);
    const declared = operation.responses[String(response.status)];
    assert.ok(declared, `${where}: the status is declared`);
    for (const header of CLIENT_HEADERS) {
      const value = response.headers.get(header);
      if (value === null) continue;
      const entry = Object.entries(declared.headers ?? {}).find(([name]) => name.toLowerCase() === header);
      assert.ok(entry, `${where}: ${header} is declared`);
      if (entry[1].schema?.type === 'integer') assert.match(value, /^\d+$/, `${where}: ${header}`);
    }
    const text = await response.text();
    if (!declared.content) {
      assert.equal(text, '', `${where}: no body is declared`);
      return undefined;
    }
    const mediaType = response.headers.get('content-type')?.split(';')[0]?.trim() ?? '';
    const media = declared.content[mediaType];
    assert.ok(media, `${where}: ${mediaType} is one of ${Object.keys(declared.content).join(', ')}`);
    const body: unknown = JSON.parse(text);
    const validate = ajv.compile({ ...media.schema, components: document.components });
    assert.ok(validate(body), `${where}: ${ajv.errorsText(validate.errors)} in ${text}`);
    return body;
  }

  const send = (path: string, init: RequestInit & { headers?: Record<string, string> } = {}) =>
    fetch(`${api.url}${path}`, {
      ...init,
      headers: {
        ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...init.headers,
      },
    });
  const COLLECTION = '/api/students';
  const ONE = '/api/students/{id}';

  test('every operation has an operationId of its own, for the method names of generated clients', () => {
    const ids = Object.values(document.paths).flatMap((methods) =>
      Object.values(methods).map((operation) => operation.operationId),
    );
    assert.deepEqual(ids.sort(), [
      'createStudent',
      'deleteStudent',
      'getStudent',
      'listStudents',
      'replaceStudent',
    ]);
  });

  test('creates, reads, conditional reads, replaces and deletes, and their refusals', async () => {
    const created = (await conforms(
      201,
      'post',
      COLLECTION,
      await send(COLLECTION, { method: 'POST', body: '{"firstName":"Grace"}' }),
    )) as { id: string; version: number };
    const path = `${COLLECTION}/${created.id}`;

    const read = await send(path);
    const etag = read.headers.get('etag')!;
    await conforms(200, 'get', ONE, read);
    await conforms(200, 'get', ONE, await send(path));
    await conforms(304, 'get', ONE, await send(path, { headers: { 'if-none-match': etag } }));
    await conforms(412, 'get', ONE, await send(path, { headers: { 'if-match': '"999"' } }));
    await conforms(404, 'get', ONE, await send(`${COLLECTION}/0190a3c4-1b2c-7d3e-8f40-123456789abc`));
    await conforms(400, 'get', ONE, await send(`${COLLECTION}/not-an-id`));
    await conforms(414, 'get', ONE, await send(`${COLLECTION}/${'a'.repeat(120)}`));
    await conforms(200, 'get', COLLECTION, await send(`${COLLECTION}?limit=2`));
    await conforms(400, 'get', COLLECTION, await send(`${COLLECTION}?limit=lots`));
    await conforms(304, 'get', COLLECTION, await send(COLLECTION, { headers: { 'if-none-match': '*' } }));

    const grace = JSON.stringify({ firstName: 'Grace', lastName: 'Hopper', email: 'grace@example.com' });
    const stale = await send(path, { method: 'PUT', body: grace, headers: { 'if-match': '"999"' } });
    const conflict = (await conforms(412, 'put', ONE, stale)) as { currentVersion: number };
    assert.equal(conflict.currentVersion, created.version, 'the 412 says which version the student is at');
    await conforms(200, 'put', ONE, await send(path, { method: 'PUT', body: grace }));
    await conforms(200, 'put', ONE, await send(path, { method: 'PUT', body: grace }));
    await conforms(400, 'put', ONE, await send(path, { method: 'PUT', body: '{"firstName":7}' }));
    await conforms(422, 'put', ONE, await send(path, { method: 'PUT', body: '{"firstName":""}' }));
    await conforms(
      414,
      'put',
      ONE,
      await send(`${COLLECTION}/${'a'.repeat(120)}`, { method: 'PUT', body: grace }),
    );
    await conforms(
      412,
      'delete',
      ONE,
      await send(path, { method: 'DELETE', headers: { 'if-match': '"999"' } }),
    );
    await conforms(204, 'delete', ONE, await send(path, { method: 'DELETE' }));
    await conforms(404, 'delete', ONE, await send(path, { method: 'DELETE' }));
  });

  test('keyed creates and the refusals of a body', async () => {
    const keyed = { 'idempotency-key': `contract-${process.pid}-${Date.now()}` };
    const body = '{"lastName":"Lovelace"}';
    await conforms(201, 'post', COLLECTION, await send(COLLECTION, { method: 'POST', body, headers: keyed }));
    await conforms(201, 'post', COLLECTION, await send(COLLECTION, { method: 'POST', body, headers: keyed }));
    await conforms(
      422,
      'post',
      COLLECTION,
      await send(COLLECTION, { method: 'POST', body: '{"lastName":"Byron"}', headers: keyed }),
    );
    await conforms(
      412,
      'post',
      COLLECTION,
      await send(COLLECTION, { method: 'POST', body, headers: { 'if-none-match': '*' } }),
    );
    await conforms(
      415,
      'post',
      COLLECTION,
      await send(COLLECTION, { method: 'POST', body, headers: { 'content-type': 'text/plain' } }),
    );
    const compressed = await send(COLLECTION, {
      method: 'POST',
      body: gzipSync(body),
      headers: { 'content-encoding': 'gzip' },
    });
    assert.equal(compressed.headers.get('accept-encoding'), 'identity', 'the compressed body is why');
    await conforms(415, 'post', COLLECTION, compressed);
    await conforms(
      413,
      'post',
      COLLECTION,
      await send(COLLECTION, { method: 'POST', body: JSON.stringify({ firstName: 'x'.repeat(70_000) }) }),
    );
  });

  test('the write limit', async () => {
    const limited = await startWebApi(testDb.database, { RATE_LIMIT_WRITES_PER_MINUTE: '1' });
    try {
      const post = () => fetch(`${limited.url}${COLLECTION}`, { method: 'POST' });
      await conforms(201, 'post', COLLECTION, await post());
      await conforms(429, 'post', COLLECTION, await post());
    } finally {
      await limited.stop();
    }
  });
});
