import { asc, eq, gt } from 'drizzle-orm';
import type { StudentPage, StudentQueries } from '../../application/ports/student-queries.ts';
import type { StudentSnapshot } from '../../domain/student.ts';
import type { Db } from './database.ts';
import { guardDatabase } from './database-errors.ts';
import { students } from './schema.ts';

export class DrizzleStudentQueries implements StudentQueries {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  findById(id: string): Promise<StudentSnapshot | undefined> {
    return guardDatabase(async () => {
      const [row] = await this.#db.select().from(students).where(eq(students.id, id));
      return row;
    });
  }

  list({ limit, afterId }: { limit: number; afterId?: string }): Promise<StudentPage> {
    return guardDatabase(async () => {
      // One extra row tells whether another page follows without a count query.
      const rows = await this.#db
        .select()
        .from(students)
        .where(afterId ? gt(students.id, afterId) : undefined)
        .orderBy(asc(students.id))
        .limit(limit + 1);
      const items = rows.slice(0, limit);
      return { items, lastId: rows.length > limit ? (items.at(-1)?.id ?? null) : null };
    });
  }
}
