// The notifications consumer's writer lease when Redis does not answer a renewal: the lease is lost when Redis says
// another instance holds it, or once it would have lapsed unrenewed, not at the first renewal that went unanswered.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { consumeNotifications } from '../../src/apps/notifications/notifications.consumer.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { messagingTopology } from '../../src/contracts/messaging.ts';
import { silentLogger } from '../support/logger.ts';
import { notificationMessage, until } from './support.ts';

/** A memory ring whose lease renewals fail while `unreachable` (a Redis that does not answer). */
class UnreachableLeaseLog extends MemoryRingReplayLog {
  unreachable = false;

  override async claimWriter(writerId: string, ttlMs: number): Promise<boolean> {
    if (this.unreachable) throw new Error('Connection is closed.');
    return super.claimWriter(writerId, ttlMs);
  }
}

const LEASE_MS = 600;

test('renewals Redis does not answer keep the consumer consuming until the lease would have lapsed', async () => {
  const bus = new InProcessMessageBus();
  await bus.declareTopology(messagingTopology(1));
  const log = new UnreachableLeaseLog({ maxEntries: 100 });
  const consumer = await consumeNotifications({
    bus,
    log,
    instanceId: 'instance-a',
    prefetch: 10,
    logger: silentLogger,
    leaseMs: LEASE_MS,
  });
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
