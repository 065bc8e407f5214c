import type { MessageBus } from '../../application/ports/message-bus.ts';
import type { Database } from '../persistence/database.ts';
import { within } from '../runtime/settled-within.ts';

export type HealthStatus = 'Healthy' | 'Degraded' | 'Unhealthy';

export interface HealthCheckResult {
  readonly status: HealthStatus;
  readonly description?: string;
  readonly data?: Readonly<Record<string, unknown>>;
}

export interface HealthCheck {
  readonly name: string;
  check(): Promise<HealthCheckResult>;
}

export interface HealthReport {
  readonly status: HealthStatus;
  readonly totalDurationMs: number;
  readonly checks: Readonly<Record<string, HealthCheckResult & { durationMs: number }>>;
}

const severity: Record<HealthStatus, number> = { Healthy: 0, Degraded: 1, Unhealthy: 2 };

/** Runs every check at once, each bounded by `timeoutMs` so one hung dependency cannot hang the probe. */
export async function runHealthChecks(
  checks: readonly HealthCheck[],
  timeoutMs = 2_000,
): Promise<HealthReport> {
  const started = performance.now();
  const results = await Promise.all(
    checks.map(async (check) => {
      const checkStarted = performance.now();
      const answered = check.check().catch((error: unknown): HealthCheckResult => ({
        status: 'Unhealthy',
        description: error instanceof Error ? error.message : String(error),
      }));
      const result: HealthCheckResult = (await within(answered, timeoutMs)) ?? {
        status: 'Unhealthy',
        description: `no answer within ${timeoutMs} ms`,
      };
      return [check.name, { ...result, durationMs: Math.round(performance.now() - checkStarted) }] as const;
    }),
  );
  const worst = results.reduce<HealthStatus>(
    (status, [, result]) => (severity[result.status] > severity[status] ? result.status : status),
    'Healthy',
  );
  return {
    status: worst,
    totalDurationMs: Math.round(performance.now() - started),
    checks: Object.fromEntries(results),
  };
}

/**
 * The database: Unhealthy when it does not answer; when it answers but refuses every write (read-only: a hot standby
 * during a failover, `default_transaction_read_only`), `whenReadOnly` (Degraded for a role that still serves reads),
 * saying what is off.
 */
export function databaseCheck(
  database: Pick<Database, 'ping' | 'kind'>,
  whenReadOnly: { readonly status: HealthStatus; readonly whatIsOff: string },
): HealthCheck {
  return {
    name: 'database',
    async check() {
      const { readOnly } = await database.ping();
      const data = { kind: database.kind, readOnly };
      if (!readOnly) return { status: 'Healthy', data };
      return { status: whenReadOnly.status, description: `read-only: ${whenReadOnly.whatIsOff}`, data };
    },
  };
}

/**
 * A consuming role does nothing without the broker: a lost connection is Unhealthy (not Degraded), and so is one that
 * stays open to a broker that does not answer (the check's time limit).
 */
export function brokerCheck(bus: Pick<MessageBus, 'status' | 'ping'>): HealthCheck {
  return {
    name: 'broker',
    async check() {
      if (bus.status().connected) await bus.ping();
      const status = bus.status();
      return {
        status: status.connected ? 'Healthy' : 'Unhealthy',
        ...(status.detail ? { description: status.detail } : {}),
        data: { adapter: status.adapter },
      };
    },
  };
}
