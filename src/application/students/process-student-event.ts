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
import type { OutboxMessage } from '../ports/outbox.ts';
import type { UnitOfWork } from '../ports/student-repository.ts';
import { toStudentDto } from './student-dto.ts';
import { studentNotificationMessage } from './student-notification-messages.ts';

/** A domain event from exchange `students`, as the worker received it. */
export interface ProcessStudentEventCommand {
  readonly event: CloudEvent<StudentEventData> & { readonly type: StudentEventType };
  /**
   * W3C trace context (traceparent) the event is processed in; its notifications continue that trace. Without one
   * they continue whatever trace is active.
   */
  readonly traceparent?: string;
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

/** The inbox name the worker de-duplicates under, whichever of its queues (one, or a partition) a message came from. */
export const WORKER_INBOX = Queues.studentsWorker;
const ACTOR = 'worker';

/**
 * The original's background processing, in one transaction: inbox check, `updates += 1` on the re-read student,
 * and the notifications in the outbox, so a redelivered event changes nothing twice and no notification is lost.
 * Several events may share the transaction (the worker passes those that arrived together): each one's effects
 * are still all-or-nothing, and the results come back in the order of the commands.
 */
export function processStudentEvents(deps: ProcessStudentEventDeps) {
  return (commands: readonly ProcessStudentEventCommand[]): Promise<ProcessStudentEventResult[]> =>
    deps.unitOfWork.transaction(async ({ students, inbox, outbox }) => {
      const fresh = new Set(
        await inbox.markProcessed(unique(commands.map(({ event }) => event.id)), WORKER_INBOX),
      );
      const loaded = await students.findManyForUpdate(
        unique(
          commands
            .filter(({ event }) => fresh.has(event.id) && event.type !== 'StudentDeleted')
            .map(({ event }) => event.subject),
        ),
      );
      const now = deps.clock.now();
      const notifications: OutboxMessage[] = [];
      const results: ProcessStudentEventResult[] = [];
      for (const { event, traceparent } of commands) {
        // A message delivered twice in one batch is handled once, like any redelivery.
        if (!fresh.delete(event.id)) {
          results.push({ status: 'duplicate' });
          continue;
        }
        const notify = (eventType: NotificationEventType, student: StudentDto) =>
          notifications.push(
            studentNotificationMessage({
              id: deps.ids.next(),
              eventType,
              student,
              userId: event.data.actor,
              now,
              traceparent,
            }),
          );

        if (event.type === 'StudentDeleted') {
          notify(NotificationEventTypes.deleted, event.data.student);
          results.push({ status: 'deleted', studentId: event.subject });
          continue;
        }
        const student = loaded.get(event.subject);
        if (!student) {
          results.push({ status: 'studentGone', studentId: event.subject });
          continue;
        }
        const loadedVersion = student.version;
        student.recordBackgroundProcessing({ actor: ACTOR, now });
        await students.update(student, loadedVersion);
        const dto = toStudentDto(student.snapshot());
        // The event's own notification first, then `cached`, as the original sent them.
        notify(
          event.type === 'StudentCreated' ? NotificationEventTypes.created : NotificationEventTypes.updated,
          dto,
        );
        notify(NotificationEventTypes.cached, dto);
        results.push({ status: 'processed', student: student.snapshot() });
      }
      await outbox.append(notifications);
      return results;
    });
}

const unique = (values: readonly string[]) => [...new Set(values)];
