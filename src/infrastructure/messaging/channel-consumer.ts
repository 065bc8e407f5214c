import {
  AMQPChannelError,
  AMQPConnectionError,
  type AsyncMessage,
  type Channel,
  type Connection,
} from 'rabbitmq-client';
import { backoffDelay, untilAborted } from '../resilience/resilience-policy.ts';
import { settledWithin } from '../runtime/settled-within.ts';

/** What becomes of a delivered message: done, rejected (the broker dead-letters it), or back to the queue. */
export type Settlement = 'ack' | 'reject' | 'return';

export interface ChannelConsumerOptions {
  readonly connection: Connection;
  readonly queue: string;
  readonly prefetch: number;
  /** Declares what consuming needs (the queue, its exchanges and bindings), on every new channel. */
  readonly declare: (channel: Channel) => Promise<void>;
  /** Called synchronously on each delivery, in delivery order. */
  readonly handle: (message: AsyncMessage) => Promise<Settlement>;
  readonly onError: (error: unknown) => void;
  /** Ends the first attempt while it waits for the broker: consumeOnChannel rejects, and consumes nothing. */
  readonly signal?: AbortSignal;
  /** Back-off between attempts to consume again after the channel was lost: step and ceiling, in ms. */
  readonly retryLowMs: number;
  readonly retryHighMs: number;
}

export interface ChannelConsumer {
  /** No consumer is registered on an open channel, and it is not closing: it waits for the broker. */
  readonly waitingForBroker: boolean;
  /**
   * Lets the messages being handled finish and settle, then closes the channel: the rest go back, in order. Resolves
   * with how many went back.
   */
  close(): Promise<number>;
}

/**
 * Consumes a queue on a channel of its own, from now on: also when the broker does not answer yet, and again whenever
 * the channel is lost; only a broker that answers and refuses, or the signal, ends the first attempt with a rejection.
 * What rabbitmq-client's
 * Consumer does not: closing never sends basic.cancel. On a single-active-consumer queue a basic.cancel makes the
 * waiting consumer active at once, while this one still holds messages delivered to it; that consumer would then
 * handle later messages of a student before those. Closing the channel instead returns every unsettled message
 * to the head of the queue, in delivery order, before the broker activates the next consumer. So close() starts
 * nothing new, lets the messages being handled finish and settle, and then closes the channel.
 * A message to retry is nacked back to the queue, which puts it at the head when the queue has a delivery limit
 * (every consuming quorum queue here does; without one RabbitMQ would put it at the back).
 */
