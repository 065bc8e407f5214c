import { Connection, type AsyncMessage, type Envelope, type Publisher } from 'rabbitmq-client';
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
  type BindingDeclaration,
  type ExchangeBindingDeclaration,
  type ExchangeDeclaration,
  type QueueDeclaration,
  type Topology,
} from '../../contracts/messaging.ts';
import { DeploymentConflictError } from '../runtime/deployment-conflict.ts';
import { settledWithin } from '../runtime/settled-within.ts';
import { consumeOnChannel, type Settlement } from './channel-consumer.ts';
import { silentMessagingLogger, type MessagingLogger } from './messaging-logger.ts';
import { orderedDispatch } from './ordered-dispatch.ts';
import { validateTopology } from './topology-rules.ts';
import { untilAborted } from '../resilience/resilience-policy.ts';
import { expectedFailure } from '../logging/expected-failure.ts';

export interface RabbitMqMessageBusOptions {
  /** `amqp://user:pass@host:5672/vhost` */
  readonly url: string;
  readonly logger?: MessagingLogger;
  /** Shown in the management UI. */
  readonly connectionName?: string;
  /** Attempts per message; a connection or channel failure in between waits for the reconnect. */
  readonly maxPublishAttempts?: number;
  /** Reconnect back-off: step and ceiling, in ms. */
  readonly retryLowMs?: number;
  readonly retryHighMs?: number;
  /** Seconds without traffic after which a silent broker counts as gone. */
  readonly heartbeatSeconds?: number;
  /** How long one publish attempt (or consumer start) waits for a connection before failing. */
  readonly acquireTimeoutMs?: number;
  /**
   * This deployment (see deploymentIdOf): declaring the topology claims the vhost for it first. Left out by a role
   * without a database (the notifications'), which claims nothing.
   */
  readonly deployment?: string;
}

// Setting an encoding stops rabbitmq-client from JSON.parse-ing bodies on delivery: the handler gets the exact bytes.
const CONTENT_ENCODING = 'utf-8';
const BROKER_HEADERS = new Set(['x-delivery-count', 'x-death']);
/**
 * The vhost's claim: a queue that never holds a message, declared with the claiming deployment's id as its dead-letter
 * exchange. The broker compares that argument on every redeclaration and refuses another value, naming the one it
 * holds: the claim is made, or confirmed, or refused in one atomic round trip, with no lock and nothing to read back.
 */
const CLAIM_QUEUE = 'deployment';
const CLAIM_ARGUMENT = 'x-dead-letter-exchange';
/** How long close() waits for the broker to confirm the connection's close before it drops the socket. */
const CONNECTION_CLOSE_TIMEOUT_MS = 2_000;

/**
 * The RabbitMQ adapter on rabbitmq-client, which reconnects by itself; consumers consume again on a new channel
 * (`channel-consumer.ts`, which also hands a queue over in order); publishes wait for publisher confirms; queues are
 * quorum queues whose delivery limit makes the broker dead-letter a message that keeps failing.
 */
export class RabbitMqMessageBus implements MessageBus {
  private readonly logger: MessagingLogger;
  /** Consumers, declarations and pings: it never publishes, so RabbitMQ never blocks it (see publishConnection). */
  private readonly connection: Connection;
  /**
   * Publishing only. RabbitMQ blocks a connection that publishes while it is low on memory or disk (a resource alarm),
   * and a blocked connection carries nothing at all: on a shared one, consumers could not ack, and would stop
   * draining the very queues whose backlog may have set the alarm off.
   */
  private readonly publishConnection: Connection;
  private readonly publisher: Publisher;
  /** Why RabbitMQ blocks publishing, while it does: publishes fail at once instead of piling up unsent. */
  private blocked: string | undefined;
  private readonly maxPublishAttempts: number;
  private readonly retryLowMs: number;
  private readonly retryHighMs: number;
  private readonly exchanges = new Map<string, ExchangeDeclaration>();
  private readonly queues = new Map<string, QueueDeclaration>();
  private readonly bindings: BindingDeclaration[] = [];
  private readonly exchangeBindings: ExchangeBindingDeclaration[] = [];
  /** The topology's exchanges and bindings being declared again (see redeclareExchanges). */
  private redeclaring: Promise<void> | undefined;
  private readonly subscriptions = new Set<() => Promise<number>>();
  /** The last error of each connection, until it connects again. */
  private readonly lastErrors = new Map<Connection, string>();
  private closing: Promise<void> | undefined;
  private readonly deployment: string | undefined;
  private readonly vhost: string;

