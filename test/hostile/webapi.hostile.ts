// The webapi under hostile input: every route, over real HTTP (and a raw socket for what HTTP clients refuse to
// send), on PGlite. Each input is judged by an oracle that restates the API's rules independently, so a valid
// request must succeed and be stored exactly, and an invalid one must be a 4xx problem naming the field, with the
// database unchanged.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { repeatedName } from '../../src/infrastructure/http/repeated-json-name.ts';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { startWebApi, type RunningWebApi } from '../support/webapi.ts';
import {
  badUuid,
  headerValue,
  hostileKey,
  hostileString,
  isWellFormed,
  jsonText,
  jsonTree,
  isLegalEmail,
  isLegalName,
  legalEmail,
  legalName,
  malformedJson,
  NASTY_FRAGMENTS,
  pathSegment,
  pollutionPayload,
  shortHostileString,
  toWellFormed,
  treeWithPollution,
  type JsonEntry,
  type JsonTree,
} from './arbitraries.ts';
import {
  asAnswer,
  call,
  checkAlive,
  checkAnswer,
  nearHeaderLimit,
  rawExchange,
  refusedByFetch,
  sameState,
  storedState,
  type Answer,
  type StoredState,
} from './http-client.ts';
import { countStoredFromInvalid, property } from './tally.ts';

const BASES = ['/api/students', '/api/student'] as const;
const FIELDS = ['firstName', 'lastName', 'email'] as const;
type Field = (typeof FIELDS)[number];
const MAX_LENGTH: Record<Field, number> = { firstName: 100, lastName: 100, email: 254 };
const BODY_LIMIT = 64 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/u;
// The text rules restated, not imported: an oracle that calls the code under test agrees with any bug in it.
// Plain: no C0/C1 controls, DEL, line or paragraph separators, bidi embeddings, overrides or isolates.
const CONTROL_OR_BIDI = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
const isPlainText = (text: string) => !CONTROL_OR_BIDI.test(text);
// Visible: something is left once white space, format and default-ignorable characters and U+2800 are taken out.
const INVISIBLE = /[\s\p{Cf}\p{Default_Ignorable_Code_Point}\u2800]/gu;
const isVisibleText = (text: string) => text.replace(INVISIBLE, '').length > 0;

type Verdict =
  | { readonly valid: true; readonly expected: Partial<Record<Field, string>> }
  | { readonly valid: false; readonly fields: ReadonlySet<string> };

const invalid = (...fields: string[]): Verdict => ({ valid: false, fields: new Set(fields) });

/** Own keys only: JSON.parse makes `__proto__` an own key, which is exactly what must be seen. */
/** Whether a path segment's percent-encoding can be decoded (the router refuses the path otherwise). */
function isDecodable(segment: string): boolean {
  try {
    decodeURIComponent(segment);
    return true;
  } catch {
    return false;
  }
}

function hasForbiddenKey(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (Object.hasOwn(value, '__proto__')) return true;
  const constructor = (value as Record<string, unknown>).constructor;
  if (
    Object.hasOwn(value, 'constructor') &&
    constructor !== null &&
    typeof constructor === 'object' &&
    Object.hasOwn(constructor, 'prototype')
  )
    return true;
  return Object.values(value).some(hasForbiddenKey);
}

