import {
  BrokenCircuitError,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleAll,
  type CircuitBreakerPolicy,
} from 'cockatiel';
import { Redis, type RedisOptions } from 'ioredis';
import { DependencyUnavailableError } from '../../application/errors.ts';
import type { HealthCheck } from '../health/health.ts';
import type { Logger } from '../logging/logger.ts';

export interface CacheConnectionOptions {
  /** How long the breaker stays open before one trial call; short, since a trial costs nothing but a status check. */
  readonly halfOpenAfterMs?: number;
  /** A Redis command that takes longer fails (and counts toward opening the breaker). */
  readonly commandTimeoutMs?: number;
}

const isBroken = (error: unknown) => error instanceof BrokenCircuitError;

/**
 * Redis as the cache's L2, bus and dedup/idempotency store, behind a circuit breaker: while Redis is down every
 * cache operation fails fast (callers fall back to the database) instead of waiting on a dead connection.
 * `redis` is undefined in the embedded mode (`REDIS_URL=memory:`), where the cache lives in this process only.
 */
export class CacheConnection {
  readonly redis: Redis | undefined;
  /** Publishes and subscribes; commands cannot share a connection in subscriber mode. */
  readonly subscriber: Redis | undefined;
  /** Options for the cache library's own bus connections (offline queue on, so subscribing waits for a connection). */
  readonly busOptions: RedisOptions | undefined;
  readonly #breaker: CircuitBreakerPolicy;
  readonly #recoveryListeners: (() => void)[] = [];
  /** Entries written before this (ms since epoch) may have missed invalidations while Redis was away. */
  #staleBefore = 0;

  constructor(url: string, logger: Logger, options: CacheConnectionOptions = {}) {
    this.#breaker = circuitBreaker(handleAll, {
      halfOpenAfter: options.halfOpenAfterMs ?? 5_000,
      breaker: new ConsecutiveBreaker(1),
    });
    this.#breaker.onBreak(() => logger.warn('cache unavailable (Redis): reading from the database'));
    this.#breaker.onReset(() => {
      logger.info('cache available again (Redis)');
      this.#staleBefore = Date.now();
      for (const listener of this.#recoveryListeners) listener();
    });
    if (url === 'memory:') return;
    const common: RedisOptions = {
      commandTimeout: options.commandTimeoutMs ?? 1_000,
      maxRetriesPerRequest: 1,
      // Reconnect quickly; the breaker, not the client, decides when to try the cache again.
      retryStrategy: (times) => Math.min(times * 100, 1_000),
    };
    // The bus subscribes once, at start: its commands wait for a connection rather than fail for good.
    this.busOptions = {
      ...redisOptionsOf(url),
      retryStrategy: common.retryStrategy,
      maxRetriesPerRequest: null,
    };
    this.redis = new Redis(url, { ...common, enableOfflineQueue: false });
    this.subscriber = new Redis(url, common);
    for (const client of [this.redis, this.subscriber])
      client.on('error', (error: Error) => logger.debug({ err: error }, 'redis connection error'));
  }

  get isMemory(): boolean {
    return this.redis === undefined;
  }

  get staleBefore(): number {
    return this.#staleBefore;
  }

  /**
   * Whether the cache may be used right now; cheap enough for every request. A connection found down opens the
   * breaker; once it may half-open, this check itself is the trial that closes it again.
   */
  get available(): boolean {
    if (this.isMemory) return true;
    if (this.#breaker.state === CircuitState.Closed && this.#connected()) return true;
    void this.#breaker.execute(() => this.#assertConnected()).catch(() => undefined);
    return false;
  }

  #connected(): boolean {
    return this.redis?.status === 'ready' && this.subscriber?.status === 'ready';
  }

  #assertConnected(): void {
    if (!this.#connected()) throw new DependencyUnavailableError('cache');
  }

  /** Runs a Redis operation behind the breaker; throws DependencyUnavailableError when Redis cannot serve it. */
  async run<T>(operation: (redis: Redis) => Promise<T>): Promise<T> {
    const redis = this.redis;
    if (!redis) throw new Error('run() needs Redis; check isMemory first');
    try {
      return await this.#breaker.execute(() => {
        this.#assertConnected();
        return operation(redis);
      });
    } catch (error) {
      if (isBroken(error) || error instanceof DependencyUnavailableError)
        throw new DependencyUnavailableError('cache');
      throw new DependencyUnavailableError('cache', { cause: error });
    }
  }

  /** Waits (bounded) for the first connection, so start-up does not count as an outage; Redis down is no error. */
  async connected(timeoutMs = 2_000): Promise<void> {
    const clients = [this.redis, this.subscriber].filter((client) => client !== undefined);
    const ready = (client: Redis) =>
      client.status === 'ready'
        ? Promise.resolve()
        : new Promise<void>((resolve) => client.once('ready', resolve));
    const timer = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref());
    await Promise.race([Promise.all(clients.map(ready)), timer]);
  }

  /** Called after Redis came back, e.g. to drop local copies that may have missed invalidations. */
  onRecovered(listener: () => void): void {
    this.#recoveryListeners.push(listener);
  }

  /** Redis down is `Degraded`, not `Unhealthy`: every request still works from the database. */
  healthCheck(name = 'redis'): HealthCheck {
    return {
      name,
      check: async () => {
        if (!this.redis) return { status: 'Healthy', data: { mode: 'memory' } };
        try {
          await this.run((redis) => redis.ping());
          return { status: 'Healthy', data: { mode: 'redis' } };
        } catch {
          return {
            status: 'Degraded',
            description:
              'Redis unreachable: caching, deduplication and idempotency keys are off; reads use the database',
            data: { mode: 'redis', connection: this.redis.status },
          };
        }
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all(
      [this.redis, this.subscriber].map(async (client) => {
        if (!client) return;
        if (client.status === 'ready') await client.quit().catch(() => client.disconnect());
        else client.disconnect();
      }),
    );
  }
}

function redisOptionsOf(url: string): RedisOptions {
  const parsed = new URL(url);
  return {
    host: parsed.hostname,
    port: Number(parsed.port || 6379),
    db: Number(parsed.pathname.slice(1) || 0),
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}