  constructor(options: RabbitMqMessageBusOptions) {
    this.deployment = options.deployment;
    this.vhost = decodeURIComponent(new URL(options.url).pathname.slice(1)) || '/';
    this.logger = options.logger ?? silentMessagingLogger;
    this.maxPublishAttempts = options.maxPublishAttempts ?? 3;
    this.retryLowMs = options.retryLowMs ?? 500;
    this.retryHighMs = options.retryHighMs ?? 10_000;
    const connectionOptions = {
      url: options.url,
      retryLow: this.retryLowMs,
      retryHigh: this.retryHighMs,
      // Within RabbitMQ's advice (5 to 20 s). The broker drops a connection that misses two: until then a frozen
      // process keeps its consumers, and a single-active-consumer queue (the notifications') waits for it.
      heartbeat: options.heartbeatSeconds ?? 10,
      acquireTimeout: options.acquireTimeoutMs ?? 10_000,
      // rabbitmq-client leaves Nagle's algorithm on: a small frame (an ack, a publish) then waits for the peer's
      // delayed ACK, up to 40 ms on Linux, on every hop.
      noDelay: true,
    };
    this.connection = new Connection({ ...connectionOptions, connectionName: options.connectionName });
    this.publishConnection = new Connection({
      ...connectionOptions,
      ...(options.connectionName ? { connectionName: `${options.connectionName} (publishing)` } : {}),
    });
    // Every emitter gets an 'error' listener: an unhandled one would crash the process when the broker goes away.
    // Each line names the connection and the vhost, and a reconnection says how long it was away: a broker restart or
    // a network blip is expected and recovered from by itself (warn), but the operator needs to see when it ended,
    // and for which deployment. Credentials or a vhost the broker refuses do not pass by themselves (error).
    for (const [connection, role] of [
      [this.connection, 'consuming'],
      [this.publishConnection, 'publishing'],
    ] as const) {
      let established = false;
      let lostAt: number | undefined;
      const where = { connection: role, vhost: this.vhost };
      connection.on('error', (error: unknown) => {
        this.lastErrors.set(connection, errorMessage(error));
        if (established) lostAt ??= Date.now();
        const code = (error as { code?: unknown }).code;
        const level = code === 'ACCESS_REFUSED' || code === 'NOT_ALLOWED' ? 'error' : 'warn';
        this.logger[level](
          { ...expectedFailure(error), ...where },
          'RabbitMQ connection error; reconnecting',
        );
      });
      connection.on('connection', () => {
        this.lastErrors.delete(connection);
        if (lostAt === undefined) {
          established = true;
          return this.logger.info(where, 'RabbitMQ connection established');
        }
        this.logger.info({ ...where, downMs: Date.now() - lostAt }, 'RabbitMQ connection re-established');
        lostAt = undefined;
      });
    }
    // A new connection starts unblocked (rabbitmq-client corks only the socket that was blocked).
    this.publishConnection.on('connection', () => (this.blocked = undefined));
    this.publishConnection.on('connection.blocked', (reason: string) => {
      this.blocked = reason;
      this.logger.warn({ reason }, 'RabbitMQ blocked publishing (low on resources)');
    });
    this.publishConnection.on('connection.unblocked', () => {
      this.blocked = undefined;
      this.logger.info({}, 'RabbitMQ unblocked publishing');
    });
    // Retries are ours (see send), so a missing exchange fails at once instead of being retried.
    this.publisher = this.publishConnection.createPublisher({ confirm: true, maxAttempts: 1 });
  }

