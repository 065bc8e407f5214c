import {
  BrokenCircuitError,
  CircuitState,
  ExponentialBackoff,
  SamplingBreaker,
  TimeoutStrategy,
  circuitBreaker,
  handleWhen,
  retry,
  timeout,
  wrap,
} from 'cockatiel';
import type { Logger } from '../logging/logger.ts';

/** The original's Resilience settings (Polly), with the same meaning. */
export interface ResilienceOptions {
  /** How long the breaker stays open before it lets one trial call through. */
  readonly durationOfBreakMs: number;
  /** Share of failed calls (0..1) within the sampling window that opens the breaker. */
  readonly failureRatio: number;
  /** The window over which that share is taken. */
  readonly samplingDurationMs: number;
  /** Below this many calls in the window the share means little, so the breaker stays closed. */
  readonly minimumThroughput: number;
  readonly maxRetryAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** Each attempt is abandoned after this long. */
  readonly timeoutMs: number;
}

/**
 * The defaults of the RESILIENCE_* settings (config.ts), the original's but for the sampling: 30 s and 4 calls where it
 * had 60 s and 10. Each attempt is a call, so one publish that fails with its 3 retries opens the breaker, rather than
 * at the third such publish.
 */
export const DEFAULT_RESILIENCE: ResilienceOptions = {
  durationOfBreakMs: 30_000,
  failureRatio: 0.5,
  samplingDurationMs: 30_000,
  minimumThroughput: 4,
  maxRetryAttempts: 3,
  baseDelayMs: 1_000,
  maxDelayMs: 30_000,
  timeoutMs: 30_000,
};

export type BreakerState = 'closed' | 'open' | 'half-open' | 'isolated';

export interface ResiliencePolicy {
  /**
   * Runs `call` with a per-attempt timeout, behind the breaker, retried with exponential backoff and jitter. Once
   * `signal` aborts, no attempt starts and the wait ends at once, back-off included: it rejects with the signal's
   * reason (an attempt in progress may still take effect).
   */
  execute<T>(call: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T>;
  breakerState(): BreakerState;
}

const stateNames: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half-open',
  [CircuitState.Isolated]: 'isolated',
};

export function createResiliencePolicy(
  name: string,
  options: ResilienceOptions,
  logger: Logger,
): ResiliencePolicy {
  // An open breaker answers at once; retrying that answer would only burn the backoff budget.
  const transient = handleWhen((error) => !(error instanceof BrokenCircuitError));
  // A back-off abandoned by an aborted execute must not keep the process alive.
  const retryPolicy = retry(transient, {
    maxAttempts: options.maxRetryAttempts,
    backoff: new ExponentialBackoff({ initialDelay: options.baseDelayMs, maxDelay: options.maxDelayMs }),
  }).dangerouslyUnref();
  const breaker = circuitBreaker(transient, {
    halfOpenAfter: options.durationOfBreakMs,
    breaker: new SamplingBreaker({
      threshold: options.failureRatio,
      duration: options.samplingDurationMs,
      minimumRps: options.minimumThroughput / (options.samplingDurationMs / 1000),
    }),
  });
  breaker.onBreak(() => logger.warn({ policy: name }, 'circuit breaker opened'));
  breaker.onReset(() => logger.info({ policy: name }, 'circuit breaker closed'));
  const policy = wrap(retryPolicy, breaker, timeout(options.timeoutMs, TimeoutStrategy.Aggressive));
  return {
    execute: async (call, signal) => {
      signal?.throwIfAborted();
      // cockatiel's retry loop goes on after the abort and would start an attempt once its back-off ends.
      const execution = policy.execute(({ signal: attempt }) => {
        signal?.throwIfAborted();
        return call(attempt);
      }, signal);
      // cockatiel ends an attempt when `signal` aborts, but not its back-off wait between attempts.
      return signal ? untilAborted(execution, signal) : execution;
    },
    breakerState: () => stateNames[breaker.state],
  };
}

/** Settles as `promise` does, or rejects with `signal`'s reason once it aborts, whichever comes first. */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * The wait before retry `attempt` (0 for the first): `baseMs`, doubling, at most `maxMs`. With `jitter`, a random
 * half to all of it, so instances that failed together do not retry in step.
 */
export function backoffDelay(
  attempt: number,
  { baseMs, maxMs, jitter = false }: { baseMs: number; maxMs: number; jitter?: boolean },
): number {
  const delay = Math.min(maxMs, baseMs * 2 ** attempt);
  return jitter ? delay * (0.5 + Math.random() / 2) : delay;
}

/**
 * Waits before retry `attempt` (0 for the first) of a call that is not given up while its process runs: from
 * 100 ms, doubling, to 5 s. False as soon as `stopping` aborts, so a stop never waits out a back-off.
 */
export function waitToRetry(attempt: number, stopping: AbortSignal): Promise<boolean> {
  if (stopping.aborted) return Promise.resolve(false);
  const waits = retryWaitsOn(stopping);
  return new Promise((resolve) => {
    const end = (waited: boolean) => {
      clearTimeout(timer);
      waits.delete(stop);
      resolve(waited);
    };
    const stop = () => end(false);
    const timer = setTimeout(() => end(true), backoffDelay(attempt, { baseMs: 100, maxMs: 5_000 }));
    waits.add(stop);
  });
}

/**
 * The retry waits under way on each signal, all ended by one abort listener of the signal's. A listener per wait
 * would be one per message waiting out an outage (up to the prefetch, on one consumer's signal): past ten, Node
 * warns of a listener leak.
 */
const retryWaits = new WeakMap<AbortSignal, Set<() => void>>();
function retryWaitsOn(signal: AbortSignal): Set<() => void> {
  const known = retryWaits.get(signal);
  if (known) return known;
  const waits = new Set<() => void>();
  signal.addEventListener('abort', () => waits.forEach((stop) => stop()), { once: true });
  retryWaits.set(signal, waits);
  return waits;
}
