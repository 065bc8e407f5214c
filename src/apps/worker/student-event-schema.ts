import { z } from 'zod';
import type { ProcessStudentEventCommand } from '../../application/students/process-student-event.ts';
import { StudentEventTypes } from '../../contracts/students.ts';
import type { Result } from '../../domain/result.ts';
import { cloudEventSchema, storableText } from '../../infrastructure/messaging/cloud-event-schema.ts';
import { parseJsonMessage } from '../../infrastructure/messaging/json-message.ts';

const StudentDtoSchema = z.object({
  id: z.uuid(),
  firstName: storableText(),
  lastName: storableText(),
  email: storableText(),
  updates: z.number().int().nonnegative(),
  created: z.iso.datetime({ offset: true }),
  createdBy: storableText(),
  lastModified: z.iso.datetime({ offset: true }).nullable(),
  lastModifiedBy: storableText().nullable(),
  version: z.number().int().positive(),
});

/** A student domain event in its CloudEvent envelope. */
const StudentCloudEventSchema = cloudEventSchema(
  z.enum([StudentEventTypes.created, StudentEventTypes.updated, StudentEventTypes.deleted]),
  z.object({ student: StudentDtoSchema, actor: storableText() }),
).refine((event) => event.subject === event.data.student.id, {
  message: 'subject must be the id of data.student',
  path: ['subject'],
});

/** The message body as a student event, or why it is not one (the dead-letter reason). */
export function parseStudentEvent(body: Buffer): Result<ProcessStudentEventCommand['event'], string> {
  return parseJsonMessage(body, StudentCloudEventSchema, 'a student CloudEvent');
}
