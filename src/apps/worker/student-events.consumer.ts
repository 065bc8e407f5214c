import { setMaxListeners } from 'node:events';
import { SpanStatusCode } from '@opentelemetry/api';
import { ExponentialBackoff, handleWhen, retry, wrap, type IPolicy } from 'cockatiel';
import { causes, DependencyUnavailableError } from '../../application/errors.ts';
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
import { DEFAULT_MAX_DELIVERIES, Queues } from '../../contracts/messaging.ts';
import type { StudentSnapshot } from '../../domain/student.ts';
import type { Logger } from '../../infrastructure/logging/logger.ts';
import { isPassingRefusal } from '../../infrastructure/persistence/database-errors.ts';
import { withProcessSpan } from '../../infrastructure/observability/messaging-spans.ts';
import { traceHeaders } from '../../infrastructure/observability/tracing.ts';
import { secondsSince } from '../../infrastructure/observability/metrics.ts';
import { parseStudentEvent } from './student-event-schema.ts';
import type { MessageOutcome, WorkerMetrics } from './worker-metrics.ts';
import { expectedFailure } from '../../infrastructure/logging/expected-failure.ts';

/** A student after the worker's transaction; `student` undefined = it no longer exists. */
export interface StudentChange {
  readonly studentId: string;
  readonly student: StudentSnapshot | undefined;
}

/**
 * Runs after the transaction committed (e.g. to refresh the cache), not for an event found already processed: that
 * one changed nothing, and what its first delivery committed reaches the cache with its notifications (the relay
 * caches their students before it publishes them).
 */
export type AfterProcessed = (change: StudentChange) => Promise<void> | void;

