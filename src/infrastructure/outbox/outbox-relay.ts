import { setTimeout as sleep } from 'node:timers/promises';
import { causes } from '../../application/errors.ts';
import type { MessageBus, OutgoingMessage } from '../../application/ports/message-bus.ts';
import type { OutboxMessage } from '../../application/ports/outbox.ts';
import { CLOUD_EVENTS_CONTENT_TYPE, SUBJECT_HEADER, type CloudEvent } from '../../contracts/cloud-events.ts';
import type { Topology } from '../../contracts/messaging.ts';
import type { HealthCheck } from '../health/health.ts';
import { LogThrottle } from '../logging/log-throttle.ts';
import type { Logger } from '../logging/logger.ts';
import { startPublishSpans } from '../observability/messaging-spans.ts';
import { recordFailure } from '../observability/tracing.ts';
import type { Database, Leadership } from '../persistence/database.ts';
import { expectedFailure } from '../logging/expected-failure.ts';
import { guardDatabase } from '../persistence/database-errors.ts';
import { pruneSentOutbox } from '../persistence/retention.ts';
import { sqlStatement } from '../persistence/sql.ts';
import { OUTBOX_CHANNEL } from '../persistence/sql-unit-of-work.ts';
import {
  backoffDelay,
  createResiliencePolicy,
  type BreakerState,
  type ResilienceOptions,
  type ResiliencePolicy,
} from '../resilience/resilience-policy.ts';
import { DeploymentConflictError } from '../runtime/deployment-conflict.ts';
import { within } from '../runtime/settled-within.ts';
import { SENT_OUTBOX_RETENTION_MS } from './sent-retention.ts';

export interface OutboxRelayOptions {
  /** Rows read and published together, all in flight at once with publisher confirms. */
  readonly batchSize: number;
  /** Batches handed to the broker before the oldest must be confirmed (batches sharing a subject never overlap). */
  readonly batchesInFlight: number;
  /** Fallback when a NOTIFY is missed (e.g. written while no relay was listening). */
  readonly pollIntervalMs: number;
  /** How often a standby relay tries to take over. */
  readonly standbyRetryMs: number;
  /** Sent rows are deleted after this long. */
  readonly retentionMs: number;
}

const DEFAULT_RELAY_OPTIONS: OutboxRelayOptions = {
  batchSize: 500,
  batchesInFlight: 4,
  pollIntervalMs: 1_000,
  standbyRetryMs: 2_000,
  retentionMs: SENT_OUTBOX_RETENTION_MS,
};

// Every relay on one database competes for this advisory lock; the holder is the only one publishing.
const RELAY_LOCK_KEY = 4_224_712;
const CLEANUP_EVERY_MS = 60_000;
/**
 * How long one cleanup may hold publishing up. Expired rows left over are deleted after the next drain, at once: a
 * backlog of them (after a broker outage, when no cleanup runs, or a shortened retention) delays new messages by at
 * most this much at a time, not for the minutes all of it takes.
 */
const CLEANUP_BUDGET_MS = 250;
/**
 * The backlog is counted row by row up to this many; above it, it is the span of the unsent rows' positions, an
 * upper bound (exact while none in between was sent) that takes two index probes whatever its size.
 */
export const BACKLOG_COUNTED = 10_000;
/** At most one failure line per this long (each, leadership's and publishing's), with how many more there were. */
const ERROR_LOG_EVERY_MS = 30_000;
/** How long the broker's health check waits for the broker's answer, and for the backlog count before it leaves it out. */
const CHECK_WAIT_MS = 1_000;

export type RelayRole = 'starting' | 'leader' | 'standby' | 'stopped';

export interface RelayStatus {
  readonly role: RelayRole;
  readonly breaker: BreakerState;
  readonly published: number;
  readonly lastError?: string;
}

/** An unsent outbox row, as the relay reads it: the message, with its creation context as headers. */
export interface OutboxRow extends Omit<OutboxMessage, 'traceparent'> {
  readonly headers: Readonly<Record<string, string>>;
}

/** What must be done before rows leave (readers brought up to what they report); it holds their publishing. */
export type BeforePublish = (rows: readonly OutboxRow[]) => Promise<void>;

/** A row as the relay read it, with its place in the outbox's order. */
type ReadRow = OutboxRow & { readonly seq: string };

/** Publishing failing since `since` (epoch ms), after `published` rows: what the line that it is over says. */
interface Outage {
  readonly since: number;
  readonly published: number;
}