  async declareTopology(topology: Topology): Promise<void> {
    this.assertOpen();
    validateTopology(topology);
    if (this.deployment) await this.claimVhost(this.deployment);
    await Promise.all(
      topology.exchanges.map((exchange) =>
        this.connection
          .exchangeDeclare(exchangeParams(exchange))
          .catch((error: unknown) => Promise.reject(explainDeclareError(error, exchange))),
      ),
    );
    await Promise.all(
      topology.queues.map((queue) =>
        this.connection
          .queueDeclare(queueParams(queue))
          .catch((error: unknown) => Promise.reject(explainQueueDeclareError(error, queue))),
      ),
    );
    await Promise.all(topology.bindings.map((binding) => this.connection.queueBind(bindingParams(binding))));
    const exchangeBindings = topology.exchangeBindings ?? [];
    await Promise.all(
      exchangeBindings.map((binding) => this.connection.exchangeBind(exchangeBindingParams(binding))),
    );
    for (const exchange of topology.exchanges) this.exchanges.set(exchange.name, exchange);
    for (const queue of topology.queues) this.queues.set(queue.name, queue);
    for (const binding of topology.bindings) {
      const known = this.bindings.some(
        (b) =>
          b.exchange === binding.exchange && b.queue === binding.queue && b.routingKey === binding.routingKey,
      );
      if (!known) this.bindings.push(binding);
    }
    for (const binding of exchangeBindings) {
      const known = this.exchangeBindings.some(
        (b) =>
          b.source === binding.source &&
          b.destination === binding.destination &&
          b.routingKey === binding.routingKey,
      );
      if (!known) this.exchangeBindings.push(binding);
    }
  }

