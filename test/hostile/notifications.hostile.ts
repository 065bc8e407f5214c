// The notifications service under hostile HTTP: the SSE stream (and its alias) with every kind of Last-Event-ID,
// lastEventId and types, the hub's negotiate and its HTTP transports (long polling, Server-Sent Events) fed broken
// handshakes and records, and the pages. Nothing a client sends over HTTP may change the replay log.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { NotificationEventTypes } from '../../src/contracts/students.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { silentLogger } from '../support/logger.ts';
import { hubClient, notificationMessage, sseClient } from '../notifications/support.ts';
import { until } from '../support/until.ts';
import {
  badUuid,
  headerValue,
  hostileKey,
  pathSegment,
  shortHostileString,
  toWellFormed,
} from './arbitraries.ts';
import {
  call,
  checkAlive,
  checkAnswer,
  nearHeaderLimit,
  refusedByFetch,
  type Answer,
} from './http-client.ts';
import { handshakeFrame, handshakeVerdict, msgpackHubFrame, RS } from './hub-frames.ts';
import { countServerError, countStoredFromInvalid, property } from './tally.ts';

const STREAMS = ['/api/notifications/stream', '/api/notifications/students/stream'] as const;
const HUB = '/hubs/notifications';
const LOG_ID = /^(\d{1,16})-(\d{1,16})$/u;
const NOTIFICATION_TYPES: ReadonlySet<string> = new Set(Object.values(NotificationEventTypes));

type Query = readonly (readonly [string, string])[];

/**
 * The stream's rules, restated: the stream (a well-formed Last-Event-ID, header else query, resumes or gets
 * `reset`), or a 400 naming the field at fault (types first, as the server checks them first).
 */
function sseVerdict(header: string | undefined, query: Query): 'stream' | 'types' | 'Last-Event-ID' {
  const types = query
    .filter(([key]) => key === 'types')
    .flatMap(([, value]) => value.split(','))
    .map((type) => type.trim())
    .filter(Boolean);
  if (types.some((type) => !NOTIFICATION_TYPES.has(type))) return 'types';
  const fromQuery = query.filter(([key]) => key === 'lastEventId').map(([, value]) => value);
  // An empty header is no id: the query's counts then.
  const given = header === '' ? undefined : header;
  if (given === undefined && fromQuery.length > 1) return 'Last-Event-ID';
  const id = given ?? fromQuery[0];
  if (id === undefined || id === '') return 'stream';
  return LOG_ID.test(id) ? 'stream' : 'Last-Event-ID';
}

/** Opens an SSE response and reads its first event; anything but a 200 event stream comes back as an answer. */
async function firstEvent(url: string, headers: Record<string, string>) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 5_000);
  try {
    const response = await fetch(url, { headers, signal: controller.signal });
    if (response.status !== 200 || !response.headers.get('content-type')?.startsWith('text/event-stream'))
      return { answer: { status: response.status, headers: response.headers, text: await response.text() } };
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('\n\n')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    const block = text.slice(0, text.indexOf('\n\n'));
    const field = (name: string) =>
      block
        .split('\n')
        .find((line) => line.startsWith(`${name}: `))
        ?.slice(name.length + 2);
    return { event: { name: field('event'), data: field('data') } };
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}

/** The hub's own answers follow ASP.NET: plain text, not problem+json, which the SignalR clients read as is. */
function checkHubAnswer(answer: Answer, what: string): void {
  countServerError(answer.status, what);
  if (answer.status < 400) return;
  if (answer.headers.get('content-type')?.startsWith('application/problem+json')) checkAnswer(answer, what);
  else assert.ok(answer.text.length > 0, `${what}: a ${answer.status} says why`);
}

