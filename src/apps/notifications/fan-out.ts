import {
  compareLogIds,
  laterLogId,
  type ReplayLog,
  type ReplayLogEntry,
  type ReplayLogRetention,
  type ReplayLogTail,
} from '../../application/ports/replay-log.ts';
import type { Logger } from '../../infrastructure/logging/logger.ts';
import { waitToRetry } from '../../infrastructure/resilience/resilience-policy.ts';
import { expectedFailure } from '../../infrastructure/logging/expected-failure.ts';

/** The same for every reader: one object, shared. */
export interface ResumeLimits {
  /** Bytes of entry data that may wait in memory while a reader catches up. */
  readonly maxQueuedBytes: number;
  readonly pageSize?: number;
}

const DEFAULT_PAGE_SIZE = 500;

/** Who resumes: an SSE stream. */
export interface ResumingReader {
  deliver(entry: ReplayLogEntry): void | Promise<void>;
  /**
   * The log dropped entries after the reader's last id before they could be read: it missed them and should reload.
   * Entries after `resumeFrom` (live ones) follow.
   */
  fellBehind(resumeFrom: string, retention: ReplayLogRetention): void | Promise<void>;
  /**
   * Live entries piled up past `maxQueuedBytes` while it caught up (a reader slower than the writers): it gets
   * nothing more, and should resume later from its last id, out of the log instead of out of memory.
   */
  overflowed(queuedBytes: number): void;
}

/** A reader's resumption: settled once it caught up; `unsubscribe` when it leaves. */
export interface Resuming {
  readonly caughtUp: Promise<void>;
  unsubscribe(): void;
}

/** A client transport's receiver of tailed entries. */
export interface FanOutListener {
  receive(entry: ReplayLogEntry): void;
  /** The tail missed entries (ReplayLogTailListener.missed): readers that can be told to reload are told here. */
  missed?(retention: ReplayLogRetention): void;
}

/** How the clients of this instance are reached: each SSE stream, or the SignalR hub. */
export type PushTransport = 'sse' | 'signalr';
const PUSH_TRANSPORTS: readonly PushTransport[] = ['sse', 'signalr'];

/**
 * Wraps the push of one entry to one transport's listeners (`push` calls them all, synchronously), e.g. in a
 * trace span; the default just pushes.
 */
export type PushObserver = (transport: PushTransport, entry: ReplayLogEntry, push: () => void) => void;

export interface LogFanOutOptions {
  readonly observe?: PushObserver;
  /** Where it says that the log does not answer at start (it keeps trying). */
  readonly logger?: Logger;
}

/**
 * One tail of the replay log per instance, handed to every local client (SSE connections, the hub): a
 * notification appended by any instance reaches the clients of all of them.
 */
export class LogFanOut {
  readonly #log: ReplayLog;
  readonly #observe: PushObserver;
  readonly #logger: Logger | undefined;
  readonly #listeners: Record<PushTransport, Set<FanOutListener>> = { sse: new Set(), signalr: new Set() };
  readonly #stopping = new AbortController();
  #tail: ReplayLogTail | undefined;
  /** The newest entry handed to listeners. */
  #position = '0-0';

  constructor(
    log: ReplayLog,
    { observe = (_transport, _entry, push) => push(), logger }: LogFanOutOptions = {},
  ) {
    this.#log = log;
    this.#observe = observe;
    this.#logger = logger;
  }

  get position(): string {
    return this.#position;
  }

  /** Whether it tails the log: until then, `position` says nothing of the log (a stream cannot start from it). */
  get ready(): boolean {
    return this.#tail !== undefined;
  }

