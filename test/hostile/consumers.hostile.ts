// The message consumers under hostile messages, on the in-process bus (the RabbitMQ adapter's twin, proven by the
// contract suite) and a real database (PGlite): the worker's student-events consumer and the notifications
// consumer. Every message is built from a valid CloudEvent with one known change, so the expected fate is known: a
// broken one is dead-lettered once, with a reason naming the broken field, and changes nothing; a valid one
// (hostile text and unknown attributes included) is processed. Junk bodies and headers are thrown in as well.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { v7 } from 'uuid';
import { Connection, type Publisher } from 'rabbitmq-client';
import {
  outcome,
  type MessageBus,
  type OutgoingMessage,
  type ReceivedMessage,
} from '../../src/application/ports/message-bus.ts';
import { processStudentEvents } from '../../src/application/students/process-student-event.ts';
import { parseNotification } from '../../src/apps/notifications/notification-schema.ts';
import { consumeNotifications } from '../../src/apps/notifications/notifications.consumer.ts';
import { microBatch } from '../../src/apps/worker/micro-batch.ts';
import { parseStudentEvent } from '../../src/apps/worker/student-event-schema.ts';
import { consumeStudentEvents } from '../../src/apps/worker/student-events.consumer.ts';
import type { MessageOutcome } from '../../src/apps/worker/worker-metrics.ts';
import { SUBJECT_HEADER } from '../../src/contracts/cloud-events.ts';
import {
  DEATH_REASON_HEADER,
  Exchanges,
  MESSAGING_TOPOLOGY,
  Queues,
  TRACEPARENT_HEADER,
  deadLetterNames,
} from '../../src/contracts/messaging.ts';
import type { StudentSnapshot } from '../../src/domain/student.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { RabbitMqMessageBus } from '../../src/infrastructure/messaging/rabbitmq-message-bus.ts';
import { SqlUnitOfWork } from '../../src/infrastructure/persistence/sql-unit-of-work.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { systemClock } from '../../src/infrastructure/system/system-clock.ts';
import { uuidV7Generator } from '../../src/infrastructure/system/uuid-v7-generator.ts';
import { openTestDatabase, type TestDatabase } from '../support/databases.ts';
import { silentLogger } from '../support/logger.ts';
import { createTestVhost, type TestVhost } from '../support/rabbitmq-vhost.ts';
import { notificationMessage } from '../notifications/support.ts';
import { addStudent, studentEvent } from '../worker/worker-harness.ts';
import {
  hostileKey,
  hostileString,
  isWellFormed,
  jsonText,
  jsonTree,
  legalText,
  loneSurrogate,
  malformedJson,
  pollutionPayload,
  setPath,
  shortHostileString,
  toTree,
  toWellFormed,
  treeWithPollution,
  type JsonEntry,
  type JsonTree,
} from './arbitraries.ts';
import { sameState, storedState } from './http-client.ts';
import { assertPlainData, countStoredFromInvalid, property, waitUntil } from './tally.ts';

/** What a field of a CloudEvent holds, restated from the consumers' schemas. */
type Kind =
  | 'specversion'
  | 'eventId'
  | 'text'
  | 'storedText'
  | 'nullableText'
  | 'nullableStoredText'
  | 'eventType'
  | 'notificationType'
  | 'uuid'
  | 'datetime'
  | 'nullableDatetime'
  | 'count'
  | 'positive'
  | 'object';

const STUDENT_DTO: Readonly<Record<string, Kind>> = {
  'data.student.id': 'uuid',
  'data.student.firstName': 'storedText',
  'data.student.lastName': 'storedText',
  'data.student.email': 'storedText',
  'data.student.updates': 'count',
  'data.student.created': 'datetime',
  'data.student.createdBy': 'storedText',
  'data.student.lastModified': 'nullableDatetime',
  'data.student.lastModifiedBy': 'nullableStoredText',
  'data.student.version': 'positive',
};

/**
 * The worker's student event: text it stores (inbox id, notification payload) must be storable by PostgreSQL, and
 * the id short enough for the inbox's index.
 */