  async publish(messages: readonly OutgoingMessage[], signal?: AbortSignal): Promise<void> {
    this.assertOpen();
    signal?.throwIfAborted();
    const sent = Promise.allSettled(
      messages.map((message) =>
        this.send(
          {
            exchange: message.exchange,
            routingKey: message.routingKey,
            messageId: message.messageId,
            contentType: message.contentType ?? 'application/json',
            contentEncoding: CONTENT_ENCODING,
            headers: message.headers,
            durable: true,
          },
          Buffer.from(message.body),
          signal,
        ),
      ),
    );
    // rabbitmq-client cannot call a send off: while the broker is unreachable one waits out the acquire timeout.
    const results = await (signal ? untilAborted(sent, signal) : sent);
    const failures = results.flatMap((result) =>
      result.status === 'rejected' ? [result.reason as unknown] : [],
    );
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1)
      throw new AggregateError(failures, `${failures.length} messages were not confirmed`);
  }

  async consume(queue: string, options: ConsumeOptions): Promise<Subscription> {
    this.assertOpen();
    if (!Number.isInteger(options.prefetch) || options.prefetch < 1)
      throw new Error(`prefetch must be a positive integer, got ${options.prefetch}`);
    const declaration = this.queues.get(queue);
    const bindings = this.bindings.filter((binding) => binding.queue === queue);
    const boundExchanges = new Set(bindings.map((binding) => binding.exchange));
    // One hop further: the exchanges that feed the queue's exchanges (students → students.partitions).
    const feeding = this.exchangeBindings.filter((binding) => boundExchanges.has(binding.destination));
    const exchangeNames = new Set([...feeding.map((binding) => binding.source), ...boundExchanges]);
    const exchanges = [...exchangeNames].flatMap((name) => {
      const exchange = this.exchanges.get(name);
      return exchange ? [exchangeParams(exchange)] : [];
    });
    const dispatch = orderedDispatch(queue, options, this.logger);
    const consumer = await consumeOnChannel({
      connection: this.connection,
      queue,
      prefetch: options.prefetch,
      // Declared on every (re)connect: with the declared arguments (anything else is PRECONDITION_FAILED), or
      // passively for a queue declared elsewhere.
      declare: async (channel) => {
        await channel.queueDeclare(declaration ? queueParams(declaration) : { queue, passive: true });
        for (const exchange of exchanges) await channel.exchangeDeclare(exchange);
        for (const binding of bindings) await channel.queueBind(bindingParams(binding));
        for (const binding of feeding) await channel.exchangeBind(exchangeBindingParams(binding));
      },
      handle: (raw) => {
        // Synchronous up to dispatch(), so ordering keys see messages in delivery order.
        const message = toReceivedMessage(raw, declaration);
        return dispatch(message).then((result) => this.settle(queue, declaration, message, result));
      },
      onError: (error) =>
        this.logger.warn(
          { ...expectedFailure(error), queue },
          'RabbitMQ consumer error; it recovers by itself',
        ),
      signal: options.signal,
      retryLowMs: this.retryLowMs,
      retryHighMs: this.retryHighMs,
    });

    let closing: Promise<number> | undefined;
    const close = () => {
      closing ??= consumer.close().finally(() => this.subscriptions.delete(close));
      return closing;
    };
    // The bus began to close while this consumer was being set up: close() has passed the subscriptions by.
    if (this.closing) {
      await consumer.close();
      throw new Error('message bus is closed');
    }
    this.subscriptions.add(close);
    return {
      get waitingForBroker() {
        return consumer.waitingForBroker;
      },
      close,
    };
  }

  /** Claims the vhost for `deployment` unless another deployment has; throws DeploymentConflictError if one has. */
  private async claimVhost(deployment: string): Promise<void> {
    // A channel of its own: the broker answers a refused declaration by closing the channel.
    const channel = await this.connection.acquire();
    try {
      await channel.queueDeclare({
        queue: CLAIM_QUEUE,
        durable: true,
        arguments: { 'x-queue-type': 'classic', [CLAIM_ARGUMENT]: deployment },
      });
    } catch (error) {
      // "inequivalent arg 'x-dead-letter-exchange' for queue 'deployment' in vhost 'v': received 'B' but current is 'A'",
      // which the broker cuts at 255 bytes ("..."): the owner is then only in the queue's arguments.
      const message = errorMessage(error);
      if (
        (error as { code?: unknown }).code !== 'PRECONDITION_FAILED' ||
        !message.includes(`'${CLAIM_ARGUMENT}'`)
      )
        throw error;
      const owner =
        /but current is '(.*)'$/.exec(message)?.[1] ??
        `its id is the ${CLAIM_ARGUMENT} argument of queue ${CLAIM_QUEUE}`;
      throw new DeploymentConflictError(`RabbitMQ vhost "${this.vhost}"`, owner, deployment, {
        setting: 'vhost (the path of AMQP_URL)',
        release: `delete its claim (rabbitmqctl delete_queue ${CLAIM_QUEUE} -p '${this.vhost}')`,
      });
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  async inspectQueue(queue: string): Promise<QueueState | undefined> {
    this.assertOpen();
    // A channel of its own: the broker answers a passive declare of a missing queue by closing the channel, which on
    // the connection's shared channel would fail every other call in flight on it (another inspection, a declaration).
    const channel = await this.connection.acquire();
    try {
      const { messageCount, consumerCount } = await channel.queueDeclare({ queue, passive: true });
      return { messages: messageCount, consumers: consumerCount };
    } catch (error) {
      if ((error as { code?: unknown }).code === 'NOT_FOUND') return undefined;
      throw error;
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  async ping(): Promise<void> {
    this.assertOpen();
    // A passive declare of an exchange every vhost has: one round trip on the shared channel, and it cannot fail it.
    await this.connection.exchangeDeclare({ exchange: 'amq.topic', passive: true });
  }

  status(): MessageBusStatus {
    // rabbitmq-client's `ready` is false while blocked: blocked is connected, and says why nothing is published.
    const publishing = this.publishConnection.ready || this.blocked !== undefined;
    const detail =
      this.blocked !== undefined
        ? `RabbitMQ blocks publishing (${this.blocked})`
        : this.lastErrors.values().next().value;
    return {
      connected: this.connection.ready && publishing,
      adapter: 'rabbitmq',
      ...(detail === undefined ? {} : { detail }),
    };
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.subscriptions].map((close) => close()));
      // Both at once: closing the connection ends at once a publish still waiting for it (the broker unreachable),
      // whose channel the publisher's close would otherwise wait for, and then fail without closing the connection.
      const closed = Promise.all([
        this.publisher.close().catch(() => undefined),
        this.publishConnection.close(),
        this.connection.close(),
      ]);
      // A broker that does not answer (frozen, or cut off without a reset) never confirms the close: drop the socket
      // rather than hold the stop until the heartbeat gives up (up to 1.5 heartbeats) or SHUTDOWN_TIMEOUT_MS kills it.
      if (!(await settledWithin(closed, CONNECTION_CLOSE_TIMEOUT_MS))) {
        this.logger.warn(
          { timeoutMs: CONNECTION_CLOSE_TIMEOUT_MS },
          'RabbitMQ did not confirm the close: dropping the connection',
        );
        this.connection.unsafeDestroy();
        this.publishConnection.unsafeDestroy();
      }
    })();
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closing) throw new Error('message bus is closed');
  }

  private async send(envelope: Envelope, body: Buffer, signal?: AbortSignal): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      // Sent while blocked, it would wait in the corked socket for good: every retry would add a copy, all of them
      // sent at once when the broker unblocks (on a broker that has only just recovered).
      if (this.blocked !== undefined) throw new Error(`RabbitMQ blocks publishing (${this.blocked})`);
      try {
        return await this.publisher.send(envelope, body);
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        // An exchange of the declared topology deleted under the running services (an operator, a restore of the
        // broker's definitions): declared again with its bindings, the next attempt is delivered. Otherwise every
        // publish to it would fail until a restart declared it.
        if (
          code === 'NOT_FOUND' &&
          attempt < this.maxPublishAttempts &&
          this.exchanges.has(envelope.exchange ?? '')
        ) {
          await this.redeclareExchanges();
          continue;
        }
        // NOT_FOUND (no such exchange) and a broker nack will not get better by retrying at once.
        if (
          attempt >= this.maxPublishAttempts ||
          code === 'NOT_FOUND' ||
          code === 'NACK' ||
          this.closing ||
          signal?.aborted
        )
          throw error;
        this.logger.warn(
          { err: error, attempt, exchange: envelope.exchange, messageId: envelope.messageId },
          'publish failed; retrying',
        );
      }
    }
  }

  /**
   * Declares the topology's exchanges and their bindings again, once for all the sends that found one gone meanwhile.
   * Not its queues: a deleted queue's consumer declares it again when the broker cancels it (channel-consumer.ts).
   */
  private redeclareExchanges(): Promise<void> {
    this.redeclaring ??= (async () => {
      this.logger.warn(
        { exchanges: [...this.exchanges.keys()] },
        'RabbitMQ has lost an exchange of the topology (deleted?): declaring the exchanges and their bindings again',
      );
      for (const exchange of this.exchanges.values())
        await this.connection.exchangeDeclare(exchangeParams(exchange));
      for (const binding of this.bindings) await this.connection.queueBind(bindingParams(binding));
      for (const binding of this.exchangeBindings)
        await this.connection.exchangeBind(exchangeBindingParams(binding));
    })().finally(() => (this.redeclaring = undefined));
    return this.redeclaring;
  }

  private async settle(
    queue: string,
    declaration: QueueDeclaration | undefined,
    message: ReceivedMessage,
    result: HandlerOutcome,
  ): Promise<Settlement> {
    if (result.kind === 'ack') return 'ack';
    if (result.kind === 'retry') return 'return';
    const deadLetterExchange = declaration?.deadLetterExchange;
    if (!deadLetterExchange) {
      // Rejecting still dead-letters through a dead-letter exchange configured elsewhere, only without the reason.
      this.logger.warn(
        { queue, messageId: message.messageId, reason: result.reason },
        'dead-letter exchange unknown to this bus; rejecting without the reason header',
      );
      return 'reject';
    }
    try {
      // Publish a copy with the reason, then ack: a nack alone cannot carry a reason. A crash in between
      // leaves the message in both queues (at-least-once), never in neither.
      await this.send(
        {
          exchange: deadLetterExchange,
          routingKey: message.routingKey,
          messageId: message.messageId || undefined,
          contentType: message.contentType,
          contentEncoding: CONTENT_ENCODING,
          headers: { ...message.headers, [DEATH_REASON_HEADER]: result.reason, [DEATH_QUEUE_HEADER]: queue },
          durable: true,
        },
        message.body,
      );
      return 'ack';
    } catch (error) {
      this.logger.error(
        { err: error, queue, messageId: message.messageId },
        'dead-lettering failed; back to the queue',
      );
      return 'return';
    }
  }
}

