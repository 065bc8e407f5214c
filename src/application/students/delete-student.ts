import { ok } from '../../domain/result.ts';
import type { KeyedRequest } from '../ports/idempotency-keys.ts';
import type { StudentWriteDeps } from './create-student.ts';
import { loadForWrite, type VersionCondition } from './load-for-write.ts';
import { writeOnce, type StudentWriteResult } from './write-once.ts';

export interface DeleteStudentCommand {
  readonly id: string;
  readonly actor: string;
  readonly precondition?: VersionCondition;
  /** Set when the request carried an Idempotency-Key: the delete runs at most once under it. */
  readonly idempotency?: KeyedRequest;
}

export function deleteStudent(deps: Pick<StudentWriteDeps, 'unitOfWork' | 'clock'>) {
  return (command: DeleteStudentCommand): Promise<StudentWriteResult> =>
    writeOnce(deps.unitOfWork, command.idempotency, async ({ students }) => {
      const loaded = await loadForWrite(students, command.id, command.precondition);
      if (!loaded.ok) return loaded;
      loaded.value.delete({ actor: command.actor, now: deps.clock.now() });
      await students.remove(loaded.value);
      return ok(loaded.value.snapshot());
    });
}
