import {
  outcome,
  type HandlerOutcome,
  type MessageBus,
  type ReceivedMessage,
} from '../../application/ports/message-bus.ts';
import { DEATH_REASON_HEADER, deadLetterNames, type Topology } from '../../contracts/messaging.ts';
import type { Logger } from '../logging/logger.ts';
import type { Database } from '../persistence/database.ts';
import { sqlStatement } from '../persistence/sql.ts';
import { waitToRetry } from '../resilience/resilience-policy.ts';
import { expectedFailure } from '../logging/expected-failure.ts';

const recordDeadLetter = sqlStatement(
  'dead_letters_record',
  `insert into dead_letters (message_id, queue, reason, routing_key, content_type, headers, body)
   values ($1, $2, $3, $4, $5, $6::jsonb, $7)
   on conflict (message_id, queue) do nothing`,
);

export interface DeadLetterRecorder {
  /** Lets the message being recorded finish; what is still waiting stays in the bus. */
  stop(): Promise<void>;
}

/**
 * Moves every message of the dead-letter queues of `topology`'s consuming queues into table `dead_letters`, acking
 * each only once its row is committed. For the in-process bus, whose dead-letter queues die with the process: the
 * rows outlive it, and resendUnhandled leaves their events dead.
 */
export async function recordDeadLetters(options: {
  readonly database: Database;
  readonly bus: MessageBus;
  readonly topology: Topology;
  readonly logger: Logger;
}): Promise<DeadLetterRecorder> {
  const { database, bus, logger } = options;
  const stopping = new AbortController();

  /** A database that fails is waited out: the message is never lost for it, nor settled before its row commits. */
  const record = async (queue: string, message: ReceivedMessage): Promise<HandlerOutcome> => {
    const reason = message.headers[DEATH_REASON_HEADER] ?? null;
    const row = [
      message.messageId,
      queue,
      reason,
      message.routingKey,
      message.contentType ?? null,
      JSON.stringify(message.headers),
      message.body,
    ];
    for (let attempt = 0; ; attempt++) {
      try {
        await database.sql.query(recordDeadLetter, row);
        logger.info(
          { messageId: message.messageId, queue, reason },
          'dead letter kept in table dead_letters',
        );
        return outcome.ack();
      } catch (error) {
        if (attempt === 0)
          logger.warn(
            { ...expectedFailure(error), messageId: message.messageId, queue },
            'dead letter not recorded, retrying',
          );
        // Left in the bus, it dies with it; a student event is then sent again at the next start.
        if (!(await waitToRetry(attempt, stopping.signal)))
          return outcome.retry('stopping before the dead letter was recorded');
      }
    }
  };

  const queues = options.topology.queues.filter((queue) => queue.deadLetterExchange !== undefined);
  const subscriptions = await Promise.all(
    queues.map(({ name }) =>
      bus.consume(deadLetterNames(name).queue, { prefetch: 1, handler: (message) => record(name, message) }),
    ),
  );
  return {
    async stop() {
      stopping.abort();
      await Promise.all(subscriptions.map((subscription) => subscription.close()));
    },
  };
}
