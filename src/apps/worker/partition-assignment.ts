// Shares the worker's partition queues out among the running workers, so each partition has one consumer and the
// work spreads. RabbitMQ 3.10 has no consumer priorities for single-active-consumer queues: if every worker
// subscribed to every partition, the first one would be active on all of them.
import type { Subscription } from '../../application/ports/message-bus.ts';
import type { Logger } from '../../infrastructure/logging/logger.ts';
import type { Database, Leadership } from '../../infrastructure/persistence/database.ts';
import { expectedFailure } from '../../infrastructure/logging/expected-failure.ts';

/**
 * Advisory lock keys of the member slots: a worker holds one while it runs. Clear of the other keys on the same
 * database: migrations 4_224_711, the outbox relay 4_224_712, the in-process bus 4_224_713.
 */
const MEMBER_SLOT_FIRST_KEY = 4_224_800;
/** More workers than this wait for a slot (and with at most 64 partitions they would have none to consume). */
const MEMBER_SLOTS = 64;

/**
 * The first key of the member slots of the workers of one layout (WORKER_PARTITIONS = `partitions`): each layout has
 * a range of its own (one per value up to MAX_WORKER_PARTITIONS). A worker counts only the workers of its own layout
 * as members. One given another value (an operator changing N by a rolling restart) would otherwise be given a rank,
 * and with it partitions it does not consume (numbered N or more in its layout), or none at all: those partitions
 * would have no consumer while the others count them as its. Apart, each layout shares out all of its partitions;
 * the partitions the two have in common wait behind the other layout's consumer (single active consumer), as always.
 */
export function memberSlotFirstKey(partitions: number): number {
  // From the second range on: the first is the one every layout shared before, still held by workers of older code
  // during an upgrade, which would otherwise count a new worker of any layout among them.
  return MEMBER_SLOT_FIRST_KEY + partitions * MEMBER_SLOTS;
}

/** How often a worker looks at who else is running and hands over or takes partitions. */
const REBALANCE_EVERY_MS = 2_000;

/**
 * The partitions (of 0 … partitions-1) the worker holding `ownSlot` consumes: those p with p mod W = its rank among
 * the held `slots`, W of them. Every worker computes the same split from the same slots.
 */
export function ownedPartitions(partitions: number, slots: readonly number[], ownSlot: number): number[] {
  const members = [...new Set([...slots, ownSlot])].sort((a, b) => a - b);
  const rank = members.indexOf(ownSlot);
  return Array.from({ length: partitions }, (_, partition) => partition).filter(
    (partition) => partition % members.length === rank,
  );
}

export interface PartitionAssignmentStatus {
  /** Member slot held (0-based); undefined while it has none. */
  readonly slot: number | undefined;
  /** Workers holding a slot at the last look; undefined while this one has none (the number is unknown). */
  readonly members: number | undefined;
  /** Partitions this worker is subscribed to, ascending. */
  readonly owned: readonly number[];
  /** Those of them whose subscription waits for the broker, ascending. */
  readonly waiting: readonly number[];
}

export interface PartitionAssignmentOptions {
  readonly database: Pick<Database, 'tryLead' | 'heldLeadLocks'>;
  readonly partitions: number;
  /** Starts consuming one partition; closing the subscription drains it (in-flight messages finish and settle). */
  readonly subscribe: (partition: number) => Promise<Subscription>;
  readonly logger: Logger;
  /** Called whenever the owned partitions change. */
  readonly onChange?: (status: PartitionAssignmentStatus) => void;
  readonly rebalanceEveryMs?: number;
}

export interface PartitionAssignment {
  /** Takes a member slot and subscribes to the partitions it owns. */
  start(): Promise<void>;
  /**
   * Stops looking, closes every partition (draining it), and gives the slot up. Resolves with how many messages in
   * flight went back to the queues (see Subscription.close).
   */
  stop(): Promise<number>;
  status(): PartitionAssignmentStatus;
}

/**
 * Each worker holds a member slot (a PostgreSQL advisory lock), reads which slots are held, and consumes its share
 * (`ownedPartitions`), looking again every two seconds and at once when its slot is lost. Every partition queue is
 * single-active-consumer, which keeps this safe while the workers disagree: a new owner's consumer waits behind the
 * old one until it closes, so a partition is never consumed by two workers at once and per-student order holds.
 * A worker that lost its slot cannot know how many others run: it keeps the partitions it has (the safety net
 * above covers them) and takes no new ones until it holds a slot again.
 */
