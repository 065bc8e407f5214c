import type { DomainError } from '../../domain/errors.ts';
import type { Result } from '../../domain/result.ts';
import { Student, type StudentDetails, type StudentSnapshot } from '../../domain/student.ts';
import type { Clock } from '../ports/clock.ts';
import type { IdGenerator } from '../ports/id-generator.ts';
import type { StudentDataGenerator } from '../ports/student-data-generator.ts';
import type { UnitOfWork } from '../ports/student-repository.ts';

export interface CreateStudentCommand {
  /** Fields left out are generated, as the original generated fake students. */
  readonly details: Partial<StudentDetails>;
  readonly actor: string;
}

export interface StudentWriteDeps {
  readonly unitOfWork: UnitOfWork;
  readonly ids: IdGenerator;
  readonly clock: Clock;
  readonly generator: StudentDataGenerator;
}

/** Omitted fields take generated values; given ones are kept as sent (the domain trims and checks them). */
export function completeDetails(
  details: Partial<StudentDetails>,
  generator: StudentDataGenerator,
): StudentDetails {
  const { firstName, lastName, email } = details;
  if (firstName !== undefined && lastName !== undefined && email !== undefined)
    return { firstName, lastName, email };
  const generated = generator.generate();
  return {
    firstName: firstName ?? generated.firstName,
    lastName: lastName ?? generated.lastName,
    email: email ?? generated.email,
  };
}

export function createStudent(deps: StudentWriteDeps) {
  return async (command: CreateStudentCommand): Promise<Result<StudentSnapshot, DomainError>> => {
    const created = Student.create({
      id: deps.ids.next(),
      details: completeDetails(command.details, deps.generator),
      actor: command.actor,
      now: deps.clock.now(),
    });
    if (!created.ok) return created;
    await deps.unitOfWork.transaction((scope) => scope.students.add(created.value));
    return { ok: true, value: created.value.snapshot() };
  };
}
