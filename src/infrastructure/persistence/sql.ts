/**
 * A statement the hot paths run, written once as PostgreSQL SQL for both engines. The name makes PostgreSQL
 * parse and plan it once per connection instead of on every call (PGlite, in process, ignores it).
 */
export interface SqlStatement {
  readonly name: string;
  readonly text: string;
}

/** Runs statements on one connection (inside a transaction) or on the pool (each statement on its own). */
export interface SqlExecutor {
  query<Row>(statement: SqlStatement, params: readonly unknown[]): Promise<Row[]>;
}

export function sqlStatement(name: string, text: string): SqlStatement {
  return { name, text: text.replace(/\s+/g, ' ').trim() };
}

/** The columns of `students` as a StudentSnapshot, so rows need no mapping. */
export const STUDENT_COLUMNS = `id, first_name as "firstName", last_name as "lastName", email, updates,
  created, created_by as "createdBy", last_modified as "lastModified", last_modified_by as "lastModifiedBy", version`;
