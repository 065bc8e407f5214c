import { Redis, ReplyError } from 'ioredis';
import {
  EMPTY_LOG_ID,
  NotLogWriterError,
  ReplayLogUnavailableError,
  compareLogIds,
  laterLogId,
  type AppendResult,
  type NewReplayLogEntry,
  type ReplayLog,
  type ReplayLogEntry,
  type ReplayLogRetention,
  type ReplayLogTail,
  type ReplayLogTailListener,
} from '../../application/ports/replay-log.ts';
import type { Logger } from '../logging/logger.ts';
import { settledWithin } from '../runtime/settled-within.ts';
import { expectedFailure, isProgrammingError } from '../logging/expected-failure.ts';

export interface RedisStreamReplayLogOptions {
  readonly url: string;
  /** Every key of the log starts with it: `<prefix>log` (the stream), `<prefix>dedup:<message id>`, ... */
  readonly keyPrefix: string;
  /** Entries kept; older ones are trimmed (exactly, so the last trimmed id is known). */
  readonly maxEntries: number;
  /** How long an appended message id is remembered for de-duplication. */
  readonly dedupTtlSeconds: number;
  /** How long one XREAD of a tail blocks before it asks again (and notices a close). */
  readonly blockMs?: number;
}

// A log that does not exist (yet, or any more: Redis lost it) begins as an empty stream whose id (XADD, then trimmed
// away by MAXLEN 0) is recorded as trimmed, and as where the log began: the position a reader is given for the empty
// log is that id, so the first entry (a later id) is not "older than the log" for it and is sent after a `reset`,
// while ids from a log Redis lost are older. Where the log began tells a log lost from one trimmed (see `tail`).
const beginIfMissing = (stream: string, trimmed: string, began: string) => `
if redis.call('EXISTS', ${stream}) == 0 then
  local begins = redis.call('XADD', ${stream}, 'MAXLEN', 0, '*', 'begins', 1)
  redis.call('SET', ${trimmed}, begins)
  redis.call('SET', ${began}, begins)
end`;

// One script: the lease check, de-duplication, the append and the trim happen atomically, so a redelivered
// message or a writer that lost its lease can never add an entry out of order. The ids of the last 2 × maxEntries
// appends are remembered (KEYS[5] lists them, newest first), as the in-memory ring does: a key per id for the whole
// de-duplication TTL grew Redis by one key per notification for a day, whatever the log kept.
const APPEND = `
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return redis.error_reply('NOTWRITER') end
local earlier = redis.call('GET', KEYS[2])
if earlier then return {earlier, 1} end
${beginIfMissing('KEYS[1]', 'KEYS[4]', 'KEYS[6]')}
local id = redis.call('XADD', KEYS[1], '*', 'messageId', ARGV[4], 'type', ARGV[5], 'subject', ARGV[6], 'data', ARGV[7], 'traceparent', ARGV[8])
redis.call('SET', KEYS[2], id, 'EX', ARGV[3])
redis.call('LPUSH', KEYS[5], ARGV[4])
local keep = tonumber(ARGV[2]) * 2
local forgotten = redis.call('LRANGE', KEYS[5], keep, -1)
for _, messageId in ipairs(forgotten) do redis.call('DEL', ARGV[9] .. messageId) end
if #forgotten > 0 then redis.call('LTRIM', KEYS[5], 0, keep - 1) end
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[2])
if excess > 0 then
  local dropped = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('SET', KEYS[4], dropped[#dropped][1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[2])
end
return {id, 0}`;

// The log's extent.
const RETENTION = `
${beginIfMissing('KEYS[1]', 'KEYS[2]', 'KEYS[3]')}
return {
  redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1),
  redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1),
  redis.call('XLEN', KEYS[1]),
  redis.call('GET', KEYS[2])
}`;

