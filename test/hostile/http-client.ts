// HTTP as the hostile-input suite speaks it: fetch for what a client library can send, a raw socket for what
// it cannot (broken framing, bytes HTTP forbids), and the checks every answer must pass.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { sql } from 'drizzle-orm';
import type { Db } from '../../src/infrastructure/persistence/database.ts';
import { countCrash, countServerError } from './tally.ts';

export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
}

export async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/**
 * Whether fetch refused to send the request (a method it forbids, a header name or value it will not write): nothing
 * reached the server. Those refusals are TypeErrors without a cause; `fetch failed`, with one, is a connection the
 * server dropped or reset, which is the server's doing. Not every refusal of fetch's has no cause (a URL it cannot
 * parse, a header undici keeps for itself such as `expect`): the properties here send neither.
 */
export function refusedByFetch(error: unknown): boolean {
  return error instanceof TypeError && error.cause === undefined;
}

export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly code: string;
  readonly detail?: string;
  readonly errors?: readonly { readonly field: string; readonly reason: string }[];
}

/** The title each problem type was first seen with: a type has one title, whichever check answered (RFC 9457 §3.1.3). */
const titles = new Map<string, string>();

/** Statuses whose problem must name the field at fault and the reason (the others say what happened in `detail`). */
const FIELD_STATUSES = new Set([400, 405, 413, 415, 417, 431]);

/**
 * Every answer: no 5xx; a 4xx is RFC 9457 problem+json, naming the field and the reason when the request was
 * malformed. Returns the problem for a 4xx (undefined for anything else).
 */
export function checkAnswer(answer: Answer, what: string): Problem | undefined {
  countServerError(answer.status, what);
  if (answer.status < 400) return undefined;
  assert.match(
    answer.headers.get('content-type') ?? '',
    /^application\/problem\+json/u,
    `${what}: a ${answer.status} must be problem+json, got ${answer.text.slice(0, 200)}`,
  );
  const problem = JSON.parse(answer.text) as Problem;
  assert.equal(problem.status, answer.status, `${what}: the problem's status`);
  assert.ok(problem.type && problem.title && problem.code, `${what}: type, title and code`);
  if (!titles.has(problem.type)) titles.set(problem.type, problem.title);
  assert.equal(problem.title, titles.get(problem.type), `${what}: the title of ${problem.type}`);
  if (FIELD_STATUSES.has(answer.status) || problem.code === 'STUDENT.INVALID') {
    assert.ok(
      problem.errors &&
        problem.errors.length > 0 &&
        problem.errors.every((error) => error.field.length > 0 && error.reason.length > 0),
      `${what}: a ${answer.status} names each field and reason, got ${answer.text.slice(0, 300)}`,
    );
  } else {
    assert.ok(problem.detail, `${what}: a ${answer.status} says what happened`);
  }
  return problem;
}

/** Whether a request is near Node's 16 KiB limit on the request line and headers, past which it answers 431. */
export function nearHeaderLimit(url: string, headers: Readonly<Record<string, string>> = {}): boolean {
  const headerBytes = Object.entries(headers).reduce(
    (sum, [name, value]) => sum + Buffer.byteLength(name) + Buffer.byteLength(value) + 4,
    0,
  );
  return Buffer.byteLength(url) + headerBytes > 14_000;
}

/** The server still answers: its liveness endpoint. */
export async function checkAlive(baseUrl: string, what: string): Promise<void> {
  const alive = await fetch(`${baseUrl}/health/live`, { signal: AbortSignal.timeout(5_000) }).then(
    async (response) => {
      await response.body?.cancel();
      return response.status === 200;
    },
    () => false,
  );
  countCrash(alive, what);
}

export interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * Writes `request` on a fresh socket, half-closes it and reads until the server closes (at most `timeoutMs`).
 * Returns every response the server wrote, in order.
 */
export function rawExchange(
  port: number,
  request: Buffer | string,
  timeoutMs = 5_000,
): Promise<{ responses: RawResponse[]; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ responses: parseRawResponses(Buffer.concat(chunks)), closed });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.on('connect', () => socket.end(request));
  });
}

/** Splits HTTP/1.1 responses off a byte stream (Content-Length or chunked bodies). */
export function parseRawResponses(data: Buffer): RawResponse[] {
  const responses: RawResponse[] = [];
  let offset = 0;
  while (offset < data.length) {
    const headEnd = data.indexOf('\r\n\r\n', offset);
    if (headEnd === -1) break;
    const [statusLine = '', ...lines] = data.subarray(offset, headEnd).toString('latin1').split('\r\n');
    const match = /^HTTP\/1\.[01] (\d{3})/u.exec(statusLine);
    if (!match) throw new Error(`not an HTTP response: ${JSON.stringify(statusLine)}`);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    let bodyStart = headEnd + 4;
    let body: Buffer;
    if (headers['transfer-encoding'] === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const sizeEnd = data.indexOf('\r\n', bodyStart);
        if (sizeEnd === -1) break;
        const size = parseInt(data.subarray(bodyStart, sizeEnd).toString('latin1'), 16);
        bodyStart = sizeEnd + 2 + size + 2;
        if (!(size > 0)) break;
        parts.push(data.subarray(sizeEnd + 2, sizeEnd + 2 + size));
      }
      body = Buffer.concat(parts);
    } else {
      const length = Number(headers['content-length'] ?? 0);
      body = data.subarray(bodyStart, bodyStart + length);
      bodyStart += length;
    }
    responses.push({ status: Number(match[1]), headers, body: body.toString('utf8') });
    offset = bodyStart;
  }
  return responses;
}

/** A raw response as an Answer, for checkAnswer(). */
export function asAnswer(response: RawResponse): Answer {
  return { status: response.status, headers: new Headers(response.headers), text: response.body };
}

export interface StoredState {
  readonly students: number;
  /** A sum of row hashes: any change to any student row changes it (but for a one-in-2^32 collision). */
  readonly studentsDigest: string;
  readonly outbox: number;
  readonly inbox: number;
}

/** What the database holds, cheaply comparable before and after an input. */
export async function storedState(db: Db): Promise<StoredState> {
  const result = (await db.execute(sql`
    select (select count(*)::int from students) as students,
           (select coalesce(sum(hashtext(s::text)::bigint), 0)::text from students s) as digest,
           (select count(*)::int from outbox) as outbox,
           (select count(*)::int from inbox) as inbox`)) as unknown as {
    rows: { students: number; digest: string; outbox: number; inbox: number }[];
  };
  const [row] = result.rows;
  assert.ok(row);
  return { students: row.students, studentsDigest: row.digest, outbox: row.outbox, inbox: row.inbox };
}

export function sameState(a: StoredState, b: StoredState): boolean {
  return (
    a.students === b.students &&
    a.studentsDigest === b.studentsDigest &&
    a.outbox === b.outbox &&
    a.inbox === b.inbox
  );
}
