/**
 * An error whose message is meant for the caller: a hub method that throws it fails the invocation with
 * "... HubException: <message>". Any other error reaches the client only as a generic text.
 */
export class HubError extends Error {
  override readonly name = 'HubError';
}
