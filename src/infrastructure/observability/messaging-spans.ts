// Spans of a message's life, after the OpenTelemetry messaging conventions: a "create" span per message whose
// context travels with it (outbox row, then AMQP headers) unchanged, "publish" spans by the relay and "process"
// spans by consumers. Both are children of the message's creation context, so one write is one trace, and they
// link to it as the conventions ask. Decision and reasons: docs/adr/007-observability.md.
import { SpanKind, context, trace, type Attributes, type Span } from '@opentelemetry/api';
import type { ReceivedMessage } from '../../application/ports/message-bus.ts';
import { contextFromHeaders, inSpan, linksTo, traceHeaders, tracer } from './tracing.ts';

export interface MessageIdentity {
  readonly messageId: string;
  readonly exchange: string;
  readonly routingKey: string;
}

/**
 * Sets a message's attributes on its span. Only a recording span gets them: every message of every batch passes
 * here, and building attributes nothing will record costs more than the rest of the untraced span.
 */
function setMessageAttributes(
  span: Span,
  message: MessageIdentity,
  operation: string,
  more: Attributes = {},
): Span {
  if (!span.isRecording()) return span;
  span.setAttributes({
    'messaging.operation.type': operation,
    'messaging.operation.name': operation,
    'messaging.destination.name': message.exchange,
    'messaging.message.id': message.messageId,
    'messaging.rabbitmq.destination.routing_key': message.routingKey,
    ...more,
  });
  return span;
}

/**
 * Starts the "create" span of a message written to the outbox, a child of the trace the message continues (its
 * `traceparent`), else of the active span (the transaction); which broker will carry it is not known yet. Its
 * context, as headers, is the message's creation context; the caller ends the span once the row is written.
 */
export function startCreateSpan(message: MessageIdentity & { readonly traceparent?: string | undefined }): {
  readonly span: Span;
  readonly headers: Record<string, string>;
} {
  const parent = message.traceparent
    ? contextFromHeaders({ traceparent: message.traceparent })
    : context.active();
  const span = setMessageAttributes(
    tracer.startSpan(`create ${message.exchange}`, { kind: SpanKind.PRODUCER }, parent),
    message,
    'create',
  );
  return { span, headers: traceHeaders(trace.setSpan(parent, span)) };
}

/**
 * One "publish" span per message the relay hands to the broker at once (a subject wave of its batch), each a child of
 * (and linked to) its message's creation context; they end together when the broker confirmed them (or refused).
 */
export function startPublishSpans(
  messages: readonly (MessageIdentity & { readonly headers?: Readonly<Record<string, string>> })[],
  system: string,
): Span[] {
  return messages.map((message) => {
    const creation = contextFromHeaders(message.headers ?? {});
    return setMessageAttributes(
      tracer.startSpan(
        `publish ${message.exchange}`,
        { kind: SpanKind.CLIENT, links: linksTo(creation) },
        creation,
      ),
      message,
      'publish',
      // RabbitMQ's own name for it stays the operation's name; its type is `send` in the conventions since 1.26.
      { 'messaging.system': system, 'messaging.operation.type': 'send' },
    );
  });
}

/** Runs a consumer's handling of one message in a "process" span: a child of (and linked to) its creation context. */
export function withProcessSpan<T>(
  queue: string,
  message: ReceivedMessage,
  system: string,
  work: (span: Span) => Promise<T>,
): Promise<T> {
  const creation = contextFromHeaders(message.headers);
  return inSpan(
    `process ${queue}`,
    { kind: SpanKind.CONSUMER, parent: creation, links: linksTo(creation) },
    (span) =>
      work(
        setMessageAttributes(span, message, 'process', {
          'messaging.system': system,
          'messaging.destination.subscription.name': queue,
          'messaging.rabbitmq.message.delivery_count': message.deliveryCount,
        }),
      ),
  );
}
