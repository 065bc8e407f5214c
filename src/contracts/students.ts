// Student wire shapes and names shared with the original .NET demo.

/** Student JSON (camelCase), as the REST API returns it and as notifications carry it. */
export interface StudentDto {
  readonly id: string;
  readonly firstName: string;
  readonly lastName: string;
  readonly email: string;
  readonly updates: number;
  readonly created: string;
  readonly createdBy: string;
  readonly lastModified: string | null;
  readonly lastModifiedBy: string | null;
  readonly version: number;
}

/** Domain event types (CloudEvents `type` on exchange `students`). */
export const StudentEventTypes = {
  created: 'StudentCreated',
  updated: 'StudentUpdated',
  deleted: 'StudentDeleted',
} as const;

/** Notification event types: SSE event names and SignalR targets. */
export const NotificationEventTypes = {
  ...StudentEventTypes,
  cached: 'StudentCached',
} as const;

export type StudentEventType = (typeof StudentEventTypes)[keyof typeof StudentEventTypes];

/** `data` of a domain event's CloudEvent. */
export interface StudentEventData {
  readonly student: StudentDto;
  readonly actor: string;
}

export type NotificationEventType = (typeof NotificationEventTypes)[keyof typeof NotificationEventTypes];

/** `data` of a notification on exchange `notifications`: the original's payload shape. */
export interface StudentNotification {
  readonly eventType: NotificationEventType;
  readonly routingKey: string;
  readonly student: StudentDto;
  readonly timestamp: string;
  readonly userId: string | null;
}
