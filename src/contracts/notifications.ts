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
  /**
   * Sent to every connection when the instance missed notifications (cut off from the replay log while it trimmed
   * them, or the log was lost): reload what you show; the notifications after the gap follow. A `ResetMessage`, as SSE's `reset`.
   */
  reset: 'Reset',
  joinGroup: 'JoinGroup',
  leaveGroup: 'LeaveGroup',
} as const;

/** `data` of the `connected` SSE event and argument of the hub's `Connected`. */
export interface ConnectedMessage {
  readonly clientId: string;
  readonly timestamp: string;
}

/** `data` of the `reset` SSE event and argument of the hub's `Reset`: why, and the oldest entry the log still has. */
export interface ResetMessage {
  readonly reason: string;
  readonly oldestId: string | null;
}
