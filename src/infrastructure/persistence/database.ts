import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import type { Logger } from '../logging/logger.ts';
import { valueWithoutUrlPassword } from '../logging/url-password.ts';
import { outsideTraces } from '../observability/outside-traces.ts';
import { isConnectRefused, isQueryTimeout } from './database-errors.ts';
import * as schema from './schema.ts';
import type { SqlExecutor, SqlStatement } from './sql.ts';
import { settledWithin } from '../runtime/settled-within.ts';
import { expectedFailure } from '../logging/expected-failure.ts';

export type Schema = typeof schema;
/** The drizzle API shared by the PostgreSQL and PGlite drivers: repositories are written once against it. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

export interface TransactionOptions {
  /**
   * On PostgreSQL, how long a statement of the transaction waits on a lock another session holds before it fails
   * (55P03, a passing refusal); 0 or none: up to the statement timeout. PGlite has one session: nothing to wait on.
   */
  readonly lockTimeoutMs?: number;
}

export interface Database {
  readonly kind: 'postgres' | 'pglite';
  /** drizzle, for ad-hoc queries (tests, tools); the hot paths use `sql` and `transaction` instead. */
  readonly db: Db;
  /** Each statement on its own (autocommit). */
  readonly sql: SqlExecutor;
  /** Runs `work` in one transaction on one connection: committed when it resolves, rolled back when it throws. */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /** Applies the generated SQL migrations (idempotent; serialized across processes on PostgreSQL). */
  migrate(): Promise<void>;
  /**
   * Asks the database for one round trip; says whether it takes writes (a hot standby during a failover, or
   * `default_transaction_read_only`, answers reads and refuses every write).
   */
  ping(): Promise<{ readonly readOnly: boolean }>;
  /**
   * Tries to become the one leader for `lockKey` across every process on this database (a session-level
   * advisory lock on a dedicated connection). Undefined when another process leads.
   */
  tryLead(lockKey: number): Promise<Leadership | undefined>;
  /**
   * The keys from `first` to `last` whose `tryLead` lock some process on this database holds now, ascending (on
   * PGlite, a single-process database, those this process holds).
   */
  heldLeadLocks(first: number, last: number): Promise<number[]>;
  /**
   * Wakes whoever listens on `channel` through a Leadership: at once when that is this process, otherwise (on
   * PostgreSQL) with a NOTIFY, a round trip (at most one in flight per channel; one due meanwhile is sent after it).
   * Fire and forget: a lost one only delays the listener until its next poll.
   */
  notify(channel: string): void;
  close(): Promise<void>;
}

export interface Leadership {
  /** Resolves when the lock's connection is lost: from then on another process may lead. */
  readonly lost: Promise<void>;
  /** Calls `onNotify` for every NOTIFY on `channel` (delivered at the notifying transaction's commit). */
  listen(channel: string, onNotify: () => void): Promise<void>;
  release(): Promise<void>;
}

const LEADER_HEARTBEAT_MS = 2_000;
const LEADER_IDLE_SESSION_TIMEOUT_MS = 10_000;
/**
 * A lock's holder dying with its host (no FIN, no RST) is noticed within seconds, not after the OS's two hours of
 * TCP keepalive: the server probes the session's client and ends the session, freeing the lock for another process,
 * once these go unanswered (5 s idle, then 3 probes 2 s apart); and the holder itself gives a query up after
 * LEADER_QUERY_TIMEOUT_MS, so a network that went silent ends its leadership too.
 */
const LEADER_SESSION_KEEPALIVE =
  'set tcp_keepalives_idle = 5; set tcp_keepalives_interval = 2; set tcp_keepalives_count = 3; ' +
  // A holder that is alive but frozen (SIGSTOP, a long GC or event-loop stall, a paused VM whose kernel still answers
  // the probes above) sends no heartbeat: the server ends its session after this long idle, freeing the lock. The
  // heartbeat runs every LEADER_HEARTBEAT_MS, so a running holder is never idle that long. PostgreSQL 14+.
  `select set_config('idle_session_timeout', '${LEADER_IDLE_SESSION_TIMEOUT_MS}', false) where current_setting('server_version_num')::int >= 140000`;
