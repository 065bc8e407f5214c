import type { Database } from './database.ts';
import { guardDatabase } from './database-errors.ts';
import { sqlStatement } from './sql.ts';

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

/**
 * Forgets the messages handled before `cutoff`, so the inbox does not grow without end. A few thousand rows per
 * statement: no transaction holds many row locks for long, next to the worker's own.
 */
export async function pruneInbox(database: Database, cutoff: Date): Promise<number> {
  let deleted = 0;
  for (;;) {
    const [row] = await guardDatabase(() =>
      database.sql.query<{ count: number }>(deleteProcessedBefore, [cutoff, PRUNE_BATCH]),
    );
    const count = row?.count ?? 0;
    deleted += count;
    if (count < PRUNE_BATCH) return deleted;
  }
}
