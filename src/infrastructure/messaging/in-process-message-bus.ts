import { createHash } from 'node:crypto';
import type {
  ConsumeOptions,
  HandlerOutcome,
  MessageBus,
  MessageBusStatus,
  QueueState,
  OutgoingMessage,
  ReceivedMessage,
  Subscription,
} from '../../application/ports/message-bus.ts';
import {
  DEATH_QUEUE_HEADER,
  DEATH_REASON_HEADER,
  DELIVERY_LIMIT_REASON,
  type ExchangeDeclaration,
  type QueueDeclaration,
  type Topology,
} from '../../contracts/messaging.ts';
import { silentMessagingLogger, type MessagingLogger } from './messaging-logger.ts';
import { orderedDispatch } from './ordered-dispatch.ts';
import { validateTopology } from './topology-rules.ts';

interface StoredMessage {
  readonly exchange: string;
  readonly routingKey: string;
  readonly messageId: string;
  readonly body: Buffer;
  readonly contentType: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
}

interface Entry {
  readonly message: StoredMessage;
  deliveries: number;
}

interface Binding {
  readonly queue: string;
  readonly routingKey: string;
  readonly words: readonly string[];
}

interface MemoryExchange {
  readonly declaration: ExchangeDeclaration;
  readonly bindings: Binding[];
  /** Exchange-to-exchange bindings with this exchange as the source. */
  readonly exchangeBindings: {
    readonly destination: string;
    readonly routingKey: string;
    readonly words: readonly string[];
  }[];
  /** x-consistent-hash: each bound queue repeated by its weight, in binding order; rebuilt when bindings change. */
  buckets?: readonly string[];
}

/** Where a routing key leads, headers aside: queues, and the consistent-hash exchanges that pick one per message. */
interface Route {
  readonly queues: readonly string[];
  readonly hashExchanges: readonly MemoryExchange[];
}

/** FIFO with O(1) take; requeued messages go to a separate list served first, as quorum queues do. */
class MemoryQueue {
  readonly consumers: MemoryConsumer[] = [];
  private ready: Entry[] = [];
  private head = 0;
  private readonly returned: Entry[] = [];
  private nextConsumer = 0;
  drainScheduled = false;

  constructor(readonly declaration: QueueDeclaration) {}

  get size(): number {
    return this.ready.length - this.head + this.returned.length;
  }

  enqueue(entry: Entry): void {
    this.ready.push(entry);
  }

  requeue(entry: Entry): void {
    this.returned.push(entry);
  }

  take(): Entry | undefined {
    if (this.returned.length > 0) return this.returned.shift();
    if (this.head >= this.ready.length) return undefined;
    const entry = this.ready[this.head];
    this.ready[this.head++] = undefined as unknown as Entry;
    if (this.head > 1024 && this.head * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.head);
      this.head = 0;
    }
    return entry;
  }

  /**
   * Round-robin over consumers with room under their prefetch, like competing consumers on a broker; on a
   * single-active-consumer queue, the first subscribed only, until it is gone.
   */
  pickConsumer(): MemoryConsumer | undefined {
    if (this.declaration.singleActiveConsumer) {
      const active = this.consumers[0];
      return active?.hasRoom() ? active : undefined;
    }
    const count = this.consumers.length;
    for (let i = 0; i < count; i++) {
      const consumer = this.consumers[(this.nextConsumer + i) % count];
      if (consumer && consumer.hasRoom()) {
        this.nextConsumer = (this.nextConsumer + i + 1) % count;
        return consumer;
      }
    }
    return undefined;
  }
}

class MemoryConsumer {
  inFlight = 0;
  /** Takes no more messages; it leaves its queue once those in flight are settled. */
  closing = false;
  /** Messages put back in the queue (to retry) since closing began. */
  returnedOnClose = 0;
  readonly pending = new Set<Promise<void>>();

  constructor(
    readonly prefetch: number,
    readonly dispatch: (message: ReceivedMessage) => Promise<HandlerOutcome>,
  ) {}

  hasRoom(): boolean {
    return !this.closing && this.inFlight < this.prefetch;
  }
}

export interface InProcessMessageBusOptions {
  readonly logger?: MessagingLogger;
}

/**
 * The embedded broker: one process, nothing to install, the same semantics as the RabbitMQ adapter (topic
 * routing, per-queue FIFO, prefetch, retry with delivery count, delivery limit and dead-lettering).
 * Messages live in memory only; durability comes from the outbox in front of it.
 */
