// The notifications consumer's writer lease when Redis does not answer a renewal: the lease is lost when Redis says
// another instance holds it, or once it would have lapsed unrenewed, not at the first renewal that went unanswered.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { outcome, type ReceivedMessage } from '../../src/application/ports/message-bus.ts';
import { consumeNotifications } from '../../src/apps/notifications/notifications.consumer.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import type { ReplayLog } from '../../src/application/ports/replay-log.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { deadLetterNames, messagingTopology } from '../../src/contracts/messaging.ts';
import { silentLogger } from '../support/logger.ts';
import { notificationMessage } from './support.ts';
import { until } from '../support/until.ts';

/** One instance's view of a shared log, whose lease renewals fail while `unreachable` (its Redis does not answer). */
class UnreachableLeaseLog implements ReplayLog {
  unreachable = false;
  /** Appends fail too (Redis down for the consumer's writes); `appendAttempts` counts them. */
  appendsUnreachable = false;
  appendAttempts = 0;
  /** Each renewal spends this long on its way to Redis (a slow network); `claiming` while one does. */
  claimDelayMs = 0;
  claiming = false;

  constructor(readonly shared: ReplayLog = new MemoryRingReplayLog({ maxEntries: 100 })) {}

  async claimWriter(writerId: string, ttlMs: number): Promise<boolean> {
    if (this.unreachable) throw new Error('Connection is closed.');
    this.claiming = true;
    try {
      if (this.claimDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.claimDelayMs));
      return await this.shared.claimWriter(writerId, ttlMs);
    } finally {
      this.claiming = false;
    }
  }

  append: ReplayLog['append'] = (entry, writerId) => {
    this.appendAttempts++;
    if (this.appendsUnreachable) return Promise.reject(new Error('Connection is closed.'));
    return this.shared.append(entry, writerId);
  };
  releaseWriter: ReplayLog['releaseWriter'] = (writerId) => this.shared.releaseWriter(writerId);
  readAfter: ReplayLog['readAfter'] = (afterId, limit) => this.shared.readAfter(afterId, limit);
  tail: ReplayLog['tail'] = (afterId, listener) => this.shared.tail(afterId, listener);
  retention: ReplayLog['retention'] = () => this.shared.retention();
  status: ReplayLog['status'] = () => this.shared.status();
  close: ReplayLog['close'] = () => this.shared.close();
}

const LEASE_MS = 600;

/** An in-process bus with the notifications queue. */
async function notificationsBus(): Promise<InProcessMessageBus> {
  const bus = new InProcessMessageBus();
  await bus.declareTopology(messagingTopology(1));
  return bus;
}

/** Instance `instanceId`'s notifications consumer on `bus`, over its view of the log. */
const startConsumer = (bus: InProcessMessageBus, log: ReplayLog, instanceId: string, leaseMs = LEASE_MS) =>
  consumeNotifications({ bus, log, instanceId, prefetch: 10, logger: silentLogger, leaseMs });

test('renewals Redis does not answer keep the consumer consuming until the lease would have lapsed', async () => {
  const bus = await notificationsBus();
  const log = new UnreachableLeaseLog();
  const consumer = await startConsumer(bus, log, 'instance-a');
  try {
    assert.equal(consumer.state, 'consuming');
    log.unreachable = true;
    // Renewals run every third of the lease: two of them fail within it.
    await new Promise((resolve) => setTimeout(resolve, LEASE_MS / 2));
    assert.equal(consumer.state, 'consuming', 'an unanswered renewal is no lost lease');
    log.unreachable = false;
    await bus.publish([notificationMessage('StudentCreated')]);
    await until(async () => (await log.retention()).length === 1, 'the notification appended');

    log.unreachable = true;
    await until(() => consumer.state === 'standby', 'standing by once the lease lapsed');
  } finally {
    log.unreachable = false;
    await consumer.stop();
    await bus.close();
    await log.close();
  }
});