function exchangeParams(exchange: ExchangeDeclaration) {
  return {
    exchange: exchange.name,
    type: exchange.type,
    durable: exchange.durable,
    ...(exchange.hashHeader === undefined ? {} : { arguments: { 'hash-header': exchange.hashHeader } }),
  };
}

/** Exchange types that come with a RabbitMQ plugin, which the broker must have enabled. */
const PLUGIN_OF_EXCHANGE_TYPE: Readonly<Record<string, string>> = {
  'x-consistent-hash': 'rabbitmq_consistent_hash_exchange',
};

/** RabbitMQ refuses an exchange type whose plugin is not enabled: say which plugin, and how to enable it. */
function explainDeclareError(error: unknown, exchange: ExchangeDeclaration): unknown {
  const message = errorMessage(error);
  if (!/unknown exchange type/.test(message)) return error;
  const plugin = PLUGIN_OF_EXCHANGE_TYPE[exchange.type];
  const remedy = plugin
    ? `enable its plugin on every RabbitMQ node: rabbitmq-plugins enable ${plugin}`
    : 'enable the RabbitMQ plugin that provides it';
  return new Error(
    `RabbitMQ does not know the exchange type '${exchange.type}' of exchange '${exchange.name}': ${remedy}`,
    { cause: error },
  );
}