/** The API's rules for a POST/PUT body, restated: what the server must answer for `body` sent as `contentType`. */
function judgeStudentBody(body: string | undefined, contentType: string | undefined): Verdict {
  const essence = contentType?.split(';')[0]?.trim().toLowerCase();
  if (body === undefined || body.length === 0) {
    if (essence === undefined) return { valid: true, expected: {} };
    return invalid('body');
  }
  if (Buffer.byteLength(body) > BODY_LIMIT) return invalid('body');
  if (essence !== 'application/json') return invalid('body');
  // JSON is read as UTF-8 only (RFC 8259 §8.1): a body declared in another charset is refused.
  const charset = /;\s*charset\s*=\s*"?([^";\s]*)/iu.exec(contentType ?? '')?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') return invalid('body');
  // The server reads the bytes as UTF-8, so a raw lone surrogate arrives as U+FFFD; a leading BOM is ignored.
  const received = Buffer.from(body)
    .toString('utf8')
    .replace(/^\ufeff/u, '');
  let value: unknown;
  try {
    value = JSON.parse(received);
  } catch {
    return invalid('body');
  }
  // Two equal names in one object: JSON.parse keeps the last and drops the first unseen, so the server refuses it.
  if (value !== null && typeof value === 'object' && repeatedName(received) !== undefined)
    return invalid('body');
  if (hasForbiddenKey(value)) return invalid('body');
  if (value === null) return { valid: true, expected: {} };
  if (typeof value !== 'object' || Array.isArray(value)) return invalid('body');
  const record = value as Record<string, unknown>;
  const shapeErrors = Object.keys(record).filter(
    (key) =>
      !(FIELDS as readonly string[]).includes(key) ||
      typeof record[key] !== 'string' ||
      // Characters are code points, as in PostgreSQL's varchar, of the text as stored (trimmed).
      [...(record[key] as string).trim()].length > MAX_LENGTH[key as Field],
  );
  // The problem names an empty key as JSON writes it.
  if (shapeErrors.length > 0) return invalid(...shapeErrors.map((key) => key || '""'));
  const expected: Partial<Record<Field, string>> = {};
  const ruleErrors: Field[] = [];
  for (const field of FIELDS) {
    const raw = record[field];
    if (typeof raw !== 'string') continue;
    const trimmed = raw.trim();
    const storable = isWellFormed(trimmed) && !trimmed.includes('\u0000') && isPlainText(trimmed);
    const ok =
      field === 'email'
        ? isLegalEmail(trimmed) && storable
        : isVisibleText(trimmed) && storable && isLegalName(trimmed);
    if (ok) expected[field] = trimmed;
    else ruleErrors.push(field);
  }
  return ruleErrors.length > 0 ? invalid(...ruleErrors) : { valid: true, expected };
}

/** A value for one student field: legal, hostile text, empty, too long, or not a string at all. */
function fieldValue(field: Field): fc.Arbitrary<JsonTree> {
  const legal = field === 'email' ? legalEmail : legalName(MAX_LENGTH[field]);
  return fc.oneof(
    { weight: 4, arbitrary: legal },
    { weight: 4, arbitrary: hostileString },
    { weight: 1, arbitrary: fc.constantFrom('', '   ', '\t\n', '\u00a0') },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 1, max: 400 }).map((extra) => 'x'.repeat(MAX_LENGTH[field] + extra)),
    },
    { weight: 2, arbitrary: jsonTree.filter((tree) => typeof tree !== 'string') },
  );
}

const rarely = <T>(arbitrary: fc.Arbitrary<T[]>) =>
  fc.oneof({ weight: 4, arbitrary: fc.constant([] as T[]) }, { weight: 1, arbitrary: arbitrary });

/** A body shaped like a student, every field possibly broken, sometimes with unknown or prototype keys. */
const studentBodyTree: fc.Arbitrary<JsonTree> = fc
  .tuple(
    fc.option(fieldValue('firstName'), { nil: undefined }),
    fc.option(fieldValue('lastName'), { nil: undefined }),
    fc.option(fieldValue('email'), { nil: undefined }),
    rarely(fc.array(fc.tuple(hostileKey, jsonTree, fc.boolean()), { minLength: 1, maxLength: 2 })),
    rarely(pollutionPayload.map((payload) => (payload as { entries: JsonEntry[] }).entries)),
  )
  .map(([firstName, lastName, email, extra, pollution]) => ({
    entries: [
      ...(firstName === undefined ? [] : [['firstName', firstName, false] as const]),
      ...(lastName === undefined ? [] : [['lastName', lastName, false] as const]),
      ...(email === undefined ? [] : [['email', email, false] as const]),
      ...extra,
      ...pollution,
    ],
  }));

