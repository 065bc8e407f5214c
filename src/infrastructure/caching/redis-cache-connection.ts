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
import { outsideTraces } from '../observability/outside-traces.ts';
import { DeploymentConflictError } from '../runtime/deployment-conflict.ts';
import { settledWithin } from '../runtime/settled-within.ts';
import { orderedNow } from './ordered-now.ts';
import { expectedFailure } from '../logging/expected-failure.ts';

export interface CacheConnectionOptions {
  /** How long the breaker stays open before one trial call; short, since a trial costs nothing but a status check. */
  readonly halfOpenAfterMs?: number;
  /** A Redis command that takes longer fails (and counts toward opening the breaker). */
  readonly commandTimeoutMs?: number;
  /** How often every connection is asked a PING: an idle one (a subscriber) that died silently is found this way. */
  readonly pingIntervalMs?: number;
}

/** Redis answers in well under a millisecond: a connection that sent a command and hears nothing this long is dead. */
const SOCKET_TIMEOUT_MS = 2_000;
/** Lets the OS probe idle connections too (what it finds is found without us); our PINGs are the quicker check. */
const KEEPALIVE_MS = 10_000;
/** A PING not answered this long counts as a lost connection (it is dropped by SOCKET_TIMEOUT_MS soon after). */
const PING_TIMEOUT_MS = 1_000;

const isBroken = (error: unknown) => error instanceof BrokenCircuitError;

/**
 * Replies of a Redis that answers but takes no writes: out of memory under `maxmemory-policy noeviction`, a replica
 * after a failover, a failed snapshot with `stop-writes-on-bgsave-error`, too few replicas for `min-replicas-to-write`.
 */
const WRITES_REFUSED = /^(OOM|READONLY|MISCONF|NOREPLICAS) /;

/** The refusal `error` carries, if any; a transaction refused as a whole carries it in `previousErrors`. */
function writeRefusalOf(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const previous = (error as Error & { previousErrors?: unknown[] }).previousErrors ?? [];
  for (const reply of [error, ...previous])
    if (reply instanceof Error && WRITES_REFUSED.test(reply.message)) return reply.message;
  return undefined;
}

/**
 * Redis as the cache's L2, bus and dedup/idempotency store, behind a circuit breaker: while Redis is down every
 * cache operation fails fast (callers fall back to the database) instead of waiting on a dead connection.
 * `redis` is undefined in the embedded mode (`REDIS_URL=memory:`), where the cache lives in this process only.
 */
export class CacheConnection {
  readonly redis: Redis | undefined;
  /** Publishes and subscribes; commands cannot share a connection in subscriber mode. */
  readonly subscriber: Redis | undefined;
  /**
   * What the cache library's own bus connections are made from (it duplicates it: a publisher and a subscriber),
   * never connected itself; each duplicate is watched like our connections. Offline queue on and no command timeout,
   * so subscribing waits for a connection: ioredis never retries a subscribe that timed out.
   */
  readonly busConnection: Redis | undefined;
  readonly halfOpenAfterMs: number;
  readonly #breaker: CircuitBreakerPolicy;
  readonly #recoveryListeners: (() => void)[] = [];
  readonly #logger: Logger;
  /** Every connection in use: the cache is used only while each is ready. */
  readonly #clients = new Set<Redis>();
  /** Connections that were ready once and lost it (or stopped answering): what they carried may have been missed. */
  readonly #lost = new Set<Redis>();
  readonly #pinger: NodeJS.Timeout | undefined;
  /** Tries the open breaker every `halfOpenAfterMs`, so the cache comes back (and recovers) without a request. */
  #trials: NodeJS.Timeout | undefined;
  #closed = false;
  /** This deployment's claim on the key prefix (see `claim`). */
  #claim: { readonly prefix: string; readonly deployment: string; readonly setting: string } | undefined;
  /** Whether the claim was confirmed since the command connection last (re)connected: the cache waits for it. */
  #claimConfirmed = false;
  #confirming = false;
  /** Found on a claim: the cache stays off for good. */
  #conflict: DeploymentConflictError | undefined;
  /**
   * Redis's reply to the last write it refused, until it takes one again. Reads alone would close the breaker
   * (and drop L1) every half-open period while every write opens it again: the trials try a write too.
   */
  #writesRefused: string | undefined;
  /** Refusals noted so far: a probe clears only what was noted before it was sent. */
  #refusals = 0;
  /** Between the breaker's first opening and its closing: said once each, not at every failed trial. */
  #outage = false;
  /**
   * The last connection error since a connection was last ready: why Redis is unreachable (a certificate not trusted, a
   * login refused), which the outage's line and /health say.
   */
  #lastError: string | undefined;
  /**
   * Entries written before this (an `orderedNow()` instant) may have missed invalidations while Redis was away. With
   * Redis, a new process starts at its own start (set below): what Redis holds from before may have missed writes made
   * while it was away by an instance that is gone now (its pending invalidations went with it), and Redis may have come
   * back from its append-only file with those entries.
   */
  #staleBefore = 0;