export function assignPartitions(options: PartitionAssignmentOptions): PartitionAssignment {
  const { database, partitions, logger } = options;
  const firstKey = memberSlotFirstKey(partitions);
  const lastKey = firstKey + MEMBER_SLOTS - 1;
  const every = options.rebalanceEveryMs ?? REBALANCE_EVERY_MS;
  const subscriptions = new Map<number, Subscription>();
  let lease: { readonly slot: number; readonly leadership: Leadership } | undefined;
  let members: number | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();

  const status = (): PartitionAssignmentStatus => {
    const owned = [...subscriptions.keys()].sort((a, b) => a - b);
    return {
      slot: lease?.slot,
      members: lease ? members : undefined,
      owned,
      waiting: owned.filter((partition) => subscriptions.get(partition)!.waitingForBroker),
    };
  };

  /** The lowest free slot, if another worker does not take it first (then the next round tries again). */
  const takeSlot = async (): Promise<void> => {
    const held = new Set(await database.heldLeadLocks(firstKey, lastKey));
    for (let key = firstKey; key <= lastKey; key++) {
      if (held.has(key)) continue;
      const leadership = await database.tryLead(key);
      if (!leadership) continue; // taken meanwhile
      const taken = { slot: key - firstKey, leadership };
      lease = taken;
      logger.info({ slot: taken.slot }, 'worker holds a member slot');
      void leadership.lost.then(() => {
        if (lease !== taken) return;
        lease = undefined;
        // Ends the session if it is still open (a failed heartbeat), so the old slot frees and is not counted twice.
        void leadership.release();
        logger.warn(
          { slot: taken.slot },
          'member slot lost; keeping the partitions in hand until a slot is held again',
        );
        schedule(0);
      });
      return;
    }
  };

  /** What this worker should consume now; undefined = keep what it has. */
  const target = async (): Promise<number[] | undefined> => {
    if (!lease)
      await takeSlot().catch((error: unknown) =>
        logger.warn(
          expectedFailure(error),
          'no member slot: the database did not answer; trying again shortly',
        ),
      );
    // Without a slot, a worker keeps what it has and takes nothing new.
    const withoutSlot = () => (subscriptions.size > 0 ? undefined : []);
    if (!lease) return withoutSlot();
    const held = await database.heldLeadLocks(firstKey, lastKey);
    // The slot may have been lost while the held ones were read (its session ended, as on resuming from a long
    // pause); the loss has scheduled the next look already.
    if (!lease) return withoutSlot();
    const slots = held.map((key) => key - firstKey);
    members = new Set([...slots, lease.slot]).size;
    return ownedPartitions(partitions, slots, lease.slot);
  };

  const apply = async (owned: readonly number[]): Promise<void> => {
    const before = status().owned.join();
    const keep = new Set(owned);
    try {
      // Hand over first: the next owner's consumer, waiting behind this one, becomes active once it closes.
      await Promise.all(
        [...subscriptions].flatMap(([partition, subscription]) =>
          keep.has(partition) ? [] : [subscription.close().finally(() => subscriptions.delete(partition))],
        ),
      );
      for (const partition of owned) {
        if (subscriptions.has(partition) || stopped) continue;
        subscriptions.set(partition, await options.subscribe(partition));
      }
    } finally {
      // After a failure half way too: what changed until then is reported.
      const after = status();
      if (after.owned.join() !== before) {
        logger.info(after, 'worker partitions changed');
        options.onChange?.(after);
      }
    }
  };

  const rebalance = async (): Promise<void> => {
    try {
      const owned = await target();
      if (owned && !stopped) await apply(owned);
    } catch (error) {
      logger.warn(expectedFailure(error), 'partition assignment failed; trying again shortly');
    }
  };

  let dueAt = Infinity;
  /** Runs a rebalance in `delayMs`, unless one is due sooner; one runs at a time. */
  const schedule = (delayMs: number) => {
    if (stopped) return;
    const at = Date.now() + delayMs;
    if (timer && at >= dueAt) return;
    clearTimeout(timer);
    dueAt = at;
    timer = setTimeout(() => {
      timer = undefined;
      dueAt = Infinity;
      running = running.then(rebalance).finally(() => schedule(every));
    }, delayMs).unref();
  };

  return {
    async start() {
      running = running.then(async () => {
        const owned = await target();
        await apply(owned ?? []);
      });
      await running;
      schedule(every);
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running.catch(() => undefined);
      const returned = await Promise.all(
        [...subscriptions.values()].map((subscription) => subscription.close()),
      );
      subscriptions.clear();
      const held = lease;
      lease = undefined;
      await held?.leadership.release();
      options.onChange?.(status());
      return returned.reduce((sum, count) => sum + count, 0);
    },
    status,
  };
}