/** Every field left out, or legal (with whitespace around it, which the API trims). */
const validStudentBody: fc.Arbitrary<Partial<Record<Field, string>>> = fc
  .record(
    {
      firstName: legalName(90),
      lastName: legalName(90),
      email: legalEmail.filter((email) => email.length <= 250 && isLegalEmail(email.trim())),
      padding: fc.constantFrom('', ' ', '\t', '\u00a0', '\u2003', '\n '),
    },
    { requiredKeys: ['padding'] },
  )
  .map(({ padding, ...fields }) =>
    Object.fromEntries(Object.entries(fields).map(([key, value]) => [key, `${padding}${value}${padding}`])),
  );

const JSON_TYPES = ['application/json', 'application/json; charset=utf-8', 'Application/JSON'] as const;

interface Fixture {
  readonly url: string;
  readonly port: number;
  readonly testDb: TestDatabase;
  /** Students that exist, for PUT and DELETE. */
  readonly ids: string[];
}

async function createStudent(url: string, body: unknown = {}): Promise<{ id: string; version: number }> {
  const answer = await call(`${url}/api/students`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(answer.status, 201, answer.text);
  return JSON.parse(answer.text) as { id: string; version: number };
}

/** Checks an answer against the oracle's verdict and the database change it implies. */
async function checkWrite(
  fixture: Fixture,
  what: string,
  method: 'POST' | 'PUT',
  verdict: Verdict,
  answer: Answer,
  before: StoredState,
): Promise<void> {
  const problem = checkAnswer(answer, what);
  const after = await storedState(fixture.testDb.database.db);
  if (!verdict.valid) {
    assert.ok(
      answer.status >= 400,
      `${what}: invalid input must be rejected, got ${answer.status} ${answer.text}`,
    );
    countStoredFromInvalid(!sameState(before, after), what);
    const named = new Set(problem?.errors?.map((error) => error.field));
    assert.deepEqual(named, verdict.fields, `${what}: the problem names the broken fields`);
    return;
  }
  if (method === 'PUT' && answer.headers.get('x-deduplicated') === 'true') {
    assert.equal(answer.status, 200, `${what}: a coalesced PUT replays the first one's 200`);
    return;
  }
  assert.equal(
    answer.status,
    method === 'POST' ? 201 : 200,
    `${what}: valid input is accepted: ${answer.text}`,
  );
  const student = JSON.parse(answer.text) as Record<string, unknown> & { id: string };
  for (const [field, value] of Object.entries(verdict.expected))
    assert.equal(student[field], value, `${what}: ${field} is stored trimmed, otherwise exactly`);
  assert.equal(after.students, before.students + (method === 'POST' ? 1 : 0), `${what}: students`);
  assert.equal(after.outbox, before.outbox + 1, `${what}: one event in the outbox`);
  // What the database holds, not the cache: no-cache reads the row.
  const stored = await call(`${fixture.url}/api/students/${student.id}`, {
    headers: { 'cache-control': 'no-cache' },
  });
  assert.equal(stored.status, 200);
  assert.deepEqual(JSON.parse(stored.text), student, `${what}: the stored student is the one returned`);
}

export function describeWebApiHostility(): void {
  describe('webapi under hostile input', () => {
    let fixture: Fixture;
    let testDb: TestDatabase | undefined;
    let api: RunningWebApi | undefined;

    before(async () => {
      testDb = await openTestDatabase('pglite');
      api = await startWebApi(testDb.database);
      const ids = [];
      for (let i = 0; i < 5; i++) ids.push((await createStudent(api.url)).id);
      fixture = { url: api.url, port: Number(new URL(api.url).port), testDb, ids };
    });
    after(async () => {
      await api?.stop();
      await testDb?.dispose();
    });

    const write = async (
      what: string,
      method: 'POST' | 'PUT',
      base: string,
      target: number,
      body: string | undefined,
      contentType: string | undefined,
      headers: Record<string, string> = {},
    ) => {
      const path = method === 'POST' ? base : `${base}/${fixture.ids[target % fixture.ids.length]}`;
      const before = await storedState(fixture.testDb.database.db);
      const answer = await call(`${fixture.url}${path}`, {
        method,
        headers: { ...(contentType === undefined ? {} : { 'content-type': contentType }), ...headers },
        // Bytes, so fetch adds no content type of its own.
        ...(body === undefined ? {} : { body: Buffer.from(body) }),
      });
      await checkWrite(
        fixture,
        `${what}: ${method} ${path}`,
        method,
        judgeStudentBody(body, contentType),
        answer,
        before,
      );
      await checkAlive(fixture.url, what);
    };

    const method = fc.constantFrom('POST' as const, 'PUT' as const);
    const base = fc.constantFrom(...BASES);
    const jsonType = fc.constantFrom(...JSON_TYPES);

    test('student bodies with fields of every type, hostile text, unknown and prototype keys', async () => {
      await property(
        'webapi: student bodies',
        fc.tuple(method, base, fc.nat(), studentBodyTree, jsonType),
        ([m, b, target, tree, type]) => write('student body', m, b, target, jsonText(tree), type),
        100,
      );
    });

    test('valid students written with hostile but legal text are accepted and stored exactly', async () => {
      await property(
        'webapi: valid students',
        fc.tuple(method, base, fc.nat(), validStudentBody, jsonType),
        async ([m, b, target, body, type]) => {
          assert.ok(judgeStudentBody(JSON.stringify(body), type).valid, 'the generator makes valid students');
          await write('valid student', m, b, target, JSON.stringify(body), type);
        },
        50,
      );
    });

    test('any JSON, prototype keys at any depth, and malformed JSON text: a 4xx problem, nothing stored', async () => {
      const text = fc.oneof(
        jsonTree.map(jsonText),
        treeWithPollution.map(jsonText),
        malformedJson(studentBodyTree.map(jsonText)),
      );
      await property(
        'webapi: arbitrary and malformed JSON',
        fc.tuple(method, base, fc.nat(), text, jsonType),
        ([m, b, target, body, type]) => write('JSON text', m, b, target, body, type),
        100,
      );
    });

    test('bodies under content types that do not fit, or none', async () => {
      const contentType = fc.option(
        fc.oneof(
          fc.constantFrom(
            'text/plain',
            'application/x-www-form-urlencoded',
            'multipart/form-data; boundary=x',
            'application/xml',
            'application/jsonx',
            'application/problem+json',
            'application/json; charset=utf-16',
            '*/*',
            'application/*',
          ),
          headerValue,
        ),
        { nil: undefined },
      );
      const body = fc.option(fc.oneof(studentBodyTree.map(jsonText), hostileString), { nil: undefined });
      await property(
        'webapi: content types',
        fc.tuple(method, base, fc.nat(), body, contentType),
        async ([m, b, target, text, type]) => {
          const path = m === 'POST' ? b : `${b}/${fixture.ids[target % fixture.ids.length]}`;
          const before = await storedState(fixture.testDb.database.db);
          const answer = await call(`${fixture.url}${path}`, {
            method: m,
            headers: type === undefined ? {} : { 'content-type': type },
            ...(text === undefined ? {} : { body: Buffer.from(text) }),
          });
          const what = `${m} ${path} as ${JSON.stringify(type)}`;
          const verdict = judgeStudentBody(text, type);
          // Content types the oracle does not model (charset parameters, odd spellings) only have to be consistent.
          if (verdict.valid || (type !== undefined && !/^[\w/+.-]+(;.*)?$/u.test(type))) {
            checkAnswer(answer, what);
            const after = await storedState(fixture.testDb.database.db);
            if (answer.status >= 400) countStoredFromInvalid(!sameState(before, after), what);
          } else {
            await checkWrite(fixture, what, m, verdict, answer, before);
          }
          await checkAlive(fixture.url, what);
        },
        60,
      );
    });

    test('ids that are not UUIDs, or UUIDs of nobody, on every :id route', async () => {
      const id = fc.oneof(
        {
          weight: 3,
          arbitrary: fc
            .tuple(badUuid, fc.boolean())
            .map(([text, raw]) => ({ text, segment: pathSegment(text, raw) })),
        },
        { weight: 1, arbitrary: fc.uuid().map((text) => ({ text, segment: text })) },
      );
      await property(
        'webapi: ids',
        fc.tuple(fc.constantFrom('GET', 'PUT', 'DELETE'), base, id, fc.constantFrom(undefined, '{}')),
        async ([m, b, { text, segment }, body]) => {
          const path = `${b}/${segment}`;
          const what = `${m} ${path}`;
          const before = await storedState(fixture.testDb.database.db);
          const answer = await call(`${fixture.url}${path}`, {
            method: m,
            ...(m === 'PUT' && body ? { headers: { 'content-type': 'application/json' }, body } : {}),
          });
          const problem = checkAnswer(answer, what);
          // A client's URL parser resolves a dot segment (`.` or `..`, a dot also as `%2e`) before it sends: what
          // arrives is the collection, or a path above it, and no id at all.
          if (/^(?:\.|%2e){1,2}$/iu.test(segment)) {
            countStoredFromInvalid(!sameState(before, await storedState(fixture.testDb.database.db)), what);
            return checkAlive(fixture.url, what);
          }
          assert.ok(answer.status >= 400, `${what}: nobody has this id, got ${answer.status}`);
          countStoredFromInvalid(!sameState(before, await storedState(fixture.testDb.database.db)), what);
          if (UUID.test(text.toLowerCase()) && segment === text)
            assert.equal(problem?.code, 'STUDENT.NOT_FOUND');
          else if (answer.status === 400 && problem?.code === 'REQUEST.INVALID')
            assert.deepEqual(
              problem.errors?.map((error) => error.field),
              // A segment the router cannot decode (`%E0%A4%A`) is the path's fault before it is the id's.
              [isDecodable(segment) ? 'id' : 'path'],
              `${what}: names the id, or the path the router could not decode`,
            );
          await checkAlive(fixture.url, what);
        },
        80,
      );
    });

    test('list: hostile limit, cursor and unknown query parameters', async () => {
      const value = fc.oneof(
        hostileString,
        fc.integer({ min: -1000, max: 1000 }).map(String),
        fc.constantFrom('', ' 5 ', '0x10', '1e1', '1.5', 'Infinity', '100', '101', '1'),
        fc.uuid().map((uuid) => Buffer.from(uuid).toString('base64url')),
        // Other spellings of a cursor, which the decoder alone would read as the same one.
        fc
          .tuple(fc.uuid(), fc.constantFrom('=', '==', '!!!!', 'A', '.', ' '))
          .map(([uuid, junk]) => `${Buffer.from(uuid).toString('base64url')}${junk}`),
        fc.uuid().map((uuid) => Buffer.from(uuid).toString('base64')),
        hostileString.map((text) => Buffer.from(text).toString('base64url')),
      );
      const param = fc.tuple(
        fc.oneof(
          { weight: 3, arbitrary: fc.constantFrom('limit', 'cursor') },
          { weight: 1, arbitrary: hostileKey },
        ),
        value,
      );
      await property(
        'webapi: list query strings',
        fc.tuple(base, fc.array(param, { maxLength: 4 })),
        async ([b, params]) => {
          const query = new URLSearchParams(
            params.map(([key, text]): [string, string] => [toWellFormed(key), toWellFormed(text)]),
          );
          const path = `${b}?${query}`;
          const answer = await call(`${fixture.url}${path}`);
          const problem = checkAnswer(answer, `GET ${path}`);
          const expectedFields = listQueryErrors([...query.entries()]);
          if (answer.status === 431) {
            // Node's limit on the request line and headers (16 KiB) comes before any query rule.
            assert.ok(nearHeaderLimit(path), `GET ${path}: 431 only for a request line near 16 KiB`);
          } else if (expectedFields.size === 0) {
            assert.equal(answer.status, 200, `GET ${path}: a valid query, got ${answer.text}`);
            const page = JSON.parse(answer.text) as { items: unknown[]; nextCursor: string | null };
            assert.ok(Array.isArray(page.items));
          } else {
            assert.equal(answer.status, 400, `GET ${path}`);
            assert.deepEqual(
              new Set(problem?.errors?.map((error) => error.field)),
              expectedFields,
              `GET ${path}`,
            );
          }
          await checkAlive(fixture.url, path);
        },
        80,
      );
    });

    test('hostile If-Match, Idempotency-Key, Cache-Control, x-request-id and other headers', async () => {
      const headerName = fc.constantFrom(
        'if-match',
        'idempotency-key',
        'cache-control',
        'x-request-id',
        'accept',
        'origin',
        'authorization',
        'if-none-match',
        'accept-encoding',
      );
      const headers = fc
        .array(
          fc.tuple(
            headerName,
            fc.oneof(headerValue, fc.constantFrom('*', '"1"', 'W/"1"', '"1", "2"', 'no-cache')),
          ),
          {
            minLength: 1,
            maxLength: 4,
          },
        )
        .map((pairs) => Object.fromEntries(pairs));
      await property(
        'webapi: headers',
        fc.tuple(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'), base, headers, fc.boolean()),
        async ([m, b, sent, validBody]) => {
          // A student of its own per input: a DELETE may remove it.
          const student = await createStudent(fixture.url);
          const path = m === 'POST' ? b : `${b}/${student.id}`;
          const body = validBody ? '{"firstName":"Grace"}' : '{"firstName":42}';
          const before = await storedState(fixture.testDb.database.db);
          const answer = await call(`${fixture.url}${path}`, {
            method: m,
            headers: {
              ...sent,
              ...(m === 'POST' || m === 'PUT' ? { 'content-type': 'application/json' } : {}),
            },
            ...(m === 'POST' || m === 'PUT' ? { body } : {}),
          });
          const what = `${m} ${path} with ${JSON.stringify(sent)}`;
          const problem = checkAnswer(answer, what);
          const after = await storedState(fixture.testDb.database.db);
          if (answer.status >= 400) countStoredFromInvalid(!sameState(before, after), what);
          await checkAlive(fixture.url, what);
          // Node refused the headers as too large before any route (or request id) saw them.
          if (answer.status === 431)
            return assert.ok(nearHeaderLimit(path, sent), `${what}: 431 near 16 KiB`);
          const requestId = sent['x-request-id'];
          const echoed = answer.headers.get('x-request-id') ?? '';
          if (requestId !== undefined && /^[\w.:-]{1,128}$/u.test(requestId))
            assert.equal(echoed, requestId, what);
          else assert.match(echoed, /^[\w-]{36}$/u, `${what}: an unsafe x-request-id is replaced`);
          if (
            (m === 'PUT' || m === 'DELETE') &&
            sent['if-match'] !== undefined &&
            problem?.code === 'REQUEST.INVALID'
          )
            assert.ok(
              problem.errors?.some((error) =>
                ['If-Match', 'If-None-Match', 'Idempotency-Key', 'firstName'].includes(error.field),
              ),
              what,
            );
          const key = sent['idempotency-key'];
          if (m !== 'GET' && key !== undefined && (key.length === 0 || key.length > 257))
            assert.deepEqual(
              problem?.errors?.map((error) => error.field),
              ['Idempotency-Key'],
              what,
            );
          if (!validBody && (m === 'POST' || m === 'PUT'))
            assert.ok(answer.status >= 400, `${what}: firstName 42`);
        },
        60,
      );
    });

    test('raw malformed HTTP: a 4xx problem or a closed connection, never a stored row or a dead server', async () => {
      await property(
        'webapi: raw HTTP',
        rawRequest,
        async (request) => {
          const before = await storedState(fixture.testDb.database.db);
          const { responses, closed } = await rawExchange(fixture.port, request);
          const what = `raw ${JSON.stringify(request.toString('latin1').slice(0, 200))}`;
          assert.ok(closed || responses.length > 0, `${what}: the server neither answered nor closed`);
          for (const response of responses) checkAnswer(asAnswer(response), what);
          countStoredFromInvalid(!sameState(before, await storedState(fixture.testDb.database.db)), what);
          await checkAlive(fixture.url, what);
        },
        60,
      );
    });

    test('health, OpenAPI and docs with hostile query strings and headers; unknown routes and methods', async () => {
      const path = fc.oneof(
        fc.constantFrom(
          '/health',
          '/health/ready',
          '/health/live',
          '/openapi.json',
          '/docs',
          '/docs/',
          '/docs/json',
        ),
        fc
          .array(fc.tuple(badUuid, fc.boolean()), { minLength: 1, maxLength: 3 })
          .map((parts) => `/${parts.map(([text, raw]) => pathSegment(text, raw)).join('/')}`),
        fc
          .tuple(fc.constantFrom(...BASES), badUuid, fc.boolean())
          .map(([b, text, raw]) => `${b}/x/${pathSegment(text, raw)}`),
      );
      const query = fc.array(fc.tuple(hostileKey, shortHostileString), { maxLength: 3 });
      await property(
        'webapi: other routes',
        fc.tuple(
          fc.constantFrom('GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'DELETE', 'TRACE'),
          path,
          query,
          fc.dictionary(fc.constantFrom('accept', 'origin', 'x-request-id', 'cache-control'), headerValue),
        ),
        async ([m, p, q, headers]) => {
          const search = new URLSearchParams(
            q.map(([key, value]): [string, string] => [toWellFormed(key), toWellFormed(value)]),
          );
          const url = `${fixture.url}${p}${q.length > 0 ? `?${search}` : ''}`;
          const before = await storedState(fixture.testDb.database.db);
          let answer: Answer;
          try {
            answer = await call(url, { method: m, headers });
          } catch (error) {
            // fetch refuses some methods (TRACE) and URLs itself; nothing reached the server.
            if (refusedByFetch(error)) return;
            throw error;
          }
          if (m !== 'HEAD') checkAnswer(answer, `${m} ${url}`);
          else assert.ok(answer.status < 500, `${m} ${url}`);
          countStoredFromInvalid(
            !sameState(before, await storedState(fixture.testDb.database.db)),
            `${m} ${url}`,
          );
          await checkAlive(fixture.url, url);
        },
        50,
      );
    });
  });
}

/** The list route's rules, restated: which query fields are wrong (empty set = a valid query). */
function listQueryErrors(entries: readonly [string, string][]): Set<string> {
  const fields = new Set<string>();
  const counts = new Map<string, number>();
  for (const [key] of entries) counts.set(key, (counts.get(key) ?? 0) + 1);
  for (const [key, value] of entries) {
    if (key !== 'limit' && key !== 'cursor') fields.add(key || '""');
    else if (counts.get(key)! > 1) fields.add(key);
    else if (key === 'limit') {
      // Decimal digits only: `0x10`, `1e1` and ` 5 ` are numbers to Number(), not limits.
      if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 100) fields.add(key);
    } else {
      // A cursor as the API writes it: the id in base64url, unpadded, nothing around it.
      const id = Buffer.from(value, 'base64url').toString();
      if (!UUID.test(id) || Buffer.from(id).toString('base64url') !== value) fields.add(key);
    }
  }
  return fields;
}

const CRLF = '\r\n';
/** A body no rule accepts, so any framing of it that reaches the API must be rejected. */
const INVALID_BODY = '{"firstName":42,"__proto__":{"polluted":"yes"}}';

/**
 * Requests HTTP clients will not send: broken request lines, forbidden bytes, framing that disagrees with itself.
 * Always JSON (an empty JSON body is rejected too by the routes that take a body), so no framing of any of them is
 * a valid write.
 */
const rawRequest: fc.Arbitrary<Buffer> = fc
  .tuple(
    fc.oneof(
      fc.constantFrom(
        'POST /api/students HTTP/1.1',
        'PUT /api/student/00000000-0000-4000-8000-000000000000 HTTP/1.1',
      ),
      fc.constantFrom(
        'POST /api/students HTTP/9.9',
        'POST /api/students HTTP/1.1 extra',
        'POST  /api/students HTTP/1.1',
        'P\u0000ST /api/students HTTP/1.1',
        'POST /api/students%zz HTTP/1.1',
        'POST /api/students/%E0%A4%A HTTP/1.1',
        'GET /api/students?limit=%ff%fe HTTP/1.1',
        'GET /docs/static/..%2f..%2fpackage.json HTTP/1.1',
        'GET /api/students/\u00ff\u00fe HTTP/1.1',
        'POST http://evil.example/api/students HTTP/1.1',
        'POST * HTTP/1.1',
        'CONNECT 127.0.0.1:5432 HTTP/1.1',
        `GET /${'a'.repeat(20_000)} HTTP/1.1`,
        'POST /api/students',
        '',
      ),
    ),
    fc.array(
      fc.oneof(
        fc.constantFrom(
          'Content-Type: application/json',
          'Content-Type: application/json',
          'Content-Length: 0',
          'Content-Length: -1',
          'Content-Length: abc',
          'Content-Length: 1, 2',
          'Content-Length: 99999999999999999999',
          `Content-Length: ${Buffer.byteLength(INVALID_BODY)}`,
          `Content-Length: ${Buffer.byteLength(INVALID_BODY) + 10}`,
          'Content-Length: 3',
          'Transfer-Encoding: chunked',
          'Transfer-Encoding: gzip, chunked',
          'Transfer-Encoding: identity',
          'Transfer-Encoding : chunked',
          'If-Match: "1"',
          'If-Match: \u00ff\u0000',
          'Idempotency-Key: \u0001\u0002',
          'Idempotency-Key: a',
          'Idempotency-Key: b',
          'X-Request-Id: \u0000evil\u0000',
          'Last-Event-ID: 1-0',
          'Cache-Control: no-cache',
          'Host: evil.example',
          'Bad Header: x',
          ' folded: continuation',
          'Expect: 100-continue',
          'Expect: 200-ok',
          'Content-Encoding: gzip',
          'Content-Encoding: identity',
          'Connection: close',
          `X-Big: ${'b'.repeat(20_000)}`,
        ),
        fc
          .tuple(fc.string({ unit: 'grapheme-ascii', maxLength: 10 }), headerValue)
          .map(([name, value]) => `${name}: ${value}`),
        fc.constantFrom(...NASTY_FRAGMENTS).map((fragment) => `X-Nasty: ${fragment}`),
      ),
      { maxLength: 6 },
    ),
    fc.oneof(
      fc.constant(INVALID_BODY),
      fc.constant(`5${CRLF}{"fir${CRLF}0${CRLF}${CRLF}`),
      fc.constant(`zz${CRLF}${INVALID_BODY}${CRLF}0${CRLF}${CRLF}`),
      fc.constant(INVALID_BODY.slice(0, 10)),
      fc.constant(`${INVALID_BODY}GET /health HTTP/1.1${CRLF}${CRLF}`),
      fc.constant(''),
    ),
    fc.constantFrom(CRLF, '\n', '\r'),
    fc.constantFrom(['Host: 127.0.0.1'], []),
  )
  .map(([requestLine, headers, body, newline, host]) =>
    Buffer.from(
      [requestLine, ...host, 'Content-Type: application/json', ...headers, '', body].join(newline),
      'latin1',
    ),
  );