const STUDENT_EVENT: Readonly<Record<string, Kind>> = {
  specversion: 'specversion',
  id: 'eventId',
  source: 'text',
  type: 'eventType',
  subject: 'uuid',
  time: 'datetime',
  data: 'object',
  'data.actor': 'storedText',
  'data.student': 'object',
  ...STUDENT_DTO,
};

/**
 * The notifications consumer's CloudEvent: the same envelope as the worker's; the student inside is passed through
 * as sent.
 */
const NOTIFICATION: Readonly<Record<string, Kind>> = {
  specversion: 'specversion',
  id: 'eventId',
  source: 'text',
  type: 'notificationType',
  subject: 'uuid',
  time: 'datetime',
  data: 'object',
  'data.eventType': 'notificationType',
  'data.routingKey': 'text',
  'data.student': 'object',
  'data.student.id': 'uuid',
  'data.timestamp': 'datetime',
  'data.userId': 'nullableText',
};

const OBJECT_TREE = jsonTree.filter((tree) => tree !== null && typeof tree === 'object' && 'entries' in tree);
const NOT_A_STRING = jsonTree.filter((tree) => typeof tree !== 'string');
const withUnstorable = fc
  .tuple(hostileString, fc.oneof(fc.constant('\u0000'), loneSurrogate), fc.nat())
  .map(([text, bad, at]) => text.slice(0, at % (text.length + 1)) + bad + text.slice(at % (text.length + 1)))
  // A surrogate put next to its other half makes a pair, which is fine text.
  .filter((text) => text.includes('\u0000') || !isWellFormed(text));
const notUuid = fc.oneof(
  NOT_A_STRING,
  hostileString,
  fc.constantFrom('', '00000000-0000-0000-0000-00000000000', 'zzzzzzzz-zzzz-7zzz-8zzz-zzzzzzzzzzzz'),
);
const notDatetime = fc.oneof(
  NOT_A_STRING,
  hostileString,
  fc.constantFrom('', 'yesterday', '2026-13-45T99:99:99Z', '2026-01-01', '1e400'),
);
const number = (n: string): JsonTree => ({ number: n });

/** Values a field of `kind` refuses. */
function brokenValue(kind: Kind): fc.Arbitrary<JsonTree> {
  switch (kind) {
    case 'specversion':
      return fc
        .oneof(NOT_A_STRING, hostileString, fc.constantFrom('1', '1.0 ', '0.3', ''))
        .filter((tree) => tree !== '1.0');
    case 'text':
      return fc.oneof(NOT_A_STRING, fc.constant(''));
    case 'nullableText':
      return NOT_A_STRING.filter((tree) => tree !== null);
    case 'eventId':
      return fc.oneof(
        brokenValue('storedText'),
        fc.integer({ min: 257, max: 3_000 }).map((length) => 'i'.repeat(length)),
      );
    case 'storedText':
      return fc.oneof(NOT_A_STRING, withUnstorable);
    case 'nullableStoredText':
      return fc.oneof(brokenValue('nullableText'), withUnstorable);
    case 'eventType':
      return fc.oneof(
        NOT_A_STRING,
        hostileString,
        fc.constantFrom('StudentCached', 'studentcreated', 'student.created'),
      );
    case 'notificationType':
      return fc.oneof(NOT_A_STRING, hostileString, fc.constantFrom('studentcreated', 'student.created', ''));
    case 'uuid':
      return notUuid;
    case 'datetime':
      return notDatetime;
    case 'nullableDatetime':
      return notDatetime.filter((tree) => tree !== null);
    case 'count':
      return fc.oneof(
        fc.constantFrom(number('-1'), number('1.5'), number('1e400'), '3', null, true),
        OBJECT_TREE,
      );
    case 'positive':
      return fc.oneof(
        fc.constantFrom(number('0'), number('-1'), number('2.5'), '1', null, false),
        OBJECT_TREE,
      );
    case 'object':
      return jsonTree.filter((tree) => tree === null || typeof tree !== 'object' || Array.isArray(tree));
  }
}

