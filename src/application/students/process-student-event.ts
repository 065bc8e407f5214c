import type { CloudEvent } from '../../contracts/cloud-events.ts';
import { Queues } from '../../contracts/messaging.ts';
import {
  NotificationEventTypes,
  type NotificationEventType,
  type StudentDto,
  type StudentEventData,
  type StudentEventType,
} from '../../contracts/students.ts';
import type { StudentSnapshot } from '../../domain/student.ts';
import type { Clock } from '../ports/clock.ts';
import type { IdGenerator } from '../ports/id-generator.ts';
import type { UnitOfWork } from '../ports/student-repository.ts';
import { toStudentDto } from './student-dto.ts';
import { studentNotificationMessage } from './student-notification-messages.ts';

/** A domain event from exchange `students`, as the worker received it. */
export interface ProcessStudentEventCommand {
  readonly event: CloudEvent<StudentEventData> & { readonly type: StudentEventType };
}

export type ProcessStudentEventResult =
  /** Already handled (a redelivery): nothing was changed. */
  | { readonly status: 'duplicate' }
  /** Created/Updated: `student` is the state after the background processing. */
  | { readonly status: 'processed'; readonly student: StudentSnapshot }
  /** The student was deleted before its Created/Updated event got here: nothing to process or notify. */
  | { readonly status: 'studentGone'; readonly studentId: string }
  /** StudentDeleted: only notified. */
  | { readonly status: 'deleted'; readonly studentId: string };

export interface ProcessStudentEventDeps {
  readonly unitOfWork: UnitOfWork;
  readonly ids: IdGenerator;
  readonly clock: Clock;
}

/** The inbox name the worker de-duplicates under: one per consuming queue. */
export const WORKER_INBOX = Queues.studentsWorker;
const ACTOR = 'worker';

/**
 * The original's background processing, in one transaction: inbox check, `updates += 1` on the re-read student,
 * and the notifications in the outbox, so a redelivered event changes nothing twice and no notification is lost.
 */
export function processStudentEvent(deps: ProcessStudentEventDeps) {
  return ({ event }: ProcessStudentEventCommand): Promise<ProcessStudentEventResult> =>
    deps.unitOfWork.transaction(async ({ students, inbox, outbox }) => {
      if (!(await inbox.markProcessed(event.id, WORKER_INBOX))) return { status: 'duplicate' } as const;
      const now = deps.clock.now();
      const notify = (eventType: NotificationEventType, student: StudentDto) =>
        studentNotificationMessage({
          id: deps.ids.next(),
          eventType,
          student,
          userId: event.data.actor,
          now,
        });

      if (event.type === 'StudentDeleted') {
        await outbox.append([notify(NotificationEventTypes.deleted, event.data.student)]);
        return { status: 'deleted', studentId: event.subject } as const;
      }

      const student = await students.findByIdForUpdate(event.subject);
      if (!student) return { status: 'studentGone', studentId: event.subject } as const;
      const loadedVersion = student.version;
      student.recordBackgroundProcessing({ actor: ACTOR, now });
      await students.update(student, loadedVersion);
      const dto = toStudentDto(student.snapshot());
      // The event's own notification first, then `cached`, as the original sent them.
      await outbox.append([
        notify(
          event.type === 'StudentCreated' ? NotificationEventTypes.created : NotificationEventTypes.updated,
          dto,
        ),
        notify(NotificationEventTypes.cached, dto),
      ]);
      return { status: 'processed', student: student.snapshot() } as const;
    });
}
