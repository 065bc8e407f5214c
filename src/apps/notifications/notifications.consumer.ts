import { SpanStatusCode } from '@opentelemetry/api';
import {
  outcome,
  type HandlerOutcome,
  type MessageBus,
  type Subscription,
} from '../../application/ports/message-bus.ts';
import {
  NotLogWriterError,
  ReplayLogUnavailableError,
  type NewReplayLogEntry,
  type ReplayLog,
} from '../../application/ports/replay-log.ts';
import { SUBJECT_HEADER } from '../../contracts/cloud-events.ts';
import { Queues, TRACEPARENT_HEADER } from '../../contracts/messaging.ts';
import { LogThrottle } from '../../infrastructure/logging/log-throttle.ts';
import type { Logger } from '../../infrastructure/logging/logger.ts';
import { withProcessSpan } from '../../infrastructure/observability/messaging-spans.ts';
import { secondsSince } from '../../infrastructure/observability/metrics.ts';
import { traceHeaders } from '../../infrastructure/observability/tracing.ts';
import { waitToRetry } from '../../infrastructure/resilience/resilience-policy.ts';
import { parseNotification } from './notification-schema.ts';
import type { NotificationsMetrics } from './notifications-observability.ts';

/** While appends keep failing, how often at most a line says the outage goes on. */
const APPEND_OUTAGE_LOG_EVERY_MS = 60_000;

type LeaseState = 'stopped' | 'standby' | 'consuming';
/**
 * `waiting for the broker`: holding the writer lease, but the subscription waits for the broker to come back.
 * `cannot subscribe`: holding it, but the broker refused the last subscribe (a queue redeclared with other arguments,
 * say): nobody consumes until that is mended, so it must not pass for standing by.
 * `standby, nobody consuming`: another instance holds the lease, yet nobody has consumed this broker's queue for two
 * leases: the holder is cut off from it, or it is another deployment's, pointed at the same REPLAY_LOG_KEY_PREFIX on
 * another vhost (its notifications are the ones in the log, and this deployment's wait in its queue).
 */
export type ConsumerState =
  LeaseState | 'waiting for the broker' | 'cannot subscribe' | 'standby, nobody consuming';

export interface NotificationsConsumer {
  readonly state: ConsumerState;
  /** Resolves with how many messages in flight went back to the queue (see Subscription.close). */
  stop(): Promise<number>;
}

export interface NotificationsConsumerOptions {
  readonly bus: MessageBus;
  readonly log: ReplayLog;
  /** This instance, as the replay log's writer. */
  readonly instanceId: string;
  readonly prefetch: number;
  readonly logger: Logger;
  readonly metrics?: NotificationsMetrics;
  /** The writer lease lasts this long without renewal; it is renewed every third of it. */
  readonly leaseMs?: number;
}

/**
 * Moves notifications from queue `notifications` into the replay log. Only the instance holding the log's writer
 * lease consumes (the others stand by and take over when it lapses): competing consumers on several instances
 * would append two notifications of one student in whichever order their appends reach Redis. Fan-out does not
 * need the queue: every instance tails the log.
 */
