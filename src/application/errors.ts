/**
 * A dependency (database, broker, cache) cannot be reached right now. Adapters translate their driver's
 * connection errors into this, so the edge can answer "try again later" instead of reporting a bug.
 */
export class DependencyUnavailableError extends Error {
  readonly dependency: string;

  constructor(dependency: string, options?: { cause?: unknown }) {
    super(`${dependency} is unavailable`, options);
    this.name = 'DependencyUnavailableError';
    this.dependency = dependency;
  }
}

/**
 * The dependency is there but refused this request for now (the database: a lock held past the lock timeout, a
 * deadlock, a serialization failure): the caller is told to retry, as for an outage, but it is no outage.
 */
export class DependencyBusyError extends DependencyUnavailableError {
  constructor(dependency: string, options?: { cause?: unknown }) {
    super(dependency, options);
    this.message = `${dependency} is busy`;
    this.name = 'DependencyBusyError';
  }
}

/** An `Idempotency-Key` that a committed write used with another request: the edge answers 422. */
export class IdempotencyKeyReusedError extends Error {
  constructor() {
    super('The idempotency key was already used with a different request.');
    this.name = 'IdempotencyKeyReusedError';
  }
}

/** `error` and the errors it was caused by (`cause`), outermost first. */
export function* causes(error: unknown): Generator<Error> {
  for (let current = error; current instanceof Error; current = current.cause) yield current;
}
