import type { StudentPage, StudentQueries } from '../../application/ports/student-queries.ts';
import type { StudentSnapshot } from '../../domain/student.ts';
import { guardDatabase } from './database-errors.ts';
import { sqlStatement, STUDENT_COLUMNS, type SqlExecutor } from './sql.ts';

// One extra row tells whether another page follows without a count query.
const statements = {
  findById: sqlStatement('students_find_by_id', `select ${STUDENT_COLUMNS} from students where id = $1`),
  findByIds: sqlStatement(
    'students_find_by_ids',
    `select ${STUDENT_COLUMNS} from students where id = any($1::uuid[])`,
  ),
  firstPage: sqlStatement(
    'students_first_page',
    `select ${STUDENT_COLUMNS} from students order by id limit $1`,
  ),
  pageAfter: sqlStatement(
    'students_page_after',
    `select ${STUDENT_COLUMNS} from students where id > $1 order by id limit $2`,
  ),
};

export class SqlStudentQueries implements StudentQueries {
  readonly #sql: SqlExecutor;

  constructor(sql: SqlExecutor) {
    this.#sql = sql;
  }

  findById(id: string): Promise<StudentSnapshot | undefined> {
    return guardDatabase(async () => {
      const [row] = await this.#sql.query<StudentSnapshot>(statements.findById, [id]);
      return row;
    });
  }

  findByIds(ids: readonly string[]): Promise<StudentSnapshot[]> {
    return guardDatabase(() => this.#sql.query<StudentSnapshot>(statements.findByIds, [ids]));
  }

  list({ limit, afterId }: { limit: number; afterId?: string }): Promise<StudentPage> {
    return guardDatabase(async () => {
      const rows = afterId
        ? await this.#sql.query<StudentSnapshot>(statements.pageAfter, [afterId, limit + 1])
        : await this.#sql.query<StudentSnapshot>(statements.firstPage, [limit + 1]);
      const items = rows.slice(0, limit);
      return { items, lastId: rows.length > limit ? (items.at(-1)?.id ?? null) : null };
    });
  }
}
