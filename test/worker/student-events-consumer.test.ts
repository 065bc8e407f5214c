// The consumer's failure handling, with a scripted use case on the in-process bus.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { SpanKind, SpanStatusCode, trace, type SpanContext } from '@opentelemetry/api';
import { Registry } from 'prom-client';
import { DependencyUnavailableError } from '../../src/application/errors.ts';
import { outcome, type ReceivedMessage, type Subscription } from '../../src/application/ports/message-bus.ts';
import type {
  ProcessStudentEventCommand,
  ProcessStudentEventResult,
} from '../../src/application/students/process-student-event.ts';
import {
  conflictAttempts,
  consumeStudentEvents,
  type AfterProcessed,
} from '../../src/apps/worker/student-events.consumer.ts';
import { createWorkerMetrics } from '../../src/apps/worker/worker-metrics.ts';
import {
  DEATH_REASON_HEADER,
  DEFAULT_MAX_DELIVERIES,
  MESSAGING_TOPOLOGY,
  Queues,
  deadLetterNames,
} from '../../src/contracts/messaging.ts';
import { Student, type StudentSnapshot } from '../../src/domain/student.ts';
import type { Logger } from '../../src/infrastructure/logging/logger.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { guardDatabase } from '../../src/infrastructure/persistence/database-errors.ts';
import { recordingLogger, silentLogger } from '../support/logger.ts';
import { parseExposition } from '../support/prometheus-text.ts';
import { recordSpans } from '../support/tracing.ts';
import { counted, eventually, studentEvent, traceIdOf } from './worker-harness.ts';

const spans = recordSpans();