export function describeNotificationsHostility(): void {
  describe('notifications service under hostile input', () => {
    const bus = new InProcessMessageBus();
    const replayLog = new MemoryRingReplayLog({ maxEntries: 100 });
    const config = parseConfig({ NOTIFICATIONS_PORT: '0', LOG_LEVEL: 'silent' });
    let notifications: Notifications;
    let url: string;
    /** Ids in the log, for Last-Event-IDs that exist. */
    let ids: string[] = [];

    const logState = async () => {
      const { length, lastId } = await replayLog.retention();
      return `${length} ${lastId}`;
    };

    before(async () => {
      notifications = await createNotifications({ config, logger: silentLogger, bus, replayLog });
      url = await notifications.start();
      await bus.publish(Array.from({ length: 5 }, () => notificationMessage('StudentCreated')));
      await until(async () => (await replayLog.retention()).length === 5, 'five notifications in the log');
      ids = (await replayLog.readAfter('0-0', 10)).map((entry) => entry.id);
    });
    after(async () => {
      await notifications?.stop();
      await bus.close();
      await replayLog.close();
    });

    test('SSE: hostile Last-Event-ID, lastEventId, types and other query parameters and headers', async () => {
      const logId = fc.oneof(
        fc.nat().map((index) => ids[index % ids.length]!),
        fc.constantFrom(
          '',
          '0-0',
          '1-0',
          '-1-0',
          '1-',
          '1--1',
          '01-0',
          '1-0 ',
          '99999999999999999-0',
          '1e3-0',
        ),
        fc
          .tuple(fc.stringMatching(/^\d{1,18}$/u), fc.stringMatching(/^\d{1,18}$/u))
          .map(([ms, seq]) => `${ms}-${seq}`),
        shortHostileString,
      );
      const param = fc.oneof(
        fc.tuple(fc.constant('lastEventId'), logId),
        fc.tuple(
          fc.constant('types'),
          fc.oneof(
            fc.constantFrom('StudentCreated', 'StudentCreated,StudentDeleted', ',', ' , ', 'Nope'),
            shortHostileString,
          ),
        ),
        fc.tuple(hostileKey, shortHostileString),
      );
      await property(
        'notifications: SSE',
        fc.tuple(
          fc.constantFrom(...STREAMS),
          fc.array(param, { maxLength: 4 }),
          fc.option(
            logId.map((id) => id.replace(/[^\t\x20-\x7e\x80-\xff]/gu, '').trim()),
            { nil: undefined },
          ),
          fc.dictionary(fc.constantFrom('origin', 'accept', 'cache-control', 'x-request-id'), headerValue),
        ),
        async ([path, params, header, headers]) => {
          const query: Query = params.map(([key, value]) => [toWellFormed(key), toWellFormed(value)]);
          const search = new URLSearchParams(query as [string, string][]);
          const target = `${url}${path}${query.length > 0 ? `?${search}` : ''}`;
          const what = `GET ${target} Last-Event-ID ${JSON.stringify(header)}`;
          const before = await logState();
          const expected = sseVerdict(header, query);
          const sent = { ...headers, ...(header === undefined ? {} : { 'last-event-id': header }) };
          const result = await firstEvent(target, sent);
          if (result.answer?.status === 431) {
            checkAnswer(result.answer, what);
            assert.ok(nearHeaderLimit(target, sent), `${what}: 431 only near 16 KiB of headers`);
          } else if (expected === 'stream') {
            assert.equal(result.event?.name, 'connected', `${what}: the stream opens with connected`);
            assert.match(result.event?.data ?? '', /^\{"clientId":"[\w-]{36}","timestamp":"[^"]+"\}$/u);
          } else {
            assert.ok(result.answer, `${what}: expected a 400, got the stream`);
            const problem = checkAnswer(result.answer, what);
            assert.equal(result.answer.status, 400, what);
            assert.deepEqual(
              problem?.errors?.map((error) => error.field),
              [expected],
              what,
            );
          }
          countStoredFromInvalid((await logState()) !== before, what);
          await checkAlive(url, what);
        },
        100,
      );
    });

    test("the hub's negotiate and connection endpoints with hostile methods, query strings and bodies", async () => {
      const queryValue = fc.oneof(
        shortHostileString,
        fc.constantFrom('0', '1', '2', '-1', '1.0', '99999999999999999999', 'true', 'false', ''),
      );
      const query = fc.array(
        fc.tuple(
          fc.oneof(
            fc.constantFrom('negotiateVersion', 'useStatefulReconnect', 'id', 'access_token'),
            hostileKey,
          ),
          queryValue,
        ),
        { maxLength: 4 },
      );
      await property(
        'notifications: hub HTTP endpoints',
        fc.tuple(
          fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS'),
          fc.constantFrom(`${HUB}/negotiate`, HUB, `${HUB}/`, `${HUB}/negotiate/x`),
          query,
          fc.option(shortHostileString, { nil: undefined }),
          fc.dictionary(
            fc.constantFrom('accept', 'authorization', 'content-type', 'x-requested-with'),
            headerValue,
          ),
        ),
        async ([method, path, params, body, headers]) => {
          const search = new URLSearchParams(
            params.map(([key, value]): [string, string] => [toWellFormed(key), toWellFormed(value)]),
          );
          const target = `${url}${path}?${search}`;
          const what = `${method} ${target}`;
          const before = await logState();
          const answer = await call(target, {
            method,
            headers,
            ...(body === undefined || method === 'GET' ? {} : { body }),
          });
          checkHubAnswer(answer, what);
          if (method === 'POST' && path === `${HUB}/negotiate` && answer.status === 200) {
            const version = search.get('negotiateVersion');
            const negotiated = JSON.parse(answer.text) as { connectionId?: string; error?: string };
            if (version === null || /^\d+$/u.test(version)) assert.ok(negotiated.connectionId, what);
            else assert.match(negotiated.error ?? '', /invalid protocol version/u, what);
          }
          countStoredFromInvalid((await logState()) !== before, what);
          await checkAlive(url, what);
        },
        100,
      );
    });

    /** negotiate, then the connection token of a new connection. */
    const negotiate = async () => {
      const answer = await call(`${url}${HUB}/negotiate?negotiateVersion=1`, { method: 'POST' });
      assert.equal(answer.status, 200);
      return (JSON.parse(answer.text) as { connectionToken: string }).connectionToken;
    };

    /** A payload for an HTTP transport: a JSON handshake and records, or a MessagePack handshake and frames. */
    const transportPayload = fc.oneof(
      handshakeFrame.map(({ text }) => Buffer.from(text)),
      msgpackHubFrame.map(({ bytes }) =>
        Buffer.concat([Buffer.from(`{"protocol":"messagepack","version":1}${RS}`), bytes]),
      ),
    );

    test('long polling: broken handshakes, records and frames posted to a real connection', async () => {
      await property(
        'notifications: hub long polling',
        transportPayload,
        async (bytes) => {
          const verdict = handshakeVerdict(bytes, true);
          const before = await logState();
          const token = encodeURIComponent(await negotiate());
          const connection = `${url}${HUB}?id=${token}`;
          const first = await call(connection);
          assert.equal(first.status, 200, 'the first poll is answered at once');
          const posted = await call(connection, { method: 'POST', body: bytes });
          const what = `long polling ${JSON.stringify(bytes.toString('latin1').slice(0, 300))}`;
          checkHubAnswer(posted, what);
          // Once the handshake is terminated the server has answered it: the next poll returns at once.
          const poll = await pollWithin(connection, verdict === 'incomplete' ? 200 : 5_000);
          if (verdict === 'incomplete') assert.equal(poll, undefined, `${what}: nothing to answer yet`);
          else {
            assert.ok(poll, `${what}: the poll after a complete handshake got no answer`);
            checkHubAnswer(poll, what);
            assert.ok(
              poll.text.startsWith(verdict === 'accepted' ? `{}${RS}` : '{"error":'),
              `${what}: handshake ${verdict}, got ${JSON.stringify(poll.text.slice(0, 100))}`,
            );
          }
          const stop = await call(connection, { method: 'DELETE' });
          checkHubAnswer(stop, what);
          countStoredFromInvalid((await logState()) !== before, what);
          await checkAlive(url, what);
        },
        60,
      );
    });

    test('Server-Sent Events transport: broken handshakes and records posted to a real connection', async () => {
      await property(
        'notifications: hub SSE transport',
        handshakeFrame,
        async ({ text }) => {
          const verdict = handshakeVerdict(Buffer.from(text), false);
          const before = await logState();
          const token = encodeURIComponent(await negotiate());
          const connection = `${url}${HUB}?id=${token}`;
          const controller = new AbortController();
          const stream = await fetch(connection, {
            headers: { accept: 'text/event-stream' },
            signal: controller.signal,
          });
          const what = `SSE transport ${JSON.stringify(text.slice(0, 300))}`;
          try {
            assert.equal(stream.status, 200, what);
            const reader = stream.body!.getReader();
            const posted = await call(connection, { method: 'POST', body: text });
            checkHubAnswer(posted, what);
            // A terminated handshake is answered (accepted or refused) on the stream, at once.
            const data = await readDataWithin(reader, verdict === 'incomplete' ? 200 : 5_000);
            if (verdict === 'incomplete') assert.equal(data, undefined, `${what}: nothing to answer yet`);
            else
              assert.ok(
                data?.startsWith(verdict === 'accepted' ? `{}${RS}` : '{"error":'),
                `${what}: handshake ${verdict}, got ${JSON.stringify(data)}`,
              );
          } finally {
            controller.abort();
          }
          countStoredFromInvalid((await logState()) !== before, what);
          await checkAlive(url, what);
        },
        50,
      );
    });

    test('pages, health and unknown paths with hostile methods, query strings and headers', async () => {
      const pages = [
        '/',
        '/sse-test.html',
        '/signalr-test.html',
        '/app.css',
        '/test-page.js',
        '/config.js',
        '/lib/signalr.min.js',
      ];
      const path = fc.oneof(
        fc.constantFrom(
          ...pages,
          '/health',
          '/health/ready',
          '/health/live',
          '/public/index.html',
          '/lib/',
          '/.env',
        ),
        fc
          .array(fc.tuple(badUuid, fc.boolean()), { minLength: 1, maxLength: 3 })
          .map((parts) => `/${parts.map(([text, raw]) => pathSegment(text, raw)).join('/')}`),
      );
      await property(
        'notifications: pages and other paths',
        fc.tuple(
          fc.constantFrom('GET', 'GET', 'HEAD', 'POST', 'DELETE', 'OPTIONS'),
          path,
          fc.array(fc.tuple(hostileKey, shortHostileString), { maxLength: 3 }),
          fc.dictionary(
            fc.constantFrom('accept', 'origin', 'x-request-id', 'if-none-match', 'range'),
            headerValue,
          ),
        ),
        async ([method, p, q, headers]) => {
          const search = new URLSearchParams(
            q.map(([key, value]): [string, string] => [toWellFormed(key), toWellFormed(value)]),
          );
          const target = `${url}${p}${q.length > 0 ? `?${search}` : ''}`;
          const what = `${method} ${target}`;
          const before = await logState();
          let answer: Answer;
          try {
            answer = await call(target, { method, headers });
          } catch (error) {
            // fetch refuses some URLs and header combinations itself; nothing reached the server.
            if (refusedByFetch(error)) return;
            throw error;
          }
          if (method === 'HEAD') assert.ok(answer.status < 500, what);
          else checkAnswer(answer, what);
          if (
            method === 'GET' &&
            (pages as readonly string[]).includes(p) &&
            !nearHeaderLimit(target, headers)
          )
            assert.equal(answer.status, 200, what);
          countStoredFromInvalid((await logState()) !== before, what);
          await checkAlive(url, what);
        },
        60,
      );
    });

    test('afterwards, an SSE client and a SignalR client get a new notification as usual', async () => {
      const sse = sseClient(url);
      const hub = await hubClient(url);
      try {
        await until(() => sse.control.length > 0, 'the SSE client connected');
        await bus.publish([notificationMessage('StudentUpdated')]);
        await until(() => sse.received.length === 1 && hub.received.length === 1, 'the notification on both');
      } finally {
        sse.close();
        await hub.close();
      }
    });
  });
}

/** The next long poll, or undefined when the server holds it past `ms` (it is waiting for more input). */
async function pollWithin(connection: string, ms: number): Promise<Answer | undefined> {
  try {
    const response = await fetch(connection, { signal: AbortSignal.timeout(ms) });
    return { status: response.status, headers: response.headers, text: await response.text() };
  } catch (error) {
    if ((error as Error).name === 'TimeoutError') return undefined;
    throw error;
  }
}

/** The first `data:` the hub sends on an SSE transport, or undefined when none comes within `ms`. */
async function readDataWithin(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  ms: number,
): Promise<string | undefined> {
  const decoder = new TextDecoder();
  let text = '';
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const chunk = await Promise.race([
      reader.read(),
      new Promise<undefined>((resolve) =>
        setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now())),
      ),
    ]);
    if (!chunk || chunk.done) break;
    text += decoder.decode(chunk.value, { stream: true });
    const data = /^data: (.*)$/mu.exec(text);
    if (data) return data[1];
  }
  return undefined;
}
