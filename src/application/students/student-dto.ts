import type { StudentDto } from '../../contracts/students.ts';
import type { StudentSnapshot } from '../../domain/student.ts';

export function toStudentDto(student: StudentSnapshot): StudentDto {
  return {
    id: student.id,
    firstName: student.firstName,
    lastName: student.lastName,
    email: student.email,
    updates: student.updates,
    created: student.created.toISOString(),
    createdBy: student.createdBy,
    lastModified: student.lastModified?.toISOString() ?? null,
    lastModifiedBy: student.lastModifiedBy,
    version: student.version,
  };
}
