import type { DomainError } from '../../domain/errors.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import type { StudentDetails, StudentSnapshot } from '../../domain/student.ts';
import { completeDetails, type StudentWriteDeps } from './create-student.ts';
import { loadForWrite, type VersionCondition } from './load-for-write.ts';

export interface UpdateStudentCommand {
  readonly id: string;
  readonly details: Partial<StudentDetails>;
  readonly actor: string;
  readonly precondition?: VersionCondition;
}

export function updateStudent(deps: StudentWriteDeps) {
  return (command: UpdateStudentCommand): Promise<Result<StudentSnapshot, DomainError>> =>
    deps.unitOfWork.transaction(async ({ students }) => {
      const loaded = await loadForWrite(students, command.id, command.precondition);
      if (!loaded.ok) return loaded;
      const student = loaded.value;
      const loadedVersion = student.version;
      const updated = student.update({
        details: completeDetails(command.details, deps.generator),
        actor: command.actor,
        now: deps.clock.now(),
      });
      if (!updated.ok) return err(updated.error);
      await students.update(student, loadedVersion);
      return ok(student.snapshot());
    });
}
