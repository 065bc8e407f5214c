/**
 * An error whose message is meant for the caller: a hub method that throws it fails the invocation with
 * "... HubException: <message>". Any other error reaches the client only as a generic text.
 */
export class HubError extends Error {
  override readonly name = 'HubError';
}

/**
 * Thrown by the `authenticate` hook for a caller it knows but will not let in (say, a valid token without the
 * needed role): the request gets 403 instead of 401, so the client does not just fetch a new token and retry.
 */
export class ForbiddenError extends Error {
  override readonly name = 'ForbiddenError';
}

/**
 * Thrown by the `authenticate` hook when it cannot decide now (say, the identity provider's key set cannot be
 * fetched): the request gets 503 instead of 401, so the client retries later with the same token.
 */
export class AuthenticationUnavailableError extends Error {
  override readonly name = 'AuthenticationUnavailableError';
}

/**
 * Thrown by the `admit` hook to turn a new connection away: 429 when it is the caller's doing (too many of their
 * own), 503 when the server is full (a client retries later, or at another instance).
 */
export class ConnectionRefusedError extends Error {
  override readonly name = 'ConnectionRefusedError';
  constructor(
    readonly status: 429 | 503,
    message: string,
  ) {
    super(message);
  }
}
