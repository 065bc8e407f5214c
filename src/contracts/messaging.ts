// Broker wire names shared with the original .NET demo, and the topology both bus adapters declare.

export const Exchanges = {
  students: 'students',
  notifications: 'notifications',
} as const;

export const StudentRoutingKeys = {
  created: 'student.created',
  updated: 'student.updated',
  deleted: 'student.deleted',
} as const;

export const NotificationRoutingKeys = {
  created: 'student.created',
  updated: 'student.updated',
  cached: 'student.cached',
  deleted: 'student.deleted',
} as const;

export const Queues = {
  studentsWorker: 'students.worker',
  notifications: 'notifications',
} as const;

/** Binding pattern of both consuming queues: every student event. */
export const STUDENT_EVENTS_PATTERN = 'student.*';

/** Header set on a dead-lettered message: why it died (a handler's reason, or `delivery_limit`). */
export const DEATH_REASON_HEADER = 'x-death-reason';
/** Header set on a dead-lettered message: the queue it died in. */
export const DEATH_QUEUE_HEADER = 'x-death-queue';
/** The reason RabbitMQ records when a quorum queue's delivery limit is exceeded; the in-process bus uses it too. */
export const DELIVERY_LIMIT_REASON = 'delivery_limit';
/** W3C trace context travels in this AMQP header. */
export const TRACEPARENT_HEADER = 'traceparent';

/** Deliveries (first one included) before a message that keeps failing is dead-lettered. */
export const DEFAULT_MAX_DELIVERIES = 5;

export type ExchangeType = 'topic' | 'fanout' | 'direct';

export interface ExchangeDeclaration {
  readonly name: string;
  readonly type: ExchangeType;
  readonly durable: boolean;
}

export interface QueueDeclaration {
  readonly name: string;
  /** Quorum queues are replicated once RabbitMQ is clustered and count deliveries for the limit below. */
  readonly type: 'quorum' | 'classic';
  readonly durable: boolean;
  /** Deliveries (first one included) before the broker dead-letters the message. Quorum queues only. */
  readonly maxDeliveries?: number;
  /** Where rejected and over-limit messages go. */
  readonly deadLetterExchange?: string;
  /**
   * One consumer at a time gets the queue's messages; the others stand by, in the order they subscribed, and the
   * next takes over when it goes. Keeps the queue's order across instances, which competing consumers would not.
   */
  readonly singleActiveConsumer?: boolean;
}

export interface BindingDeclaration {
  readonly exchange: string;
  readonly queue: string;
  readonly routingKey: string;
}

export interface Topology {
  readonly exchanges: readonly ExchangeDeclaration[];
  readonly queues: readonly QueueDeclaration[];
  readonly bindings: readonly BindingDeclaration[];
}

export function deadLetterNames(queue: string): { readonly exchange: string; readonly queue: string } {
  return { exchange: `${queue}.dlx`, queue: `${queue}.dead` };
}

export function topicExchange(name: string): ExchangeDeclaration {
  return { name, type: 'topic', durable: true };
}

/**
 * A consuming queue with its own dead-letter exchange (fanout, so any routing key lands) and dead-letter queue,
 * bound to `exchange` with each of `routingKeys`.
 */
export function consumingQueue(
  name: string,
  binds: { readonly exchange: string; readonly routingKeys: readonly string[] },
  options: {
    readonly maxDeliveries?: number;
    readonly type?: 'quorum' | 'classic';
    readonly singleActiveConsumer?: boolean;
  } = {},
): Topology {
  const dead = deadLetterNames(name);
  const type = options.type ?? 'quorum';
  return {
    exchanges: [{ name: dead.exchange, type: 'fanout', durable: true }],
    queues: [
      {
        name,
        type,
        durable: true,
        // Only quorum queues count deliveries.
        maxDeliveries: options.maxDeliveries ?? (type === 'quorum' ? DEFAULT_MAX_DELIVERIES : undefined),
        deadLetterExchange: dead.exchange,
        ...(options.singleActiveConsumer ? { singleActiveConsumer: true } : {}),
      },
      { name: dead.queue, type, durable: true },
    ],
    bindings: [
      ...binds.routingKeys.map((routingKey) => ({ exchange: binds.exchange, queue: name, routingKey })),
      { exchange: dead.exchange, queue: dead.queue, routingKey: '' },
    ],
  };
}

export function mergeTopologies(...parts: readonly Topology[]): Topology {
  return {
    exchanges: parts.flatMap((part) => part.exchanges),
    queues: parts.flatMap((part) => part.queues),
    bindings: parts.flatMap((part) => part.bindings),
  };
}

/** Everything the three services publish to and consume from. */
export const MESSAGING_TOPOLOGY: Topology = mergeTopologies(
  {
    exchanges: [topicExchange(Exchanges.students), topicExchange(Exchanges.notifications)],
    queues: [],
    bindings: [],
  },
  // One worker at a time: competing workers would run one student's events out of order. The others stand by.
  consumingQueue(
    Queues.studentsWorker,
    { exchange: Exchanges.students, routingKeys: [STUDENT_EVENTS_PATTERN] },
    { singleActiveConsumer: true },
  ),
  consumingQueue(Queues.notifications, {
    exchange: Exchanges.notifications,
    routingKeys: [STUDENT_EVENTS_PATTERN],
  }),
);
