import { BentoCache, bentostore } from 'bentocache';
import { memoryDriver } from 'bentocache/drivers/memory';
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis';
import type { GetSetFactory } from 'bentocache/types';
import type { Redis } from 'ioredis';
import type { CachedStudent, StudentCache } from '../../application/ports/student-cache.ts';
import { serializeStudent } from '../../application/students/get-student.ts';
import type { StudentSnapshot } from '../../domain/student.ts';
import { LogThrottle } from '../logging/log-throttle.ts';
import type { Logger } from '../logging/logger.ts';
import { outsideTraces } from '../observability/outside-traces.ts';
import { settledWithin } from '../runtime/settled-within.ts';
import type { CacheMetrics } from './cache-metrics.ts';
import type { InvalidationBus } from './invalidation-bus.ts';
import { orderedNow } from './ordered-now.ts';
import type { CacheConnection } from './redis-cache-connection.ts';
import { DELETED_VERSION, type VersionFence } from './version-fence.ts';
import { expectedFailure } from '../logging/expected-failure.ts';

/** `at`: when the value was read from the database (or written), on the clock of the instance that did it. */
interface Entry extends CachedStudent {
  readonly at: number;
}

export interface BentoStudentCacheOptions {
  /** A student is cached under `${keyPrefix}${id}` (the original's was `Student_{id}`). */
  readonly keyPrefix: string;
  readonly ttlSeconds: number;
  readonly l1MaxItems?: number;
}

const JITTER = 0.1;
const WRITE_TIMEOUT_MS = 1_000;
/**
 * A read waits this long for the cache (an L2 read is bounded by its 1 s command timeout), then answers from the
 * database: a cache that stopped answering must not hold a read.
 */
const READ_TIMEOUT_MS = 1_500;
/** How long closing waits for bentocache to close its connections. */
const CLOSE_TIMEOUT_MS = 1_000;

/** One read through the cache: the student, how to load it, and the load bentocache started for it, if any. */
interface CacheRead {
  readonly id: string;
  readonly load: () => Promise<StudentSnapshot | undefined>;
  started: DatabaseLoad | undefined;
}

/** A database read of one student, and when it began (an `orderedNow()` instant). */
interface DatabaseLoad {
  readonly startedAt: number;
  readonly loading: Promise<StudentSnapshot | undefined>;
}

/**
 * Whether other instances hear of a write (bentocache's bus and the invalidation bus), and the version it wrote, if
 * any (DELETED_VERSION for a delete).
 */
interface Announcing {
  readonly announce: boolean;
  readonly version?: number;
}

function rejectAfter(ms: number): Promise<never> {
  return new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref(),
  );
}

/**
 * Students in bentocache: L1 in memory, L2 in Redis, and bentocache's Redis bus so a write on one instance drops
 * the L1 copy on every other. Memory only in the embedded mode. Also publishes each change on the invalidation
 * bus, so responses derived from the student (deduplicated GETs) go everywhere too.
 */
export class BentoStudentCache implements StudentCache {
  readonly #bento: BentoCache<Record<string, ReturnType<typeof bentostore>>>;
  readonly #connection: CacheConnection;
  readonly #invalidations: InvalidationBus;
  readonly #fence: VersionFence;
  readonly #metrics: CacheMetrics;
  readonly #logger: Logger;
  readonly #options: BentoStudentCacheOptions;
  /** Ids written while Redis was away: their L2 copies are dropped once it is back. */
  readonly #pending = new Set<string>();
  /** While Redis is down every write is skipped: said every 5 s, not once per write. */
  readonly #skippedWrites = new LogThrottle(5_000);
  /** Settles once bentocache's bus listens to the other instances' writes (at once without a bus). */
  #busSubscribed: Promise<void> = Promise.resolve();
  /** While writes are pending: tries to drop their entries every `halfOpenAfterMs`, with or without requests. */
  #flushTimer: NodeJS.Timeout | undefined;
  #flushing = false;
  #closed = false;
  /**
   * The database loads under way, by id, and when each began: a read that gives up waiting (READ_TIMEOUT_MS) joins
   * one begun after the student's last change instead of loading again, so N concurrent misses still read the
   * database once when the database, not the cache, is the slow one.
   */
  readonly #loads = new Map<string, DatabaseLoad>();