export class InProcessMessageBus implements MessageBus {
  private readonly logger: MessagingLogger;
  private readonly exchanges = new Map<string, MemoryExchange>();
  private readonly queues = new Map<string, MemoryQueue>();
  private readonly subscriptions = new Set<() => Promise<number>>();
  private readonly routeCache = new Map<string, Route>();
  private closed = false;

  constructor(options: InProcessMessageBusOptions = {}) {
    this.logger = options.logger ?? silentMessagingLogger;
  }

  async declareTopology(topology: Topology): Promise<void> {
    this.assertOpen();
    validateTopology(topology);
    for (const declaration of topology.exchanges) {
      const existing = this.exchanges.get(declaration.name);
      if (!existing)
        this.exchanges.set(declaration.name, { declaration, bindings: [], exchangeBindings: [] });
      else if (
        existing.declaration.type !== declaration.type ||
        existing.declaration.durable !== declaration.durable ||
        existing.declaration.hashHeader !== declaration.hashHeader
      )
        throw new Error(`exchange '${declaration.name}' already declared with different settings`);
    }
    for (const declaration of topology.queues) {
      const existing = this.queues.get(declaration.name);
      if (!existing) this.queues.set(declaration.name, new MemoryQueue(declaration));
      else if (!sameQueue(existing.declaration, declaration))
        throw new Error(`queue '${declaration.name}' already declared with different settings`);
    }
    for (const binding of topology.bindings) {
      const exchange = this.exchanges.get(binding.exchange);
      if (!exchange) throw new Error(`cannot bind: no exchange '${binding.exchange}'`);
      if (!this.queues.has(binding.queue)) throw new Error(`cannot bind: no queue '${binding.queue}'`);
      const known = exchange.bindings.some(
        (b) => b.queue === binding.queue && b.routingKey === binding.routingKey,
      );
      if (!known) {
        exchange.bindings.push({
          queue: binding.queue,
          routingKey: binding.routingKey,
          words: binding.routingKey.split('.'),
        });
        exchange.buckets = undefined;
        this.routeCache.clear();
      }
    }
    for (const binding of topology.exchangeBindings ?? []) {
      const source = this.exchanges.get(binding.source);
      if (!source) throw new Error(`cannot bind: no exchange '${binding.source}'`);
      if (!this.exchanges.has(binding.destination))
        throw new Error(`cannot bind: no exchange '${binding.destination}'`);
      const known = source.exchangeBindings.some(
        (b) => b.destination === binding.destination && b.routingKey === binding.routingKey,
      );
      if (!known) {
        source.exchangeBindings.push({
          destination: binding.destination,
          routingKey: binding.routingKey,
          words: binding.routingKey.split('.'),
        });
        this.routeCache.clear();
      }
    }
  }

