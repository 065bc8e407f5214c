import type { StudentSnapshot } from './student.ts';

interface StudentEventBase {
  readonly studentId: string;
  readonly occurredAt: Date;
  readonly actor: string;
}

export interface StudentCreated extends StudentEventBase {
  readonly type: 'StudentCreated';
  readonly student: StudentSnapshot;
}

export interface StudentUpdated extends StudentEventBase {
  readonly type: 'StudentUpdated';
  readonly student: StudentSnapshot;
}

export interface StudentDeleted extends StudentEventBase {
  readonly type: 'StudentDeleted';
  readonly student: StudentSnapshot;
}

export type StudentEvent = StudentCreated | StudentUpdated | StudentDeleted;
