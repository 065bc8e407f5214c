import type { Topology } from '../../contracts/messaging.ts';

export interface OutgoingMessage {
  readonly exchange: string;
  readonly routingKey: string;
  /** Becomes the AMQP message-id; consumers de-duplicate on it. */
  readonly messageId: string;
  /** JSON text. */
  readonly body: string;
  /** Defaults to `application/json`. */
  readonly contentType?: string;
  /** e.g. `traceparent`. */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface ReceivedMessage {
  /** Empty when a foreign publisher set none. */
  readonly messageId: string;
  /** The exchange it was published (or dead-lettered) to. */
  readonly exchange: string;
  readonly routingKey: string;
  readonly body: Buffer;
  readonly contentType: string | undefined;
  /** String-valued headers; a dead-lettered message also carries `x-death-reason` and `x-death-queue`. */
  readonly headers: Readonly<Record<string, string>>;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
  readonly redelivered: boolean;
}

export type HandlerOutcome =
  | { readonly kind: 'ack' }
  /** Transient failure: requeue; counts toward the queue's delivery limit. */
  | { readonly kind: 'retry'; readonly reason?: string }
  /** Permanent failure: to the queue's dead-letter queue now, with the reason in a header. */
  | { readonly kind: 'deadLetter'; readonly reason: string };

const ACK: HandlerOutcome = Object.freeze({ kind: 'ack' });

/**
 * A dead-letter reason travels in a message header, and RabbitMQ takes a message's headers in one frame (8 KiB): a
 * longer reason would make the dead-lettering fail, and the message go round until its delivery limit buried it
 * without the reason. Cut to this many characters (at most 4 bytes each in UTF-8).
 */
export const MAX_DEAD_LETTER_REASON_LENGTH = 1_000;

/** `reason` cut to what a dead-letter header holds; also what logs and spans say of that message. */
export function deadLetterReason(reason: string): string {
  return reason.length > MAX_DEAD_LETTER_REASON_LENGTH
    ? `${reason.slice(0, MAX_DEAD_LETTER_REASON_LENGTH - 1)}…`
    : reason;
}

export const outcome = {
  ack: (): HandlerOutcome => ACK,
  retry: (reason?: string): HandlerOutcome => ({ kind: 'retry', reason }),
  deadLetter: (reason: string): HandlerOutcome => ({ kind: 'deadLetter', reason: deadLetterReason(reason) }),
};

export interface ConsumeOptions {
  /** Most messages handled at once (and held unacknowledged). 1 = strict FIFO. */
  readonly prefetch: number;
  /**
   * Messages with the same key are handled one after another in delivery order; different keys run
   * concurrently up to `prefetch`. `undefined` (or a throw) = no ordering constraint for that message.
   * A retried message goes back to the queue, and the same-key messages already delivered behind it go back with
   * it unhandled, so the key stays in order.
   */
  readonly orderingKey?: (message: ReceivedMessage) => string | undefined;
  /** A handler that throws counts as `retry`. */
  readonly handler: (message: ReceivedMessage) => Promise<HandlerOutcome> | HandlerOutcome;
  /** Ends a consume still waiting for the broker (its consumer is stopping): it rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

export interface Subscription {
  /**
   * The subscription waits for the broker, at start or after the connection was lost (it consumes again once the
   * broker is back). Not while it is registered with the broker, standing by on a single-active-consumer queue
   * included, nor once it is closing.
   */
  readonly waitingForBroker: boolean;
  /**
   * Stops taking messages, waits for in-flight handlers to finish and their outcomes to settle. Resolves with how many
   * delivered messages the close handed back to the queue (unhandled, or to retry): another consumer, or the next
   * start, gets them.
   */
  close(): Promise<number>;
}

export interface QueueState {
  /** Messages waiting for delivery (not those delivered and not yet acknowledged). */
  readonly messages: number;
  readonly consumers: number;
}

export interface MessageBusStatus {
  readonly connected: boolean;
  readonly adapter: string;
  readonly detail?: string;
}

export interface MessageBus {
  /** Idempotent: declaring the same topology again changes nothing. */
  declareTopology(topology: Topology): Promise<void>;
  /**
   * Resolves once the broker confirmed every message; rejects (after all settled) if any was not. Once `signal`
   * aborts it stops retrying and waiting, and rejects with the signal's reason: a message may still reach the broker.
   */
  publish(messages: readonly OutgoingMessage[], signal?: AbortSignal): Promise<void>;
  /**
   * Resolves once the consumer is registered, or, when the broker does not answer (down, or the connection lost on
   * the way; RabbitMQ tells after its acquire timeout), with a subscription that registers when it answers again.
   * Rejects when the broker refuses it there and then (no such queue), when `signal` aborts first, or when the bus
   * is closing.
   */
  consume(queue: string, options: ConsumeOptions): Promise<Subscription>;
  /** The state of `queue`, whoever declared it; undefined when there is no such queue. */
  inspectQueue(queue: string): Promise<QueueState | undefined>;
  status(): MessageBusStatus;
  /**
   * Resolves once the broker answers a request. Connected says only that the connection is open: a broker that froze
   * (or a network that dropped it without a reset) keeps it open until the heartbeat gives up, and never answers.
   */
  ping(): Promise<void>;
  /** Closes every subscription (waiting for in-flight handlers), then the connection. */
  close(): Promise<void>;
}
