// Every role declares the worker's queues for its own WORKER_PARTITIONS. A role given another value, or the queues
// of the layout before N was changed and not deleted, leave queues bound to `students` that no worker consumes:
// they fill up until RabbitMQ's memory or disk alarm stops every publisher. The worker looks for them and says so.
import type { MessageBus, QueueState } from '../../application/ports/message-bus.ts';
import { otherLayoutQueues } from '../../contracts/messaging.ts';
import type { HealthCheck } from '../../infrastructure/health/health.ts';
import type { Logger } from '../../infrastructure/logging/logger.ts';
import { runPeriodically, type Periodic } from '../../infrastructure/runtime/periodic.ts';

/** Often enough to notice a queue filling long before it matters; each look is one or two broker round trips. */
const LOOK_EVERY_MS = 60_000;

export interface OtherLayoutWatch {
  /** Looks now, then every minute. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Degraded while a queue of another layout exists, naming it; from the last look, so it costs no round trip. */
  readonly healthCheck: HealthCheck;
}

type Found = QueueState & { readonly queue: string };

export function watchOtherLayoutQueues(
  bus: Pick<MessageBus, 'inspectQueue'>,
  partitions: number,
  logger: Logger,
  everyMs = LOOK_EVERY_MS,
): OtherLayoutWatch {
  const queues = otherLayoutQueues(partitions);
  let found: readonly Found[] = [];
  let looking: Periodic | undefined;

  const look = async () => {
    try {
      const states = await Promise.all(
        queues.map(async (queue) => ({ queue, state: await bus.inspectQueue(queue) })),
      );
      const now = states.flatMap(({ queue, state }) => (state ? [{ queue, ...state }] : []));
      if (now.map((f) => f.queue).join() !== found.map((f) => f.queue).join() && now.length > 0)
        logger.warn({ queues: now, partitions }, describe(now, partitions));
      found = now;
    } catch (error) {
      // The broker check reports the broker; this one keeps what it saw last.
      logger.debug({ err: error }, 'could not look for worker queues of another layout');
    }
  };

  return {
    async start() {
      looking = runPeriodically(look, everyMs);
      await looking.first;
    },
    async stop() {
      await looking?.stop();
    },
    healthCheck: {
      name: 'worker-queues',
      check: async () =>
        found.length === 0
          ? { status: 'Healthy', data: { partitions } }
          : {
              status: 'Degraded',
              description: describe(found, partitions),
              data: { partitions, otherLayout: found },
            },
    },
  };
}

function describe(found: readonly Found[], partitions: number): string {
  const named = found.map((f) => `${f.queue} (${f.messages} waiting, ${f.consumers} consumers)`).join(', ');
  return (
    `${named}: not this worker's layout (WORKER_PARTITIONS=${partitions}), and gets a copy of every student event. ` +
    'Give every role the same WORKER_PARTITIONS; once drained, delete the queues of the old layout.'
  );
}
