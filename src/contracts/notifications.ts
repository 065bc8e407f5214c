// Wire names of the notifications service shared with the original .NET demo: SSE routes and events, the hub.

export const NotificationRoutes = {
  stream: '/api/notifications/stream',
  /** The original's path, kept as an alias. */
  streamAlias: '/api/notifications/students/stream',
  hub: '/hubs/notifications',
} as const;

/** SSE event names besides the notification types (which are sent under their `eventType`). */
export const SseEvents = {
  connected: 'connected',
  /** The log cannot resume from the client's Last-Event-ID (too old, or from a lost log): reload; live events follow. */
  reset: 'reset',
  /** No data, only an `id:` past entries the client's `?types=` filter left out (its next Last-Event-ID). */
  skipped: 'skipped',
} as const;

export const HubNames = {
  /** Every connection joins it on connect. */
  studentsGroup: 'Students',
  /** Group of one student's notifications: `student:<id>`. */
  studentGroup: (studentId: string) => `student:${studentId}`,
  connected: 'Connected',
  joinGroup: 'JoinGroup',
  leaveGroup: 'LeaveGroup',
} as const;

/** `data` of the `connected` SSE event and argument of the hub's `Connected`. */
export interface ConnectedMessage {
  readonly clientId: string;
  readonly timestamp: string;
}