/**
 * A queue's arguments cannot change once it exists: one an earlier version declared otherwise (without
 * single-active-consumer, say) is refused at every start until an operator replaces it, so say how.
 */
function explainQueueDeclareError(error: unknown, queue: QueueDeclaration): unknown {
  const message = errorMessage(error);
  if (!/PRECONDITION_FAILED - inequivalent arg/.test(message)) return error;
  return new Error(
    `RabbitMQ has queue '${queue.name}' declared with other arguments, by an earlier version (${message}): ` +
      `let its consumers empty it with the roles that write to it stopped, then delete it once ` +
      `(rabbitmqctl delete_queue ${queue.name}) and start again (README: Running roles separately)`,
    { cause: error },
  );
}

function queueParams(queue: QueueDeclaration) {
  const args: Record<string, unknown> = { 'x-queue-type': queue.type };
  // x-delivery-limit counts redeliveries: limit N allows N + 1 deliveries.
  if (queue.maxDeliveries !== undefined) args['x-delivery-limit'] = queue.maxDeliveries - 1;
  if (queue.singleActiveConsumer) args['x-single-active-consumer'] = true;
  if (queue.deadLetterExchange !== undefined) {
    args['x-dead-letter-exchange'] = queue.deadLetterExchange;
    if (queue.type === 'quorum') {
      // The broker keeps a message until the dead-letter queue confirmed it, instead of at-most-once.
      args['x-dead-letter-strategy'] = 'at-least-once';
      args['x-overflow'] = 'reject-publish';
    }
  }
  return { queue: queue.name, durable: queue.durable, arguments: args };
}

function bindingParams(binding: BindingDeclaration) {
  return { exchange: binding.exchange, queue: binding.queue, routingKey: binding.routingKey };
}

function exchangeBindingParams(binding: ExchangeBindingDeclaration) {
  return { source: binding.source, destination: binding.destination, routingKey: binding.routingKey };
}

function toReceivedMessage(raw: AsyncMessage, declaration: QueueDeclaration | undefined): ReceivedMessage {
  // Own keys only: rabbitmq-client decodes a header table by assignment, so one named `__proto__` replaces the
  // object's prototype, whose keys `for…in` (and any lookup) would then read as headers nobody sent.
  const rawHeaders = raw.headers ? Object.fromEntries(Object.entries(raw.headers)) : undefined;
  const headers: Record<string, string> = {};
  if (rawHeaders) {
    for (const key in rawHeaders) {
      if (BROKER_HEADERS.has(key)) continue;
      const value: unknown = rawHeaders[key];
      if (typeof value === 'string') headers[key] = value;
      else if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
        headers[key] = String(value);
      else if (Buffer.isBuffer(value)) headers[key] = value.toString();
    }
    // Dead-lettered by the broker (delivery limit, reject): expose the reason as the in-process bus does.
    if (
      headers[DEATH_REASON_HEADER] === undefined &&
      typeof rawHeaders['x-first-death-reason'] === 'string'
    ) {
      headers[DEATH_REASON_HEADER] = rawHeaders['x-first-death-reason'];
      if (typeof rawHeaders['x-first-death-queue'] === 'string')
        headers[DEATH_QUEUE_HEADER] = rawHeaders['x-first-death-queue'];
    }
  }
  const deliveryCountHeader: unknown = rawHeaders?.['x-delivery-count'];
  // Quorum queues count returns; classic queues only say whether it was delivered before.
  const deliveryCount =
    typeof deliveryCountHeader === 'number'
      ? deliveryCountHeader + 1
      : declaration?.type === 'quorum' || !raw.redelivered
        ? 1
        : 2;
  return {
    messageId: raw.messageId ?? '',
    exchange: raw.exchange,
    routingKey: raw.routingKey,
    body: toBuffer(raw.body),
    contentType: raw.contentType,
    headers,
    deliveryCount,
    redelivered: raw.redelivered,
  };
}

/** rabbitmq-client decodes `application/json` / `text/plain` bodies sent without an encoding (foreign publishers). */
function toBuffer(body: unknown): Buffer {
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body);
  return Buffer.from(JSON.stringify(body));
}

function errorMessage(error: unknown): string {
  // rabbitmq-client prefixes the broker's reply with the method it answered, `undefined` for a refused login.
  return error instanceof Error ? error.message.replace(/^undefined: /, '') : String(error);
}
