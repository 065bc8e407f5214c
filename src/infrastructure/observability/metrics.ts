// Prometheus metrics: one registry per process, served by every role's HTTP port (GET /metrics). In `npm start`
// the three roles share one process, so each port serves the same, whole-process metrics: scrape one of them.
import { Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The registry a process's roles share, with Node's own metrics (CPU, memory, event loop lag, GC). */
export function createProcessRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

const MESSAGE_AGE_METRIC = 'message_age_seconds';

/**
 * The lag of a queue as its consumer sees it: how old each message is when it is delivered, measured from its
 * CloudEvent `time` (when the change it reports happened), so outbox wait and queue wait both show. One
 * histogram per registry, labelled by queue: the worker and the notifications service may share a process.
 */
export function messageAge(registry: Registry): Histogram<'queue'> {
  const existing = registry.getSingleMetric(MESSAGE_AGE_METRIC);
  if (existing) return existing as Histogram<'queue'>;
  return new Histogram({
    name: MESSAGE_AGE_METRIC,
    help: 'Age of a message when delivered to its consumer (now minus its CloudEvent time), by queue.',
    labelNames: ['queue'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  });
}

/** Seconds since an ISO timestamp; never negative (clocks of different hosts drift). */
export function secondsSince(isoTime: string, now = Date.now()): number {
  return Math.max(0, (now - Date.parse(isoTime)) / 1000);
}
