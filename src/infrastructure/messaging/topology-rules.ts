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
  const hashExchanges = new Set(
    topology.exchanges.filter((exchange) => exchange.type === 'x-consistent-hash').map((e) => e.name),
  );
  for (const exchange of topology.exchanges)
    if (exchange.hashHeader !== undefined && exchange.type !== 'x-consistent-hash')
      throw new Error(`exchange '${exchange.name}': hashHeader needs an x-consistent-hash exchange`);
  for (const binding of topology.bindings)
    if (hashExchanges.has(binding.exchange) && !/^[1-9]\d{0,5}$/.test(binding.routingKey))
      throw new Error(
        `binding of '${binding.queue}' to consistent-hash exchange '${binding.exchange}': the binding key is the ` +
          `queue's weight, a positive integer (got '${binding.routingKey}')`,
      );
  // A hash exchange picks one queue; chaining it on to other exchanges is something neither adapter needs.
  for (const binding of topology.exchangeBindings ?? [])
    if (hashExchanges.has(binding.source))
      throw new Error(
        `exchange '${binding.source}': an x-consistent-hash exchange routes to queues only, not to '${binding.destination}'`,
      );
}