  /** Never waits: `signal` only matters when it has aborted already. */
  async publish(messages: readonly OutgoingMessage[], signal?: AbortSignal): Promise<void> {
    this.assertOpen();
    signal?.throwIfAborted();
    const failures: Error[] = [];
    for (const message of messages) {
      const queues = this.route(message.exchange, message.routingKey, message.headers);
      if (!queues) {
        failures.push(new Error(`publish failed: no exchange '${message.exchange}'`));
        continue;
      }
      for (const name of queues) {
        this.enqueue(name, {
          exchange: message.exchange,
          routingKey: message.routingKey,
          messageId: message.messageId,
          body: Buffer.from(message.body),
          contentType: message.contentType ?? 'application/json',
          headers: { ...message.headers },
        });
      }
    }
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1)
      throw new AggregateError(failures, `${failures.length} messages were not published`);
  }

  async consume(queueName: string, options: ConsumeOptions): Promise<Subscription> {
    this.assertOpen();
    options.signal?.throwIfAborted();
    if (!Number.isInteger(options.prefetch) || options.prefetch < 1)
      throw new Error(`prefetch must be a positive integer, got ${options.prefetch}`);
    const queue = this.queues.get(queueName);
    if (!queue) throw new Error(`cannot consume: no queue '${queueName}'`);
    const consumer = new MemoryConsumer(options.prefetch, orderedDispatch(queueName, options, this.logger));
    queue.consumers.push(consumer);
    this.scheduleDrain(queue);

    let closing: Promise<number> | undefined;
    const close = () => {
      closing ??= (async () => {
        consumer.closing = true;
        // Leaving only now keeps a single active consumer's order: its successor starts after its last message.
        while (consumer.pending.size > 0) await Promise.allSettled([...consumer.pending]);
        const index = queue.consumers.indexOf(consumer);
        if (index >= 0) queue.consumers.splice(index, 1);
        this.subscriptions.delete(close);
        this.scheduleDrain(queue);
        return consumer.returnedOnClose;
      })();
      return closing;
    };
    this.subscriptions.add(close);
    return {
      // In the process: there is no broker to wait for.
      waitingForBroker: false,
      close,
    };
  }

  async inspectQueue(queueName: string): Promise<QueueState | undefined> {
    const queue = this.queues.get(queueName);
    return queue && { messages: queue.size, consumers: queue.consumers.length };
  }

  status(): MessageBusStatus {
    return { connected: !this.closed, adapter: 'in-process' };
  }

  async ping(): Promise<void> {
    this.assertOpen();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.subscriptions].map((close) => close()));
    this.queues.clear();
    this.exchanges.clear();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('message bus is closed');
  }

  /** Queue names the message goes to (each once); `undefined` when the exchange does not exist. */
  private route(
    exchangeName: string,
    routingKey: string,
    headers: Readonly<Record<string, string>> | undefined,
  ): readonly string[] | undefined {
    if (exchangeName === '') return this.queues.has(routingKey) ? [routingKey] : [];
    const exchange = this.exchanges.get(exchangeName);
    if (!exchange) return undefined;
    const cacheKey = `${exchangeName}\u0000${routingKey}`;
    let route = this.routeCache.get(cacheKey);
    if (!route) {
      route = this.routeByKey(exchange, routingKey);
      if (this.routeCache.size > 10_000) this.routeCache.clear();
      this.routeCache.set(cacheKey, route);
    }
    if (route.hashExchanges.length === 0) return route.queues;
    const queues = new Set(route.queues);
    for (const hashExchange of route.hashExchanges) {
      const queue = this.pickByHash(hashExchange, routingKey, headers);
      if (queue !== undefined) queues.add(queue);
    }
    return [...queues];
  }

  /** Follows bindings (exchange-to-exchange ones too, each exchange once) as far as the routing key decides. */
  private routeByKey(start: MemoryExchange, routingKey: string): Route {
    const words = routingKey.split('.');
    const queues = new Set<string>();
    const hashExchanges = new Set<MemoryExchange>();
    const visited = new Set<MemoryExchange>();
    const visit = (exchange: MemoryExchange) => {
      if (visited.has(exchange)) return;
      visited.add(exchange);
      const type = exchange.declaration.type;
      if (type === 'x-consistent-hash') return void hashExchanges.add(exchange);
      const matches = (binding: { readonly routingKey: string; readonly words: readonly string[] }) =>
        type === 'fanout' ||
        (type === 'direct' && binding.routingKey === routingKey) ||
        (type === 'topic' && topicMatches(binding.words, 0, words, 0));
      for (const binding of exchange.bindings) if (matches(binding)) queues.add(binding.queue);
      for (const binding of exchange.exchangeBindings) {
        const destination = this.exchanges.get(binding.destination);
        if (destination && matches(binding)) visit(destination);
      }
    };
    visit(start);
    return { queues: [...queues], hashExchanges: [...hashExchanges] };
  }

  /**
   * RabbitMQ's consistent-hash exchange: one bound queue per message, by a stable hash of the hash header (or the
   * routing key) over buckets in proportion to the weights. A missing header hashes as empty: one fixed queue.
   */
  private pickByHash(
    exchange: MemoryExchange,
    routingKey: string,
    headers: Readonly<Record<string, string>> | undefined,
  ): string | undefined {
    exchange.buckets ??= exchange.bindings.flatMap((binding) =>
      Array.from({ length: Number(binding.routingKey) }, () => binding.queue),
    );
    if (exchange.buckets.length === 0) return undefined;
    const { hashHeader } = exchange.declaration;
    const value = hashHeader === undefined ? routingKey : (headers?.[hashHeader] ?? '');
    const key = createHash('sha256').update(value).digest().readBigUInt64BE(0);
    return exchange.buckets[jumpConsistentHash(key, exchange.buckets.length)];
  }

  private enqueue(queueName: string, message: StoredMessage): void {
    const queue = this.queues.get(queueName);
    if (!queue) return;
    queue.enqueue({ message, deliveries: 0 });
    this.scheduleDrain(queue);
  }

  // Deliveries start from a macrotask, so a handler that retries forever cannot starve I/O and timers.
  private scheduleDrain(queue: MemoryQueue): void {
    if (queue.drainScheduled || this.closed) return;
    queue.drainScheduled = true;
    setImmediate(() => {
      queue.drainScheduled = false;
      this.drain(queue);
    });
  }

  private drain(queue: MemoryQueue): void {
    while (queue.size > 0) {
      const consumer = queue.pickConsumer();
      if (!consumer) return;
      const entry = queue.take();
      if (!entry) return;
      this.deliver(queue, consumer, entry);
    }
  }

  private deliver(queue: MemoryQueue, consumer: MemoryConsumer, entry: Entry): void {
    entry.deliveries += 1;
    const { message } = entry;
    const received: ReceivedMessage = {
      messageId: message.messageId,
      exchange: message.exchange,
      routingKey: message.routingKey,
      body: Buffer.from(message.body),
      contentType: message.contentType,
      headers: { ...message.headers },
      deliveryCount: entry.deliveries,
      redelivered: entry.deliveries > 1,
    };
    consumer.inFlight += 1;
    const settled = consumer
      .dispatch(received)
      .then((result) => {
        if (this.settle(queue, entry, result) && consumer.closing) consumer.returnedOnClose++;
      })
      .catch((error: unknown) =>
        this.logger.error({ err: error, queue: queue.declaration.name }, 'settle failed'),
      )
      .finally(() => {
        consumer.inFlight -= 1;
        consumer.pending.delete(settled);
        this.scheduleDrain(queue);
      });
    consumer.pending.add(settled);
  }

  /** Whether the message went back to the queue. */
  private settle(queue: MemoryQueue, entry: Entry, result: HandlerOutcome): boolean {
    if (this.closed || result.kind === 'ack') return false;
    const limit = queue.declaration.maxDeliveries;
    if (result.kind === 'deadLetter') this.deadLetter(queue, entry, result.reason);
    else if (limit !== undefined && entry.deliveries >= limit)
      this.deadLetter(queue, entry, DELIVERY_LIMIT_REASON);
    else {
      queue.requeue(entry);
      return true;
    }
    return false;
  }

  private deadLetter(queue: MemoryQueue, entry: Entry, reason: string): void {
    const { name, deadLetterExchange } = queue.declaration;
    const queues = deadLetterExchange
      ? this.route(deadLetterExchange, entry.message.routingKey, entry.message.headers)
      : undefined;
    if (!queues || queues.length === 0) {
      this.logger.warn(
        { queue: name, messageId: entry.message.messageId, reason },
        'message dropped: its queue has no dead-letter exchange or route',
      );
      return;
    }
    for (const target of queues) {
      this.enqueue(target, {
        ...entry.message,
        exchange: deadLetterExchange ?? '',
        headers: { ...entry.message.headers, [DEATH_REASON_HEADER]: reason, [DEATH_QUEUE_HEADER]: name },
      });
    }
  }
}

