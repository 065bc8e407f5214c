import type { z } from 'zod';
import { deadLetterReason } from '../../application/ports/message-bus.ts';
import { err, ok, type Result } from '../../domain/result.ts';

/**
 * A message body (JSON) as `schema` reads it, or why it cannot be: the dead-letter reason, naming every broken field
 * (`what` says what the body should have been, e.g. "a student CloudEvent").
 */
export function parseJsonMessage<T extends z.ZodType>(
  body: Buffer,
  schema: T,
  what: string,
): Result<z.output<T>, string> {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    return err(deadLetterReason(`body is not JSON: ${(error as Error).message}`));
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return ok(parsed.data);
  const issues = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
  return err(deadLetterReason(`not ${what}: ${issues.join('; ')}`));
}