interface Broken {
  readonly tree: JsonTree;
  /** The field a dead-letter reason must name. */
  readonly path: string;
}

/** A valid event with exactly one field broken (wrong value, or left out), or two fields that disagree. */
function brokenEvent(
  valid: JsonTree,
  kinds: Readonly<Record<string, Kind>>,
  disagreeing: fc.Arbitrary<Broken>,
) {
  const required = Object.keys(kinds);
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc
        .constantFrom(...required)
        .chain((path) =>
          brokenValue(kinds[path]!).map((value) => ({ tree: setPath(valid, path.split('.'), value), path })),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(...required)
        .map((path) => ({ tree: setPath(valid, path.split('.'), undefined), path })),
    },
    { weight: 1, arbitrary: disagreeing },
  );
}

/** Attributes nobody asked for, at any level: ignored (or passed through), never harmful. */
const extensions = fc.array(
  fc.tuple(
    fc.constantFrom<readonly string[]>([], ['data'], ['data', 'student']),
    fc.oneof(
      fc.tuple(hostileKey, jsonTree).map(([key, value]): JsonEntry[] => [[key, value, false]]),
      pollutionPayload.map((payload) => (payload as { entries: JsonEntry[] }).entries),
    ),
  ),
  { maxLength: 3 },
);

/** `tree` with extra entries added at the given levels (keys the schema knows are left alone). */
function extend(
  tree: JsonTree,
  extra: readonly (readonly [readonly string[], JsonEntry[]])[],
  known: readonly string[],
): JsonTree {
  let result = tree;
  for (const [level, entries] of extra)
    for (const [key, value] of entries)
      if (!known.includes([...level, key].join('.'))) result = setPath(result, [...level, key], value);
  return result;
}

/** Junk that is not a CloudEvent at all: random bytes, any JSON, prototype payloads, broken JSON text. */
const junkBody = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
  jsonTree.map(jsonText),
  treeWithPollution.map(jsonText),
  malformedJson(jsonTree.map(jsonText)),
  fc.constantFrom('', '{}', 'null', '[]', '"1.0"'),
);

/** Headers a publisher might set: the ordering header and traceparent right, wrong or absent, and more. */
const headers = fc
  .tuple(
    fc.option(fc.oneof(fc.uuid(), hostileString), { nil: undefined }),
    fc.option(
      fc.oneof(
        fc.constant('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'),
        fc.constantFrom('00-00000000000000000000000000000000-0000000000000000-00', 'ff-x-y-z', ''),
        hostileString,
      ),
      { nil: undefined },
    ),
    fc.array(fc.tuple(hostileKey, hostileString), { maxLength: 2 }),
  )
  .map(([subject, traceparent, extra]) => {
    // Defined rather than assigned, so a `__proto__` name is an own key, as a header from the wire would be.
    const result: Record<string, string> = {};
    for (const [key, value] of extra)
      Object.defineProperty(result, key, { value, enumerable: true, writable: true });
    if (subject !== undefined) result[SUBJECT_HEADER] = subject;
    if (traceparent !== undefined) result[TRACEPARENT_HEADER] = traceparent;
    return result;
  });

function message(
  exchange: string,
  routingKey: string,
  body: string,
  sent: Record<string, string>,
): OutgoingMessage {
  return {
    exchange,
    routingKey,
    messageId: randomUUID(),
    body,
    contentType: 'application/cloudevents+json',
    headers: sent,
  };
}

/** Messages dead-lettered into `queue`'s dead-letter queue, as they arrive. */
async function collectDeadLetters(bus: MessageBus, queue: string): Promise<ReceivedMessage[]> {
  const dead: ReceivedMessage[] = [];
  await bus.consume(deadLetterNames(queue).queue, {
    prefetch: 100,
    handler: (received) => {
      dead.push(received);
      return outcome.ack();
    },
  });
  return dead;
}

