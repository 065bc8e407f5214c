import type { Topology } from '../../contracts/messaging.ts';

/** Rejects declarations RabbitMQ would refuse or silently ignore, so both adapters fail the same way. */
export function validateTopology(topology: Topology): void {
  for (const queue of topology.queues) {
    if (queue.type === 'quorum' && !queue.durable)
      throw new Error(`queue '${queue.name}': quorum queues must be durable`);
    if (queue.maxDeliveries !== undefined) {
      if (queue.type !== 'quorum')
        throw new Error(
          `queue '${queue.name}': maxDeliveries needs a quorum queue (classic queues do not count)`,
        );
      if (!Number.isInteger(queue.maxDeliveries) || queue.maxDeliveries < 1)
        throw new Error(`queue '${queue.name}': maxDeliveries must be a positive integer`);
    }
  }
}
