// /openapi.json as a client generator reads it: valid OpenAPI 3.1, and every status, header and media type the
// student routes really answer with, in the configurations that change them (auth, write limit, idempotency TTL).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { authEnv } from '../support/auth.ts';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { json, startWebApi } from '../support/webapi.ts';

interface Parameter {
  readonly in: string;
  readonly name: string;
  readonly description?: string;
}
interface Response {
  readonly description?: string;
  readonly content?: Record<string, unknown>;
  readonly headers?: Record<string, unknown>;
}
interface Operation {
  readonly summary?: string;
  readonly parameters?: Parameter[];
  readonly requestBody?: { readonly required?: boolean };
  readonly responses: Record<string, Response>;
}
type Document = Record<string, unknown> & { paths: Record<string, Record<string, Operation>> };

type Route = readonly [path: string, method: string];

const LIST: Route = ['/api/students', 'get'];
const GET: Route = ['/api/students/{id}', 'get'];
const POST: Route = ['/api/students', 'post'];
const PUT: Route = ['/api/students/{id}', 'put'];
const DELETE: Route = ['/api/students/{id}', 'delete'];
const WRITES = [POST, PUT, DELETE];
const OPERATIONS = [LIST, GET, ...WRITES];

/** What the write limit sets on every write it counts. */
const RATE_LIMIT_HEADERS = ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'];

const name = ([path, method]: Route) => `${method.toUpperCase()} ${path}`;

function operation(document: Document, [path, method]: Route): Operation {
  const found = document.paths[path]?.[method];
  assert.ok(found, `the document has ${method.toUpperCase()} ${path}`);
  return found;
}

/** Header names are case-insensitive: the document's `etag` and `ETag` are one header. */
function headerNames(record: Record<string, unknown> | undefined): string[] {
  return Object.keys(record ?? {}).map((header) => header.toLowerCase());
}

function headerParameter(operation: Operation, header: string): Parameter | undefined {
  return operation.parameters?.find(
    (parameter) => parameter.in === 'header' && parameter.name.toLowerCase() === header,
  );
}

async function documentOf(env: Record<string, string>, database: TestDatabase): Promise<Document> {
  const api = await startWebApi(database.database, env);
  try {
    return (await json(await fetch(`${api.url}/openapi.json`))) as Document;
  } finally {
    await api.stop();
  }
}

