import { ROOT_CONTEXT, context } from '@opentelemetry/api';

/**
 * Runs `work`, and whatever it schedules (timers, promises), outside any trace: background work that a request
 * happens to start (a retry timer, a recovery) is not that request's, and its log lines and spans must not say so.
 * The API alone, so the adapters that need it do not load the tracing SDK.
 */
export function outsideTraces<T>(work: () => T): T {
  return context.with(ROOT_CONTEXT, work);
}