const LEADER_QUERY_TIMEOUT_MS = 5_000;
/** Ending a session whose network went silent never completes: the lock is the server's to free by then. */
const LEADER_END_WAIT_MS = 1_000;

/** What this process's leaderships listen to, by channel: a wake-up for one of them needs no database. */
class LocalChannels {
  readonly #listeners = new Map<string, Set<() => void>>();

  /** One leadership's listeners, removed together when it ends. */
  scope(): { add(channel: string, listener: () => void): void; clear(): void } {
    const removals: (() => void)[] = [];
    return {
      add: (channel, listener) => {
        let listeners = this.#listeners.get(channel);
        if (!listeners) this.#listeners.set(channel, (listeners = new Set()));
        listeners.add(listener);
        removals.push(() => listeners.delete(listener));
      },
      clear: () => removals.splice(0).forEach((remove) => remove()),
    };
  }

  /** Calls the channel's listeners in this process; false when there are none. */
  deliver(channel: string): boolean {
    const listeners = this.#listeners.get(channel);
    if (!listeners || listeners.size === 0) return false;
    for (const listener of listeners) listener();
    return true;
  }
}

/**
 * `Database.notify`: in process when a leadership here listens; otherwise `pg_notify` by `send`, coalesced per
 * channel (NOTIFY after commit, never inside a transaction: it takes a database-wide lock held through commit).
 */
function notifier(
  local: LocalChannels,
  send: (channel: string) => Promise<unknown>,
): (channel: string) => void {
  const sending = new Map<string, boolean>(); // channel → another wake-up is due once this one is sent
  const notify = (channel: string): void => {
    if (local.deliver(channel)) return;
    if (sending.has(channel)) {
      sending.set(channel, true);
      return;
    }
    sending.set(channel, false);
    void send(channel)
      .catch(() => undefined)
      .finally(() => {
        const again = sending.get(channel);
        sending.delete(channel);
        if (again) notify(channel);
      });
  };
  return notify;
}

const NOTIFY_STATEMENT = { name: 'database_notify', text: 'select pg_notify($1, $2)' };
// A session's transactions are read-only on a hot standby and under `default_transaction_read_only`.
const READ_ONLY_STATEMENT = {
  name: 'database_read_only',
  text: `select current_setting('transaction_read_only') = 'on' as "readOnly"`,
};

// A one-argument advisory lock on a non-negative key below 2^32 is objsubid 1, classid 0, objid = the key.
const HELD_LEAD_LOCKS_STATEMENT = {
  name: 'database_held_lead_locks',
  text: `select objid::int8 as key from pg_locks
    where locktype = 'advisory' and granted and objsubid = 1 and classid = 0
      and database = (select oid from pg_database where datname = current_database())
      and objid::int8 between $1 and $2
    order by key`,
};

/** Npgsql's command timeout, the original's. */
const DEFAULT_STATEMENT_TIMEOUT_MS = 30_000;
/** How much longer than the server's own timeout a statement may go unanswered before the client gives up on it. */
const UNANSWERED_GRACE_MS = 5_000;

const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../../drizzle', import.meta.url));
// Any constant works; it only has to be the same in every process that migrates this database.
const MIGRATION_LOCK_KEY = 4_224_711;

/** PostgreSQL only; migrations wait as long as they need, without either. */
export interface DatabaseOptions {
  /** Connections the pool opens at most (DATABASE_POOL_SIZE). Default 10. */
  readonly poolSize?: number;
  /**
   * A statement running longer is cancelled by the server, which rolls its transaction back (503). Default
   * DEFAULT_STATEMENT_TIMEOUT_MS.
   */
  readonly statementTimeoutMs?: number;
  /**
   * A statement with no answer at all after this long fails (503) and its connection is discarded: one whose server
   * died without a FIN or RST would otherwise hold its request, and its place in the pool, for good. Default: the
   * statement timeout and UNANSWERED_GRACE_MS, so a server that is there answers first.
   */
  readonly unansweredAfterMs?: number;
}

export async function openDatabase(
  url: string,
  logger: Logger,
  options: DatabaseOptions = {},
): Promise<Database> {
  if (url.startsWith('pglite://')) return openPglite(url.slice('pglite://'.length), logger);
  return openPostgres(url, logger, options);
}

