import type { DomainError } from '../../domain/errors.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import type { StudentSnapshot } from '../../domain/student.ts';
import type { CachedStudent, StudentCache } from '../ports/student-cache.ts';
import type { StudentQueries } from '../ports/student-queries.ts';
import { toStudentDto } from './student-dto.ts';

export function serializeStudent(student: StudentSnapshot): CachedStudent {
  return { json: JSON.stringify(toStudentDto(student)), version: student.version };
}

/** Cache-aside read; `bypassCache` (the original's BypassCache, `Cache-Control: no-cache`) reads the database. */
export function getStudent(queries: StudentQueries, cache: StudentCache) {
  return async (
    id: string,
    options: { bypassCache?: boolean } = {},
  ): Promise<Result<CachedStudent, DomainError>> => {
    const student = options.bypassCache
      ? await queries.findById(id).then((found) => found && serializeStudent(found))
      : await cache.getOrLoad(id, () => queries.findById(id));
    return student
      ? ok(student)
      : err({ code: 'STUDENT.NOT_FOUND', message: `Student ${id} does not exist.` });
  };
}