describe('the OpenAPI document', () => {
  let testDb: TestDatabase;
  let document: Document;

  before(async () => {
    testDb = await openTestDatabase('pglite');
    document = await documentOf({}, testDb);
  });
  after(async () => {
    await testDb?.dispose();
  });

  test('is valid OpenAPI 3.1', async () => {
    const validator = new Validator();
    const result = await validator.validate(document);
    assert.deepEqual(result, { valid: true });
    assert.equal(validator.version, '3.1');
  });

  test('summaries are plain text (Swagger UI shows Markdown in them as typed); descriptions may use Markdown', () => {
    for (const [path, methods] of Object.entries(document.paths))
      for (const [method, found] of Object.entries(methods))
        assert.doesNotMatch(found.summary ?? '', /[`*_[\]]/, `${method.toUpperCase()} ${path}`);
  });

  test('declares only the schemas an operation uses: no StudentInput, named like a body but shaped like a student', () => {
    const declared = Object.keys((document.components as { schemas?: object } | undefined)?.schemas ?? {});
    assert.deepEqual(declared.sort(), [
      'ProblemDetails',
      'Student',
      'StudentPage',
      'UnavailableProblem',
      'VersionConflictProblem',
    ]);
    const text = JSON.stringify(document);
    for (const name of declared)
      assert.ok(text.includes(`"#/components/schemas/${name}"`), `${name} is used`);
  });

  test('lists exactly the statuses each operation answers with (write limit on, auth off)', () => {
    const expected = new Map<Route, string[]>([
      [LIST, ['200', '304', '400', '412', '503']],
      [GET, ['200', '304', '400', '404', '412', '414', '503']],
      [POST, ['201', '400', '409', '412', '413', '415', '422', '429', '503']],
      [PUT, ['200', '400', '404', '409', '412', '413', '414', '415', '422', '429', '503']],
      // DELETE reads a body it is sent (413, 415) and ignores it; its 422 is a reused Idempotency-Key.
      [DELETE, ['204', '400', '404', '409', '412', '413', '414', '415', '422', '429', '503']],
    ]);
    for (const [route, statuses] of expected)
      assert.deepEqual(Object.keys(operation(document, route).responses).sort(), statuses, name(route));
  });

  test('POST and PUT say their body may be left out: the routes take none (fields left out are generated or kept)', async () => {
    for (const route of [POST, PUT])
      assert.equal(operation(document, route).requestBody?.required, false, name(route));
    const api = await startWebApi(testDb.database, {});
    try {
      assert.equal((await fetch(`${api.url}/api/students`, { method: 'POST' })).status, 201);
    } finally {
      await api.stop();
    }
  });

  test("the body's examples make a student: what Swagger UI's Try it out sends is a 201", async () => {
    type BodySchema = { anyOf?: BodySchema[]; properties?: Record<string, { examples?: unknown[] }> };
    const { content } = operation(document, POST).requestBody as {
      content: Record<string, { schema: BodySchema }>;
    };
    const schema = content['application/json']!.schema;
    const properties = (schema.anyOf ?? [schema]).find((branch) => branch.properties)?.properties ?? {};
    const example = Object.fromEntries(
      Object.entries(properties).map(([field, property]) => [field, property.examples?.[0]]),
    );
    assert.deepEqual(Object.keys(example).sort(), ['email', 'firstName', 'lastName']);
    assert.ok(
      Object.values(example).every((value) => typeof value === 'string'),
      JSON.stringify(example),
    );
    const api = await startWebApi(testDb.database, {});
    try {
      const response = await fetch(`${api.url}/api/students`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(example),
      });
      assert.equal(response.status, 201, await response.clone().text());
      assert.equal(((await response.json()) as { email: string }).email, example.email);
    } finally {
      await api.stop();
    }
  });

  test('every 4xx and 5xx is application/problem+json (RFC 9457), never application/json', () => {
    for (const route of OPERATIONS)
      for (const [status, response] of Object.entries(operation(document, route).responses)) {
        if (Number(status) < 400) continue;
        assert.deepEqual(
          Object.keys(response.content ?? {}),
          ['application/problem+json'],
          `${name(route)} ${status}`,
        );
      }
  });

  test('writes take Idempotency-Key and say how long a response is kept; GET takes If-Match, If-None-Match, Cache-Control', () => {
    for (const route of WRITES) {
      const key = headerParameter(operation(document, route), 'idempotency-key');
      assert.ok(key, `${name(route)} declares Idempotency-Key`);
      assert.match(key.description ?? '', /24 h/, `${name(route)}: the expiry policy`);
    }
    for (const header of ['if-match', 'if-none-match', 'cache-control'])
      assert.ok(headerParameter(operation(document, GET), header), `GET declares ${header}`);
    assert.equal(headerParameter(operation(document, LIST), 'idempotency-key'), undefined);
  });

  test('responses list the headers they carry: ETag, Location, replay markers, Retry-After', () => {
    const expected: [Route, string, string[]][] = [
      [GET, '200', ['etag', 'x-deduplicated']],
      [GET, '304', ['etag', 'x-deduplicated']],
      [GET, '412', ['etag']],
      [POST, '201', ['etag', 'location', 'x-deduplicated', 'idempotent-replayed']],
      [PUT, '200', ['etag', 'x-deduplicated', 'idempotent-replayed']],
      [PUT, '412', ['etag', 'idempotent-replayed']],
      [DELETE, '204', ['x-deduplicated', 'idempotent-replayed']],
      [DELETE, '412', ['etag']],
    ];
    for (const route of WRITES)
      expected.push([route, '409', ['retry-after']], [route, '429', ['retry-after', ...RATE_LIMIT_HEADERS]]);
    for (const route of OPERATIONS) expected.push([route, '503', ['retry-after']]);
    for (const [route, status, headers] of expected) {
      const listed = headerNames(operation(document, route).responses[status]?.headers);
      for (const header of headers) assert.ok(listed.includes(header), `${name(route)} ${status}: ${header}`);
    }
  });

  test('every response of a write lists the X-RateLimit headers the limit sets on it; no read response does', () => {
    for (const route of OPERATIONS)
      for (const [status, response] of Object.entries(operation(document, route).responses)) {
        const listed = headerNames(response.headers);
        for (const header of RATE_LIMIT_HEADERS)
          assert.equal(
            listed.includes(header),
            WRITES.includes(route),
            `${name(route)} ${status}: ${header}`,
          );
      }
  });

  test('with auth on, 401 and 403 do not list the X-RateLimit headers: the token check answers before a write is counted', async () => {
    const secured = await documentOf(authEnv, testDb);
    for (const route of WRITES) {
      const { responses } = operation(secured, route);
      for (const [status, response] of Object.entries(responses)) {
        const counted = !['401', '403'].includes(status);
        for (const header of RATE_LIMIT_HEADERS)
          assert.equal(
            headerNames(response.headers).includes(header),
            counted,
            `${name(route)} ${status}: ${header}`,
          );
      }
    }
    const api = await startWebApi(testDb.database, authEnv);
    try {
      const refused = await fetch(`${api.url}/api/students`, { method: 'POST' });
      assert.equal(refused.status, 401);
      for (const header of RATE_LIMIT_HEADERS) assert.equal(refused.headers.get(header), null, header);
    } finally {
      await api.stop();
    }
  });

  test('the singular alias routes stay out of the document', () => {
    assert.deepEqual(Object.keys(document.paths).sort(), ['/api/students', '/api/students/{id}']);
  });

  test('with auth on, every operation lists 401 and 403 with WWW-Authenticate, and its 400 takes the challenge too; with the limit off, no 429', async () => {
    const secured = await documentOf({ ...authEnv, RATE_LIMIT_WRITES_PER_MINUTE: '0' }, testDb);
    assert.deepEqual(secured.security, [{ bearer: [] }]);
    for (const route of OPERATIONS) {
      const { responses } = operation(secured, route);
      for (const status of ['401', '403']) {
        assert.deepEqual(Object.keys(responses[status]?.content ?? {}), ['application/problem+json']);
        assert.ok(
          headerNames(responses[status]?.headers).includes('www-authenticate'),
          `${name(route)} ${status}`,
        );
      }
      // A malformed Authorization header is the operation's 400, with the challenge.
      assert.ok(headerNames(responses['400']?.headers).includes('www-authenticate'), `${name(route)} 400`);
      assert.match(responses['400']?.description ?? '', /Authorization/, `${name(route)} 400`);
      assert.equal(responses['429'], undefined, `${name(route)} cannot be rate limited`);
      for (const [status, response] of Object.entries(responses))
        for (const header of RATE_LIMIT_HEADERS)
          assert.ok(
            !headerNames(response.headers).includes(header),
            `${name(route)} ${status}: no ${header}`,
          );
    }
    for (const route of OPERATIONS) {
      const { responses } = operation(document, route);
      for (const status of ['401', '403'])
        assert.equal(responses[status], undefined, `auth off: ${name(route)} ${status}`);
      assert.ok(
        !headerNames(responses['400']?.headers).includes('www-authenticate'),
        `auth off: ${name(route)} 400`,
      );
    }
  });

  test('the expiry policy it states is the configured IDEMPOTENCY_TTL_SECONDS', async () => {
    const hourly = await documentOf({ IDEMPOTENCY_TTL_SECONDS: '3600' }, testDb);
    for (const route of WRITES)
      assert.match(
        headerParameter(operation(hourly, route), 'idempotency-key')?.description ?? '',
        /kept for 1 h/,
      );
  });
});