function openPostgres(
  url: string,
  logger: Logger,
  {
    poolSize = 10,
    statementTimeoutMs = DEFAULT_STATEMENT_TIMEOUT_MS,
    unansweredAfterMs = statementTimeoutMs + UNANSWERED_GRACE_MS,
  }: DatabaseOptions,
): Database {
  const pool = new pg.Pool({
    connectionString: url,
    max: poolSize,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: statementTimeoutMs,
    query_timeout: unansweredAfterMs,
  });
  // An idle client whose server went away emits 'error'; unhandled, it would kill the process. pg-pool hangs the
  // whole client on the error, which would put the connection's internals into the log line.
  pool.on('error', (error: Error & { client?: unknown }) => {
    delete error.client;
    // The client's socket keeps the context it was opened in (a request's, a message's): this line is none of theirs.
    outsideTraces(() => logger.warn(expectedFailure(error), 'idle PostgreSQL connection lost'));
  });
  // Connections refused: the roles log what the outage refuses (throttled); its end is said here, once, at the first
  // connection made after it.
  let refusedSince: number | undefined;
  const noteFailure = (error: unknown) => {
    if (isConnectRefused(error)) refusedSince ??= Date.now();
  };
  /** `work`, its failure noted. */
  const noted = <T>(work: Promise<T>): Promise<T> =>
    work.catch((error: unknown) => {
      noteFailure(error);
      throw error;
    });
  pool.on('connect', () => {
    if (refusedSince === undefined) return;
    const downMs = Date.now() - refusedSince;
    refusedSince = undefined;
    outsideTraces(() => logger.info({ downMs }, 'PostgreSQL reachable again'));
  });
  /** The health check's question over a connection of its own, outside the pool (see ping). */
  const pingOnOwnConnection = async (): Promise<{ readOnly: boolean }> => {
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: 5_000,
      query_timeout: unansweredAfterMs,
    });
    // A connection lost meanwhile fails the query; unheard, its 'error' event would crash the process.
    client.on('error', () => undefined);
    try {
      await noted(client.connect());
      const { rows } = await client.query<{ readOnly: boolean }>(READ_ONLY_STATEMENT.text);
      return { readOnly: rows[0]?.readOnly === true };
    } finally {
      void client.end().catch(() => undefined);
    }
  };
  let ownPing: Promise<{ readOnly: boolean }> | undefined;
  const db = drizzlePg(pool, { schema });
  const local = new LocalChannels();
  return {
    kind: 'postgres',
    db,
    sql: pgExecutor(pool, noteFailure),
    async transaction(work, { lockTimeoutMs = 0 } = {}) {
      if (!Number.isSafeInteger(lockTimeoutMs) || lockTimeoutMs < 0)
        throw new RangeError(`lockTimeoutMs must be a whole number of milliseconds, not ${lockTimeoutMs}`);
      const client = await noted(pool.connect());
      let broken: Error | undefined;
      // A connection the server closes between two statements reports it as an 'error' event, which would crash
      // the process unheard; the next statement fails with it, and the connection is discarded on release.
      const onError = (error: Error) => (broken = error);
      client.on('error', onError);
      try {
        // In BEGIN's round trip; SET LOCAL ends with the transaction.
        await client.query(lockTimeoutMs > 0 ? `begin; set local lock_timeout = ${lockTimeoutMs}` : 'begin');
        const result = await work(pgExecutor(client));
        await client.query('commit');
        return result;
      } catch (error) {
        noteFailure(error);
        // A connection that cannot even roll back is discarded rather than returned to the pool. One whose
        // statement got no answer is discarded at once (a ROLLBACK would only wait behind that statement): the
        // server rolls back when the session ends.
        if (isQueryTimeout(error)) broken = error as Error;
        else
          await client.query('rollback').catch((rollbackError: unknown) => {
            broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
          });
        throw error;
      } finally {
        client.off('error', onError);
        client.release(broken);
      }
    },
    async migrate() {
      // A session of its own, without the pool's query timeout: waiting for another process's migration, or
      // running a long one, is no outage.
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
      // A connection lost between two statements fails the next one; unheard, its 'error' event would crash us.
      client.on('error', () => undefined);
      // The first thing a role does with the database at start: a failure here says which one, and where.
      // pino's error serializer adds the cause's message to this one.
      const failed = (step: string) => (error: unknown) => {
        throw new Error(`PostgreSQL at ${valueWithoutUrlPassword(url)}: ${step} failed`, { cause: error });
      };
      await client.connect().catch(failed('connecting to migrate the schema'));
      try {
        // Ending the session releases the lock.
        await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
        await migratePg(drizzlePg(client, { schema }), { migrationsFolder: MIGRATIONS_FOLDER }).catch(
          failed('migrating the schema'),
        );
      } finally {
        await client.end();
      }
    },
    async ping() {
      // Every pooled connection busy (slow requests, or requests queued behind a lock): the server may well answer,
      // and that is the question. In the pool's queue the probe would wait behind them and report a busy instance
      // as one whose database does not answer, taking it (every instance, behind one hot row) out of rotation.
      if (pool.waitingCount > 0 || (pool.idleCount === 0 && pool.totalCount >= poolSize))
        // One at a time, however many probes ask: connections are what is short.
        return (ownPing ??= pingOnOwnConnection().finally(() => (ownPing = undefined)));
      const { rows } = await noted(pool.query<{ readOnly: boolean }>(READ_ONLY_STATEMENT));
      return { readOnly: rows[0]?.readOnly === true };
    },
    tryLead: (lockKey) => leadOnPostgres(url, lockKey, local, logger),
    async heldLeadLocks(first, last) {
      const { rows } = await pool.query<{ key: string }>({
        ...HELD_LEAD_LOCKS_STATEMENT,
        values: [first, last],
      });
      return rows.map((row) => Number(row.key));
    },
    notify: notifier(local, (channel) => pool.query({ ...NOTIFY_STATEMENT, values: [channel, ''] })),
    close: () => pool.end(),
  };
}