test('an instance refused the lease does not start consuming when a later renewal goes unanswered', async () => {
  const bus = await notificationsBus();
  const a = new UnreachableLeaseLog();
  const b = new UnreachableLeaseLog(a.shared);
  const start = (log: ReplayLog, instanceId: string) => startConsumer(bus, log, instanceId);
  const consumerA = await start(a, 'instance-a');
  const consumerB = await start(b, 'instance-b');
  try {
    assert.equal(consumerA.state, 'consuming');
    assert.equal(consumerB.state, 'standby');
    // Redis lost the lease key (a restart without persistence), and B took the lease.
    await a.shared.releaseWriter('instance-a');
    assert.equal(await b.shared.claimWriter('instance-b', LEASE_MS), true);
    await until(() => consumerB.state === 'consuming', 'B consuming');
    await until(() => consumerA.state === 'standby', 'A told it lost the lease');

    a.unreachable = true;
    await new Promise((resolve) => setTimeout(resolve, LEASE_MS / 2));
    assert.equal(
      consumerA.state,
      'standby',
      'a lease it was refused is not taken back by an unanswered renewal',
    );
  } finally {
    a.unreachable = false;
    await consumerA.stop();
    await consumerB.stop();
    await bus.close();
    await a.shared.close();
  }
});

test('a lease that vanished is claimed again at the first refused append, not at the next renewal: the notification waits a moment', async () => {
  const bus = await notificationsBus();
  const log = new UnreachableLeaseLog();
  // Renewals every 10 s: a notification that waited for one would wait that long.
  const consumer = await startConsumer(bus, log, 'instance-a', 30_000);
  try {
    assert.equal(consumer.state, 'consuming');
    await log.shared.releaseWriter('instance-a'); // Redis lost the lease key (a restart, an eviction)
    await bus.publish([notificationMessage('StudentCreated')]);
    await until(async () => (await log.retention()).length === 1, 'the notification appended', 2_000);
    assert.equal(consumer.state, 'consuming');
  } finally {
    await consumer.stop();
    await bus.close();
    await log.close();
  }
});

test('a consumer stopped while its appends fail returns the notification to the queue: the next one appends it, nothing is dead-lettered', async () => {
  const bus = await notificationsBus();
  const deadLettered: ReceivedMessage[] = [];
  await bus.consume(deadLetterNames('notifications').queue, {
    prefetch: 10,
    handler: (message) => (deadLettered.push(message), outcome.ack()),
  });
  const a = new UnreachableLeaseLog();
  const b = new UnreachableLeaseLog(a.shared);
  const start = (log: ReplayLog, instanceId: string) => startConsumer(bus, log, instanceId);
  const consumerA = await start(a, 'instance-a');
  let consumerB: Awaited<ReturnType<typeof start>> | undefined;
  try {
    a.appendsUnreachable = true;
    await bus.publish([notificationMessage('StudentCreated')]);
    await until(() => a.appendAttempts > 1, 'the append retried');
    await consumerA.stop(); // gives the lease up, and the message back
    consumerB = await start(b, 'instance-b');
    await until(async () => (await b.retention()).length === 1, 'the notification appended by B');
    assert.deepEqual(deadLettered, []);
  } finally {
    await consumerA.stop();
    await consumerB?.stop();
    await bus.close();
    await a.shared.close();
  }
});

test('a consumer stopped during a renewal gives the lease up after it: another instance takes over at once', async () => {
  const bus = await notificationsBus();
  const log = new UnreachableLeaseLog();
  const consumer = await startConsumer(bus, log, 'instance-a');
  try {
    assert.equal(consumer.state, 'consuming');
    log.claimDelayMs = 100;
    await until(() => log.claiming, 'a renewal under way', 5_000, 1);
    await consumer.stop();
    await new Promise((resolve) => setTimeout(resolve, 200)); // whatever was under way has landed
    assert.equal(
      await log.shared.claimWriter('instance-b', LEASE_MS),
      true,
      'the lease is free, not held until it lapses',
    );
  } finally {
    await consumer.stop();
    await bus.close();
    await log.close();
  }
});

/**
 * As RabbitMqMessageBus with the broker away from one instance: disconnected, and a subscribe waits until the broker
 * is back, or rejects at once when its signal aborts (consumeOnChannel's untilAborted). `opened` counts subscriptions
 * that reached the queue.
 */
