// The relay's metrics, read at each scrape from a relay whose state the test sets.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Registry } from 'prom-client';
import type { OutboxRelay, RelayStatus } from '../../src/infrastructure/outbox/outbox-relay.ts';
import { registerRelayMetrics } from '../../src/infrastructure/outbox/relay-metrics.ts';
import { parseExposition } from '../support/prometheus-text.ts';

function scraped() {
  let status: RelayStatus = { role: 'starting', breaker: 'closed', published: 0 };
  let backlog: () => Promise<number> = async () => 0;
  const relay = { status: () => status, backlog: () => backlog() } as unknown as OutboxRelay;
  const registry = new Registry();
  registerRelayMetrics(registry, relay);
  return {
    set(next: { status?: Partial<RelayStatus>; backlog?: () => Promise<number> }) {
      status = { ...status, ...next.status };
      if (next.backlog) backlog = next.backlog;
    },
    scrape: async () => parseExposition(await registry.metrics()),
  };
}

describe('relay metrics', () => {
  test('the published counter follows the relay count, however often it is scraped', async () => {
    const relay = scraped();
    relay.set({ status: { published: 3 } });
    assert.equal((await relay.scrape()).value('outbox_relay_published_total'), 3);
    assert.equal(
      (await relay.scrape()).value('outbox_relay_published_total'),
      3,
      'a second scrape counts nothing',
    );
    relay.set({ status: { published: 5 } });
    assert.equal((await relay.scrape()).value('outbox_relay_published_total'), 5);
  });

  test('exactly the current role and breaker state are 1', async () => {
    const relay = scraped();
    relay.set({ status: { role: 'leader', breaker: 'open' } });
    const exposition = await relay.scrape();
    for (const role of ['starting', 'leader', 'standby', 'stopped'])
      assert.equal(exposition.value('outbox_relay_role', { role }), role === 'leader' ? 1 : 0, role);
    for (const state of ['closed', 'open', 'half-open', 'isolated'])
      assert.equal(
        exposition.value('outbox_relay_breaker_state', { state }),
        state === 'open' ? 1 : 0,
        state,
      );
  });

  test('the backlog is the unsent rows; a database that cannot answer leaves the last value, not 0', async () => {
    const relay = scraped();
    relay.set({ backlog: async () => 42 });
    assert.equal((await relay.scrape()).value('outbox_backlog_messages'), 42);
    relay.set({
      backlog: async () => {
        throw new Error('database unavailable');
      },
    });
    assert.equal((await relay.scrape()).value('outbox_backlog_messages'), 42);
  });
});
