import type { DomainError } from '../../domain/errors.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import type { Student } from '../../domain/student.ts';
import type { StudentRepository } from '../ports/student-repository.ts';

/** Versions a precondition names: `*` (any existing version), or a list. */
export type Versions = '*' | readonly number[];

/** The caller's preconditions on the version it writes over (RFC 9110 §13.1), from If-Match and If-None-Match. */
export interface VersionCondition {
  /** The student must be at one of these versions (`*`: exist). */
  readonly match?: Versions;
  /** The student must be at none of these versions (`*`: not exist, which an existing student never meets). */
  readonly noneMatch?: Versions;
}

const names = (versions: Versions) => (versions === '*' ? 'any version' : versions.join(' or '));

/** Loads and locks a student, then checks the caller's preconditions against the locked row. */
export async function loadForWrite(
  students: StudentRepository,
  id: string,
  condition: VersionCondition | undefined,
): Promise<Result<Student, DomainError>> {
  const student = await students.findByIdForUpdate(id);
  if (!student) return err({ code: 'STUDENT.NOT_FOUND', message: `Student ${id} does not exist.` });
  const { match, noneMatch } = condition ?? {};
  const conflict = (message: string) =>
    err({ code: 'STUDENT.VERSION_CONFLICT' as const, message, currentVersion: student.version });
  if (match !== undefined && match !== '*' && !match.includes(student.version))
    return conflict(
      match.length === 0
        ? // The precondition named tags, none a version (a weak tag never matches a write, RFC 9110 §13.1.1).
          `Student ${id} is at version ${student.version}; the precondition names no version (only strong ETags count).`
        : `Student ${id} is at version ${student.version}, not ${names(match)}.`,
    );
  if (noneMatch !== undefined && (noneMatch === '*' || noneMatch.includes(student.version)))
    return conflict(
      `Student ${id} is at version ${student.version}, and the request excludes ${names(noneMatch)}.`,
    );
  return ok(student);
}