  constructor(url: string, logger: Logger, options: CacheConnectionOptions = {}) {
    this.#logger = logger;
    this.halfOpenAfterMs = options.halfOpenAfterMs ?? 5_000;
    this.#breaker = circuitBreaker(handleAll, {
      halfOpenAfter: this.halfOpenAfterMs,
      breaker: new ConsecutiveBreaker(1),
    });
    this.#breaker.onBreak(() => {
      if (!this.#outage) {
        this.#outage = true;
        if (this.#writesRefused === undefined)
          logger.warn(
            this.#lastError === undefined ? {} : { reason: this.#lastError },
            'cache unavailable (Redis): reading from the database',
          );
        else
          logger.warn(
            { reply: this.#writesRefused },
            'cache unavailable (Redis refuses writes): reading from the database',
          );
      }
      if (this.#closed || this.#trials) return;
      // Opened by whichever request found Redis gone: the trials, and the recovery they lead to, are not its work.
      this.#trials = outsideTraces(() =>
        setInterval(() => void this.available, this.halfOpenAfterMs).unref(),
      );
    });
    this.#breaker.onReset(() => {
      this.#outage = false;
      clearInterval(this.#trials);
      this.#trials = undefined;
      logger.info('cache available again (Redis)');
      this.#recovered();
    });
    if (url === 'memory:') return;
    this.#staleBefore = orderedNow();
    const liveness: RedisOptions = { keepAlive: KEEPALIVE_MS, socketTimeout: SOCKET_TIMEOUT_MS };
    const common: RedisOptions = {
      ...liveness,
      commandTimeout: options.commandTimeoutMs ?? 1_000,
      maxRetriesPerRequest: 1,
      // Reconnect quickly; the breaker, not the client, decides when to try the cache again.
      retryStrategy: (times) => Math.min(times * 100, 1_000),
    };
    const bus = new Redis({
      ...redisOptionsOf(url),
      ...liveness,
      retryStrategy: common.retryStrategy,
      maxRetriesPerRequest: null,
      lazyConnect: true,
    });
    bus.duplicate = (override) => this.#watch(new Redis({ ...bus.options, ...override, lazyConnect: false }));
    this.busConnection = bus;
    this.redis = this.#watch(new Redis(url, { ...common, enableOfflineQueue: false }));
    this.subscriber = this.#watch(new Redis(url, common));
    this.#pinger = setInterval(() => this.#pingAll(), options.pingIntervalMs ?? 5_000).unref();
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
    if (this.#breaker.state === CircuitState.Closed && this.#connected() && this.#claimHeld()) return true;
    void this.#breaker.execute(() => this.#assertUsable()).catch(() => undefined);
    return false;
  }

  #connected(): boolean {
    if (this.#lost.size > 0) return false;
    for (const client of this.#clients) if (client.status !== 'ready') return false;
    return true;
  }

  /**
   * Watches a connection: one that was ready and closed (or stopped answering a PING) counts as lost until a PING
   * answers again, after its subscriptions are renewed; then whatever may have been missed meanwhile is stale.
   */
  #watch(client: Redis): Redis {
    this.#clients.add(client);
    let wasReady = false;
    client.on('error', (error: Error) => {
      this.#lastError = error.message;
      this.#logger.debug(expectedFailure(error), 'redis connection error');
    });
    client.on('close', () => {
      if (!wasReady || this.#closed) return;
      this.#lost.add(client);
      // Redis may come back empty, or another deployment may claim the prefix meanwhile; whether it takes writes is
      // asked again too (the claim's confirmation notes a refusal), so an outage is not reported as that refusal.
      if (client === this.redis) {
        this.#claimConfirmed = false;
        this.#writesRefused = undefined;
      }
    });
    // After every 'ready' listener has run: ioredis and the invalidation bus resubscribe there, and a PING is
    // answered only after the subscribe commands sent before it.
    client.on('ready', () => {
      wasReady = true;
      this.#lastError = undefined;
      if (this.#lost.has(client)) setImmediate(() => this.#ping(client));
      // Confirmed again as soon as the command connection is back, not at the breaker's next trial (which an
      // unconfirmed claim would fail, keeping the cache off for a second half-open period).
      if (client === this.redis) this.#reconfirmClaim();
    });
    client.on('end', () => {
      this.#clients.delete(client);
      this.#lost.delete(client);
    });
    return client;
  }

  #pingAll(): void {
    for (const client of this.#clients) if (client.status === 'ready') this.#ping(client);
    // A claim deleted meanwhile (FLUSHDB, an eviction under an allkeys-* policy) is made again before another
    // deployment can take the prefix unnoticed; one found taken turns the cache off now, not at the next reconnection.
    if (this.redis?.status === 'ready') this.#reconfirmClaim();
  }

  #reconfirmClaim(): void {
    if (this.#claim !== undefined && !this.#conflict && !this.#confirming && !this.#closed)
      void this.#confirmClaim({ atStart: false });
  }

  #ping(client: Redis): void {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no PONG')), PING_TIMEOUT_MS).unref();
    });
    Promise.race([client.ping(), timeout]).then(
      () => {
        clearTimeout(timer);
        if (this.#closed || !this.#lost.delete(client)) return;
        // Said once, when the last of the connections lost is back (each recovery marks what was read as stale).
        if (this.#lost.size === 0)
          this.#logger.info(
            'cache connection back (Redis): what was read before may have missed invalidations',
          );
        this.#recovered();
      },
      () => {
        clearTimeout(timer);
        if (!this.#closed && client.status !== 'end') this.#lost.add(client);
      },
    );
  }

  /** Whatever was read before now may have missed invalidations. */
  #recovered(): void {
    this.#staleBefore = orderedNow();
    for (const listener of this.#recoveryListeners) listener();
  }

  /**
   * Connected, the claim held, and (when Redis refused a write) a write taken again: a no-op write, `SET … XX`. A
   * promise only then: every cache operation asks, and the usual answer costs no promise.
   */
  #assertUsable(): Promise<void> | undefined {
    if (!this.#connected() || !this.#claimHeld()) throw new DependencyUnavailableError('cache');
    if (this.#writesRefused === undefined) return undefined;
    const noted = this.#refusals;
    return this.#refusalNoted(this.redis!.set(`${this.#claim?.prefix ?? ''}writes-taken`, '', 'XX')).then(
      () => {
        if (this.#refusals === noted) this.#writesRefused = undefined;
      },
    );
  }

  /** `reply`, noting a refused write (see `#writesRefused`). */
  #refusalNoted<T>(reply: Promise<T>): Promise<T> {
    return reply.catch((error: unknown) => {
      this.#noteRefusal(error);
      throw error;
    });
  }

  #noteRefusal(error: unknown): void {
    const refusal = writeRefusalOf(error);
    if (refusal === undefined) return;
    this.#writesRefused = refusal;
    this.#refusals++;
  }

  /**
   * Claims key prefix `prefix` for `deployment` (under `${prefix}deployment`), as the first deployment to use it. The
   * cache is used only while the claim is confirmed: now when Redis answers, then after every reconnection (and it is
   * confirmed again, made again if it went, at every ping). Throws
   * DeploymentConflictError when another deployment holds it; found later, the cache stays off and /health says why.
   * `setting`: the one a second deployment must change.
   */
  async claim(prefix: string, deployment: string, setting: string): Promise<void> {
    if (this.isMemory) return;
    this.#claim = { prefix, deployment, setting };
    this.#claimConfirmed = false;
    if (!this.#connected()) return;
    await this.#confirmClaim({ atStart: true });
    if (this.#conflict) throw this.#conflict;
  }

  /** Whether the cache may be used as far as the claim goes; an unconfirmed one starts its confirmation. */
  #claimHeld(): boolean {
    if (this.#claim === undefined || this.#claimConfirmed) return true;
    this.#reconfirmClaim();
    return false;
  }

  /** `atStart`: a conflict stops the start, which says why; found later, it is logged here. */
  async #confirmClaim({ atStart }: { atStart: boolean }): Promise<void> {
    const { prefix, deployment, setting } = this.#claim!;
    const key = `${prefix}deployment`;
    this.#confirming = true;
    try {
      // SET NX and GET in one step without Redis 7's SET … NX GET.
      const replies = await this.redis!.multi().set(key, deployment, 'NX').get(key).exec();
      const owner = replies?.[1]?.[1];
      if (owner === deployment) this.#claimConfirmed = true;
      else if (typeof owner === 'string') {
        this.#claimConfirmed = false;
        this.#conflict = new DeploymentConflictError(`Redis key prefix "${prefix}"`, owner, deployment, {
          setting,
          release: `delete its claim (redis-cli DEL '${key}') and the keys under it`,
        });
        if (!atStart)
          this.#logger.error(
            { err: this.#conflict },
            'cache off: its key prefix belongs to another deployment',
          );
      }
    } catch (error) {
      // Unanswered or refused: tried again at the next use of the cache.
      this.#noteRefusal(error);
      this.#logger.debug(expectedFailure(error), 'cache: could not confirm the key prefix claim yet');
    } finally {
      this.#confirming = false;
    }
  }

  /** Runs a Redis operation behind the breaker; throws DependencyUnavailableError when Redis cannot serve it. */
  async run<T>(operation: (redis: Redis) => Promise<T>): Promise<T> {
    const redis = this.redis;
    if (!redis) throw new Error('run() needs Redis; check isMemory first');
    try {
      return await this.#breaker.execute(() => {
        const probing = this.#assertUsable();
        return probing
          ? probing.then(() => this.#refusalNoted(operation(redis)))
          : this.#refusalNoted(operation(redis));
      });
    } catch (error) {
      if (isBroken(error) || error instanceof DependencyUnavailableError)
        throw new DependencyUnavailableError('cache');
      throw new DependencyUnavailableError('cache', { cause: error });
    }
  }

  /** Waits (bounded) for the first connection, so start-up does not count as an outage; Redis down is no error. */
  async connected(timeoutMs = 2_000): Promise<void> {
    const clients = [...this.#clients];
    const ready = (client: Redis) =>
      client.status === 'ready'
        ? Promise.resolve()
        : new Promise<void>((resolve) => client.once('ready', resolve));
    await settledWithin(Promise.all(clients.map(ready)), timeoutMs);
  }

  /** Called after Redis came back, e.g. to drop local copies that may have missed invalidations. */
  onRecovered(listener: () => void): void {
    this.#recoveryListeners.push(listener);
  }

  /**
   * Redis down is `Degraded`, not `Unhealthy`: every request still works from the database. So is the cache turned off
   * by another deployment's claim, found after a reconnection: Unhealthy would take this deployment out of rotation
   * for a misconfigured one that took its prefix while Redis was away. `whatIsOff`: what the role that reports it does
   * without Redis meanwhile, for the operator who reads it.
   */
  healthCheck(whatIsOff: string): HealthCheck {
    return {
      name: 'redis',
      check: async () => {
        if (!this.redis) return { status: 'Healthy', data: { mode: 'memory' } };
        if (this.#conflict)
          return { status: 'Degraded', description: this.#conflict.message, data: { mode: 'redis' } };
        try {
          await this.run((redis) => redis.ping());
          return { status: 'Healthy', data: { mode: 'redis' } };
        } catch {
          const refused = this.#writesRefused;
          return {
            status: 'Degraded',
            description: `${refused === undefined ? 'Redis unreachable' : `Redis refuses writes (${refused})`}: ${whatIsOff}`,
            data: {
              mode: 'redis',
              connection: this.redis.status,
              ...(this.#lastError === undefined ? {} : { error: this.#lastError }),
            },
          };
        }
      },
    };
  }

  /** Closes every connection, the cache library's bus connections too (see BentoStudentCache.close). */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#pinger);
    clearInterval(this.#trials);
    await Promise.all(
      [...this.#clients].map(async (client) => {
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