/** A batch handed to the broker: settles when every row is confirmed, or rejects when one is not. */
interface InFlightBatch {
  readonly rows: readonly ReadRow[];
  readonly subjects: ReadonlySet<string>;
  readonly confirmed: Promise<void>;
}

const statements = {
  // The oldest unsent rows but those this pass already handed to the broker (see #drain). `not in (select unnest)`,
  // not `<> all($1)`: PostgreSQL hashes the subquery, but compares a parameter array element by element (100 ms for
  // the 2,500 rows a pass may have out, against 1.5 ms).
  unsentExcept: sqlStatement(
    'outbox_unsent_except',
    // `outbox.seq` in the order: the output column of that name is text, and would sort as text.
    `select id, seq::text as seq, exchange, routing_key as "routingKey", type, subject, payload, headers,
       occurred_at as "occurredAt"
     from outbox where sent_at is null and outbox.seq not in (select unnest($1::bigint[]))
     order by outbox.seq limit $2`,
  ),
  markSent: sqlStatement('outbox_mark_sent', 'update outbox set sent_at = $1 where id = any($2::uuid[])'),
  // Counted up to BACKLOG_COUNTED; past that (a long broker outage: hundreds of thousands of rows, whose count takes
  // longer than a health check waits), the span of their positions, read from both ends of the unsent index. Unsent
  // rows are the newest ones, except after an embedded restart sends old ones again: then the span overstates the
  // backlog until those are out (float8: a span past 2^31 must not fail the query).
  backlog: sqlStatement(
    'outbox_backlog',
    `with counted as (
       select count(*)::int as n from (select 1 from outbox where sent_at is null limit $1 + 1) unsent
     )
     select case when n <= $1 then n
       else (select (max(seq) - min(seq) + 1)::float8 from outbox where sent_at is null) end as count
     from counted`,
    // Its callers leave the count out after CHECK_WAIT_MS (a health check, a stop): a database that does not answer
    // must not keep the connection (nor, at a stop, the pool's close) waiting much longer.
    { unansweredAfterMs: 2 * CHECK_WAIT_MS },
  ),
  resendUnhandled: sqlStatement(
    'outbox_resend_unhandled',
    `update outbox set sent_at = null
     where sent_at is not null and exchange = $1
       and not exists (select 1 from inbox where inbox.consumer = $2 and inbox.message_id = outbox.id::text)
       and not exists (select 1 from dead_letters where dead_letters.message_id = outbox.id::text)
     returning id`,
  ),
};

/**
 * Marks unsent again each row published to `exchange` that `consumer` never handled (its inbox has no row for it)
 * and that was not dead-lettered (`dead_letters` has no row for it, see recordDeadLetters).
 * For the in-process bus, whose queues die with the process: run before the relay starts, a restart sends again
 * what a crash dropped between the relay's publish and the consumer's commit. Nothing happens twice: the consumer's
 * inbox skips a message it did handle. Returns how many rows will be sent again.
 */
export async function resendUnhandled(
  database: Database,
  exchange: string,
  consumer: string,
): Promise<number> {
  const rows = await database.sql.query<{ id: string }>(statements.resendUnhandled, [exchange, consumer]);
  return rows.length;
}

/** A row as the CloudEvent that travels on the broker; its id is the row's, stable across re-publishing. */
function outboxMessage(row: OutboxRow): OutgoingMessage {
  const event: CloudEvent = {
    specversion: '1.0',
    id: row.id,
    source: `/the-background-experience/${row.exchange}`,
    type: row.type,
    subject: row.subject,
    time: row.occurredAt.toISOString(),
    datacontenttype: 'application/json',
    data: row.payload,
  };
  return {
    exchange: row.exchange,
    routingKey: row.routingKey,
    messageId: row.id,
    body: JSON.stringify(event),
    contentType: CLOUD_EVENTS_CONTENT_TYPE,
    headers: { ...row.headers, [SUBJECT_HEADER]: row.subject },
  };
}

/**
 * The rows as messages in waves with at most one row per subject, in `seq` order. A wave is confirmed before the
 * next is sent, so one subject's messages reach the broker in order even when a publish fails mid-way: a client
 * retrying a lost message after later ones went out on a new connection would otherwise reorder them.
 */
