import { z } from 'zod';
import type { ProcessStudentEventCommand } from '../../application/students/process-student-event.ts';
import { StudentEventTypes } from '../../contracts/students.ts';
import type { Result } from '../../domain/result.ts';
import { isStorableText, NOT_STORABLE_TEXT } from '../../domain/student.ts';
import { parseJsonMessage } from '../../infrastructure/messaging/json-message.ts';

// The inbox keys on the event id: it must fit a PostgreSQL index entry (about 2.7 kB), with room to spare.
const MAX_ID_LENGTH = 256;

/** Text the worker writes (inbox, notification payloads): a NUL or an unpaired surrogate would fail the insert. */
const storableText = () => z.string().refine(isStorableText, NOT_STORABLE_TEXT);

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

/** A CloudEvents 1.0 envelope (structured JSON) of a student domain event; extension attributes are ignored. */
const StudentCloudEventSchema = z
  .object({
    specversion: z.literal('1.0'),
    id: storableText().min(1).max(MAX_ID_LENGTH),
    source: z.string().min(1),
    type: z.enum([StudentEventTypes.created, StudentEventTypes.updated, StudentEventTypes.deleted]),
    // The student id: a malformed one would otherwise reach the database as a query error.
    subject: z.uuid(),
    time: z.iso.datetime({ offset: true }),
    datacontenttype: z.literal('application/json').default('application/json'),
    data: z.object({ student: StudentDtoSchema, actor: storableText() }),
  })
  .refine((event) => event.subject === event.data.student.id, {
    message: 'subject must be the id of data.student',
    path: ['subject'],
  });

/** The message body as a student event, or why it is not one (the dead-letter reason). */
export function parseStudentEvent(body: Buffer): Result<ProcessStudentEventCommand['event'], string> {
  return parseJsonMessage(body, StudentCloudEventSchema, 'a student CloudEvent');
}
