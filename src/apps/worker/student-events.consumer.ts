import { SpanStatusCode } from '@opentelemetry/api';
import { ExponentialBackoff, handleWhen, retry, type RetryPolicy } from 'cockatiel';
import { DependencyUnavailableError } from '../../application/errors.ts';
import {
  outcome,
  type HandlerOutcome,
  type MessageBus,
  type ReceivedMessage,
  type Subscription,
} from '../../application/ports/message-bus.ts';
import type {
  ProcessStudentEventCommand,
  ProcessStudentEventResult,
} from '../../application/students/process-student-event.ts';
import { SUBJECT_HEADER } from '../../contracts/cloud-events.ts';
import { Queues } from '../../contracts/messaging.ts';
import type { StudentSnapshot } from '../../domain/student.ts';
import type { Logger } from '../../infrastructure/logging/logger.ts';
import { withProcessSpan } from '../../infrastructure/observability/messaging-spans.ts';
import { secondsSince } from '../../infrastructure/observability/metrics.ts';
import { parseStudentEvent } from './student-event-schema.ts';
import type { MessageOutcome, WorkerMetrics } from './worker-metrics.ts';

/** Runs after the transaction committed (e.g. to refresh the cache); `student` undefined = it no longer exists. */
export type AfterProcessed = (change: {
  readonly studentId: string;
  readonly student: StudentSnapshot | undefined;
}) => Promise<void> | void;

export interface RetryOptions {
  /** Retries after the first attempt, in process, before the message goes back to the queue. */
  readonly maxRetryAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export interface StudentEventsConsumerOptions {
  readonly bus: MessageBus;
  readonly process: (command: ProcessStudentEventCommand) => Promise<ProcessStudentEventResult>;
  readonly prefetch: number;
  readonly retry: RetryOptions;
  readonly metrics: WorkerMetrics;
  readonly logger: Logger;
  readonly afterProcessed?: AfterProcessed;
}

// Serialization failure and deadlock: PostgreSQL asks the client to run the transaction again.
const RETRYABLE_SQLSTATES = new Set(['40001', '40P01']);

/** Failures that may pass by themselves; anything else would fail the same way on every delivery. */
export function isTransient(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    if (current instanceof DependencyUnavailableError) return true;
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && RETRYABLE_SQLSTATES.has(code)) return true;
  }
  return false;
}

/**
 * Subscribes to `students.worker`. Messages of one student (the `cloudEvents:subject` header) are handled one
 * after another in queue order; with prefetch > 1 different students run concurrently. `close()` stops
 * retrying, lets the in-flight messages finish and settle.
 */
export async function consumeStudentEvents(options: StudentEventsConsumerOptions): Promise<Subscription> {
  const stopping = new AbortController();
  const subscription = await options.bus.consume(Queues.studentsWorker, {
    prefetch: options.prefetch,
    orderingKey: (message) => message.headers[SUBJECT_HEADER],
    handler: studentEventHandler(options, stopping.signal),
  });
  return {
    close() {
      stopping.abort();
      return subscription.close();
    },
  };
}

const STOPPED = Symbol('stopped');

/**
 * Runs `call` under `policy`. Once `stopping` is aborted no new attempt starts, and a back-off wait in progress
 * ends at once with STOPPED (cockatiel's own wait cannot be cancelled); an attempt in progress runs to its end.
 */
async function withRetries<T>(
  policy: RetryPolicy,
  call: () => Promise<T>,
  stopping: AbortSignal,
): Promise<T | typeof STOPPED> {
  let attempting = false;
  let attempts = 0;
  let onAbort = () => {};
  const stopped = new Promise<typeof STOPPED>((resolve) => {
    onAbort = () => {
      if (!attempting) resolve(STOPPED);
    };
  });
  stopping.addEventListener('abort', onAbort, { once: true });
  const execution = policy.execute(async () => {
    // cockatiel decides to retry before its back-off wait, so a stop during the wait still lands here.
    if (attempts++ > 0 && stopping.aborted) throw new Error('worker stopping');
    attempting = true;
    try {
      return await call();
    } finally {
      attempting = false;
    }
  }, stopping);
  // After STOPPED wins the race, the abandoned execution still settles (rejects): nobody may see that as unhandled.
  execution.catch(() => {});
  try {
    return await Promise.race([execution, stopped]);
  } finally {
    stopping.removeEventListener('abort', onAbort);
  }
}

