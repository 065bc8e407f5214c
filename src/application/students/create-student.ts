import { ok } from '../../domain/result.ts';
import { Student, type StudentDetails } from '../../domain/student.ts';
import type { Clock } from '../ports/clock.ts';
import type { IdGenerator } from '../ports/id-generator.ts';
import type { KeyedRequest } from '../ports/idempotency-keys.ts';
import type { StudentDataGenerator } from '../ports/student-data-generator.ts';
import type { UnitOfWork } from '../ports/student-repository.ts';
import { writeOnce, type StudentWriteResult } from './write-once.ts';

export interface CreateStudentCommand {
  /** Fields left out are generated, as the original generated fake students. */
  readonly details: Partial<StudentDetails>;
  readonly actor: string;
  /** Set when the request carried an Idempotency-Key: the create runs at most once under it. */
  readonly idempotency?: KeyedRequest;
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
  return async (command: CreateStudentCommand): Promise<StudentWriteResult> => {
    const created = Student.create({
      id: deps.ids.next(),
      details: completeDetails(command.details, deps.generator),
      actor: command.actor,
      now: deps.clock.now(),
    });
    if (!created.ok) return created;
    return writeOnce(deps.unitOfWork, command.idempotency, async ({ students }) => {
      await students.add(created.value);
      return ok(created.value.snapshot());
    });
  };
}