export function subjectWaves(rows: readonly OutboxRow[]): OutgoingMessage[][] {
  const waves: OutgoingMessage[][] = [];
  const nextWave = new Map<string, number>();
  for (const row of rows) {
    const index = nextWave.get(row.subject) ?? 0;
    (waves[index] ??= []).push(outboxMessage(row));
    nextWave.set(row.subject, index + 1);
  }
  return waves;
}

/**
 * Publishes outbox rows in `seq` order with publisher confirms, then marks them sent. One relay per database
 * leads (advisory lock); the others stand by and take over within `standbyRetryMs` when it dies. Delivery is
 * at-least-once: a crash between confirm and mark re-publishes, and consumers de-duplicate by message id.
 */
export class OutboxRelay {
  readonly #database: Database;
  readonly #bus: MessageBus;
  readonly #policy: ResiliencePolicy;
  readonly #logger: Logger;
  readonly #options: OutboxRelayOptions;
  #role: RelayRole = 'starting';
  #published = 0;
  #lastError: string | undefined;
  readonly #errorLog = new LogThrottle(ERROR_LOG_EVERY_MS);
  readonly #publishFailureLog = new LogThrottle(ERROR_LOG_EVERY_MS);
  /** Set by a failed drain, cleared by the drain that publishes the backlog it left (or by a new leadership). */
  #outage: Outage | undefined;
  /** The publish failure line being written (after its backlog count): the drained line comes after it. */
  #publishFailureSaid: Promise<void> | undefined;
  /** Declared before the first publish, so no message goes out before its queues exist; undefined once done. */
  #undeclared: Topology | undefined;
  /**
   * Another deployment's claim on the vhost, met when the topology was declared late (the broker was away at start):
   * nothing is published for good, and the broker check says why. The writes wait in the outbox.
   */
  #refused: DeploymentConflictError | undefined;
  #running: Promise<void> | undefined;
  readonly #stopping = new AbortController();
  #wake: (() => void) | undefined;
  #wakeOnWork = true;
  #workPending = true;
  #lastCleanup = 0;
  readonly #beforePublish: BeforePublish | undefined;
  /** The backlog count under way: the callers meanwhile share it. */
  #backlogCount: Promise<number> | undefined;

  constructor(deps: {
    database: Database;
    bus: MessageBus;
    policy: ResiliencePolicy;
    logger: Logger;
    topology?: Topology;
    options?: Partial<OutboxRelayOptions>;
    beforePublish?: BeforePublish;
  }) {
    this.#database = deps.database;
    this.#bus = deps.bus;
    this.#undeclared = deps.topology;
    this.#policy = deps.policy;
    this.#beforePublish = deps.beforePublish;
    this.#logger = deps.logger.child({ component: 'outbox-relay' });
    this.#options = { ...DEFAULT_RELAY_OPTIONS, ...deps.options };
  }

  start(): void {
    this.#running ??= this.#run();
  }

  /**
   * Stops at once, also while the broker does not answer: a publish in flight is abandoned, and its rows, left
   * unsent, go out again later (at-least-once; consumers de-duplicate by message id).
   */
  async stop(): Promise<void> {
    this.#stopping.abort();
    this.#wake?.();
    await this.#running;
    this.#role = 'stopped';
  }

  status(): RelayStatus {
    return {
      role: this.#role,
      breaker: this.#policy.breakerState(),
      published: this.#published,
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
    };
  }