  constructor(
    connection: CacheConnection,
    invalidations: InvalidationBus,
    fence: VersionFence,
    metrics: CacheMetrics,
    logger: Logger,
    options: BentoStudentCacheOptions,
  ) {
    this.#connection = connection;
    this.#invalidations = invalidations;
    this.#fence = fence;
    this.#metrics = metrics;
    this.#logger = logger;
    this.#options = options;
    const twoTier = connection.redis !== undefined && connection.busConnection !== undefined;
    // Plain objects in L1 save a parse per hit, but bentocache 1.6.1 refills L1 from L2 with serialized entries it
    // then cannot read without a serializer (Julien-R44/bentocache#111): serialized whenever there is an L2.
    let store = bentostore().useL1Layer(
      memoryDriver({ maxItems: options.l1MaxItems ?? 10_000, serialize: twoTier }),
    );
    if (twoTier)
      store = store
        .useL2Layer(redisDriver({ connection: connection.redis, prefix: '' }))
        .useBus(this.#listeningBus(connection.busConnection, logger));
    // The store's name is the bus channel: one per key prefix, so deployments (and tests) sharing a Redis don't
    // hear each other.
    const name = `students:${options.keyPrefix}`;
    this.#bento = new BentoCache({
      default: name,
      stores: { [name]: store },
      ttl: options.ttlSeconds * 1_000,
      grace: false,
      l2CircuitBreakerDuration: 5_000,
    });
    // bentocache builds a store (and subscribes its bus) on first use: now, so `ready` can wait for it.
    this.#bento.use();
    connection.onRecovered(() => void this.#flushPending());
  }

