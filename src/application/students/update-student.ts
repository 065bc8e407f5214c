import { err, ok } from '../../domain/result.ts';
import type { StudentDetails } from '../../domain/student.ts';
import type { KeyedRequest } from '../ports/idempotency-keys.ts';
import { completeDetails, type StudentWriteDeps } from './create-student.ts';
import { loadForWrite, type VersionCondition } from './load-for-write.ts';
import { writeOnce, type StudentWriteResult } from './write-once.ts';

export interface UpdateStudentCommand {
  readonly id: string;
  readonly details: Partial<StudentDetails>;
  readonly actor: string;
  readonly precondition?: VersionCondition;
  /** Set when the request carried an Idempotency-Key: the update runs at most once under it. */
  readonly idempotency?: KeyedRequest;
}

export function updateStudent(deps: StudentWriteDeps) {
  return (command: UpdateStudentCommand): Promise<StudentWriteResult> =>
    writeOnce(deps.unitOfWork, command.idempotency, async ({ students }) => {
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