/** `onFailure`: told of every statement that failed (before it is thrown). */
function pgExecutor(target: pg.Pool | pg.PoolClient, onFailure?: (error: unknown) => void): SqlExecutor {
  return {
    async query<Row>(statement: SqlStatement, params: readonly unknown[]) {
      try {
        const config: pg.QueryConfig & Pick<pg.ClientConfig, 'query_timeout'> = {
          name: statement.name,
          text: statement.text,
          values: [...params],
          // pg reads it from the query as from the pool; its types only know the pool's.
          ...(statement.unansweredAfterMs ? { query_timeout: statement.unansweredAfterMs } : {}),
        };
        const result = await target.query(config);
        return result.rows as Row[];
      } catch (error) {
        onFailure?.(error);
        throw error;
      }
    },
  };
}

async function leadOnPostgres(
  url: string,
  lockKey: number,
  local: LocalChannels,
  logger: Logger,
): Promise<Leadership | undefined> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: 5_000,
    query_timeout: LEADER_QUERY_TIMEOUT_MS,
    keepAlive: true,
  });
  let markLost!: () => void;
  const lost = new Promise<void>((resolve) => (markLost = resolve));
  client.on('error', (error) => {
    logger.warn(expectedFailure(error), 'leader connection lost');
    markLost();
  });
  client.on('end', () => markLost());
  const end = () => settledWithin(client.end(), LEADER_END_WAIT_MS).then(() => undefined);
  let locked: boolean | undefined;
  try {
    await client.connect();
    const { rows } = await client.query<{ locked: boolean }>('select pg_try_advisory_lock($1) as locked', [
      lockKey,
    ]);
    // Only a holder's session needs the probes: a standby's try (every few seconds) ends its session at once.
    if (rows[0]?.locked) await client.query(LEADER_SESSION_KEEPALIVE);
    locked = rows[0]?.locked;
  } finally {
    if (!locked) await end();
  }
  if (!locked) return undefined;
  // A silent network drop would otherwise go unnoticed while another process takes the lock.
  const heartbeat = setInterval(() => {
    client.query('select 1').catch(() => markLost());
  }, LEADER_HEARTBEAT_MS);
  // Once lost, another process may lead: this process's writers NOTIFY again.
  const listening = local.scope();
  void lost.then(() => {
    clearInterval(heartbeat);
    listening.clear();
  });
  return {
    lost,
    async listen(channel, onNotify) {
      client.on('notification', (message) => {
        if (message.channel === channel) onNotify();
      });
      await client.query(`listen ${pg.escapeIdentifier(channel)}`);
      listening.add(channel, onNotify);
    },
    async release() {
      listening.clear();
      clearInterval(heartbeat);
      await end(); // ending the session releases the lock
    },
  };
}

