import { setTimeout as sleep } from 'node:timers/promises';
import type { MessageBus } from '../../application/ports/message-bus.ts';
import type { Topology } from '../../contracts/messaging.ts';

/** How long a start waits for the broker's connection before it says the broker does not answer. */
export const BROKER_CONNECT_WAIT_MS = 3_000;

/** Whether the bus is connected within `timeoutMs`; throws the signal's reason once it is aborted. */
export async function brokerAnswers(
  bus: MessageBus,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    if (bus.status().connected) return true;
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
}

export interface BrokerWait {
  /**
   * Ends the wait for the broker (the role is stopping), which then rejects with its reason; a declaration under way
   * still finishes.
   */
  readonly signal: AbortSignal;
  /** Called once, the first time the broker has not answered within BROKER_CONNECT_WAIT_MS. */
  readonly onUnreachable: () => void;
}

/**
 * Declares `topology` once the broker answers, however long that takes: a role that consumes waits for a broker that
 * is down, or still booting as it is when a whole stack starts at once, rather than exit. A broker that answers and
 * refuses the topology (an exchange type it lacks, a queue declared otherwise) is a setting that cannot work: that
 * rejects, with the broker's reason.
 */
export async function declareOnceBrokerAnswers(
  bus: MessageBus,
  topology: Topology,
  { signal, onUnreachable }: BrokerWait,
): Promise<void> {
  let told = false;
  // Declarations in a row that lost the connection, the broker answering again at once each time.
  let lostInARow = 0;
  for (;;) {
    if (await brokerAnswers(bus, BROKER_CONNECT_WAIT_MS, signal)) {
      try {
        return await bus.declareTopology(topology);
      } catch (error) {
        // Refused: by a broker still connected, or twice in a row by one that closed the connection over it and took
        // the next one at once (RabbitMQ's refusal of an exchange type it lacks), not a connection lost meanwhile.
        lostInARow += 1;
        if (bus.status().connected || lostInARow > 1) throw error;
        continue;
      }
    }
    lostInARow = 0;
    if (!told) onUnreachable();
    told = true;
  }
}
