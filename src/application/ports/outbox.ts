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
}

export interface OutboxWriter {
  append(messages: readonly OutboxMessage[]): Promise<void>;
}
