import type { DomainError } from '../../domain/errors.ts';
import { ok, type Result } from '../../domain/result.ts';
import type { StudentSnapshot } from '../../domain/student.ts';
import type { StudentWriteDeps } from './create-student.ts';
import { loadForWrite, type VersionCondition } from './load-for-write.ts';

export interface DeleteStudentCommand {
  readonly id: string;
  readonly actor: string;
  readonly precondition?: VersionCondition;
}

export function deleteStudent(deps: Pick<StudentWriteDeps, 'unitOfWork' | 'clock'>) {
  return (command: DeleteStudentCommand): Promise<Result<StudentSnapshot, DomainError>> =>
    deps.unitOfWork.transaction(async ({ students }) => {
      const loaded = await loadForWrite(students, command.id, command.precondition);
      if (!loaded.ok) return loaded;
      loaded.value.delete({ actor: command.actor, now: deps.clock.now() });
      await students.remove(loaded.value);
      return ok(loaded.value.snapshot());
    });
}