async function openPglite(location: string, logger: Logger): Promise<Database> {
  let client: PGlite;
  if (location === 'memory') {
    // A fresh in-memory PGlite spends seconds in initdb; a migrated snapshot loads in well under one.
    client = await PGlite.create({ loadDataDir: await migratedSnapshot() });
  } else {
    await mkdir(location, { recursive: true });
    const releaseLock = await lockDataDir(location);
    try {
      if (!(await stat(join(location, 'PG_VERSION')).catch(() => undefined))) {
        await refuseDamagedDataDir(location);
        // PostgreSQL's initdb, in WebAssembly: a while with nothing else to show.
        logger.info({ location }, 'creating the embedded database (a first start takes a while)');
      }
      client = await PGlite.create(location);
    } catch (error) {
      await releaseLock();
      throw error;
    }
    const opened = client;
    return pgliteDatabase(opened, async () => {
      await opened.close();
      await releaseLock();
    });
  }
  return pgliteDatabase(client, () => client.close());
}

function pgliteExecutor(target: Pick<PGlite, 'query'>): SqlExecutor {
  return {
    async query<Row>(statement: SqlStatement, params: readonly unknown[]) {
      return (await target.query<Row>(statement.text, [...params])).rows;
    },
  };
}

function pgliteDatabase(client: PGlite, close: () => Promise<void>): Database {
  const db = drizzlePglite(client, { schema });
  // One process, one session: leadership of a key is simply "the first caller in this process".
  const led = new Set<number>();
  const local = new LocalChannels();
  return {
    kind: 'pglite',
    db,
    sql: pgliteExecutor(client),
    // One session: no other holds a lock to wait on (lockTimeoutMs has nothing to limit).
    transaction: (work) => client.transaction((tx) => work(pgliteExecutor(tx))),
    migrate: () => migratePglite(db, { migrationsFolder: MIGRATIONS_FOLDER }),
    async ping() {
      const { rows } = await client.query<{ readOnly: boolean }>(READ_ONLY_STATEMENT.text);
      return { readOnly: rows[0]?.readOnly === true };
    },
    async tryLead(lockKey) {
      if (led.has(lockKey)) return undefined;
      led.add(lockKey);
      let released = false;
      const listening = local.scope();
      return {
        lost: new Promise<void>(() => undefined),
        // Every writer is in this process: wake-ups never need the database.
        async listen(channel, onNotify) {
          listening.add(channel, onNotify);
        },
        async release() {
          listening.clear();
          if (released) return;
          released = true;
          led.delete(lockKey);
        },
      };
    },
    async heldLeadLocks(first, last) {
      return [...led].filter((key) => key >= first && key <= last).sort((a, b) => a - b);
    },
    // Every listener is in this process: with none here, nobody is listening.
    notify: (channel) => void local.deliver(channel),
    close,
  };
}

/**
 * PGlite is a single-process database: a second process opening the same directory would corrupt it.
 * A pid file makes that mistake a clear start-up error instead.
 */
