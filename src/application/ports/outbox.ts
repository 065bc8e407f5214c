/** A message waiting in the outbox: written in the same transaction as the state change it reports. */
export interface OutboxMessage {
  readonly id: string;
  readonly exchange: string;
  readonly routingKey: string;
  /** CloudEvents `type`, e.g. `StudentCreated`. */
  readonly type: string;
  /** CloudEvents `subject`: the student id, so consumers can keep per-student order. */
  readonly subject: string;
  readonly payload: unknown;
  readonly occurredAt: Date;
  /** The W3C trace context the message continues; without one, the trace active when it is written. */
  readonly traceparent?: string;
}

export interface OutboxWriter {
  append(messages: readonly OutboxMessage[]): Promise<void>;
}
