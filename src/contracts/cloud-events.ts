/** A CloudEvents 1.0 envelope in structured JSON mode, as every message on the broker is sent. */
export interface CloudEvent<TData = unknown> {
  readonly specversion: '1.0';
  /** The outbox row's id: stable across re-publishing, so consumers de-duplicate on it. */
  readonly id: string;
  readonly source: string;
  readonly type: string;
  /** The student id: consumers keep per-subject order. */
  readonly subject: string;
  readonly time: string;
  readonly datacontenttype: 'application/json';
  readonly data: TData;
}

export const CLOUD_EVENTS_CONTENT_TYPE = 'application/cloudevents+json';
/** AMQP header repeating the CloudEvent subject, so a consumer can order messages without parsing bodies. */
export const SUBJECT_HEADER = 'cloudEvents:subject';
