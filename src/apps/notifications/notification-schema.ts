import { z } from 'zod';
import type { NewReplayLogEntry } from '../../application/ports/replay-log.ts';
import { NotificationEventTypes } from '../../contracts/students.ts';
import { ok, type Result } from '../../domain/result.ts';
import { cloudEventSchema } from '../../infrastructure/messaging/cloud-event-schema.ts';
import { parseJsonMessage } from '../../infrastructure/messaging/json-message.ts';

const eventTypes = Object.values(NotificationEventTypes) as [string, ...string[]];

/** The payload clients receive, in the original's shape; the student is passed through as sent. */
const StudentNotificationSchema = z.object({
  eventType: z.enum(eventTypes),
  routingKey: z.string().min(1),
  student: z.looseObject({ id: z.uuid() }),
  timestamp: z.iso.datetime({ offset: true }),
  userId: z.string().nullable(),
});

/** A student notification in its CloudEvent envelope. */
const NotificationCloudEventSchema = cloudEventSchema(z.enum(eventTypes), StudentNotificationSchema)
  .refine((event) => event.type === event.data.eventType, {
    message: 'type must equal data.eventType',
    path: ['type'],
  })
  .refine((event) => event.subject === event.data.student.id, {
    message: 'subject must be the id of data.student',
    path: ['subject'],
  });

export interface ParsedNotification {
  readonly entry: NewReplayLogEntry;
  /** The CloudEvent `time`: when the change it reports happened. */
  readonly time: string;
}

/** The message body as a replay log entry, or why it is not a notification (the dead-letter reason). */
export function parseNotification(body: Buffer): Result<ParsedNotification, string> {
  const parsed = parseJsonMessage(body, NotificationCloudEventSchema, 'a notification CloudEvent');
  if (!parsed.ok) return parsed;
  const event = parsed.value;
  return ok({
    entry: {
      messageId: event.id,
      type: event.type,
      subject: event.subject,
      data: JSON.stringify(event.data),
    },
    time: event.time,
  });
}
