import type { ConsumeOptions, HandlerOutcome, ReceivedMessage } from '../../application/ports/message-bus.ts';
import type { MessagingLogger } from './messaging-logger.ts';

const noop = () => {};

/** The messages of one ordering key that are in flight, in delivery order. */
interface KeyChain {
  /** Settles when the key's last message so far is handled. */
  tail: Promise<void>;
  /** How many of the key's messages have joined the chain. */
  joined: number;
  /** Messages up to this position go back to the queue unhandled: one before them did. */
  returnThrough: number;
}

const BEHIND_A_RETRY: HandlerOutcome = {
  kind: 'retry',
  reason: 'an earlier message with the same ordering key went back to the queue',
};

/**
 * Wraps a consumer's handler: a throw becomes `retry`, and messages sharing an ordering key run one after
 * another in the order this function was called (= delivery order), while other keys run concurrently.
 * When one goes back to the queue (`retry`), those of its key already delivered behind it follow it unhandled:
 * handling them first would reorder the key, since the queue redelivers returned messages in the order returned.
 * Must be called synchronously on delivery, before any await, or the order is lost.
 */
export function orderedDispatch(
  queue: string,
  options: ConsumeOptions,
  logger: MessagingLogger,
): (message: ReceivedMessage) => Promise<HandlerOutcome> {
  const { handler, orderingKey } = options;
  const chains = new Map<string, KeyChain>();

  const run = async (message: ReceivedMessage): Promise<HandlerOutcome> => {
    try {
      return await handler(message);
    } catch (error) {
      logger.warn({ err: error, queue, messageId: message.messageId }, 'message handler threw; will retry');
      return { kind: 'retry', reason: error instanceof Error ? error.message : String(error) };
    }
  };

  if (!orderingKey) return run;

  return (message) => {
    let key: string | undefined;
    try {
      key = orderingKey(message);
    } catch (error) {
      logger.warn(
        { err: error, queue, messageId: message.messageId },
        'orderingKey threw; handled unordered',
      );
    }
    if (key === undefined) return run(message);
    const previous = chains.get(key);
    const chain = previous ?? { tail: Promise.resolve(), joined: 0, returnThrough: 0 };
    const position = ++chain.joined;
    const runInTurn = async (): Promise<HandlerOutcome> => {
      if (position <= chain.returnThrough) return BEHIND_A_RETRY;
      const result = await run(message);
      if (result.kind === 'retry') chain.returnThrough = chain.joined;
      return result;
    };
    const result = previous ? previous.tail.then(runInTurn) : runInTurn();
    const tail = result.then(noop, noop);
    chain.tail = tail;
    chains.set(key, chain);
    // Forget idle keys so the map stays as small as the number of keys in flight.
    void tail.then(() => {
      if (chain.tail === tail) chains.delete(key);
    });
    return result;
  };
}
