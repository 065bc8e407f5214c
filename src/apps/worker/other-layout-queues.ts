// Every role declares the worker's queues for its own WORKER_PARTITIONS. A role given another value, or the queues
// of the layout before N was changed and not deleted, leave queues bound to `students` that no worker consumes:
// they fill up until RabbitMQ's memory or disk alarm stops every publisher, and a partition queue numbered N or
// more holds the only copy of its students' events. The worker looks for them and says so.
import type { MessageBus, QueueState } from '../../application/ports/message-bus.ts';
import { otherLayoutQueues, Queues } from '../../contracts/messaging.ts';
import type { HealthCheck } from '../../infrastructure/health/health.ts';
import type { Logger } from '../../infrastructure/logging/logger.ts';
import { runPeriodically, type Periodic } from '../../infrastructure/runtime/periodic.ts';
import { expectedFailure } from '../../infrastructure/logging/expected-failure.ts';

/** Often enough to notice a queue filling long before it matters; each look is one or two broker round trips. */
const LOOK_EVERY_MS = 60_000;

export interface OtherLayoutWatch {
  /** Looks now, then every minute. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * While a queue of another layout exists, naming it: Unhealthy for a partition queue this layout lacks (its
   * students' events go unprocessed), Degraded for one that gets a copy. From the last look: no round trip.
   */
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
        logger[now.some((f) => takesAShare(f.queue, partitions)) ? 'error' : 'warn'](
          { queues: now, partitions },
          describe(now, partitions),
        );
      found = now;
    } catch (error) {
      // The broker check reports the broker; this one keeps what it saw last.
      logger.debug(expectedFailure(error), 'could not look for worker queues of another layout');
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
              status: found.some((f) => takesAShare(f.queue, partitions)) ? 'Unhealthy' : 'Degraded',
              description: describe(found, partitions),
              data: { partitions, otherLayout: found },
            },
    },
  };
}

/**
 * A partition queue numbered N or more, on the hash ring of a layout with N partitions: the ring gives it its share of
 * the students, whose events then reach no other queue. Any other layout's queue gets a copy of every event.
 */
function takesAShare(queue: string, partitions: number): boolean {
  return partitions > 1 && queue !== Queues.studentsWorker;
}

function describe(found: readonly Found[], partitions: number): string {
  const named = (f: Found) => `${f.queue} (${f.messages} waiting, ${f.consumers} consumers)`;
  const shares = found.filter((f) => takesAShare(f.queue, partitions));
  const copies = found.filter((f) => !takesAShare(f.queue, partitions));
  return [
    ...(shares.length > 0
      ? [
          `${shares.map(named).join(', ')}, and any numbered above: not this worker's layout ` +
            `(WORKER_PARTITIONS=${partitions}), yet on the partitions' hash ring, they take their share of the ` +
            `students, whose events no worker of this layout processes. Run every role with the WORKER_PARTITIONS ` +
            `that made them until the queues are empty, then change it as the README says (writers stopped, queues ` +
            `drained, the old layout's queues deleted).`,
        ]
      : []),
    ...(copies.length > 0
      ? [
          `${copies.map(named).join(', ')}: not this worker's layout (WORKER_PARTITIONS=${partitions}), and gets a ` +
            'copy of every student event. Give every role the same WORKER_PARTITIONS; once drained, delete the ' +
            'queues of the old layout.',
        ]
      : []),
  ].join(' ');
}
