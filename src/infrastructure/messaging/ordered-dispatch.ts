import type { ConsumeOptions, HandlerOutcome, ReceivedMessage } from '../../application/ports/message-bus.ts';
import type { MessagingLogger } from './messaging-logger.ts';

const noop = () => {};

/**
 * Wraps a consumer's handler: a throw becomes `retry`, and messages sharing an ordering key run one after
 * another in the order this function was called (= delivery order), while other keys run concurrently.
 * Must be called synchronously on delivery, before any await, or the order is lost.
 */
export function orderedDispatch(
  queue: string,
  options: ConsumeOptions,
  logger: MessagingLogger,
): (message: ReceivedMessage) => Promise<HandlerOutcome> {
  const { handler, orderingKey } = options;
  const tails = new Map<string, Promise<void>>();

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
    const previous = tails.get(key);
    const result = previous ? previous.then(() => run(message)) : run(message);
    const tail = result.then(noop, noop);
    tails.set(key, tail);
    // Forget idle keys so the map stays as small as the number of keys in flight.
    void tail.then(() => {
      if (tails.get(key) === tail) tails.delete(key);
    });
    return result;
  };
}
