import { causes, DependencyBusyError, DependencyUnavailableError } from '../../application/errors.ts';

// Connection-level failures: the server is down, restarting, refusing connections or unreachable.
const UNAVAILABLE_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
// 57014: cancelled (an operator's pg_cancel_backend, a statement_timeout set on the server). 25006, 53100, 53200: the
// server refuses every write for now (read-only during a failover or by `default_transaction_read_only`, out of disk
// or memory): an API request hears a 503 to retry, not a 500, and a consumer waits for the server as for one that is
// down, since every message would fail alike (none is its own refusal, below).
const UNAVAILABLE_SQLSTATE = /^(08|57P0[1-3]|53300|57014|25006|53100|53200)/;
// The last: a database an operator closed to connections (ALLOW_CONNECTIONS false), SQLSTATE 55000, a class too wide
// to take whole.
const UNAVAILABLE_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|is not currently accepting connections/i;
// pg's `query_timeout`: no answer in time, from a server that may be gone without a word.
const QUERY_TIMEOUT_MESSAGE = 'Query read timeout';

// Refusals of one transaction that pass by themselves: a serialization failure or deadlock (PostgreSQL asks for the
// transaction again), a lock or statement timeout (another transaction held the row too long).
const PASSING_REFUSAL_SQLSTATES = new Set(['40001', '40P01', '55P03', '57014']);

/**
 * PostgreSQL refused the transaction for now (above): trying it again may well succeed. To an API request that is a
 * 503 with Retry-After like an outage (see guardDatabase); to a consumer it is its own message's, tried again.
 */
export function isPassingRefusal(error: unknown): boolean {
  for (const cause of causes(error)) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === 'string' && PASSING_REFUSAL_SQLSTATES.has(code)) return true;
  }
  return false;
}

/** A statement that got no answer within the connection's `query_timeout`. */
export function isQueryTimeout(error: unknown): boolean {
  return error instanceof Error && error.message === QUERY_TIMEOUT_MESSAGE;
}

function isUnavailable(error: unknown): boolean {
  for (const current of causes(error)) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && (UNAVAILABLE_NODE_CODES.has(code) || UNAVAILABLE_SQLSTATE.test(code)))
      return true;
    if (current instanceof AggregateError && current.errors.some(isUnavailable)) return true;
    if (UNAVAILABLE_MESSAGES.test(current.message) || isQueryTimeout(current)) return true;
  }
  return false;
}

// No connection could be made: nothing listens, no such host, the server starting up or shutting down, or full.
const CONNECT_REFUSED_CODES = /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|57P03|53300|08001|08004)$/;

/**
 * Whether `error`, or one it was caused by, says a new connection was refused: the database is away, not merely busy
 * (a wait for a pooled connection that timed out) or one session lost (a backend terminated).
 */
export function isConnectRefused(error: unknown): boolean {
  for (const current of causes(error)) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECT_REFUSED_CODES.test(code)) return true;
    if (current instanceof AggregateError && current.errors.some(isConnectRefused)) return true;
  }
  return false;
}

/**
 * Runs a database call, turning "cannot reach the database" into DependencyUnavailableError and "refused for now,
 * try again" (a lock timeout, a deadlock) into DependencyBusyError: the caller is told to retry, not that it failed.
 */
export async function guardDatabase<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (isUnavailable(error)) throw new DependencyUnavailableError('database', { cause: error });
    if (isPassingRefusal(error)) throw new DependencyBusyError('database', { cause: error });
    throw error;
  }
}
