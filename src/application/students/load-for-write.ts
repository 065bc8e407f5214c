import type { DomainError } from '../../domain/errors.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import type { Student } from '../../domain/student.ts';
import type { StudentRepository } from '../ports/student-repository.ts';

/** An `If-Match` precondition: any existing version (`*`), or one of the listed versions. */
export type VersionCondition = { readonly any: true } | { readonly versions: readonly number[] };

/** Loads and locks a student, then checks the caller's precondition against the locked row. */
export async function loadForWrite(
  students: StudentRepository,
  id: string,
  condition: VersionCondition | undefined,
): Promise<Result<Student, DomainError>> {
  const student = await students.findByIdForUpdate(id);
  if (!student) return err({ code: 'STUDENT.NOT_FOUND', message: `Student ${id} does not exist.` });
  if (condition && 'versions' in condition && !condition.versions.includes(student.version))
    return err({
      code: 'STUDENT.VERSION_CONFLICT',
      message: `Student ${id} is at version ${student.version}, not ${condition.versions.join(' or ')}.`,
      currentVersion: student.version,
    });
  return ok(student);
}