  /**
   * The broker as this process sees it (`rabbitmq`, as the original names it; `data.adapter` is `in-process` in the
   * embedded mode): writes keep working while it is down, so that is Degraded.
   */
  healthCheck(): HealthCheck {
    return {
      name: 'rabbitmq',
      check: async () => {
        const bus = this.#bus.status();
        const relay = this.status();
        // A connection stays open to a broker that froze until the heartbeat gives up: it must answer too.
        const whyUnanswered = async (): Promise<string | undefined> => {
          const answer = await within(
            this.#bus.ping().then(
              () => 'answered',
              (error: unknown) => (error instanceof Error ? error.message : String(error)),
            ),
            CHECK_WAIT_MS,
          );
          return answer === 'answered'
            ? undefined
            : (answer ?? `the broker did not answer within ${CHECK_WAIT_MS} ms`);
        };
        // A database query: one the database does not answer must not hold this check past its time limit, where it
        // would read as the broker's failure (the database has a check of its own).
        const [backlog, silent] = await Promise.all([
          this.backlogIfAnswered(),
          bus.connected ? whyUnanswered() : undefined,
        ]);
        const healthy = !this.#refused && bus.connected && !silent && relay.breaker === 'closed';
        return {
          status: this.#refused ? 'Unhealthy' : healthy ? 'Healthy' : 'Degraded',
          ...(healthy
            ? {}
            : {
                description:
                  this.#refused?.message ??
                  bus.detail ??
                  silent ??
                  relay.lastError ??
                  `circuit ${relay.breaker}`,
              }),
          data: {
            adapter: bus.adapter,
            connected: bus.connected,
            relay: relay.role,
            breaker: relay.breaker,
            backlog,
          },
        };
      },
    };
  }

  async #run(): Promise<void> {
    const stopped = this.#stopping.signal;
    while (!stopped.aborted) {
      const leadership = await this.#database.tryLead(RELAY_LOCK_KEY).catch((error: unknown) => {
        this.#noteError('could not contend for leadership', error);
        return undefined;
      });
      if (!leadership) {
        this.#role = 'standby';
        await sleep(this.#options.standbyRetryMs, undefined, { signal: stopped }).catch(() => undefined);
        continue;
      }
      this.#role = 'leader';
      this.#logger.info('leading: publishing the outbox');
      // Taking up leadership can fail (LISTEN on a connection that dropped right after the lock was won): that is
      // leadership lost too.
      const failed = await this.#lead(leadership).then(
        () => false,
        (error: unknown) => {
          this.#noteError('could not take up leadership', error);
          return true;
        },
      );
      await leadership
        .release()
        .catch((error: unknown) => this.#noteError('could not release leadership', error));
      if (stopped.aborted) break;
      this.#role = 'standby';
      this.#logger.warn('lost leadership');
      // A failure that comes back at once must not become a loop of connections.
      if (failed)
        await sleep(this.#options.standbyRetryMs, undefined, { signal: stopped }).catch(() => undefined);
    }
  }

  async #lead(leadership: Leadership): Promise<void> {
    const leading = new AbortController();
    void leadership.lost.then(() => {
      leading.abort();
      this.#wake?.();
    });
    await leadership.listen(OUTBOX_CHANNEL, () => this.#signalWork());
    // An outage while leading before is the next leader's to report: its backlog was theirs since.
    this.#outage = undefined;
    this.#publishFailureLog.reset();
    let failures = 0;
    while (!leading.signal.aborted && !this.#stopping.signal.aborted) {
      try {
        const outage = this.#outage;
        const drainStarted = Date.now();
        await this.#drain(leading.signal);
        if (outage) await this.#sayDrained(outage, drainStarted);
        failures = 0;
        this.#lastError = undefined;
        // Expired rows left over: drain again (new rows go out first), then delete the next part.
        if (await this.#cleanUp()) continue;
        await this.#idle(this.#options.pollIntervalMs, true);
      } catch (error) {
        if (this.#stopping.signal.aborted) break; // abandoned by stop(), not failed
        failures++;
        this.#notePublishFailure(error);
        // Between drains, not within one: a drain fails after the policy's own retries, or at once while its breaker
        // is open, and the loop would then spin. Exponential with jitter, capped, so a broker that is down is not
        // hammered and relays on several instances do not retry in step.
        await this.#idle(backoffDelay(failures, { baseMs: 250, maxMs: 30_000, jitter: true }), false);
      }
    }
  }

  /**
   * Publishes unsent rows in `seq` order until none are left. Up to `batchesInFlight` batches are with the broker at
   * once, so reading the next batch overlaps with confirming the previous ones; a batch that shares a subject with
   * one in flight waits until that one is confirmed, so each subject's messages still reach the broker one after
   * another. Batches are marked sent in order once confirmed; after a failure the next drain starts over from the
   * oldest unsent row (at-least-once; consumers de-duplicate).
   *
   * Each read starts from the oldest unsent row, leaving out the rows handed out and not yet marked: a row that
   * commits late, behind rows already read, is then read before any later row of its subject (that one's transaction
   * waited for this one's row lock, so it commits after it).
   */
  async #drain(leading: AbortSignal): Promise<void> {
    if (this.#refused) throw this.#refused;
    const topology = this.#undeclared;
    if (topology) {
      try {
        await this.#policy.execute(() => this.#bus.declareTopology(topology), this.#stopping.signal);
      } catch (error) {
        this.#refused = [...causes(error)].find((cause) => cause instanceof DeploymentConflictError);
        throw error;
      }
      this.#undeclared = undefined;
    }
    const handedOut = new Set<string>();
    const inFlight: InFlightBatch[] = [];
    // Marking a confirmed batch overlaps with reading and publishing the next ones.
    let marking: Promise<void> = Promise.resolve();
    const settleOldest = async () => {
      const batch = inFlight[0]!;
      await batch.confirmed;
      inFlight.shift();
      await marking;
      marking = this.#markSent(batch.rows).then(() => {
        for (const row of batch.rows) handedOut.delete(row.seq);
      });
      marking.catch(() => undefined); // awaited before the next mark and at the end
    };
    const sharesSubject = (subjects: ReadonlySet<string>) =>
      inFlight.some((batch) => [...subjects].some((subject) => batch.subjects.has(subject)));
    try {
      for (;;) {
        // A leader that lost its lock (its session ended while it was frozen) reads nothing more: another leads.
        if (leading.aborted) break;
        const rows = await guardDatabase(() =>
          this.#database.sql.query<ReadRow>(statements.unsentExcept, [
            [...handedOut],
            this.#options.batchSize,
          ]),
        );
        if (rows.length === 0) break;
        for (const row of rows) handedOut.add(row.seq);
        const subjects = new Set(rows.map((row) => row.subject));
        while (inFlight.length >= this.#options.batchesInFlight || sharesSubject(subjects))
          await settleOldest();
        const batch: InFlightBatch = { rows, subjects, confirmed: this.#publish(rows) };
        batch.confirmed.catch(() => undefined); // settled (and its failure reported) in order
        inFlight.push(batch);
        if (rows.length < this.#options.batchSize) break;
      }
      while (inFlight.length > 0) await settleOldest();
    } catch (error) {
      // Nothing is left unsettled: batches still in flight end (they are not marked, so they go out again).
      await Promise.allSettled(inFlight.map((batch) => batch.confirmed));
      await marking.catch(() => undefined);
      throw error;
    }
    await marking;
  }

  /** Hands rows to the broker in subject waves, each confirmed before the next. */
  async #publish(rows: readonly OutboxRow[]): Promise<void> {
    await this.#beforePublishing(rows);
    const system = this.#bus.status().adapter;
    for (const wave of subjectWaves(rows)) {
      const spans = startPublishSpans(wave, system);
      try {
        await this.#policy.execute((signal) => this.#bus.publish(wave, signal), this.#stopping.signal);
      } catch (error) {
        // Abandoned by stop() is no failed publish: the rows go out later.
        if (!this.#stopping.signal.aborted) for (const span of spans) recordFailure(span, error);
        throw error;
      } finally {
        for (const span of spans) span.end();
      }
    }
  }

  /**
   * The step before publishing, when the rows can leave now. While the breaker is open (or the relay stops), the
   * publish fails at once and the rows are read again later: the step would only be repeated at every retry (a
   * broker outage would rewrite, and invalidate on every instance, the same students each time). A failing step
   * must not hold the rows back for good: they leave without it, also when it throws before returning a promise.
   */
  async #beforePublishing(rows: readonly OutboxRow[]): Promise<void> {
    const step = this.#beforePublish;
    if (!step || this.#stopping.signal.aborted || this.#policy.breakerState() === 'open') return;
    try {
      await step(rows);
    } catch (error) {
      this.#logger.warn({ err: error }, 'the step before publishing failed; publishing anyway');
    }
  }

  async #markSent(rows: readonly OutboxRow[]): Promise<void> {
    await guardDatabase(() =>
      this.#database.sql.query(statements.markSent, [new Date(), rows.map((row) => row.id)]),
    );
    this.#published += rows.length;
  }

  /** Deletes expired sent rows, for at most CLEANUP_BUDGET_MS; true when some are left for right after the next drain. */
  async #cleanUp(): Promise<boolean> {
    if (Date.now() - this.#lastCleanup < CLEANUP_EVERY_MS) return false;
    const cutoff = new Date(Date.now() - this.#options.retentionMs);
    let complete: boolean;
    try {
      ({ complete } = await pruneSentOutbox(
        this.#database,
        cutoff,
        this.#stopping.signal,
        CLEANUP_BUDGET_MS,
      ));
    } catch (error) {
      // A cleanup that fails (a statement timeout, a lock) is tried again in CLEANUP_EVERY_MS, not after every drain.
      // Said on its own: the drain before it published, so this is no publishing outage.
      this.#lastCleanup = Date.now();
      this.#noteError('sent outbox rows not cleaned up; tried again later', error);
      return false;
    }
    if (complete || this.#stopping.signal.aborted) this.#lastCleanup = Date.now();
    return !complete && !this.#stopping.signal.aborted;
  }

  /**
   * Rows not published yet (by any relay of this database; above BACKLOG_COUNTED, an upper bound). Callers at the
   * same time share one count: while the database stalls, health probes and scrapes do not each add a query waiting
   * on the pool.
   */
  backlog(): Promise<number> {
    this.#backlogCount ??= this.#countBacklog().finally(() => (this.#backlogCount = undefined));
    return this.#backlogCount;
  }

  /** The backlog, or undefined when the database does not give it within CHECK_WAIT_MS: for a probe, or a stop. */
  backlogIfAnswered(): Promise<number | undefined> {
    return within(
      this.backlog().catch(() => undefined),
      CHECK_WAIT_MS,
    );
  }

  async #countBacklog(): Promise<number> {
    const [row] = await guardDatabase(() =>
      this.#database.sql.query<{ count: number }>(statements.backlog, [BACKLOG_COUNTED]),
    );
    return row?.count ?? 0;
  }

  /**
   * Waits `ms`, or less on a stop or lost leadership. With `wakeOnWork`, a NOTIFY ends the wait too (and one
   * that arrived meanwhile skips it); while backing off from a failure, new writes must not cut the backoff short.
   */
  async #idle(ms: number, wakeOnWork: boolean): Promise<void> {
    if (this.#stopping.signal.aborted) return;
    if (wakeOnWork && this.#workPending) {
      this.#workPending = false;
      return;
    }
    this.#wakeOnWork = wakeOnWork;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
    this.#wake = undefined;
    if (wakeOnWork) this.#workPending = false;
  }

  #signalWork(): void {
    this.#workPending = true;
    if (this.#wakeOnWork) this.#wake?.();
  }

  #noteError(message: string, error: unknown): void {
    this.#lastError = error instanceof Error ? error.message : String(error);
    // A standby retries every 2 s while the database is down: a few lines per outage, not one per attempt.
    this.#errorLog.run((unsaid, lastAt) =>
      this.#logger.warn({ ...expectedFailure(error), failedUnlogged: unsaid, lastAt }, message),
    );
  }

  /**
   * Says that the events wait in the outbox, and how many (once per ERROR_LOG_EVERY_MS while it lasts): the broker's
   * own lines say only that a publish failed. Counted only when said, and within CHECK_WAIT_MS: left out when the
   * database does not give it (it may be what is down), never failing the relay.
   */
  #notePublishFailure(error: unknown): void {
    this.#lastError = error instanceof Error ? error.message : String(error);
    const outage = (this.#outage ??= { since: Date.now(), published: this.#published });
    this.#publishFailureLog.run((unsaid, lastAt) => {
      this.#publishFailureSaid = this.backlogIfAnswered().then((backlog) =>
        this.#logger.warn(
          {
            ...expectedFailure(error),
            failedUnlogged: unsaid,
            lastAt,
            backlog,
            failingSince: new Date(outage.since).toISOString(),
          },
          'publishing the outbox failed; the events wait in the outbox',
        ),
      );
    });
  }

  /** The drain that began at `drainStarted` published the backlog `outage` left: it is over. */
  async #sayDrained(outage: Outage, drainStarted: number): Promise<void> {
    const drainedAt = Date.now();
    this.#outage = undefined;
    // A failure line held back for later would come after this one, and read as a new failure.
    this.#publishFailureLog.reset();
    await this.#publishFailureSaid;
    this.#logger.info(
      {
        published: this.#published - outage.published,
        downMs: drainedAt - outage.since,
        tookMs: drainedAt - drainStarted,
      },
      'outbox drained',
    );
  }
}

/** A relay with the configured resilience around its broker publishes, started at once. */
export function startOutboxRelay(deps: {
  database: Database;
  bus: MessageBus;
  resilience: ResilienceOptions;
  logger: Logger;
  topology?: Topology;
  options?: Partial<OutboxRelayOptions>;
  beforePublish?: BeforePublish;
}): OutboxRelay {
  const relay = new OutboxRelay({
    ...deps,
    policy: createResiliencePolicy('broker-publish', deps.resilience, deps.logger),
  });
  relay.start();
  return relay;
}