export function studentEventHandler(
  options: StudentEventsConsumerOptions,
  stopping: AbortSignal,
): (message: ReceivedMessage) => Promise<HandlerOutcome> {
  const { logger, metrics } = options;
  const policy = retry(handleWhen(isTransient), {
    maxAttempts: options.retry.maxRetryAttempts,
    backoff: new ExponentialBackoff({
      initialDelay: options.retry.baseDelayMs,
      maxDelay: options.retry.maxDelayMs,
    }),
  }).dangerouslyUnref(); // a back-off abandoned by stop() must not keep the process alive

  const handle = async (message: ReceivedMessage): Promise<[MessageOutcome, HandlerOutcome]> => {
    const fields = { messageId: message.messageId, deliveryCount: message.deliveryCount };
    const event = parseStudentEvent(message.body);
    if (!event.ok) {
      logger.warn({ ...fields, reason: event.error }, 'unreadable student event; dead-lettered');
      return ['dead_lettered', outcome.deadLetter(event.error)];
    }
    metrics.delivered(secondsSince(event.value.time));
    let result: ProcessStudentEventResult | typeof STOPPED;
    try {
      result = await withRetries(
        policy,
        () =>
          options.process({ event: event.value }).catch((error: unknown) => {
            if (isTransient(error)) logger.warn({ ...fields, err: error }, 'student event attempt failed');
            throw error;
          }),
        stopping,
      );
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (isTransient(error)) {
        logger.warn({ ...fields, err: error }, 'student event failed after retries; back to the queue');
        return ['retried', outcome.retry(reason)];
      }
      logger.error({ ...fields, err: error }, 'student event failed; dead-lettered');
      return ['dead_lettered', outcome.deadLetter(reason)];
    }
    if (result === STOPPED) {
      logger.info(fields, 'worker stopping during a retry back-off; back to the queue');
      return ['retried', outcome.retry('worker stopping')];
    }
    if (result.status === 'duplicate') {
      logger.debug({ ...fields, eventId: event.value.id }, 'student event already processed');
      return ['duplicate', outcome.ack()];
    }
    await refresh(result);
    logger.debug({ ...fields, eventId: event.value.id, status: result.status }, 'student event processed');
    return [result.status === 'studentGone' ? 'student_gone' : 'processed', outcome.ack()];
  };

  // The change is committed: a failing hook must not make the message run again.
  const refresh = async (result: Exclude<ProcessStudentEventResult, { status: 'duplicate' }>) => {
    if (!options.afterProcessed) return;
    const change =
      result.status === 'processed'
        ? { studentId: result.student.id, student: result.student }
        : { studentId: result.studentId, student: undefined };
    try {
      await options.afterProcessed(change);
    } catch (error) {
      logger.warn({ err: error, studentId: change.studentId }, 'after-processing hook failed; ignored');
    }
  };

  const system = options.bus.status().adapter;
  // The span is active while the event is processed: the notifications it writes continue this trace.
  return (message) =>
    withProcessSpan(Queues.studentsWorker, message, system, async (span) => {
      const started = performance.now();
      const [label, handlerOutcome] = await handle(message);
      metrics.record(label, (performance.now() - started) / 1000);
      span.setAttribute('worker.outcome', label);
      if (handlerOutcome.kind !== 'ack')
        span.setStatus({ code: SpanStatusCode.ERROR, message: handlerOutcome.reason ?? label });
      return handlerOutcome;
    });
}
