// The relay's cleanup of sent rows when it fails: tried again a minute later, not after every drain.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { OutboxRelay } from '../../src/infrastructure/outbox/outbox-relay.ts';
import {
  createResiliencePolicy,
  DEFAULT_RESILIENCE,
} from '../../src/infrastructure/resilience/resilience-policy.ts';
import { recordingLogger, silentLogger } from '../support/logger.ts';
import { openTestDatabase } from '../support/databases.ts';

test('a cleanup that fails is not tried again after every drain', async () => {
  const own = await openTestDatabase('pglite');
  const { logger, logged } = recordingLogger();
  const run = (name: string, text: string) => own.database.sql.query({ name, text }, []);
  try {
    // Each attempt counted by a sequence, which a failed statement's rollback leaves advanced.
    await run('test_cleanup_attempts', 'create sequence cleanup_attempts');
    await run(
      'test_refuse_delete_fn',
      `create function refuse_delete() returns trigger language plpgsql as $$
       begin perform nextval('cleanup_attempts'); raise exception 'delete refused'; end $$`,
    );
    await run(
      'test_refuse_delete',
      'create trigger refuse before delete on outbox for each statement execute function refuse_delete()',
    );
    const relay = new OutboxRelay({
      database: own.database,
      bus: new InProcessMessageBus(),
      logger,
      policy: createResiliencePolicy('relay', DEFAULT_RESILIENCE, silentLogger),
      options: { retentionMs: 60_000 },
    });
    relay.start();
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    await relay.stop();
    const [row] = await own.database.sql.query<{ n: number }>(
      { name: 'test_cleanup_count', text: 'select last_value::int as n from cleanup_attempts' },
      [],
    );
    assert.equal(row?.n, 1, 'one attempt in 3 s (the next is due a minute later)');
    // Said as what it is: the drain before it published everything, the broker is not in question.
    assert.match(logged(), /"msg":"sent outbox rows not cleaned up; tried again later"/);
    assert.doesNotMatch(logged(), /publishing the outbox failed|outbox drained/);
  } finally {
    await own.dispose();
  }
});
