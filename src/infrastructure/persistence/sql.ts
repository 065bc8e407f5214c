/**
 * A statement the hot paths run, written once as PostgreSQL SQL for both engines. The name makes PostgreSQL
 * parse and plan it once per connection instead of on every call (PGlite, in process, ignores it).
 */
export interface SqlStatement {
  readonly name: string;
  readonly text: string;
  /**
   * On PostgreSQL, how long it may go unanswered before it fails and its connection is discarded, when that is shorter
   * than the pool's: for a statement whose answer is given up on sooner (a count a probe or a stop leaves out), which
   * must not hold a connection, or the pool's close, any longer.
   */
  readonly unansweredAfterMs?: number;
}

/** Runs statements on one connection (inside a transaction) or on the pool (each statement on its own). */
export interface SqlExecutor {
  query<Row>(statement: SqlStatement, params: readonly unknown[]): Promise<Row[]>;
}

export function sqlStatement(
  name: string,
  text: string,
  options: { readonly unansweredAfterMs?: number } = {},
): SqlStatement {
  return { name, text: text.replace(/\s+/g, ' ').trim(), ...options };
}

/** The columns of `students` as a StudentSnapshot, so rows need no mapping. */
export const STUDENT_COLUMNS = `id, first_name as "firstName", last_name as "lastName", email, updates,
  created, created_by as "createdBy", last_modified as "lastModified", last_modified_by as "lastModifiedBy", version`;
