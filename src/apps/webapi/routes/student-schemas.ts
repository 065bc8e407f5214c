import { z } from 'zod';
import type { StudentDto } from '../../../contracts/students.ts';
import { STUDENT_EMAIL_MAX_LENGTH, STUDENT_NAME_MAX_LENGTH, storedLength } from '../../../domain/student.ts';

/**
 * A field of at most `max` characters as stored: the spaces around it, which are trimmed, do not count. A refinement,
 * not `.max()`, which the document would state as `maxLength`, for clients to check on the text as sent. The example
 * is what Swagger UI's "Try it out" sends (else "string", which is no email address).
 */
const studentField = (what: string, max: number, example: string) =>
  z
    .string({ error: 'must be a string' })
    .refine((value) => storedLength(value) <= max, `must be at most ${max} characters`)
    .optional()
    .meta({
      description: `${what}, trimmed, then at most ${max} characters (code points); generated when left out`,
      examples: [example],
    });

/** Body of POST and PUT. Unknown fields are rejected rather than silently dropped. */
export const StudentInput = z.strictObject(
  {
    firstName: studentField('First name', STUDENT_NAME_MAX_LENGTH, 'Ada'),
    lastName: studentField('Last name', STUDENT_NAME_MAX_LENGTH, 'Lovelace'),
    email: studentField('Email address', STUDENT_EMAIL_MAX_LENGTH, 'ada@example.com'),
  },
  { error: (issue) => (issue.code === 'invalid_type' ? 'must be a JSON object' : undefined) },
);

/**
 * The answer's serializer keeps only what this lists: held to StudentDto, so a field added there and not here is a
 * type error, not a field POST and PUT silently leave out (GET sends the cached JSON as it is).
 */
export const Student = z
  .object({
    id: z.uuid(),
    firstName: z.string(),
    lastName: z.string(),
    email: z.string(),
    updates: z.number().int().describe('How many times the background worker processed this student'),
    created: z.iso.datetime(),
    createdBy: z.string(),
    lastModified: z.iso.datetime().nullable(),
    lastModifiedBy: z.string().nullable(),
    version: z.number().int().describe('Optimistic-concurrency version; the ETag is this number in quotes'),
  })
  .meta({ id: 'Student' }) satisfies z.ZodType<StudentDto>;

/**
 * `satisfies` lets an optional field of StudentDto that the schema lacks pass (the answer may omit it), yet the
 * serializer would drop it all the same: every field of StudentDto must be listed. A type error names the missing one.
 */
type _EveryFieldListed<Missing extends never = Exclude<keyof StudentDto, keyof z.output<typeof Student>>> =
  Missing;

export const StudentPage = z
  .object({
    items: z.array(Student),
    nextCursor: z
      .string()
      .nullable()
      .describe('Pass as `cursor` to get the next page; null on the last page'),
  })
  .meta({ id: 'StudentPage' });

// UUIDs are case-insensitive (RFC 9562 §4): an id in upper case names the same student as its stored lower case.
export const StudentIdParams = z.object({ id: z.uuid({ error: 'must be a UUID' }).toLowerCase() });

/** The query of a route that reads none: a parameter it would ignore (`?dryRun=true` on a DELETE) is refused. */
export const NoQuery = z.strictObject({});

const LIMIT_ERROR = 'must be an integer from 1 to 100, in decimal digits';

export const ListQuery = z.strictObject({
  // Decimal digits only: Number() (z.coerce) would also take `0x1`, `1e1` and ` 5`, which no client means as a limit.
  limit: z.preprocess(
    (value) => (typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value),
    z.number({ error: LIMIT_ERROR }).int(LIMIT_ERROR).min(1, LIMIT_ERROR).max(100, LIMIT_ERROR).default(20),
  ),
  cursor: z
    .string()
    .optional()
    .refine(
      (cursor) => cursor === undefined || decodeCursor(cursor) !== undefined,
      'is not a cursor returned by this API',
    ),
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Cursors are opaque to clients: the last id of a page, base64url-encoded. */
export function encodeCursor(lastId: string): string {
  return Buffer.from(lastId).toString('base64url');
}

/** Only a cursor as encodeCursor writes it: Buffer's decoder skips junk and padding, which would give one many spellings. */
export function decodeCursor(cursor: string): string | undefined {
  const id = Buffer.from(cursor, 'base64url').toString();
  return UUID.test(id) && encodeCursor(id) === cursor ? id : undefined;
}