function checkDeadLetter(
  dead: ReceivedMessage | undefined,
  body: string,
  path: string | undefined,
  what: string,
): void {
  assert.ok(dead, `${what}: dead-lettered`);
  assert.equal(
    dead.body.toString('latin1'),
    Buffer.from(body).toString('latin1'),
    `${what}: the body as sent`,
  );
  const reason = dead.headers[DEATH_REASON_HEADER] ?? '';
  assert.ok(reason.length > 0, `${what}: with a reason`);
  if (path !== undefined)
    assert.ok(
      reason.includes(`${path}:`),
      `${what}: the reason names ${path}, got ${JSON.stringify(reason)}`,
    );
}

interface WorkerFixture {
  readonly testDb: TestDatabase;
  readonly dead: ReceivedMessage[];
  readonly outcomes: MessageOutcome[];
  readonly existing: StudentSnapshot[];
}

/** The worker's consumer wired as in createWorker, on `bus` and a fresh PGlite database, with three students. */
async function startWorkerConsumer(bus: MessageBus): Promise<WorkerFixture> {
  const testDb = await openTestDatabase('pglite');
  await bus.declareTopology(MESSAGING_TOPOLOGY);
  const dead = await collectDeadLetters(bus, Queues.studentsWorker);
  const existing: StudentSnapshot[] = [];
  for (let i = 0; i < 3; i++) existing.push(await addStudent(testDb.database));
  const outcomes: MessageOutcome[] = [];
  await consumeStudentEvents({
    bus,
    // As the worker composes it with prefetch 1: one event per transaction.
    process: microBatch(
      processStudentEvents({
        unitOfWork: new SqlUnitOfWork(testDb.database, uuidV7Generator),
        ids: uuidV7Generator,
        clock: systemClock,
      }),
      1,
    ),
    prefetch: 1,
    retry: { maxRetryAttempts: 2, baseDelayMs: 5, maxDelayMs: 20 },
    metrics: { record: (label) => outcomes.push(label), delivered: () => {}, partitionsOwned: () => {} },
    logger: silentLogger,
  });
  return { testDb, dead, outcomes, existing };
}

/** Publishes one message and waits until the consumer settled it for good (retries included). */
async function deliverToWorker(fixture: WorkerFixture, publish: () => Promise<void>) {
  const { outcomes, dead, testDb } = fixture;
  const before = {
    outcomes: outcomes.length,
    dead: dead.length,
    state: await storedState(testDb.database.db),
  };
  await publish();
  await waitUntil(
    () => outcomes.length > before.outcomes && outcomes.at(-1) !== 'retried',
    'the message settled',
  );
  const seen = outcomes.slice(before.outcomes);
  // A dead letter is published as the handler's outcome settles: wait for it to arrive.
  if (seen.includes('dead_lettered')) await waitUntil(() => dead.length > before.dead, 'the dead letter');
  return { ...before, seen, after: await storedState(testDb.database.db) };
}

const routingKey = fc.constantFrom(
  'student.created',
  'student.updated',
  'student.deleted',
  'student.cached',
  'student.x',
);

/** A valid event: any type, a student that exists or not, hostile but storable text, unknown attributes. */
function validStudentEvent(existing: readonly StudentSnapshot[]) {
  return fc
    .tuple(
      fc.constantFrom('StudentCreated', 'StudentUpdated', 'StudentDeleted'),
      fc.option(fc.nat(), { nil: undefined }),
      // A few ids recur, so some events are redeliveries: "processed once" is then checked, not just assumed.
      fc.option(fc.oneof(fc.uuid(), legalText(100), fc.constantFrom('redelivered-1', 'redelivered-2')), {
        nil: undefined,
      }),
      fc.record(
        { source: legalText(50), actor: legalText(50), firstName: legalText(100), createdBy: legalText(30) },
        { requiredKeys: [] },
      ),
      fc.boolean(),
      extensions,
    )
    .map(([type, which, id, text, withContentType, extra]) => {
      const student =
        which === undefined
          ? { ...existing[0]!, id: v7() } // nobody has this id
          : existing[which % existing.length]!;
      const base = JSON.parse(studentEvent(type, student, id === undefined ? {} : { id }).body) as {
        id: string;
      };
      let tree = toTree(base);
      if (!withContentType) tree = setPath(tree, ['datacontenttype'], undefined);
      if (text.source !== undefined) tree = setPath(tree, ['source'], text.source);
      if (text.actor !== undefined) tree = setPath(tree, ['data', 'actor'], text.actor);
      if (text.firstName !== undefined)
        tree = setPath(tree, ['data', 'student', 'firstName'], text.firstName);
      if (text.createdBy !== undefined)
        tree = setPath(tree, ['data', 'student', 'createdBy'], text.createdBy);
      return {
        type,
        exists: which !== undefined,
        id: base.id,
        tree: extend(tree, extra, Object.keys(STUDENT_EVENT)),
      };
    });
}