export async function consumeNotifications(
  options: NotificationsConsumerOptions,
): Promise<NotificationsConsumer> {
  const { bus, log, instanceId, logger, metrics } = options;
  const system = bus.status().adapter;
  const leaseMs = options.leaseMs ?? 10_000;
  let state: LeaseState = 'standby';
  let subscription: { readonly inner: Subscription; readonly stopping: AbortController } | undefined;
  // Holding the lease, subscribing: with the broker away, that waits for it (up to the bus's acquire timeout). It runs
  // beside the renewals, not in their turn: a wait longer than the lease would otherwise let the lease lapse. A renewal
  // that finds the lease gone meanwhile gives it up (`abandon`): subscribed, this instance would take messages beside
  // the new holder until the next renewal, and hand those back to it behind later ones of the same student.
  let subscribing: { readonly done: Promise<void>; readonly abandon: AbortController } | undefined;
  // Holding the lease, the last subscribe failed: the renewals try again.
  let subscribeFailed = false;
  // Standing by: since when the queue has had no consumer, as last looked at (undefined: it had one).
  let unconsumedSince: number | undefined;
  let saidUnconsumed = false;
  let inspecting = false;
  // Two leases: a holder that just took over, or lost its connection for a moment, has consumed again by then.
  const unconsumedTooLong = () => unconsumedSince !== undefined && Date.now() - unconsumedSince > 2 * leaseMs;
  let stopped = false;
  // Appends failing for want of the log (Redis down): one outage for every message in flight and every redelivery,
  // not a line each. `held`: the messages whose appends failed meanwhile.
  let appendOutage:
    { readonly since: number; readonly held: Set<string>; readonly throttle: LogThrottle } | undefined;
  // Ends a subscribing that waits for the broker.
  const stopping = new AbortController();
  let turn = Promise.resolve();

  async function startConsuming(signal: AbortSignal): Promise<void> {
    const appending = new AbortController();
    const inner = await bus.consume(Queues.notifications, {
      prefetch: options.prefetch,
      orderingKey: (message) => message.headers[SUBJECT_HEADER],
      handler: (message) =>
        withProcessSpan(Queues.notifications, message, system, async (span): Promise<HandlerOutcome> => {
          const parsed = parseNotification(message.body);
          if (!parsed.ok) {
            logger.warn({ messageId: message.messageId, reason: parsed.error }, 'notification dead-lettered');
            metrics?.handled('dead_lettered');
            span.setStatus({ code: SpanStatusCode.ERROR, message: parsed.error });
            return outcome.deadLetter(parsed.error);
          }
          const { entry, time } = parsed.value;
          metrics?.delivered(secondsSince(time));
          // The entry carries this span's context: every instance's pushes of it continue the trace.
          const traceparent = traceHeaders()[TRACEPARENT_HEADER];
          return appendUntilStopped(traceparent ? { ...entry, traceparent } : entry, appending.signal);
        }),
      signal,
    });
    // Given up on just as the bus answered: nothing is handled, the subscription's messages go back.
    if (signal.aborted) {
      await inner.close();
      signal.throwIfAborted();
    }
    subscription = { inner, stopping: appending };
    state = 'consuming';
    logger.info({ instanceId }, 'notifications consumer: holding the writer lease, consuming');
  }

  /** Resolves with how many messages in flight went back to the queue. */
  async function stopConsuming(): Promise<number> {
    const current = subscription;
    subscription = undefined;
    if (!stopped) state = 'standby';
    if (!current) return 0;
    current.stopping.abort();
    return current.inner.close();
  }

  /** Redis down must not dead-letter notifications: keep the message and retry in process until it is back. */
  async function appendUntilStopped(
    entry: NewReplayLogEntry,
    stopping: AbortSignal,
  ): Promise<HandlerOutcome> {
    for (let attempt = 0; ; attempt++) {
      try {
        const { duplicate } = await log.append(entry, instanceId);
        metrics?.handled(duplicate ? 'duplicate' : 'appended');
        appendsSucceed();
        return outcome.ack();
      } catch (error) {
        const notWriter = error instanceof NotLogWriterError;
        // The lease key is gone (Redis lost it) or another instance holds it: renewing now tells which, and either
        // claims it again or stops this consumer. Returned to the queue meanwhile, the message would come straight
        // back to this consumer, over and over, until its delivery limit dead-lettered it.
        if (notWriter && attempt === 0) tick();
        if (notWriter && attempt === 0 && !stopping.aborted)
          logger.warn(
            { reason: error.message, messageId: entry.messageId },
            'replay log append refused: not the writer lease holder; renewing the lease, the notification waits',
          );
        else if (!notWriter && !stopping.aborted) appendFailed(error, entry.messageId);
        if (!(await waitToRetry(attempt, stopping)))
          return outcome.retry(
            notWriter
              ? 'another instance took the writer lease over'
              : 'stopping while the replay log is unavailable',
          );
      }
    }
  }

  function appendFailed(error: unknown, messageId: string): void {
    // The log's outage is expected and says why in its message; anything else (a script Redis rejects) needs the stack.
    const why = error instanceof ReplayLogUnavailableError ? { reason: error.message } : { err: error };
    if (appendOutage === undefined) {
      appendOutage = {
        since: Date.now(),
        held: new Set([messageId]),
        throttle: new LogThrottle(APPEND_OUTAGE_LOG_EVERY_MS),
      };
      appendOutage.throttle.run(() =>
        logger.warn(
          why,
          'replay log unavailable: notifications are held and their appends retried, none is lost',
        ),
      );
      return;
    }
    const outage = appendOutage;
    outage.held.add(messageId);
    outage.throttle.run((failedUnlogged) =>
      logger.warn(
        { ...why, held: outage.held.size, downMs: Date.now() - outage.since, failedUnlogged },
        'replay log still unavailable: notifications are held and their appends retried',
      ),
    );
  }

  function appendsSucceed(): void {
    if (appendOutage === undefined) return;
    const { since, held, throttle } = appendOutage;
    appendOutage = undefined;
    // A line held back for the interval's end would come after this one, and read as a new outage.
    throttle.reset();
    logger.info(
      { downMs: Date.now() - since, held: held.size },
      'replay log available again: the notifications held meanwhile are appended',
    );
  }

  // Until when the lease is surely ours: it was granted for leaseMs no earlier than we asked for it.
  let heldUntil = 0;
  async function renew(): Promise<void> {
    const asked = Date.now();
    const held = await log.claimWriter(instanceId, leaseMs).then(
      (claimed) => {
        heldUntil = claimed ? asked + leaseMs : 0;
        return claimed;
      },
      (error: unknown) => {
        logger.debug({ err: error }, 'writer lease: could not renew');
        // Unanswered is not refused: a lease we hold stays ours until it would have lapsed. Stopping at once would
        // return the messages in flight at every blip of Redis, each return counting toward their delivery limit.
        // It keeps a subscription (or a subscribing), never starts one.
        return (subscription !== undefined || subscribing !== undefined) && Date.now() < heldUntil;
      },
    );
    if (stopped) return;
    if (!held) subscribeFailed = false;
    if (held) unconsumedSince = undefined;
    else if (!inspecting) void watchWhileStandingBy();
    if (held && !subscription) {
      subscribing ??= subscribe();
    } else if (!held && subscription) {
      logger.warn({ instanceId }, 'notifications consumer: writer lease lost, standing by');
      await stopConsuming();
    } else if (!held && subscribing && !subscribing.abandon.signal.aborted) {
      logger.warn({ instanceId }, 'notifications consumer: writer lease lost while subscribing, standing by');
      subscribing.abandon.abort(new Error('the writer lease was lost'));
    }
  }

  /**
   * Looks at the queue the lease holder should be consuming. Beside the renewals, not in their turn: with the broker
   * away, a look waits for it, and the broker's own check says so.
   */
  async function watchWhileStandingBy(): Promise<void> {
    inspecting = true;
    try {
      const queue = await bus.inspectQueue(Queues.notifications).catch(() => undefined);
      if (queue === undefined || state !== 'standby') return;
      if (queue.consumers > 0) {
        unconsumedSince = undefined;
        saidUnconsumed = false;
        return;
      }
      unconsumedSince ??= Date.now();
      if (saidUnconsumed || !unconsumedTooLong()) return;
      saidUnconsumed = true;
      logger.error(
        { instanceId, queue: Queues.notifications, messages: queue.messages },
        'notifications consumer: standing by, but nobody consumes the queue: the writer lease holder is cut off ' +
          'from this broker, or belongs to another deployment using the same REPLAY_LOG_KEY_PREFIX',
      );
    } finally {
      inspecting = false;
    }
  }

  function subscribe(): NonNullable<typeof subscribing> {
    const abandon = new AbortController();
    const done = (async () => {
      try {
        await startConsuming(AbortSignal.any([stopping.signal, abandon.signal]));
        subscribeFailed = false;
        // The lease may have gone since the last renewal: a renewal now either keeps the subscription or ends it.
        if (!stopped) tick();
      } catch (error) {
        if (stopped || abandon.signal.aborted) return;
        // Said once, not at every renewal that tries again.
        logger[subscribeFailed ? 'debug' : 'error'](
          { err: error },
          'notifications consumer: could not subscribe; the next renewal tries again',
        );
        subscribeFailed = true;
      } finally {
        subscribing = undefined;
      }
    })();
    return { done, abandon };
  }

  // Renewals run one after another; a slow one never overlaps the next.
  const tick = () => {
    turn = turn.then(renew).catch((error: unknown) => {
      if (!stopped) logger.error({ err: error }, 'writer lease renewal failed');
    });
  };
  tick();
  await turn;
  // Renewing meanwhile: the first subscribing may wait for the broker longer than the lease lasts.
  const timer = setInterval(tick, Math.max(100, Math.floor(leaseMs / 3)));
  await subscribing?.done;

  return {
    get state(): ConsumerState {
      const waiting =
        (state === 'consuming' && subscription?.inner.waitingForBroker === true) ||
        (subscribing !== undefined && !subscribing.abandon.signal.aborted && !bus.status().connected);
      if (waiting) return 'waiting for the broker';
      if (state !== 'standby') return state;
      if (subscribeFailed) return 'cannot subscribe';
      return unconsumedTooLong() ? 'standby, nobody consuming' : state;
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      stopping.abort(new Error('the notifications consumer stopped'));
      await turn;
      await subscribing?.done;
      const returned = await stopConsuming();
      state = 'stopped';
      await log.releaseWriter(instanceId).catch(() => undefined);
      return returned;
    },
  };
}
