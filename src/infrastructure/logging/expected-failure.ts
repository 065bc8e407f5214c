/** Thrown by code that is wrong (or was handed what it cannot take), never by a dependency that is down. */
const PROGRAMMING_ERRORS = [TypeError, RangeError, ReferenceError, SyntaxError];

export type FailureFields = { reason: string; code?: string } | { err: unknown };

/**
 * The log fields of a failure that the line's message already explains (a cache write skipped while Redis is down, a
 * lost PostgreSQL connection): why, as `reason` (with its causes) and `code` when there is one, without the stack,
 * which says nothing more there and repeats on every such line of an outage. A programming error among its causes, or
 * a thrown value that is no Error, is unexpected wherever it surfaces: it keeps `err`, stack and all.
 */
export function expectedFailure(error: unknown): FailureFields {
  const chain = causesOf(error);
  if (!chain) return { err: error };
  const code = chain.map((cause) => (cause as NodeJS.ErrnoException).code).find((c) => typeof c === 'string');
  const reason = chain
    .map((cause) => cause.message)
    .filter((message) => message !== '')
    .join(': ');
  return { reason, ...(code ? { code } : {}) };
}

/** The error and its causes, outermost first; undefined when one of them is unexpected. */
function causesOf(error: unknown): Error[] | undefined {
  const chain: Error[] = [];
  let cause = error;
  // A cause that leads back to one before it is read once.
  while (cause !== undefined && !chain.includes(cause as Error)) {
    if (!(cause instanceof Error)) return undefined;
    // One with a cause of its own wraps it (fetch's `TypeError: fetch failed` around the network's refusal): the
    // chain below it tells.
    if (cause.cause === undefined && isProgrammingError(cause)) return undefined;
    chain.push(cause);
    cause = cause.cause;
  }
  return chain;
}

/** An error only code that is wrong throws (or code handed what it cannot take), never a dependency that is down. */
export function isProgrammingError(error: unknown): boolean {
  return PROGRAMMING_ERRORS.some((type) => error instanceof type);
}