/** A student event with one field broken, left out, or disagreeing with another. */
function brokenStudentEvent(existing: readonly StudentSnapshot[]) {
  const valid = toTree(JSON.parse(studentEvent('StudentUpdated', existing[0]!).body));
  const disagreeing = fc
    .uuid()
    .map((other) => ({ tree: setPath(valid, ['subject'], other), path: 'subject' }));
  return brokenEvent(valid, STUDENT_EVENT, disagreeing);
}

export function describeConsumerHostility(rabbitMq: { readonly skip?: string }): void {
  describe("the worker's student-events consumer under hostile messages", () => {
    const bus = new InProcessMessageBus();
    let fixture: WorkerFixture;
    const seenIds = new Set<string>();

    before(async () => {
      fixture = await startWorkerConsumer(bus);
    });
    after(async () => {
      await bus.close();
      await fixture?.testDb.dispose();
    });

    const deliver = (body: string, key: string, sent: Record<string, string>) =>
      deliverToWorker(fixture, () => bus.publish([message(Exchanges.students, key, body, sent)]));

    test('valid events, hostile text and unknown attributes included, are processed once and stored', async () => {
      await property(
        'worker consumer: valid events',
        fc.tuple(validStudentEvent(fixture.existing), routingKey, headers),
        async ([{ type, exists, id, tree }, key, sent]) => {
          const body = jsonText(tree);
          const what = `${type} ${body.slice(0, 300)}`;
          const parsed = parseStudentEvent(Buffer.from(body));
          assert.ok(parsed.ok, `${what}: parses`);
          assertPlainData(parsed.value, what);
          const duplicate = seenIds.has(id);
          seenIds.add(id);
          const { seen, state, after } = await deliver(body, key, sent);
          const expected = duplicate
            ? 'duplicate'
            : exists || type === 'StudentDeleted'
              ? 'processed'
              : 'student_gone';
          assert.deepEqual(seen, [expected], what);
          const notified = duplicate ? 0 : type === 'StudentDeleted' ? 1 : exists ? 2 : 0;
          assert.equal(after.outbox, state.outbox + notified, `${what}: notifications in the outbox`);
          assert.equal(after.inbox, state.inbox + (duplicate ? 0 : 1), `${what}: the inbox`);
          const processed = !duplicate && exists && type !== 'StudentDeleted';
          assert.equal(after.studentsDigest !== state.studentsDigest, processed, `${what}: updates += 1`);
        },
        50,
      );
    });

    test('events with one field broken, left out, or disagreeing: dead-lettered once, naming the field', async () => {
      await property(
        'worker consumer: broken events',
        fc.tuple(brokenStudentEvent(fixture.existing), routingKey, headers),
        async ([{ tree, path }, key, sent]) => {
          const body = jsonText(tree);
          const what = `broken ${path}: ${body.slice(0, 300)}`;
          const result = await deliver(body, key, sent);
          assert.deepEqual(result.seen, ['dead_lettered'], `${what}: once, no retry`);
          checkDeadLetter(fixture.dead.at(-1), body, path, what);
          countStoredFromInvalid(!sameState(result.state, result.after), what);
        },
        120,
      );
    });

    test('junk bodies and headers: dead-lettered once with a reason, nothing stored', async () => {
      await property(
        'worker consumer: junk',
        fc.tuple(junkBody, routingKey, headers),
        async ([body, key, sent]) => {
          const what = `junk ${JSON.stringify(body.slice(0, 300))}`;
          const parsed = parseStudentEvent(Buffer.from(body));
          if (parsed.ok) assertPlainData(parsed.value, what);
          const result = await deliver(body, key, sent);
          assert.deepEqual(result.seen, ['dead_lettered'], `${what}: once, no retry`);
          checkDeadLetter(fixture.dead.at(-1), body, undefined, what);
          countStoredFromInvalid(!sameState(result.state, result.after), what);
        },
        80,
      );
    });
  });

  describe("the worker's consumer on RabbitMQ under hostile AMQP messages", rabbitMq, () => {
    let vhost: TestVhost;
    let bus: RabbitMqMessageBus;
    let raw: Connection;
    let publisher: Publisher;
    let fixture: WorkerFixture;

    before(async () => {
      vhost = await createTestVhost('hostile_test');
      bus = new RabbitMqMessageBus({ url: vhost.url, connectionName: 'hostile worker' });
      fixture = await startWorkerConsumer(bus);
      // A publisher of our own, to send what the bus adapter never would: headers of every AMQP type.
      raw = new Connection({ url: vhost.url, connectionName: 'hostile publisher' });
      publisher = raw.createPublisher({ confirm: true });
    });
    after(async () => {
      await publisher?.close();
      await raw?.close();
      await bus?.close();
      await fixture?.testDb.dispose();
      await vhost?.delete();
    });

    /**
     * The numbers our own test publisher can send: rabbitmq-client writes a double as a 64-bit integer (through BigInt)
     * from 2^50 up in size, below 2^63, so there it must be an integer in that type's range; NaN takes the same path.
     */
    const writableByRabbitMqClient = (value: number) =>
      value >= 2 ** 63 || Math.abs(value) < 2 ** 50 || (Number.isInteger(value) && value >= -(2 ** 63));

    const amqpValue: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        shortHostileString,
        fc.integer(),
        // Finite only: Erlang floats have no infinity or NaN, and RabbitMQ answers a header holding one by closing
        // the publisher's connection (INTERNAL_ERROR), which is the broker's limit, not the consumer's.
        fc.double({ noDefaultInfinity: true, noNaN: true }).filter(writableByRabbitMqClient),
        fc.boolean(),
        fc.constant(null),
        fc.uint8Array({ maxLength: 8 }).map((bytes) => Buffer.from(bytes)),
        fc.array(tie('value'), { maxLength: 3 }),
        fc.dictionary(fc.string({ maxLength: 8 }), tie('value'), { maxKeys: 3 }),
      ),
    })).value;

    /** AMQP headers of any type, the consumer's own among them, and a `__proto__` table trying to add headers. */
    const amqpHeaders = fc
      .tuple(
        fc.array(
          fc.tuple(
            fc.oneof(
              fc.constantFrom(
                SUBJECT_HEADER,
                TRACEPARENT_HEADER,
                'x-delivery-count',
                'x-death',
                DEATH_REASON_HEADER,
              ),
              shortHostileString.filter((key) => key !== '__proto__' && Buffer.byteLength(key) < 128),
            ),
            amqpValue,
          ),
          { maxLength: 4 },
        ),
        fc.boolean(),
      )
      .map(([pairs, injecting]) => {
        const result: Record<string, unknown> = {};
        for (const [key, value] of pairs) result[key] = value;
        // An own `__proto__` key is encoded as a header named __proto__; decoding assigns it.
        if (injecting)
          Object.defineProperty(result, '__proto__', {
            value: { injected: 'yes' },
            enumerable: true,
            writable: true,
          });
        return result;
      });

    test('junk and broken events with headers of every AMQP type: dead-lettered once, no header smuggled in', async () => {
      const broken = brokenStudentEvent(fixture.existing).map(({ tree, path }) => ({
        body: jsonText(tree),
        path,
      }));
      await property(
        'worker consumer on RabbitMQ: hostile AMQP messages',
        fc.tuple(
          fc.oneof(
            broken,
            junkBody.map((text) => ({ body: text, path: undefined })),
          ),
          routingKey,
          amqpHeaders,
          fc.option(
            shortHostileString.filter((id) => Buffer.byteLength(id) < 255),
            { nil: undefined },
          ),
          // Not application/json or text/plain: rabbitmq-client parses those bodies (when no content-encoding is
          // set) and the adapter can only re-serialize them, so their bytes are not the ones sent.
          fc.option(fc.constantFrom('application/cloudevents+json', 'application/octet-stream', 'x/y', ''), {
            nil: undefined,
          }),
        ),
        async ([{ body: sent, path }, key, amqp, messageId, contentType]) => {
          const what = `AMQP ${JSON.stringify(Object.keys(amqp))} ${sent.slice(0, 200)}`;
          const result = await deliverToWorker(fixture, () =>
            publisher.send(
              {
                exchange: Exchanges.students,
                routingKey: key,
                headers: amqp,
                ...(messageId === undefined ? {} : { messageId }),
                ...(contentType === undefined ? {} : { contentType }),
              },
              Buffer.from(sent),
            ),
          );
          assert.deepEqual(result.seen, ['dead_lettered'], `${what}: once, no retry`);
          const dead = fixture.dead.at(-1);
          checkDeadLetter(dead, sent, path, what);
          // Names as they travel: UTF-8 turns an unpaired surrogate into U+FFFD.
          const sentNames = new Set([
            ...Object.keys(amqp).map(toWellFormed),
            DEATH_REASON_HEADER,
            'x-death-queue',
          ]);
          const smuggled = Object.keys(dead!.headers).filter((name) => !sentNames.has(name));
          assert.deepEqual(smuggled, [], `${what}: headers nobody sent`);
          assertPlainData(dead!.headers, what);
          countStoredFromInvalid(!sameState(result.state, result.after), what);
        },
        30,
      );
    });
  });

  describe('the notifications consumer under hostile messages', () => {
    const bus = new InProcessMessageBus();
    const replayLog = new MemoryRingReplayLog({ maxEntries: 100_000 });
    let dead: ReceivedMessage[];
    let stopConsumer: () => Promise<number>;
    const seenIds = new Set<string>();

    before(async () => {
      await bus.declareTopology(MESSAGING_TOPOLOGY);
      dead = await collectDeadLetters(bus, Queues.notifications);
      const consumer = await consumeNotifications({
        bus,
        log: replayLog,
        instanceId: 'hostile',
        prefetch: 1,
        logger: silentLogger,
      });
      stopConsumer = () => consumer.stop();
    });
    after(async () => {
      await stopConsumer?.();
      await bus.close();
      await replayLog.close();
    });

    /**
     * Publishes the message, then a valid one behind it (prefetch 1: one at a time, in order, a retried message
     * first); once that one is in the log, the first was settled for good. Returns what the first appended.
     */
    const deliver = async (body: string, sent: Record<string, string>) => {
      const { lastId } = await replayLog.retention();
      const deadBefore = dead.length;
      const sentinel = notificationMessage('StudentCached');
      await bus.publish([message(Exchanges.notifications, 'student.created', body, sent), sentinel]);
      let appended: Awaited<ReturnType<MemoryRingReplayLog['readAfter']>> = [];
      await waitUntil(async () => {
        appended = await replayLog.readAfter(lastId, 10);
        return appended.some((entry) => entry.messageId === sentinel.messageId);
      }, 'the message behind it in the log');
      return {
        appended: appended.filter((entry) => entry.messageId !== sentinel.messageId),
        deadLetters: dead.slice(deadBefore),
      };
    };

    const validNotification = fc
      .tuple(
        fc.constantFrom('StudentCreated', 'StudentUpdated', 'StudentCached', 'StudentDeleted'),
        fc.option(
          fc.oneof(
            fc.uuid(),
            legalText(100),
            // A few ids recur, so some notifications are redeliveries: "appended once" is then checked.
            fc.constantFrom('redelivered-1', 'redelivered-2'),
          ),
          { nil: undefined },
        ),
        fc.record(
          {
            routingKey: hostileString.filter((text) => text.length > 0),
            userId: fc.oneof(fc.constant(null), hostileString),
          },
          { requiredKeys: [] },
        ),
        fc.array(fc.tuple(hostileKey, jsonTree), { maxLength: 3 }),
        extensions,
      )
      .map(([type, id, text, studentExtras, extra]) => {
        const base = JSON.parse(notificationMessage(type).body) as { id: string };
        let tree = toTree(id === undefined ? base : { ...base, id });
        if (text.routingKey !== undefined) tree = setPath(tree, ['data', 'routingKey'], text.routingKey);
        if (text.userId !== undefined) tree = setPath(tree, ['data', 'userId'], text.userId);
        // The student is passed through as sent: any extra field, any value.
        for (const [key, value] of studentExtras)
          if (key !== 'id' && key !== '__proto__') tree = setPath(tree, ['data', 'student', key], value);
        return { type, id: id ?? base.id, tree: extend(tree, extra, Object.keys(NOTIFICATION)) };
      });

    test('valid notifications, hostile text and unknown attributes included, are appended to the log once', async () => {
      await property(
        'notifications consumer: valid notifications',
        fc.tuple(validNotification, headers),
        async ([{ type, id, tree }, sent]) => {
          const body = jsonText(tree);
          const what = `${type} ${body.slice(0, 300)}`;
          const duplicate = seenIds.has(id);
          seenIds.add(id);
          const { appended, deadLetters } = await deliver(body, sent);
          assert.deepEqual(deadLetters, [], `${what}: not dead-lettered`);
          assert.equal(
            appended.length,
            duplicate ? 0 : 1,
            `${what}: appended ${duplicate ? 'before' : 'once'}`,
          );
          if (!duplicate) {
            assert.equal(appended[0]?.type, type, what);
            assertPlainData(JSON.parse(appended[0]!.data), what);
          }
        },
        100,
      );
    });

    test('notifications with one field broken, left out, or disagreeing: dead-lettered once, naming the field', async () => {
      const valid = () => toTree(JSON.parse(notificationMessage('StudentUpdated').body));
      const disagreeing = fc.oneof(
        fc.uuid().map((other) => ({ tree: setPath(valid(), ['subject'], other), path: 'subject' })),
        fc.constant({ tree: setPath(valid(), ['type'], 'StudentDeleted'), path: 'type' }),
      );
      await property(
        'notifications consumer: broken notifications',
        fc.tuple(brokenEvent(valid(), NOTIFICATION, disagreeing), headers),
        async ([{ tree, path }, sent]) => {
          const body = jsonText(tree);
          const what = `broken ${path}: ${body.slice(0, 300)}`;
          const { appended, deadLetters } = await deliver(body, sent);
          assert.equal(deadLetters.length, 1, `${what}: dead-lettered once`);
          checkDeadLetter(deadLetters[0], body, path, what);
          countStoredFromInvalid(appended.length > 0, what);
        },
        120,
      );
    });

    test('junk bodies and headers: dead-lettered once with a reason, nothing appended', async () => {
      await property(
        'notifications consumer: junk',
        fc.tuple(junkBody, headers),
        async ([body, sent]) => {
          const what = `junk ${JSON.stringify(body.slice(0, 300))}`;
          const parsed = parseNotification(Buffer.from(body));
          if (parsed.ok) assertPlainData(parsed.value, what);
          const { appended, deadLetters } = await deliver(body, sent);
          assert.equal(deadLetters.length, 1, `${what}: dead-lettered once`);
          checkDeadLetter(deadLetters[0], body, undefined, what);
          countStoredFromInvalid(appended.length > 0, what);
        },
        80,
      );
    });
  });
}
