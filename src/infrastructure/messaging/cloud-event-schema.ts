import { z } from 'zod';
import { isStorableText, NOT_STORABLE_TEXT } from '../../domain/student.ts';

// The worker's inbox keys on the event id, the notifications' replay log on it too: it must fit a PostgreSQL index
// entry (about 2.7 kB) and a Redis key, with room to spare.
const MAX_ID_LENGTH = 256;

/** Text a consumer may write (inbox, notification payloads): a NUL or an unpaired surrogate would fail the insert. */
export const storableText = () => z.string().refine(isStorableText, NOT_STORABLE_TEXT);

/**
 * The CloudEvents 1.0 envelope (structured JSON) of every message on our broker (`contracts/cloud-events.ts`), read
 * the same way by each consumer: the spec's required attributes, the subject (the student id) consumers order by and
 * the time they measure the queue's lag from, both of which our relay always sends. Extension attributes are ignored.
 */
export function cloudEventSchema<Type extends z.ZodType<string>, Data extends z.ZodType>(
  type: Type,
  data: Data,
) {
  return z.object({
    specversion: z.literal('1.0'),
    id: storableText().min(1).max(MAX_ID_LENGTH),
    source: z.string().min(1),
    type,
    // The student id: a malformed one would otherwise reach the database as a query error.
    subject: z.uuid(),
    time: z.iso.datetime({ offset: true }),
    datacontenttype: z.literal('application/json').default('application/json'),
    data,
  });
}