function sameQueue(a: QueueDeclaration, b: QueueDeclaration): boolean {
  return (
    a.type === b.type &&
    a.durable === b.durable &&
    a.maxDeliveries === b.maxDeliveries &&
    a.deadLetterExchange === b.deadLetterExchange &&
    // RabbitMQ refuses this one too (x-single-active-consumer is an argument of the queue).
    Boolean(a.singleActiveConsumer) === Boolean(b.singleActiveConsumer)
  );
}

/**
 * Lamping and Veach's jump consistent hash: a bucket in [0, buckets) for a 64-bit key;
 * adding a bucket moves only the keys that land in the new one.
 */
function jumpConsistentHash(key: bigint, buckets: number): number {
  let state = key;
  let bucket = -1;
  let next = 0;
  while (next < buckets) {
    bucket = next;
    state = (state * 2_862_933_555_777_941_757n + 1n) & 0xffff_ffff_ffff_ffffn;
    next = Math.floor((bucket + 1) * (2 ** 31 / (Number(state >> 33n) + 1)));
  }
  return bucket;
}

/** AMQP topic matching: `*` is exactly one word, `#` is zero or more words. */
function topicMatches(pattern: readonly string[], p: number, key: readonly string[], k: number): boolean {
  if (p === pattern.length) return k === key.length;
  const word = pattern[p];
  if (word === '#') {
    for (let next = k; next <= key.length; next++) if (topicMatches(pattern, p + 1, key, next)) return true;
    return false;
  }
  if (k === key.length) return false;
  return (word === '*' || word === key[k]) && topicMatches(pattern, p + 1, key, k + 1);
}