function brokerAwayFrom(bus: InProcessMessageBus) {
  let isBack = false;
  let brokerBack!: () => void;
  const back = new Promise<void>((resolve) => (brokerBack = resolve));
  const probe = { subscribing: false, opened: 0, back: () => ((isBack = true), brokerBack()) };
  const away = Object.assign(Object.create(bus) as InProcessMessageBus, {
    status: () => ({ ...bus.status(), connected: isBack }),
    consume: async (...[queue, options]: Parameters<InProcessMessageBus['consume']>) => {
      probe.subscribing = true;
      const { signal } = options;
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(signal?.reason as Error);
        if (signal?.aborted) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        void back.then(resolve);
      });
      const subscription = await bus.consume(queue, options);
      probe.opened++;
      return subscription;
    },
  });
  return { away, probe };
}

test('an instance that takes the lease over while the broker is away says it waits for the broker, not that it stands by', async () => {
  const bus = await notificationsBus();
  const shared = new MemoryRingReplayLog({ maxEntries: 100 });
  assert.equal(await shared.claimWriter('instance-a', LEASE_MS), true, 'another instance holds the lease');
  const { away, probe } = brokerAwayFrom(bus);
  const consumer = await startConsumer(away, new UnreachableLeaseLog(shared), 'instance-b');
  try {
    assert.equal(consumer.state, 'standby');
    await shared.releaseWriter('instance-a'); // it went
    await until(() => probe.subscribing, 'the lease taken over: subscribing');
    assert.equal(consumer.state, 'waiting for the broker');
  } finally {
    probe.back();
    await consumer.stop();
    await bus.close();
    await shared.close();
  }
});

test('an instance waiting for the broker longer than its lease keeps renewing it: another instance does not take it over', async () => {
  const bus = await notificationsBus();
  const shared = new MemoryRingReplayLog({ maxEntries: 100 });
  const { away, probe } = brokerAwayFrom(bus);
  const starting = startConsumer(away, new UnreachableLeaseLog(shared), 'instance-a');
  await until(() => probe.subscribing, 'instance-a holding the lease, subscribing');
  const other = await startConsumer(bus, new UnreachableLeaseLog(shared), 'instance-b');
  try {
    await new Promise((resolve) => setTimeout(resolve, 3 * LEASE_MS)); // the lease would have lapsed three times
    // The lease stays with the instance that waits; the other stands by, and says the queue has no consumer.
    assert.equal(other.state, 'standby, nobody consuming', 'the lease stays with the instance that waits');
    assert.equal(await shared.claimWriter('instance-b', LEASE_MS), false);
    probe.back();
    assert.equal((await starting).state, 'consuming');
  } finally {
    probe.back();
    await (await starting).stop();
    await other.stop();
    await bus.close();
    await shared.close();
  }
});

test('an instance refused the lease while it waits for the broker stands by, and gives that subscribe up', async () => {
  const bus = await notificationsBus();
  const shared = new MemoryRingReplayLog({ maxEntries: 100 });
  assert.equal(await shared.claimWriter('instance-b', LEASE_MS), true, 'another instance holds the lease');
  const { away, probe } = brokerAwayFrom(bus);
  const consumer = await startConsumer(away, new UnreachableLeaseLog(shared), 'instance-a');
  try {
    assert.equal(consumer.state, 'standby');
    await shared.releaseWriter('instance-b'); // it went: instance-a takes the lease over, and waits for the broker
    await until(() => probe.subscribing, 'the lease taken over: subscribing');
    assert.equal(consumer.state, 'waiting for the broker');
    // Its Redis lost the lease key, and instance-b took it: instance-a's next renewal is refused.
    await shared.releaseWriter('instance-a');
    assert.equal(await shared.claimWriter('instance-b', 60_000), true);
    await until(
      () => consumer.state === 'standby',
      'instance-a standing by once a renewal was refused (not waiting for a broker it no longer needs)',
      2_000,
    );
    probe.back();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(probe.opened, 0, 'no subscription opened for a lease another instance holds');
    assert.equal(consumer.state, 'standby');
  } finally {
    probe.back();
    await consumer.stop();
    await bus.close();
    await shared.close();
  }
});