export async function consumeOnChannel(options: ChannelConsumerOptions): Promise<ChannelConsumer> {
  const { connection, queue, prefetch, declare, handle, onError } = options;
  const handling = new Set<Promise<void>>();
  let current: Channel | undefined;
  let closing = false;
  /** Messages handed back to the queue since closing began: delivered too late, or settled to go back. */
  let returnedOnClose = 0;
  let failures = 0;
  let retry: NodeJS.Timeout | undefined;

  const allSettled = async (): Promise<void> => {
    while (handling.size > 0) await Promise.allSettled([...handling]);
  };

  const open = async (): Promise<void> => {
    const channel = await connection.acquire({ emitErrorsFromChannel: true });
    channel.on('error', onError);
    try {
      await declare(channel);
      await channel.basicQos({ prefetchCount: prefetch });
      // Given up on while it waited for the broker: registered, it would take up to `prefetch` messages from the queue
      // (beside the consumers that took over meanwhile) only to hand them back behind what those consumed since.
      if (closing) {
        await channel.close().catch(() => {});
        return;
      }
      await channel.basicConsume({ queue }, (message) => deliver(channel, message));
    } catch (error) {
      await channel.close().catch(() => {});
      throw error;
    }
    // close() came while basicConsume was under way: what was delivered goes back with the channel.
    if (closing) {
      await channel.close().catch(() => {});
      return;
    }
    current = channel;
    failures = 0;
    // The broker cancels the consumer when its queue is deleted: consume again, which declares it again.
    channel.once('basic.cancel', () => void channel.close().catch(() => {}));
    channel.once('close', () => void lost(channel));
    if (!channel.active) void lost(channel);
  };

  const reopenLater = (delayMs: number): void => {
    if (closing) return;
    retry = setTimeout(() => {
      retry = undefined;
      void open().catch((error: unknown) => {
        // Closed meanwhile (the bus too, perhaps): nothing opens again, and that is no error.
        if (closing) return;
        onError(error);
        failures += 1;
        reopenLater(backoffDelay(failures, { baseMs: options.retryLowMs, maxMs: options.retryHighMs }));
      });
    }, delayMs);
  };

  /** The channel closed: lost with its connection or closed by the broker (consume again), or by close(). */
  const lost = async (channel: Channel): Promise<void> => {
    if (current === channel) current = undefined;
    // Redeliveries of the messages still being handled must not run beside them.
    await allSettled();
    reopenLater(options.retryLowMs);
  };

  const settle = (channel: Channel, message: AsyncMessage, settlement: Settlement): void => {
    if (closing && settlement === 'return') returnedOnClose++;
    // A closed channel has given its messages back already; a closing consumer gives back those not done.
    if (!channel.active || (settlement === 'return' && closing)) return;
    if (settlement === 'ack') channel.basicAck({ deliveryTag: message.deliveryTag });
    else channel.basicNack({ deliveryTag: message.deliveryTag, requeue: settlement === 'return' });
  };

  function deliver(channel: Channel, message: AsyncMessage): void {
    // Left unsettled: the channel's close returns it, in order.
    if (closing) {
      returnedOnClose++;
      return;
    }
    let outcome: Promise<Settlement>;
    try {
      outcome = handle(message);
    } catch (error) {
      outcome = Promise.reject(error);
    }
    const handled = outcome
      .then((settlement) => settle(channel, message, settlement))
      .catch((error: unknown) => {
        onError(error);
        settle(channel, message, 'return');
      })
      .finally(() => handling.delete(handled));
    handling.add(handled);
  }

  const { signal } = options;
  signal?.throwIfAborted();
  try {
    await (signal ? untilAborted(open(), signal) : open());
  } catch (error) {
    // Given up on (the consumer is stopping): an open still under way closes the channel it gets.
    if (signal?.aborted) {
      closing = true;
      throw error;
    }
    // A broker that refuses (a queue declared with other arguments, or none) is a setting that cannot work. One that
    // does not answer yet, or a connection lost on the way, is not: consume once it is back, as after any loss.
    if (isRefusal(error)) throw error;
    onError(error);
    reopenLater(options.retryLowMs);
  }
  return {
    get waitingForBroker() {
      return !closing && current?.active !== true;
    },
    async close() {
      closing = true;
      clearTimeout(retry);
      // Not waiting for a channel still being opened (as long as the broker does not answer): open() closes it once
      // it has it, without consuming.
      await allSettled();
      // A broker that does not answer (frozen, or cut off without a reset) never sends close-ok: the stop would wait for
      // its heartbeat to time out. What this channel holds unacked goes back when the connection is dropped.
      if (current?.active) await settledWithin(current.close(), CHANNEL_CLOSE_TIMEOUT_MS);
      return returnedOnClose;
    },
  };
}

/**
 * The broker closed the channel over what it was asked (NOT_FOUND, PRECONDITION_FAILED, ACCESS_REFUSED…): an
 * AMQPConnectionError is a connection's end instead, and CH_CLOSE a call on a channel already closed.
 */
function isRefusal(error: unknown): boolean {
  return (
    error instanceof AMQPChannelError && !(error instanceof AMQPConnectionError) && error.code !== 'CH_CLOSE'
  );
}

/** How long a consumer's close waits for the broker to confirm its channel's close. */
const CHANNEL_CLOSE_TIMEOUT_MS = 2_000;
