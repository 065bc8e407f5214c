import { Counter, Gauge, type Registry } from 'prom-client';
import { BACKLOG_COUNTED, type OutboxRelay, type RelayRole } from './outbox-relay.ts';
import type { BreakerState } from '../resilience/resilience-policy.ts';

const ROLES: readonly RelayRole[] = ['starting', 'leader', 'standby', 'stopped'];
const BREAKER_STATES: readonly BreakerState[] = ['closed', 'open', 'half-open', 'isolated'];

/** The relay's state, read when Prometheus scrapes: backlog, leadership, circuit breaker, messages published. */
export function registerRelayMetrics(registry: Registry, relay: OutboxRelay): void {
  const registers = [registry];
  new Gauge({
    name: 'outbox_backlog_messages',
    help:
      'Outbox rows not published yet (the whole database: every relay reports the same backlog). Above ' +
      `${BACKLOG_COUNTED}, the span of their positions: an upper bound, exact while none in between was sent.`,
    registers,
    async collect() {
      // A database that cannot answer leaves the last value; /health says why.
      const backlog = await relay.backlog().catch(() => undefined);
      if (backlog !== undefined) this.set(backlog);
    },
  });
  new Gauge({
    name: 'outbox_relay_role',
    help: "This process's outbox relay: 1 for its current role (leader publishes, standby waits to take over).",
    labelNames: ['role'],
    registers,
    collect() {
      const { role } = relay.status();
      for (const each of ROLES) this.set({ role: each }, each === role ? 1 : 0);
    },
  });
  new Gauge({
    name: 'outbox_relay_breaker_state',
    help: "The circuit breaker around the relay's broker publishes: 1 for its current state.",
    labelNames: ['state'],
    registers,
    collect() {
      const { breaker } = relay.status();
      for (const state of BREAKER_STATES) this.set({ state }, state === breaker ? 1 : 0);
    },
  });
  new Counter({
    name: 'outbox_relay_published_total',
    help: 'Outbox messages this process published with a broker confirm.',
    registers,
    collect() {
      // Mirrors the relay's own count, which only ever grows.
      this.reset();
      this.inc(relay.status().published);
    },
  });
}
