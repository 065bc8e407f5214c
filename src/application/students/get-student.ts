import type { DomainError } from '../../domain/errors.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import type { StudentSnapshot } from '../../domain/student.ts';
import type { StudentQueries } from '../ports/student-queries.ts';

export function getStudent(queries: StudentQueries) {
  return async (id: string): Promise<Result<StudentSnapshot, DomainError>> => {
    const student = await queries.findById(id);
    return student
      ? ok(student)
      : err({ code: 'STUDENT.NOT_FOUND', message: `Student ${id} does not exist.` });
  };
}
