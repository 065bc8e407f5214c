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

/** The student a DTO shows (as carried by a notification): `toStudentDto`, undone. */
export function fromStudentDto(dto: StudentDto): StudentSnapshot {
  return {
    id: dto.id,
    firstName: dto.firstName,
    lastName: dto.lastName,
    email: dto.email,
    updates: dto.updates,
    created: new Date(dto.created),
    createdBy: dto.createdBy,
    lastModified: dto.lastModified === null ? null : new Date(dto.lastModified),
    lastModifiedBy: dto.lastModifiedBy,
    version: dto.version,
  };
}
