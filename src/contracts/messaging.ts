// Broker wire names shared with the original .NET demo, and the topology both bus adapters declare.
import { SUBJECT_HEADER } from './cloud-events.ts';

export const Exchanges = {
  students: 'students',
  notifications: 'notifications',
  /** Not in the original: spreads student events over the worker's partition queues (WORKER_PARTITIONS > 1). */
  studentPartitions: 'students.partitions',
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
const STUDENT_EVENTS_PATTERN = 'student.*';

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

/** `x-consistent-hash` is RabbitMQ's plugin `rabbitmq_consistent_hash_exchange`; the in-process bus has it built in. */
export type ExchangeType = 'topic' | 'fanout' | 'direct' | 'x-consistent-hash';

export interface ExchangeDeclaration {
  readonly name: string;
  readonly type: ExchangeType;
  readonly durable: boolean;
  /**
   * `x-consistent-hash` only: each message goes to exactly one bound queue, chosen by a stable hash of this header's
   * value (of the routing key when unset); a queue's binding key is its weight, a positive integer.
   */
  readonly hashHeader?: string;
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

/** What `source` routes with `routingKey` also goes through exchange `destination` (a RabbitMQ extension to AMQP). */
export interface ExchangeBindingDeclaration {
  readonly source: string;
  readonly destination: string;
  readonly routingKey: string;
}

export interface Topology {
  readonly exchanges: readonly ExchangeDeclaration[];
  readonly queues: readonly QueueDeclaration[];
  readonly bindings: readonly BindingDeclaration[];
  readonly exchangeBindings?: readonly ExchangeBindingDeclaration[];
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
    exchangeBindings: parts.flatMap((part) => part.exchangeBindings ?? []),
  };
}

/** Most partition queues the worker's events can be spread over (WORKER_PARTITIONS). */
export const MAX_WORKER_PARTITIONS = 64;

/** The queues the worker consumes: `students.worker` alone, or `students.worker.0` … `students.worker.<N-1>`. */
export function studentsWorkerQueues(partitions: number): readonly string[] {
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_WORKER_PARTITIONS)
    throw new Error(
      `partitions must be a whole number from 1 to ${MAX_WORKER_PARTITIONS}, got ${partitions}`,
    );
  if (partitions === 1) return [Queues.studentsWorker];
  return Array.from({ length: partitions }, (_, partition) => `${Queues.studentsWorker}.${partition}`);
}

/**
 * Where a queue of another worker layout shows, one that this layout lacks: with one queue, `students.worker.0`
 * (every partitioned layout has it); with N, `students.worker` and, below the maximum, `students.worker.<N>` (every
 * layout with more partitions has it; one with fewer has no queue that N lacks). Bound to `students` too,
 * `students.worker` gets a copy of every event; bound to the partitions' hash ring, `students.worker.<N>` takes its
 * share of the students from the layout's own queues.
 */
export function otherLayoutQueues(partitions: number): readonly string[] {
  if (partitions === 1) return [`${Queues.studentsWorker}.0`];
  return [
    Queues.studentsWorker,
    ...(partitions < MAX_WORKER_PARTITIONS ? [`${Queues.studentsWorker}.${partitions}`] : []),
  ];
}

/**
 * Where student events wait for the worker. Every queue is single-active-consumer: competing workers would run one
 * student's events out of order, so the others stand by. With N > 1 partitions, a consistent-hash exchange bound
 * to `students` sends each event to one of N queues by its subject (the student id): one student's events stay in
 * one queue, in order, and different queues can be consumed by different workers.
 */
function studentsWorkerTopology(partitions: number): Topology {
  const queues = studentsWorkerQueues(partitions);
  const studentEvents = { exchange: Exchanges.students, routingKeys: [STUDENT_EVENTS_PATTERN] };
  if (partitions === 1)
    return consumingQueue(Queues.studentsWorker, studentEvents, { singleActiveConsumer: true });
  return mergeTopologies(
    {
      exchanges: [
        {
          name: Exchanges.studentPartitions,
          type: 'x-consistent-hash',
          durable: true,
          hashHeader: SUBJECT_HEADER,
        },
      ],
      queues: [],
      bindings: [],
      exchangeBindings: [
        {
          source: Exchanges.students,
          destination: Exchanges.studentPartitions,
          routingKey: STUDENT_EVENTS_PATTERN,
        },
      ],
    },
    // Weight 1 each: every partition gets an equal share of the students.
    ...queues.map((queue) =>
      consumingQueue(
        queue,
        { exchange: Exchanges.studentPartitions, routingKeys: ['1'] },
        { singleActiveConsumer: true },
      ),
    ),
  );
}

/**
 * Everything the three services publish to and consume from. Every role declares all of it (so nothing published
 * before the worker first ran is lost), so every role must be given the same number of worker partitions.
 */
export function messagingTopology(workerPartitions: number): Topology {
  return mergeTopologies(
    {
      exchanges: [topicExchange(Exchanges.students), topicExchange(Exchanges.notifications)],
      queues: [],
      bindings: [],
    },
    studentsWorkerTopology(workerPartitions),
    // Single-active-consumer too: the writer lease alone does not keep a student's notifications in order when it
    // changes hands while the old holder still holds some (its Redis cut off, or it paused past the lease): the new
    // holder's consumer would take later ones beside it and append them first. With one active consumer, the new
    // holder's waits until the old one's channel closes and its messages are back at the head of the queue.
    consumingQueue(
      Queues.notifications,
      { exchange: Exchanges.notifications, routingKeys: [STUDENT_EVENTS_PATTERN] },
      { singleActiveConsumer: true },
    ),
  );
}

/** The topology with one worker queue (WORKER_PARTITIONS=1, the default). */
export const MESSAGING_TOPOLOGY: Topology = messagingTopology(1);
