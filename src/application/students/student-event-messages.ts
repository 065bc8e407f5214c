import { Exchanges, StudentRoutingKeys } from '../../contracts/messaging.ts';
import type { StudentEventData, StudentEventType } from '../../contracts/students.ts';
import type { StudentEvent } from '../../domain/student-events.ts';
import type { OutboxMessage } from '../ports/outbox.ts';
import { toStudentDto } from './student-dto.ts';

const routingKeys = {
  StudentCreated: StudentRoutingKeys.created,
  StudentUpdated: StudentRoutingKeys.updated,
  StudentDeleted: StudentRoutingKeys.deleted,
} as const satisfies Record<StudentEvent['type'], string>;

/** A domain event as the outbox row that carries it to exchange `students`. */
export function studentEventMessage(event: StudentEvent, id: string): OutboxMessage {
  const data: StudentEventData = { student: toStudentDto(event.student), actor: event.actor };
  return {
    id,
    exchange: Exchanges.students,
    routingKey: routingKeys[event.type],
    type: event.type satisfies StudentEventType,
    subject: event.studentId,
    payload: data,
    occurredAt: event.occurredAt,
  };
}