  /**
   * Starts tailing the log. One that does not answer (Redis down) is tried again in the background until it does:
   * the instance serves meanwhile (health, pages, a `retry:` to SSE clients) instead of failing to start.
   */
  async start(): Promise<void> {
    if (await this.#tryToStart(0)) return;
    void (async () => {
      for (let attempt = 0; await waitToRetry(attempt, this.#stopping.signal); attempt++)
        if (await this.#tryToStart(attempt + 1)) return;
    })();
  }

  async #tryToStart(attempt: number): Promise<boolean> {
    let retention: ReplayLogRetention;
    try {
      retention = await this.#log.retention();
    } catch (error) {
      if (attempt === 0)
        this.#logger?.warn(expectedFailure(error), 'replay log unavailable; tailing it once it answers');
      return false;
    }
    if (this.#stopping.signal.aborted) return true;
    if (attempt > 0) this.#logger?.info('replay log answers; tailing it');
    // An empty log that begins later than 0-0 (a new memory ring): a reader starting from 0-0 would look trimmed.
    this.#position = laterLogId(retention.lastId, retention.trimmedThrough);
    this.#tail = this.#log.tail(this.#position, {
      entries: (entries) => {
        for (const entry of entries) {
          this.#position = entry.id;
          for (const transport of PUSH_TRANSPORTS) {
            const listeners = this.#listeners[transport];
            if (listeners.size === 0) continue;
            this.#observe(transport, entry, () => {
              for (const listener of listeners) listener.receive(entry);
            });
          }
        }
      },
      missed: (missed) => {
        for (const listeners of Object.values(this.#listeners))
          for (const listener of listeners) listener.missed?.(missed);
      },
    });
    return true;
  }

  /** Entries tailed from now on, for the clients of `transport`; returns the unsubscribe function. */
  subscribe(transport: PushTransport, listener: FanOutListener): () => void {
    this.#listeners[transport].add(listener);
    return () => this.#listeners[transport].delete(listener);
  }

  /**
   * An SSE stream's entries after `afterId`: first those already in the log (read page by page), then live ones, each exactly once
   * and in order. Live entries arriving during the catch-up wait in a queue and are filtered by id; when that
   * queue passes `maxQueuedBytes`, the listener is dropped and the reader told it `overflowed`, once.
   * When the log trims entries the reader has not read yet, it is told it `fellBehind` instead of missing them.
   * `unsubscribe` also ends the catch-up: a reader that left reads no more pages.
   */
  resume(afterId: string, reader: ResumingReader, limits: ResumeLimits): Resuming {
    return new Resumption(afterId, reader, limits, this.#log, this);
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    for (const listeners of Object.values(this.#listeners)) listeners.clear();
    await this.#tail?.close();
  }
}

/**
 * One stream's catch-up (see `resume`). A class rather than closures over local variables: it lives as long as its
 * connection, and under tsx every named closure also carries a 256-byte property dictionary (esbuild's keepNames
 * redefines its `name`).
 */
class Resumption implements Resuming, FanOutListener {
  readonly caughtUp: Promise<void>;
  #cursor: string;
  #pending: ReplayLogEntry[] | undefined = [];
  #queuedBytes = 0;
  /** The reader left or overflowed: nothing more is read or sent. */
  #stopped = false;
  readonly #reader: ResumingReader;
  readonly #limits: ResumeLimits;
  readonly #unsubscribeLive: () => void;

  constructor(
    afterId: string,
    reader: ResumingReader,
    limits: ResumeLimits,
    log: ReplayLog,
    live: LogFanOut,
  ) {
    this.#cursor = afterId;
    this.#reader = reader;
    this.#limits = limits;
    // Subscribed before reading: whatever is appended meanwhile is either read or queued.
    this.#unsubscribeLive = live.subscribe('sse', this);
    this.caughtUp = this.#catchUp(log, live);
  }

  unsubscribe(): void {
    this.#stopped = true;
    this.#unsubscribeLive();
  }

  /** A live entry: sent once caught up, queued before. */
  receive(entry: ReplayLogEntry): void {
    if (!this.#pending) {
      void this.#send(entry);
      return;
    }
    this.#queuedBytes += entry.data.length;
    this.#pending.push(entry);
    if (this.#queuedBytes > this.#limits.maxQueuedBytes) {
      this.#pending = undefined;
      this.unsubscribe();
      this.#reader.overflowed(this.#queuedBytes);
    }
  }

  /** The live tail lost entries this reader had not had: it is told to reload, and gets what follows. */
  missed(retention: ReplayLogRetention): void {
    if (this.#stopped || compareLogIds(this.#cursor, retention.trimmedThrough) >= 0) return;
    this.#cursor = retention.trimmedThrough;
    void this.#reader.fellBehind(this.#cursor, retention);
  }

  async #catchUp(log: ReplayLog, live: LogFanOut): Promise<void> {
    const pageSize = this.#limits.pageSize ?? DEFAULT_PAGE_SIZE;
    while (!this.#stopped) {
      const page = await log.readAfter(this.#cursor, pageSize);
      // Checked after the read: a cursor not older than what is trimmed now was not trimmed before the read either,
      // so the page follows it without a gap.
      const retention = await log.retention();
      if (this.#stopped) return;
      if (compareLogIds(this.#cursor, retention.trimmedThrough) < 0) {
        this.#cursor = laterLogId(live.position, retention.trimmedThrough);
        await this.#reader.fellBehind(this.#cursor, retention);
        continue;
      }
      for (const entry of page) if (!this.#stopped) await this.#send(entry);
      if (page.length < pageSize) break;
    }
    if (this.#stopped) return;
    const queued = this.#pending ?? [];
    this.#pending = undefined;
    for (const entry of queued) void this.#send(entry);
  }

  /** Each entry once, in order: whatever the catch-up and the live tail both saw is dropped here. */
  #send(entry: ReplayLogEntry): void | Promise<void> {
    if (compareLogIds(entry.id, this.#cursor) <= 0) return;
    this.#cursor = entry.id;
    return this.#reader.deliver(entry);
  }
}
