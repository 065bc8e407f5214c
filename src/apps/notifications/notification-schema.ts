import { z } from 'zod';
import type { NewReplayLogEntry } from '../../application/ports/replay-log.ts';
import { NotificationEventTypes } from '../../contracts/students.ts';
import { ok, type Result } from '../../domain/result.ts';
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

/** A CloudEvents 1.0 envelope (structured JSON) of a student notification; extension attributes are ignored. */
const NotificationCloudEventSchema = z
  .object({
    specversion: z.literal('1.0'),
    id: z.string().min(1),
    type: z.enum(eventTypes),
    // Optional in CloudEvents; when present it gives the queue lag (message_age_seconds).
    time: z.iso.datetime({ offset: true }).optional(),
    subject: z.uuid(),
    data: StudentNotificationSchema,
  })
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
  readonly time: string | undefined;
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