  /** Resolves once this instance hears the others' writes, or after `timeoutMs` (Redis down is no error). */
  async ready(timeoutMs = 2_000): Promise<void> {
    await settledWithin(this.#busSubscribed, timeoutMs);
  }

  /**
   * bentocache's Redis bus, with its subscription kept: bentocache subscribes without awaiting it, so a cache closed
   * before the subscription is answered would reject it unhandled, and no one could tell when the bus listens.
   */
  #listeningBus(connection: Redis, logger: Logger) {
    const bus = redisBusDriver({ connection });
    const create = bus.factory;
    bus.factory = (config) => {
      const transport = create(config);
      const subscribe = transport.subscribe.bind(transport);
      transport.subscribe = (channel, handler) =>
        (this.#busSubscribed = subscribe(channel, handler).catch((error: unknown) =>
          logger.warn(expectedFailure(error), 'cache bus: not subscribed'),
        ));
      return transport;
    };
    return bus;
  }

  getOrLoad(
    id: string,
    load: () => Promise<StudentSnapshot | undefined>,
  ): Promise<CachedStudent | undefined> {
    if (!this.#connection.available) return this.#fromDatabase({ startedAt: orderedNow(), loading: load() });
    // The load bentocache started, if any: a read the cache answers too late reuses it rather than load twice.
    const read: CacheRead = { id, load, started: undefined };
    // One promise settled by whichever comes first, not Promise.race: that cost an L1 hit 9 % of its throughput.
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#logger.warn({ studentId: id }, 'cache too slow: read from the database');
        // As bentocache's own lock would: a load begun after the last change this instance heard of.
        this.#fromDatabase(read.started ?? this.#sharedLoad(id, load, this.#freshSince(id))).then(
          resolve,
          reject,
        );
      }, READ_TIMEOUT_MS).unref();
      this.#readThrough(read).then(
        (student) => {
          clearTimeout(timer);
          resolve(student);
        },
        (error: unknown) => {
          clearTimeout(timer);
          // bentocache wraps the loader's own error (e.g. the database is down); that is the one to report.
          reject(error instanceof Error && error.cause ? error.cause : error);
        },
      );
    });
  }

  // Methods, not closures made per read: under tsx every named closure costs a defineProperty (esbuild keepNames).
  async #readThrough(read: CacheRead): Promise<CachedStudent | undefined> {
    let entry = await this.#getOrSet(read, false);
    // Written before a change this instance heard of (a read that raced a write, or Redis was away), or older than a
    // version it heard written (a write that landed late, its instant taken after the newer one's): reload. Not at
    // it: a write's own entry carries the instant of its own invalidation.
    if (entry && !read.started && this.#stale(read.id, entry)) entry = await this.#getOrSet(read, true);
    if (entry && read.started) await this.#dropIfSuperseded(read.id, entry.version);
    (read.started ? this.#metrics.cacheMisses : this.#metrics.cacheHits).inc();
    return entry && { json: entry.json, version: entry.version, at: entry.at };
  }

  #getOrSet(read: CacheRead, forceFresh: boolean): Promise<Entry | undefined> {
    return this.#bento.getOrSet<Entry | undefined>({
      key: this.#key(read.id),
      ttl: this.#ttl(),
      forceFresh,
      // A load changes nothing: no instance needs to hear of it (and a read never waits on the bus).
      skipBusNotify: true,
      factory: this.#loaderFor(read),
    });
  }

  /** Returned, not written in the call: a closure named there (`factory`) would cost a defineProperty per read. */
  #loaderFor(read: CacheRead): GetSetFactory<Entry | undefined> {
    return async (context) => {
      const started = this.#startLoad(read.id, read.load);
      read.started = started;
      const student = await started.loading;
      return student ? { ...serializeStudent(student), at: started.startedAt } : context.skip();
    };
  }

  /** Starts a database read of `id` that reads giving up on the cache may join. */
  #startLoad(id: string, load: () => Promise<StudentSnapshot | undefined>): DatabaseLoad {
    const started: DatabaseLoad = { startedAt: orderedNow(), loading: load() };
    this.#loads.set(id, started);
    const done = () => {
      if (this.#loads.get(id) === started) this.#loads.delete(id);
    };
    started.loading.then(done, done);
    return started;
  }

  /** A database read of `id` under way that began after `since`, else a new one. */
  #sharedLoad(id: string, load: () => Promise<StudentSnapshot | undefined>, since: number): DatabaseLoad {
    const running = this.#loads.get(id);
    if (running && running.startedAt > since) return running;
    return this.#startLoad(id, load);
  }

  /** What the load read, as old as its start: it may have begun before a write this read must not pass for newer. */
  async #fromDatabase({ startedAt, loading }: DatabaseLoad): Promise<CachedStudent | undefined> {
    this.#metrics.cacheMisses.inc();
    const student = await loading;
    return student && { ...serializeStudent(student), at: startedAt };
  }

  async add(student: StudentSnapshot): Promise<void> {
    await this.#store(student, { created: true });
  }

  async set(student: StudentSnapshot): Promise<void> {
    await this.#store(student, { created: false });
  }

  async evict(id: string): Promise<void> {
    await this.#write(id, { announce: true, version: DELETED_VERSION }, async (key) => {
      await this.#fence.advance(id, DELETED_VERSION);
      await this.#bento.delete({ key });
    });
  }

  async invalidate(id: string): Promise<void> {
    // The fence stays as it is: the student may well exist, and its next write must be cached.
    await this.#write(id, { announce: true }, async (key) => {
      await this.#bento.delete({ key });
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    // Bounded: its bus sends QUIT behind a subscribe that ioredis holds until Redis answers, which one down since the
    // start never does. Our connection's close has already dropped every connection.
    await settledWithin(
      this.#bento.disconnectAll().catch(() => undefined),
      CLOSE_TIMEOUT_MS,
    );
  }

  /**
   * A created student's version is its first: no instance holds anything about it (nothing to announce), and no
   * write of an older version can land after it (no fence to raise); like any write, it looks once written for a
   * newer version that got there first (the worker's). Any other write is announced, so bentocache's bus also drops
   * the other instances' L1 copies, and raises the fence first.
   */
  async #store(student: StudentSnapshot, { created }: { created: boolean }): Promise<void> {
    await this.#write(student.id, { announce: !created, version: student.version }, async (key, at) => {
      // A newer version (or the delete) is written already: this write came late.
      if (!created && (await this.#fence.advance(student.id, student.version)) > student.version) return;
      await this.#bento.set({
        key,
        value: { ...serializeStudent(student), at },
        ttl: this.#ttl(),
        skipBusNotify: created,
      });
      await this.#dropIfSuperseded(student.id, student.version);
    });
  }

  /**
   * A newer version recorded after this entry was read or written: the entry may have overwritten it (bentocache
   * writes last-writer-wins), so it goes; the next read loads the student. Never throws: Redis away, the entry is
   * dropped once it is back.
   */
  async #dropIfSuperseded(id: string, version: number): Promise<void> {
    try {
      if ((await this.#fence.newest(id)) > version) await this.#bento.delete({ key: this.#key(id) });
    } catch {
      this.#addPending(id);
    }
  }

  /**
   * The entry first, then (when `announce`) the invalidation: an instance that hears of the change finds the new
   * entry in L2 instead of reloading it from the database. `at` is taken before both, so whatever was read before
   * this write is older than the invalidation. Never throws: an entry that may be stale is dropped once the cache
   * is back.
   */
  async #write(
    id: string,
    { announce, version }: Announcing,
    write: (key: string, at: number) => Promise<void>,
  ): Promise<void> {
    const at = orderedNow();
    let failure: unknown;
    try {
      if (!this.#connection.available) throw new Error('cache unavailable');
      // The bus publish waits for a connection; a write that is already committed must not wait with it.
      await Promise.race([write(this.#key(id), at), rejectAfter(WRITE_TIMEOUT_MS)]);
    } catch (error) {
      failure = error;
    }
    // Also when the write failed: this instance drops its own copies at once, whatever Redis does.
    if (announce)
      await this.#invalidations.invalidate(id, at, version).catch((error: unknown) => (failure ??= error));
    if (failure === undefined) return;
    this.#addPending(id);
    this.#skippedWrites.run((unsaid, lastAt) =>
      this.#logger.warn(
        { ...expectedFailure(failure), studentId: id, skippedUnlogged: unsaid, lastAt },
        'cache write skipped; dropped once the cache is back',
      ),
    );
  }

  #addPending(id: string): void {
    this.#pending.add(id);
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#closed) return;
    // Scheduled by whichever write failed: the flush is not that request's work.
    this.#flushTimer ??= outsideTraces(() =>
      setTimeout(() => {
        this.#flushTimer = undefined;
        void this.#flushPending();
      }, this.#connection.halfOpenAfterMs).unref(),
    );
  }

  async #flushPending(): Promise<void> {
    // One flush at a time: what fails again (or is added meanwhile) is pending and scheduled again.
    if (this.#flushing || this.#pending.size === 0) return;
    if (!this.#connection.available) return this.#scheduleFlush();
    this.#flushing = true;
    try {
      for (const id of [...this.#pending]) {
        this.#pending.delete(id);
        await this.invalidate(id);
      }
    } finally {
      this.#flushing = false;
    }
  }

  #stale(id: string, entry: Entry): boolean {
    return entry.at < this.#freshSince(id) || entry.version < this.#invalidations.newestVersion(id);
  }

  #freshSince(id: string): number {
    return Math.max(this.#connection.staleBefore, this.#invalidations.invalidatedAt(id));
  }

  #key(id: string): string {
    return `${this.#options.keyPrefix}${id}`;
  }

  /** Jittered, so entries cached together don't all expire together. */
  #ttl(): number {
    return Math.round(this.#options.ttlSeconds * 1_000 * (1 - JITTER + Math.random() * 2 * JITTER));
  }
}
