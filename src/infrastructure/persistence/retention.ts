import type { Logger } from '../logging/logger.ts';
import { runPeriodically, type Periodic } from '../runtime/periodic.ts';
import type { Database } from './database.ts';
import { guardDatabase } from './database-errors.ts';
import { sqlStatement, type SqlStatement } from './sql.ts';
import { expectedFailure } from '../logging/expected-failure.ts';

const PRUNE_BATCH = 5_000;

const deleteProcessedBefore = sqlStatement(
  'inbox_delete_processed_before',
  `with doomed as (
     delete from inbox where (consumer, message_id) in (
       select consumer, message_id from inbox where processed_at < $1 limit $2
     ) returning 1
   )
   select count(*)::int as count from doomed`,
);

// Expiry checked again on the row deleted: a write that took the key over meanwhile (its lock waited for) renewed it.
const deleteExpiredKeys = sqlStatement(
  'idempotency_delete_expired',
  `with doomed as (
     delete from idempotency_keys where key in (
       select key from idempotency_keys where expires_at < $1 limit $2
     ) and expires_at < $1 returning 1
   )
   select count(*)::int as count from doomed`,
);

const deleteSentBefore = sqlStatement(
  'outbox_delete_sent_before',
  `with doomed as (
     delete from outbox where id in (select id from outbox where sent_at < $1 limit $2) returning 1
   )
   select count(*)::int as count from doomed`,
);

/**
 * Deletes what `statement` selects before `cutoff`, a few thousand rows per statement: no transaction holds many
 * row locks for long, next to the writers' own, nor runs into the statement timeout. Stops between batches on
 * `stopping`, or once `until` (an epoch ms) has passed; `complete` tells whether nothing past its retention is left.
 */
async function deleteInBatches(
  database: Database,
  statement: SqlStatement,
  cutoff: Date,
  stopping?: AbortSignal,
  until = Number.POSITIVE_INFINITY,
): Promise<{ deleted: number; complete: boolean }> {
  let deleted = 0;
  // Stopped between batches: what is left goes next time.
  while (!stopping?.aborted && Date.now() < until) {
    const [row] = await guardDatabase(() =>
      database.sql.query<{ count: number }>(statement, [cutoff, PRUNE_BATCH]),
    );
    const count = row?.count ?? 0;
    deleted += count;
    if (count < PRUNE_BATCH) return { deleted, complete: true };
  }
  return { deleted, complete: false };
}

/** Forgets the messages handled before `cutoff`, so the inbox does not grow without end. */
export function pruneInbox(database: Database, cutoff: Date, stopping?: AbortSignal): Promise<number> {
  return deleteInBatches(database, deleteProcessedBefore, cutoff, stopping).then(({ deleted }) => deleted);
}

/**
 * Deletes the outbox rows published before `cutoff` (a relay keeps them a while, for diagnosis), for at most
 * `budgetMs`: the relay publishes nothing meanwhile, and a backlog of expired rows (an outage, a shortened retention)
 * can take minutes to delete. `complete` is false when some are left for the next call.
 */
export function pruneSentOutbox(
  database: Database,
  cutoff: Date,
  stopping: AbortSignal,
  budgetMs = Number.POSITIVE_INFINITY,
): Promise<{ deleted: number; complete: boolean }> {
  return deleteInBatches(database, deleteSentBefore, cutoff, stopping, Date.now() + budgetMs);
}

/** Deletes the idempotency keys expired at `now` (a claim already takes an expired key over). */
export function pruneIdempotencyKeys(database: Database, now: Date, stopping?: AbortSignal): Promise<number> {
  return deleteInBatches(database, deleteExpiredKeys, now, stopping).then(({ deleted }) => deleted);
}

/**
 * Runs `prune` now and then every `everyMs`. A failure is logged and waits for the next run; what is kept meanwhile
 * is only kept longer.
 */
export function schedulePruning(
  prune: (stopping: AbortSignal) => Promise<number>,
  { everyMs, logger, what }: { readonly everyMs: number; readonly logger: Logger; readonly what: string },
): Periodic {
  return runPeriodically(
    (stopping) =>
      prune(stopping).then(
        (deleted) => {
          if (deleted > 0) logger.info({ deleted }, `${what}: deleted what is past its retention`);
        },
        (error: unknown) =>
          logger.warn(expectedFailure(error), `${what}: pruning failed; it runs again later`),
      ),
    everyMs,
  );
}