const created = Student.create({
  id: '0194b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d',
  details: { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' },
  actor: 'alice',
  now: new Date('2026-03-01T00:00:00Z'),
});
assert.ok(created.ok);
const student: StudentSnapshot = created.value.snapshot();
const unavailable = () => new DependencyUnavailableError('database', { cause: new Error('ECONNREFUSED') });

describe('the student-events consumer', () => {
  let bus: InProcessMessageBus;
  let registry: Registry;
  let subscriptions: Subscription[];
  let calls: ProcessStudentEventCommand[];
  /** The span active while the use case ran, per call. */
  let activeSpans: (SpanContext | undefined)[];
  let dead: ReceivedMessage[];

  beforeEach(async () => {
    bus = new InProcessMessageBus();
    await bus.declareTopology(MESSAGING_TOPOLOGY);
    registry = new Registry();
    calls = [];
    activeSpans = [];
    dead = [];
    spans.reset();
    subscriptions = [
      await bus.consume(deadLetterNames(Queues.studentsWorker).queue, {
        prefetch: 10,
        handler: (message) => {
          dead.push(message);
          return outcome.ack();
        },
      }),
    ];
  });
  afterEach(async () => {
    await Promise.all(subscriptions.map((subscription) => subscription.close()));
    await bus.close();
  });

  async function consume(
    script: (attempt: number, command: ProcessStudentEventCommand) => Promise<ProcessStudentEventResult>,
    options: {
      afterProcessed?: AfterProcessed;
      retry?: { baseDelayMs: number; maxDelayMs: number };
      prefetch?: number;
      logger?: Logger;
    } = {},
  ): Promise<Subscription> {
    const subscription = await consumeStudentEvents({
      bus,
      process: (command) => {
        calls.push(command);
        activeSpans.push(trace.getActiveSpan()?.spanContext());
        return script(calls.length, command);
      },
      prefetch: options.prefetch ?? 1,
      retry: { maxRetryAttempts: 2, ...(options.retry ?? { baseDelayMs: 1, maxDelayMs: 5 }) },
      metrics: createWorkerMetrics(registry),
      logger: options.logger ?? silentLogger,
      afterProcessed: options.afterProcessed,
    });
    subscriptions.push(subscription);
    return subscription;
  }

  test('a transient failure is retried in process; once it passes, the message is acknowledged', async () => {
    await consume(async (attempt) => {
      if (attempt < 3) throw unavailable();
      return { status: 'processed', student };
    });
    await bus.publish([studentEvent('StudentUpdated', student)]);
    await eventually('processed', async () => (await counted(registry, 'processed')) === 1);

    assert.equal(calls.length, 3, 'two retries, then success, all in one delivery');
    assert.equal(await counted(registry, 'retried'), 0);
  });

  test('while the database stays unreachable the message waits in process, using up no delivery; then it is processed once', async () => {
    await consume(async (attempt) => {
      if (attempt < 2 * DEFAULT_MAX_DELIVERIES * 3) throw unavailable();
      return { status: 'processed', student };
    });
    await bus.publish([studentEvent('StudentUpdated', student)]);
    await eventually('processed', async () => (await counted(registry, 'processed')) === 1);

    assert.equal(
      calls.length,
      2 * DEFAULT_MAX_DELIVERIES * 3,
      'more attempts than the delivery limit would allow',
    );
    assert.equal(await counted(registry, 'retried'), 0, 'never returned to the queue');
    assert.equal(dead.length, 0);
  });

  test('once the database is back, the waiting message is processed within seconds, whatever the longest configured back-off', async () => {
    // Two waits, each of at most a few seconds: ten minutes each, as configured, would outlast the 15 s below.
    await consume(
      async (attempt) => {
        if (attempt <= 2) throw unavailable();
        return { status: 'processed', student };
      },
      { retry: { baseDelayMs: 600_000, maxDelayMs: 600_000 } },
    );
    await bus.publish([studentEvent('StudentUpdated', student)]);
    await eventually('processed', async () => (await counted(registry, 'processed')) === 1, 15_000);
    assert.equal(calls.length, 3);
  });

  test("an event that keeps conflicting is retried in process, then dead-lettered; the student's later events are still handled", async () => {
    const events = [1, 2, 3].map(() => studentEvent('StudentUpdated', student));
    const conflicting = events[0]!.messageId;
    // Prefetch 10: the later events are delivered while the first is still being retried.
    await consume(
      async (_attempt, command) => {
        if (command.event.id !== conflicting) return { status: 'processed', student };
        throw Object.assign(new Error('could not serialize access due to concurrent update'), {
          code: '40001',
        });
      },
      { prefetch: 10 },
    );
    await bus.publish(events);
    await eventually(
      'all settled',
      async () => (await counted(registry, 'processed')) === 2 && dead.length === 1,
    );

    assert.equal(dead[0]?.messageId, conflicting);
    assert.equal(
      dead[0]?.headers[DEATH_REASON_HEADER],
      'could not serialize access due to concurrent update',
    );
    assert.equal(
      calls.filter((call) => call.event.id === conflicting).length,
      conflictAttempts(2),
      'every try in process',
    );
    assert.equal(await counted(registry, 'retried'), 0, 'never returned to the queue');
  });

  test('a lock or statement timeout is retried, not dead-lettered', async () => {
    const refusals = ['55P03', '57014'];
    // Each event is refused once, then processed.
    await consume(async (attempt) => {
      const refusal = attempt % 2 === 1 ? refusals[(attempt - 1) / 2] : undefined;
      if (refusal) throw Object.assign(new Error(`refused: ${refusal}`), { code: refusal });
      return { status: 'processed', student };
    });
    for (const _ of refusals) await bus.publish([studentEvent('StudentUpdated', student)]);
    await eventually('all processed', async () => (await counted(registry, 'processed')) === refusals.length);

    assert.equal(calls.length, 2 * refusals.length);
    assert.equal(dead.length, 0);
  });

  test('a read-only server, out of disk or memory fails every event alike: waited for without limit, never dead-lettered', async () => {
    // Past every bounded retry the event would get, then the server takes writes again.
    const refusedAttempts = conflictAttempts(2) + 3;
    const refusals = ['25006', '53100', '53200'];
    await consume(async (attempt) => {
      if (attempt > refusedAttempts) return { status: 'processed', student };
      const code = refusals[attempt % refusals.length]!;
      return guardDatabase(() => Promise.reject(Object.assign(new Error(`refused: ${code}`), { code })));
    });
    await bus.publish([studentEvent('StudentUpdated', student)]);
    await eventually('processed', async () => (await counted(registry, 'processed')) === 1);

    assert.equal(calls.length, refusedAttempts + 1);
    assert.equal(dead.length, 0);
    assert.equal(await counted(registry, 'retried'), 0, 'never returned to the queue: no delivery used up');
  });

  test('a statement timeout, which the database layer reports as unavailable, is still retried a bounded number of times, then dead-lettered', async () => {
    await consume(() =>
      guardDatabase(() =>
        Promise.reject(
          Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' }),
        ),
      ),
    );
    await bus.publish([studentEvent('StudentUpdated', student)]);
    await eventually('dead-lettered', () => dead.length === 1);

    assert.equal(calls.length, conflictAttempts(2), 'every try in process, then no more');
    assert.equal(await counted(registry, 'dead_lettered'), 1);
  });

  test('any other exception dead-letters at once with its message, logged with the student and the event type', async () => {
    const { logger, logged } = recordingLogger();
    await consume(
      async () => {
        throw new Error('column "updates" does not exist');
      },
      { logger },
    );
    await bus.publish([studentEvent('StudentCreated', student)]);
    await eventually('dead-lettered', () => dead.length === 1);

    assert.equal(dead[0]?.headers[DEATH_REASON_HEADER], 'column "updates" does not exist');
    assert.equal(calls.length, 1);
    assert.equal(await counted(registry, 'dead_lettered'), 1);
    const line = logged()
      .split('\n')
      .find((each) => each.includes('student event failed; dead-lettered'));
    assert.match(line ?? '', new RegExp(`"studentId":"${student.id}"`));
    assert.match(line ?? '', /"eventType":"StudentCreated"/);
  });

  test("the event reaches the use case parsed, inside a CONSUMER span that continues (and links to) the message's trace", async () => {
    await consume(async () => ({ status: 'processed', student }));
    const message = studentEvent('StudentCreated', student, { id: 'event-1' });
    await bus.publish([message]);
    await eventually('processed', async () => (await counted(registry, 'processed')) === 1);

    assert.deepEqual(calls[0]?.event, JSON.parse(message.body));
    const [span] = spans.getFinishedSpans();
    assert.equal(span?.name, 'process students.worker');
    assert.equal(span.kind, SpanKind.CONSUMER);
    assert.equal(span.spanContext().traceId, traceIdOf(0), 'the trace of the incoming traceparent');
    assert.equal(span.parentSpanContext?.spanId, '00f067aa0ba902b7', 'a child of the message creation span');
    assert.deepEqual(
      span.links.map((link) => link.context.spanId),
      ['00f067aa0ba902b7'],
    );
    assert.equal(span.attributes['messaging.message.id'], 'event-1');
    // What a trace backend finds it by, after the OpenTelemetry messaging conventions.
    assert.equal(span.attributes['messaging.operation.type'], 'process');
    assert.equal(span.attributes['messaging.operation.name'], 'process');
    assert.equal(span.attributes['messaging.system'], bus.status().adapter);
    assert.equal(span.attributes['messaging.destination.name'], message.exchange);
    assert.equal(span.attributes['messaging.rabbitmq.destination.routing_key'], message.routingKey);
    assert.equal(span.attributes['messaging.destination.subscription.name'], Queues.studentsWorker);
    assert.equal(span.attributes['messaging.rabbitmq.message.delivery_count'], 1);
    assert.equal(span.attributes['worker.outcome'], 'processed');
    assert.equal(activeSpans[0]?.spanId, span.spanContext().spanId, 'active while the use case runs');
  });

  /** Processes one event whose CloudEvent `time` is `offsetMs` from now; the age the metric recorded for it. */
  async function ageOfEventStamped(offsetMs: number): Promise<number | undefined> {
    await consume(async () => ({ status: 'processed', student }));
    const message = studentEvent('StudentCreated', student);
    const event = JSON.parse(message.body) as { time: string };
    event.time = new Date(Date.now() + offsetMs).toISOString();
    await bus.publish([{ ...message, body: JSON.stringify(event) }]);
    await eventually('processed', async () => (await counted(registry, 'processed')) === 1);

    const exposition = parseExposition(await registry.metrics());
    assert.equal(exposition.value('message_age_seconds_count', { queue: Queues.studentsWorker }), 1);
    return exposition.value('message_age_seconds_sum', { queue: Queues.studentsWorker });
  }

  test('an event stamped by a host whose clock runs ahead is no younger than 0 s in the message age metric', async () => {
    assert.equal(await ageOfEventStamped(3_600_000), 0, 'not an hour below zero');
  });

  test('an event stamped an hour ago is an hour old in the message age metric, in seconds', async () => {
    const age = (await ageOfEventStamped(-3_600_000)) ?? 0;
    assert.ok(age >= 3600 && age < 7200, `${age} s`);
  });

  test('a dead-lettered event ends its span as an error, with the reason', async () => {
    await consume(async () => {
      throw new Error('column "updates" does not exist');
    });
    await bus.publish([studentEvent('StudentCreated', student)]);
    await eventually('dead-lettered', () => dead.length === 1);

    const [span] = spans.getFinishedSpans().filter((each) => each.name === 'process students.worker');
    assert.equal(span?.status.code, SpanStatusCode.ERROR);
    assert.equal(span.status.message, 'column "updates" does not exist');
  });

  test('a failing after-processing hook is logged, not retried: the change is committed', async () => {
    const changes: unknown[] = [];
    await consume(
      async (attempt) => (attempt === 1 ? { status: 'processed', student } : { status: 'duplicate' }),
      {
        afterProcessed: (change) => {
          changes.push(change);
          throw new Error('cache down');
        },
      },
    );
    await bus.publish([studentEvent('StudentCreated', student)]);
    await eventually('processed', async () => (await counted(registry, 'processed')) === 1);

    assert.deepEqual(changes, [{ studentId: student.id, student }]);
    assert.equal(calls.length, 1, 'acknowledged, not redelivered');
    assert.equal(dead.length, 0);
  });

  test('the hook hears of a student that is gone as undefined', async () => {
    const changes: unknown[] = [];
    const results: ProcessStudentEventResult[] = [
      { status: 'deleted', studentId: student.id },
      { status: 'studentGone', studentId: student.id },
    ];
    await consume(async (attempt) => results[attempt - 1]!, {
      afterProcessed: (change) => void changes.push(change),
    });
    await bus.publish([1, 2].map(() => studentEvent('StudentDeleted', student)));
    await eventually(
      'both handled',
      async () => (await counted(registry, 'processed')) + (await counted(registry, 'student_gone')) === 2,
    );

    assert.deepEqual(changes, [
      { studentId: student.id, student: undefined },
      { studentId: student.id, student: undefined },
    ]);
  });

  test('a duplicate changed nothing: it is acknowledged without the hook, once', async () => {
    const changes: unknown[] = [];
    await consume(async () => ({ status: 'duplicate' }), {
      afterProcessed: (change) => void changes.push(change),
    });
    await bus.publish([studentEvent('StudentCreated', student)]);
    await eventually('handled', async () => (await counted(registry, 'duplicate')) === 1);

    assert.deepEqual(changes, []);
    assert.equal(calls.length, 1);
    assert.equal(dead.length, 0);
  });

  test('close() during an attempt that then fails for a reason that may pass returns the message to the queue, not to the dead letters', async () => {
    let attempting!: () => void;
    const attemptStarted = new Promise<void>((resolve) => (attempting = resolve));
    let fail!: () => void;
    const failing = new Promise<void>((resolve) => (fail = resolve));
    const subscription = await consume(async () => {
      attempting();
      await failing;
      throw unavailable();
    });
    await bus.publish([studentEvent('StudentUpdated', student)]);
    await attemptStarted;
    const closing = subscription.close();
    fail();
    await closing;

    assert.equal(calls.length, 1);
    assert.equal(await counted(registry, 'retried'), 1);
    assert.equal(dead.length, 0, 'not dead-lettered');
  });

  test(
    'close() during a retry back-off returns the message to the queue without waiting out the back-off',
    { timeout: 60_000 },
    async () => {
      let failed!: () => void;
      const firstFailure = new Promise<void>((resolve) => (failed = resolve));
      // A back-off this long would outlive the test's timeout if close() waited for it.
      const subscription = await consume(
        async () => {
          failed();
          throw unavailable();
        },
        { retry: { baseDelayMs: 600_000, maxDelayMs: 600_000 } },
      );
      await bus.publish([studentEvent('StudentUpdated', student)]);
      await firstFailure;
      // The failure reaches the retry policy in microtasks; one macrotask later it is waiting out the back-off.
      await new Promise((resolve) => setImmediate(resolve));

      await subscription.close();

      assert.equal(calls.length, 1, 'no attempt after the stop');
      assert.equal(await counted(registry, 'retried'), 1);
    },
  );
});