test('an instance whose lease lapsed while it waited for the broker hands no notification of a student to the new holder out of order', async () => {
  const bus = await notificationsBus();
  const shared = new MemoryRingReplayLog({ maxEntries: 100 });
  const a = new UnreachableLeaseLog(shared);
  const b = new UnreachableLeaseLog(shared);
  const { away, probe } = brokerAwayFrom(bus);
  const startingA = startConsumer(away, a, 'instance-a');
  let consumerB: Awaited<ReturnType<typeof startConsumer>> | undefined;
  try {
    await until(() => probe.subscribing, 'instance-a holding the lease, subscribing');
    // instance-a is cut off from Redis longer than the lease: instance-b takes the lease over and consumes.
    a.unreachable = true;
    consumerB = await startConsumer(bus, b, 'instance-b');
    await until(() => consumerB?.state === 'consuming', 'instance-b consuming');
    a.unreachable = false;
    await new Promise((resolve) => setTimeout(resolve, LEASE_MS / 2)); // instance-a's renewals are refused now
    a.claimDelayMs = 50; // a round trip to Redis
    probe.back();
    await startingA;
    const student = randomUUID();
    await bus.publish([
      notificationMessage('StudentCreated'), // another student's
      notificationMessage('StudentCreated', student),
      notificationMessage('StudentCached', student),
    ]);
    await until(async () => (await shared.retention()).length === 3, 'the three notifications appended');
    const entries = await shared.readAfter('0-0', 10);
    assert.deepEqual(
      entries.filter((entry) => entry.subject === student).map((entry) => entry.type),
      ['StudentCreated', 'StudentCached'],
      "the student's notifications in the log in the order published",
    );
    assert.equal(a.appendAttempts, 0, 'instance-a handled none of them');
  } finally {
    probe.back();
    await (await startingA).stop();
    await consumerB?.stop();
    await bus.close();
    await shared.close();
  }
});

test('an instance holding the lease whose subscribes the broker refuses says it cannot subscribe (not standby) until one succeeds', async () => {
  const bus = await notificationsBus();
  const log = new UnreachableLeaseLog();
  let refusing = true;
  const refusingBus = Object.assign(Object.create(bus) as InProcessMessageBus, {
    consume: async (...args: Parameters<InProcessMessageBus['consume']>) => {
      if (refusing) throw new Error("PRECONDITION_FAILED - inequivalent arg 'x-queue-type'");
      return bus.consume(...args);
    },
  });
  const consumer = await startConsumer(refusingBus, log, 'instance-a');
  try {
    assert.equal(consumer.state, 'cannot subscribe');
    refusing = false;
    await until(() => consumer.state === 'consuming', 'the next renewal subscribing');
  } finally {
    await consumer.stop();
    await bus.close();
    await log.close();
  }
});

test('an instance standing by says so once nobody has consumed its queue for two leases, not before', async () => {
  // Two deployments' notifications on one REPLAY_LOG_KEY_PREFIX: each its own broker (vhost), one log between them.
  const log = new MemoryRingReplayLog({ maxEntries: 100 });
  const [ours, theirs] = [await notificationsBus(), await notificationsBus()];
  const holder = await startConsumer(theirs, log, 'their-instance');
  const standingBy = await startConsumer(ours, log, 'our-instance');
  const sameBroker = await startConsumer(theirs, log, 'their-second-instance');
  try {
    assert.equal(holder.state, 'consuming');
    assert.equal(standingBy.state, 'standby');
    await new Promise((resolve) => setTimeout(resolve, LEASE_MS));
    assert.equal(standingBy.state, 'standby', 'a lease is no time to tell a holder that is taking over');
    await until(() => standingBy.state === 'standby, nobody consuming', 'nobody consuming, said');
    assert.equal(sameBroker.state, 'standby', 'on the holder’s broker, its queue is consumed');

    // The holder goes; the instance standing by takes the lease and consumes its own queue.
    await holder.stop();
    await until(() => standingBy.state === 'consuming' || sameBroker.state === 'consuming', 'a new holder');
  } finally {
    await Promise.all([holder.stop(), standingBy.stop(), sameBroker.stop()]);
    await Promise.all([ours.close(), theirs.close(), log.close()]);
  }
});
