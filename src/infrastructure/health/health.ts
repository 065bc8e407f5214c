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

/** One check in `/health`'s `checks`, as the original's writer gives it (with `description` besides, when there is one). */
export interface HealthReportEntry {
  readonly name: string;
  readonly status: HealthStatus;
  readonly description?: string;
  /** The message of an error the check threw; null otherwise (a check that did not answer in time says so in `description`). */
  readonly exception: string | null;
  /** How long the check took, as .NET's `TimeSpan.ToString()`: `hh:mm:ss.fffffff`. */
  readonly duration: string;
  readonly data: Readonly<Record<string, unknown>>;
}

/** `/health`'s body: the original's (`status`, `checks` in the order they are registered) and `totalDuration`. */
export interface HealthReport {
  readonly status: HealthStatus;
  readonly totalDuration: string;
  readonly checks: readonly HealthReportEntry[];
}

const severity: Record<HealthStatus, number> = { Healthy: 0, Degraded: 1, Unhealthy: 2 };

const TICKS_PER_MS = 10_000;

interface CheckOutcome {
  readonly result: HealthCheckResult;
  readonly exception: string | null;
}

/**
 * A duration in milliseconds as .NET's `TimeSpan.ToString()` writes it: `[d.]hh:mm:ss.fffffff`, to the tick (100 ns).
 * Always with its 7 fractional digits (.NET leaves them out at exactly zero ticks, which a measured duration is not).
 */
export function formatTimeSpan(ms: number): string {
  const ticks = Math.max(0, Math.round(ms * TICKS_PER_MS));
  const totalSeconds = Math.floor(ticks / (1_000 * TICKS_PER_MS));
  const fraction = ticks % (1_000 * TICKS_PER_MS);
  const days = Math.floor(totalSeconds / 86_400);
  const two = (n: number) => String(n).padStart(2, '0');
  const clock = `${two(Math.floor(totalSeconds / 3_600) % 24)}:${two(Math.floor(totalSeconds / 60) % 60)}:${two(totalSeconds % 60)}`;
  return `${days > 0 ? `${days}.` : ''}${clock}.${String(fraction).padStart(7, '0')}`;
}

/** Runs every check at once, each bounded by `timeoutMs` so one hung dependency cannot hang the probe. */
export async function runHealthChecks(
  checks: readonly HealthCheck[],
  timeoutMs = 2_000,
): Promise<HealthReport> {
  const started = performance.now();
  const entries = await Promise.all(
    checks.map(async (check): Promise<HealthReportEntry> => {
      const checkStarted = performance.now();
      // As ASP.NET Core's health checks: a check that throws is Unhealthy, its message both the description and the
      // exception.
      const answered = check.check().then(
        (result): CheckOutcome => ({ result, exception: null }),
        (error: unknown): CheckOutcome => {
          const message = error instanceof Error ? error.message : String(error);
          return { result: { status: 'Unhealthy', description: message }, exception: message };
        },
      );
      const { result, exception } = (await within(answered, timeoutMs)) ?? {
        result: { status: 'Unhealthy', description: `no answer within ${timeoutMs} ms` },
        exception: null,
      };
      return {
        name: check.name,
        status: result.status,
        ...(result.description === undefined ? {} : { description: result.description }),
        exception,
        duration: formatTimeSpan(performance.now() - checkStarted),
        data: result.data ?? {},
      };
    }),
  );
  const worst = entries.reduce<HealthStatus>(
    (status, entry) => (severity[entry.status] > severity[status] ? entry.status : status),
    'Healthy',
  );
  return { status: worst, totalDuration: formatTimeSpan(performance.now() - started), checks: entries };
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
 * RabbitMQ (the original's `rabbitmq` check), or the in-process bus in the embedded mode (`data.adapter` says which).
 * A consuming role does nothing without the broker: a lost connection is Unhealthy (not Degraded), and so is one that
 * stays open to a broker that does not answer (the check's time limit).
 */
export function brokerCheck(bus: Pick<MessageBus, 'status' | 'ping'>): HealthCheck {
  return {
    name: 'rabbitmq',
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