export interface RetryOptions {
  /**
   * Retries of a conflict (serialization failure, deadlock, ...) per delivery the queue's limit allows: all run in
   * process, `conflictAttempts(maxRetryAttempts)` tries in all, then the message is dead-lettered (it never goes back
   * to the queue). An unreachable database is waited out without limit.
   */
  readonly maxRetryAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export interface StudentEventsConsumerOptions {
  readonly bus: MessageBus;
  /** `students.worker`, or one of its partitions. */
  readonly queue?: string;
  readonly process: (command: ProcessStudentEventCommand) => Promise<ProcessStudentEventResult>;
  readonly prefetch: number;
  readonly retry: RetryOptions;
  readonly metrics: WorkerMetrics;
  readonly logger: Logger;
  /** Without it the consumer only commits. */
  readonly afterProcessed?: AfterProcessed;
  /** Ends the subscribing while it waits for the broker (the worker is stopping). */
  readonly signal?: AbortSignal;
}

/**
 * The database cannot be reached: every message would fail alike, so none may use up its delivery limit. A refusal
 * that passes by itself is no such thing even when reported as one (a statement timeout answers the API 503): it
 * is this event's, retried a bounded number of times (dead-lettered at once, a student's event would be skipped).
 */
const isOutage = (error: unknown) =>
  !isPassingRefusal(error) && [...causes(error)].some((cause) => cause instanceof DependencyUnavailableError);

/**
 * The longest wait between attempts while the database cannot be reached. Such an attempt only finds out whether it
 * is back (a refused connection costs next to nothing), and the wait after the last failed one delays every event
 * once it is: with the configured longest delay (30 s by default) the worker resumed up to 30 s after the database,
 * while its health already said all was well.
 */
const OUTAGE_RETRY_MAX_MS = 5_000;

/**
 * Tries of an event that keeps conflicting before it is dead-lettered: as many as the queue's delivery limit
 * allowed deliveries, with the configured retries each, but all in process. Returned to the queue instead, it
 * would take the student's later events back with it, unhandled, and every return (theirs too) counts toward that
 * limit: they would be dead-lettered without ever being tried.
 */
export function conflictAttempts(maxRetryAttempts: number): number {
  return DEFAULT_MAX_DELIVERIES * (maxRetryAttempts + 1);
}

/** Failures that may pass by themselves; anything else would fail the same way on every delivery. */
function isTransient(error: unknown): boolean {
  return isOutage(error) || isPassingRefusal(error);
}

/**
 * Subscribes to `students.worker` (or the partition queue given). Messages of one student (the `cloudEvents:subject` header) are handled one
 * after another in queue order; with prefetch > 1 different students run concurrently. `close()` stops
 * retrying, lets the in-flight messages finish and settle.
 */
export async function consumeStudentEvents(options: StudentEventsConsumerOptions): Promise<Subscription> {
  const stopping = new AbortController();
  // Each message in flight listens for the stop twice (its retries and cockatiel's): bounded by the prefetch.
  setMaxListeners(2 * options.prefetch + 1, stopping.signal);
  const subscription = await options.bus.consume(options.queue ?? Queues.studentsWorker, {
    prefetch: options.prefetch,
    orderingKey: (message) => message.headers[SUBJECT_HEADER],
    handler: studentEventHandler(options, stopping.signal),
    signal: options.signal,
  });
  return {
    get waitingForBroker() {
      return subscription.waitingForBroker;
    },
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
  policy: IPolicy,
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

function studentEventHandler(
  options: StudentEventsConsumerOptions,
  stopping: AbortSignal,
): (message: ReceivedMessage) => Promise<HandlerOutcome> {
  const { logger, metrics } = options;
  const queue = options.queue ?? Queues.studentsWorker;
  const backoff = new ExponentialBackoff({
    initialDelay: options.retry.baseDelayMs,
    maxDelay: options.retry.maxDelayMs,
  });
  const outageBackoff = new ExponentialBackoff({
    initialDelay: Math.min(options.retry.baseDelayMs, OUTAGE_RETRY_MAX_MS),
    maxDelay: Math.min(options.retry.maxDelayMs, OUTAGE_RETRY_MAX_MS),
  });
  // A back-off abandoned by stop() must not keep the process alive: both policies are unref'd.
  const policy = wrap(
    retry(handleWhen(isOutage), { maxAttempts: Infinity, backoff: outageBackoff }).dangerouslyUnref(),
    retry(handleWhen(isPassingRefusal), {
      maxAttempts: conflictAttempts(options.retry.maxRetryAttempts) - 1,
      backoff,
    }).dangerouslyUnref(),
  );

  const handle = async (message: ReceivedMessage): Promise<[MessageOutcome, HandlerOutcome]> => {
    // The student and the event's type too: with tracing off, they are what ties a line to the write behind it.
    const headed = {
      messageId: message.messageId,
      deliveryCount: message.deliveryCount,
      studentId: message.headers[SUBJECT_HEADER],
      routingKey: message.routingKey,
    };
    const event = parseStudentEvent(message.body);
    if (!event.ok) {
      logger.warn({ ...headed, reason: event.error }, 'unreadable student event; dead-lettered');
      return ['dead_lettered', outcome.deadLetter(event.error)];
    }
    const fields = { ...headed, studentId: event.value.subject, eventType: event.value.type };
    metrics.delivered(queue, secondsSince(event.value.time));
    let result: ProcessStudentEventResult | typeof STOPPED;
    try {
      result = await withRetries(
        policy,
        () =>
          // The process span is active here: with others in one batch, the event's notifications still continue it.
          options.process({ event: event.value, ...traceHeaders() }).catch((error: unknown) => {
            if (isTransient(error))
              logger.warn({ ...fields, ...expectedFailure(error) }, 'student event attempt failed');
            throw error;
          }),
        stopping,
      );
    } catch (error) {
      // Stopped while an attempt failed for a reason that may pass: back to the queue, for whoever consumes next.
      if (stopping.aborted && isTransient(error)) {
        logger.info(fields, 'worker stopping after a failed attempt; back to the queue');
        return ['retried', outcome.retry('worker stopping')];
      }
      const reason = error instanceof Error ? error.message : String(error);
      logger.error(
        { ...fields, err: error },
        isTransient(error)
          ? 'student event still failing after retries; dead-lettered'
          : 'student event failed; dead-lettered',
      );
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
    await refresh(
      result.status === 'processed'
        ? { studentId: result.student.id, student: result.student }
        : { studentId: result.studentId, student: undefined },
    );
    logger.debug({ ...fields, eventId: event.value.id, status: result.status }, 'student event processed');
    return [result.status === 'studentGone' ? 'student_gone' : 'processed', outcome.ack()];
  };

  // The change is committed: a failing hook must not make the message run again.
  const refresh = async (change: StudentChange) => {
    if (!options.afterProcessed) return;
    try {
      await options.afterProcessed(change);
    } catch (error) {
      logger.warn({ err: error, studentId: change.studentId }, 'after-processing hook failed; ignored');
    }
  };

  const system = options.bus.status().adapter;
  // The span is active while the event is processed: the notifications it writes continue this trace.
  return (message) =>
    withProcessSpan(queue, message, system, async (span) => {
      const started = performance.now();
      const [label, handlerOutcome] = await handle(message);
      metrics.record(label, (performance.now() - started) / 1000);
      span.setAttribute('worker.outcome', label);
      if (handlerOutcome.kind !== 'ack')
        span.setStatus({ code: SpanStatusCode.ERROR, message: handlerOutcome.reason ?? label });
      return handlerOutcome;
    });
}
