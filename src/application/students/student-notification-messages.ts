import { Exchanges, NotificationRoutingKeys } from '../../contracts/messaging.ts';
import type { NotificationEventType, StudentDto, StudentNotification } from '../../contracts/students.ts';
import type { OutboxMessage } from '../ports/outbox.ts';

const routingKeys = {
  StudentCreated: NotificationRoutingKeys.created,
  StudentUpdated: NotificationRoutingKeys.updated,
  StudentCached: NotificationRoutingKeys.cached,
  StudentDeleted: NotificationRoutingKeys.deleted,
} as const satisfies Record<NotificationEventType, string>;

/** A notification as the outbox row that carries it to exchange `notifications`, in the original's payload shape. */
export function studentNotificationMessage(input: {
  readonly id: string;
  readonly eventType: NotificationEventType;
  readonly student: StudentDto;
  readonly userId: string | null;
  readonly now: Date;
  readonly traceparent?: string | undefined;
}): OutboxMessage {
  const routingKey = routingKeys[input.eventType];
  const payload: StudentNotification = {
    eventType: input.eventType,
    routingKey,
    student: input.student,
    timestamp: input.now.toISOString(),
    userId: input.userId,
  };
  return {
    id: input.id,
    exchange: Exchanges.notifications,
    routingKey,
    type: input.eventType,
    subject: input.student.id,
    payload,
    occurredAt: input.now,
    ...(input.traceparent ? { traceparent: input.traceparent } : {}),
  };
}