const CLAIM = `
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`;

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0`;

type StreamRecord = [id: string, fields: string[]];
/** XREAD's answer for one stream: null when the block ended without an entry. */
type TailRead = [key: string, records: StreamRecord[]][] | null;

/** How long one XREAD of a tail blocks by default. */
const DEFAULT_BLOCK_MS = 5_000;
// A Redis host that vanished without closing TCP leaves a connection that answers nothing and is never closed: one
// that has not answered a command for this long is dropped and reconnected (ioredis's socketTimeout).
const COMMAND_SOCKET_TIMEOUT_MS = 5_000;
/** A connection gone longer than this is down: the health check then answers without waiting on it. */
const OUTAGE_AFTER_MS = 1_000;
// A tail's XREAD is answered at the end of its block at the latest: this much later, its connection is dead.
const TAIL_SOCKET_TIMEOUT_MARGIN_MS = 5_000;
// TCP keepalive probes an idle connection after this long, not after the OS's default two hours.
const KEEP_ALIVE_MS = 5_000;

/** The scripts as ioredis commands: EVALSHA, and the script itself only when Redis does not have it (NOSCRIPT). */
interface ReplayLogScripts {
  appendEntry(...keysThenArgs: (string | number)[]): Promise<[id: string, duplicate: number]>;
  logRetention(
    streamKey: string,
    trimmedKey: string,
    beganKey: string,
  ): Promise<[first: StreamRecord[], last: StreamRecord[], length: number, trimmed: string | null]>;
  claimWriter(writerKey: string, writerId: string, ttlMs: number): Promise<number>;
  releaseWriter(writerKey: string, writerId: string): Promise<number>;
}

function withScripts(redis: Redis): Redis & ReplayLogScripts {
  redis.defineCommand('appendEntry', { numberOfKeys: 6, lua: APPEND });
  redis.defineCommand('logRetention', { numberOfKeys: 3, lua: RETENTION });
  redis.defineCommand('claimWriter', { numberOfKeys: 1, lua: CLAIM });
  redis.defineCommand('releaseWriter', { numberOfKeys: 1, lua: RELEASE });
  return redis as Redis & ReplayLogScripts;
}

/** The replay log on a Redis stream, shared by every notifications instance. */
export class RedisStreamReplayLog implements ReplayLog {
  readonly #redis: Redis & ReplayLogScripts;
  readonly #tails = new Set<Redis>();
  readonly #options: RedisStreamReplayLogOptions;
  readonly #logger: Logger;
  /** `dedup`: the prefix of each appended message id's key; `began`: the id the stream began at when created. */
  readonly #keys: {
    stream: string;
    writer: string;
    trimmed: string;
    began: string;
    dedup: string;
    dedupOrder: string;
  };
  /** The last connection error since the connection was last ready, and since when there has been none. */
  #lastError: string | undefined;
  #downSince: number | undefined;

  constructor(options: RedisStreamReplayLogOptions, logger: Logger) {
    this.#options = options;
    this.#logger = logger;
    const prefix = options.keyPrefix;
    this.#keys = {
      stream: `${prefix}log`,
      writer: `${prefix}writer`,
      trimmed: `${prefix}trimmed`,
      began: `${prefix}began`,
      dedup: `${prefix}dedup:`,
      dedupOrder: `${prefix}dedup-order`,
    };
    // Fail fast while Redis is down: the consumer retries the message later, readers get an error now. A command
    // timeout alone would keep a dead connection forever; the socket timeout drops it, and ioredis reconnects.
    this.#redis = withScripts(
      new Redis(options.url, {
        maxRetriesPerRequest: 1,
        commandTimeout: 2_000,
        socketTimeout: COMMAND_SOCKET_TIMEOUT_MS,
        keepAlive: KEEP_ALIVE_MS,
        retryStrategy: (times) => Math.min(times * 100, 1_000),
      }),
    );
    this.#redis.on('error', (error: Error) => {
      this.#lastError = error.message;
      this.#downSince ??= performance.now();
      logger.debug(expectedFailure(error), 'replay log: redis connection error');
    });
    this.#redis.on('close', () => (this.#downSince ??= performance.now()));
    this.#redis.on('ready', () => {
      this.#downSince = undefined;
      this.#lastError = undefined;
    });
  }

  /** Waits (bounded) for the first connection so start-up does not count as an outage. */
  async connected(timeoutMs = 2_000): Promise<void> {
    if (this.#redis.status === 'ready') return;
    await settledWithin(new Promise((resolve) => this.#redis.once('ready', resolve)), timeoutMs);
  }

  async append(entry: NewReplayLogEntry, writerId: string): Promise<AppendResult> {
    try {
      const [id, duplicate] = await this.#redis.appendEntry(
        this.#keys.stream,
        `${this.#keys.dedup}${entry.messageId}`,
        this.#keys.writer,
        this.#keys.trimmed,
        this.#keys.dedupOrder,
        this.#keys.began,
        writerId,
        this.#options.maxEntries,
        this.#options.dedupTtlSeconds,
        entry.messageId,
        entry.type,
        entry.subject,
        entry.data,
        entry.traceparent ?? '',
        this.#keys.dedup,
      );
      return { id, duplicate: duplicate === 1 };
    } catch (error) {
      if (error instanceof Error && error.message.includes('NOTWRITER'))
        throw new NotLogWriterError(writerId);
      // Not Redis's answer but the connection's failure: said with the connection's own error (`connect
      // ECONNREFUSED …`) when there was one, not ioredis's message, which names its options.
      if (!(error instanceof ReplyError) && !isProgrammingError(error)) {
        // `||`: a connection error may have no message (Node's for a host whose every address refused).
        const why = this.#lastError || (error instanceof Error ? error.message : String(error));
        throw new ReplayLogUnavailableError(`Redis unreachable: ${why}`, { cause: error });
      }
      throw error;
    }
  }

  async claimWriter(writerId: string, ttlMs: number): Promise<boolean> {
    return (await this.#redis.claimWriter(this.#keys.writer, writerId, ttlMs)) === 1;
  }

  async releaseWriter(writerId: string): Promise<void> {
    await this.#redis.releaseWriter(this.#keys.writer, writerId);
  }

  async readAfter(afterId: string, limit: number): Promise<readonly ReplayLogEntry[]> {
    const records = (await this.#redis.xrange(
      this.#keys.stream,
      `(${afterId}`,
      '+',
      'COUNT',
      limit,
    )) as StreamRecord[];
    return records.map(toEntry);
  }

  tail(afterId: string, listener: ReplayLogTailListener): ReplayLogTail {
    // XREAD BLOCK holds its connection, so each tail has its own; no command timeout on it, but a socket timeout
    // past the block time, or a half-open connection would block the tail (and every client of this instance) for good.
    const blockMs = this.#options.blockMs ?? DEFAULT_BLOCK_MS;
    const connection = new Redis(this.#options.url, {
      maxRetriesPerRequest: null,
      socketTimeout: blockMs + TAIL_SOCKET_TIMEOUT_MARGIN_MS,
      keepAlive: KEEP_ALIVE_MS,
      retryStrategy: (times) => Math.min(times * 100, 1_000),
    });
    connection.on('error', (error: Error) =>
      this.#logger.debug(expectedFailure(error), 'replay log tail: redis error'),
    );
    this.#tails.add(connection);
    let cursor = afterId;
    let closed = false;
    const loop = (async () => {
      while (!closed) {
        try {
          // What the log trimmed, asked in the same round trip, after the read: a cursor not older than it was not
          // trimmed before the read either, so the entries read follow it without a gap. A tail cut off from Redis
          // for longer than the log keeps entries (or whose Redis lost the log) resumes past a gap. Where the log
          // began tells the two apart.
          const [read, trimmed, began] = (await connection
            .pipeline()
            .xread('COUNT', 1_000, 'BLOCK', blockMs, 'STREAMS', this.#keys.stream, cursor)
            .get(this.#keys.trimmed)
            .get(this.#keys.began)
            .exec()) as [
            [Error | null, TailRead],
            [Error | null, string | null],
            [Error | null, string | null],
          ];
          const failed = read[0] ?? trimmed[0] ?? began[0];
          if (failed) throw failed;
          if (closed) break;
          if (trimmed[1] !== null && compareLogIds(trimmed[1], cursor) > 0) {
            const retention = await this.retention();
            if (closed) break;
            // A log that began after the last entry this tail read is not the log it read from.
            if (began[1] !== null && compareLogIds(began[1], cursor) > 0)
              this.#logger.warn(
                { after: cursor, beganAt: began[1], firstId: retention.firstId },
                'replay log lost and begun again (Redis restarted without persistence, was flushed, or the stream ' +
                  'was deleted): what it held after this instance last read is gone; readers are told to reload',
              );
            else
              this.#logger.warn(
                { after: cursor, trimmedThrough: retention.trimmedThrough },
                'replay log trimmed past where this instance last read (more entries than REPLAY_LOG_MAX_ENTRIES ' +
                  'were appended while its tail was cut off from Redis or behind): readers are told to reload',
              );
            listener.missed(retention);
            // Told once: the next read must not find the same gap.
            cursor = laterLogId(cursor, retention.trimmedThrough);
          }
          const records = read[1]?.[0]?.[1] ?? [];
          const last = records.at(-1);
          if (!last) continue;
          // Handed on even if the log trimmed them since: readers told of the gap skip them, the hub sends them.
          listener.entries(records.map(toEntry));
          cursor = laterLogId(cursor, last[0]);
        } catch (error) {
          if (closed) break;
          this.#logger.warn(expectedFailure(error), 'replay log tail: read failed, retrying');
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      }
    })();
    return {
      close: async () => {
        closed = true;
        this.#tails.delete(connection);
        connection.disconnect();
        await loop;
      },
    };
  }

  async retention(): Promise<ReplayLogRetention> {
    const [first, last, length, trimmed] = await this.#redis.logRetention(
      this.#keys.stream,
      this.#keys.trimmed,
      this.#keys.began,
    );
    return {
      firstId: first[0]?.[0],
      lastId: last[0]?.[0] ?? EMPTY_LOG_ID,
      trimmedThrough: trimmed ?? EMPTY_LOG_ID,
      length,
    };
  }

  status() {
    const connected = this.#redis.status === 'ready';
    // A reconnect of a moment is no outage: only one that lasts says why.
    const down =
      !connected && this.#downSince !== undefined && performance.now() - this.#downSince > OUTAGE_AFTER_MS;
    return {
      connected,
      adapter: 'redis',
      ...(down && this.#lastError !== undefined ? { detail: this.#lastError } : {}),
    };
  }

  async close(): Promise<void> {
    for (const connection of this.#tails) connection.disconnect();
    this.#tails.clear();
    if (this.#redis.status === 'ready') await this.#redis.quit().catch(() => this.#redis.disconnect());
    else this.#redis.disconnect();
  }
}

function toEntry([id, fields]: StreamRecord): ReplayLogEntry {
  const value: Record<string, string> = {};
  for (let index = 0; index + 1 < fields.length; index += 2)
    value[fields[index] ?? ''] = fields[index + 1] ?? '';
  return {
    id,
    messageId: value.messageId ?? '',
    type: value.type ?? '',
    subject: value.subject ?? '',
    data: value.data ?? '',
    ...(value.traceparent ? { traceparent: value.traceparent } : {}),
  };
}