async function lockDataDir(location: string): Promise<() => Promise<void>> {
  const lockPath = join(location, 'tbe.pid');
  for (;;) {
    try {
      await writeFile(lockPath, String(process.pid), { flag: 'wx' });
      return () => rm(lockPath, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const content = await readFile(lockPath, 'utf8').catch(() => undefined);
    if (content === undefined) continue; // removed meanwhile: try again
    const owner = Number(content);
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && (await isAlive(owner)))
      throw new Error(
        `The embedded database ${location} is in use by process ${owner}. PGlite serves one process only: stop ` +
          'that one first (all roles share it in one process, as npm start runs them), or set ' +
          'DATABASE_URL=postgres://... to run roles as separate processes. If that process is not this app (one ' +
          `that crashed left ${lockPath} behind, and its pid was reused), delete that file.`,
      );
    // Empty: another process has just created it and is writing its pid, unless that one died long ago.
    if (content === '' && (await ageMs(lockPath)) < EMPTY_PID_FILE_STALE_MS) await delay(20);
    else await removeStaleLock(lockPath, content);
  }
}

// PostgreSQL's first OID for objects not made by initdb (FirstNormalObjectId): a table's file is named after one.
const FIRST_NORMAL_OBJECT_ID = 16_384;

/**
 * PGlite initialises any directory without a PG_VERSION file, over whatever it holds. After an interrupted first start
 * that is right (initdb writes PG_VERSION last); a database that lost the file would be wiped. Files of tables made
 * after initdb (ours, by the migrations) tell the two apart. For a directory without PG_VERSION.
 */
async function refuseDamagedDataDir(location: string): Promise<void> {
  const databases = await readdir(join(location, 'base')).catch(() => []);
  for (const database of databases) {
    const files = await readdir(join(location, 'base', database)).catch(() => []);
    if (files.some((file) => Number.parseInt(file, 10) >= FIRST_NORMAL_OBJECT_ID))
      throw new Error(
        `The embedded database in ${location} holds tables but no PG_VERSION file: it is damaged, and opening it ` +
          'would create an empty database over it. Restore the directory from a backup, or move it away to start ' +
          'with an empty one.',
      );
  }
}

const EMPTY_PID_FILE_STALE_MS = 2_000;
const TAKEOVER_GUARD_STALE_MS = 10_000;

/**
 * Removes a pid file left by a process that died, one process at a time (mkdir is atomic): two processes that both
 * found it stale would otherwise each remove the lock the other had just taken, and both open the database.
 */
async function removeStaleLock(lockPath: string, stale: string): Promise<void> {
  const guard = `${lockPath}.takeover`;
  try {
    await mkdir(guard);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    // Another process is taking over; a guard left by one that died doing it is removed once old.
    if ((await ageMs(guard)) > TAKEOVER_GUARD_STALE_MS) await rm(guard, { recursive: true, force: true });
    await delay(20);
    return;
  }
  try {
    // Only the file found stale: one written since is a live process's lock.
    if ((await readFile(lockPath, 'utf8').catch(() => undefined)) === stale)
      await rm(lockPath, { force: true });
  } finally {
    await rm(guard, { recursive: true, force: true });
  }
}

async function ageMs(path: string): Promise<number> {
  const stats = await stat(path).catch(() => undefined);
  return stats ? Date.now() - stats.mtimeMs : 0;
}

async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A process killed (kill -9) and not yet reaped by its parent is a zombie: signals still find it, but it holds
  // nothing. Linux says so in /proc (field 3 of its stat, after the name in parentheses); elsewhere it counts as alive.
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return stat?.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

let snapshot: Promise<Blob> | undefined;

/** A data dir with every migration applied, cached in the temp dir under a hash of the migrations. */
function migratedSnapshot(): Promise<Blob> {
  snapshot ??= (async () => {
    const files = (await readdir(MIGRATIONS_FOLDER, { recursive: true })).sort();
    const hash = createHash('sha256');
    for (const file of files.filter((name) => name.endsWith('.sql') || name.endsWith('.json')))
      hash.update(file).update(await readFile(join(MIGRATIONS_FOLDER, file)));
    const path = join(tmpdir(), `tbe-pglite-${hash.digest('hex').slice(0, 16)}.tar`);
    try {
      return new Blob([await readFile(path)]);
    } catch {
      const client = await PGlite.create();
      await migratePglite(drizzlePglite(client, { schema }), { migrationsFolder: MIGRATIONS_FOLDER });
      const dump = await client.dumpDataDir('none');
      await client.close();
      const partial = `${path}.${process.pid}`;
      await writeFile(partial, Buffer.from(await dump.arrayBuffer()));
      await rename(partial, path); // atomic: concurrent test processes never read half a file
      return dump;
    }
  })();
  return snapshot;
}
