import {
  compareLogIds,
  type ReplayLog,
  type ReplayLogEntry,
  type ReplayLogTail,
} from '../../application/ports/replay-log.ts';

export interface ResumeLimits {
  /** Bytes of entry data that may wait in memory while a reader catches up. */
  readonly maxQueuedBytes: number;
  readonly onOverflow: (queuedBytes: number) => void;
  readonly pageSize?: number;
}

export type EntriesListener = (entries: readonly ReplayLogEntry[]) => void;

/**
 * One tail of the replay log per instance, handed to every local client (SSE connections, the hub): a
 * notification appended by any instance reaches the clients of all of them.
 */
export class LogFanOut {
  readonly #log: ReplayLog;
  readonly #listeners = new Set<EntriesListener>();
  #tail: ReplayLogTail | undefined;
  /** The newest entry handed to listeners. */
  #position = '0-0';

  constructor(log: ReplayLog) {
    this.#log = log;
  }

  get position(): string {
    return this.#position;
  }

  async start(): Promise<void> {
    this.#position = (await this.#log.retention()).lastId;
    this.#tail = this.#log.tail(this.#position, (entries) => {
      const last = entries.at(-1);
      if (last) this.#position = last.id;
      for (const listener of this.#listeners) listener(entries);
    });
  }

  /** Entries tailed from now on; returns the unsubscribe function. */
  subscribe(listener: EntriesListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Entries after `afterId`: first those already in the log (read page by page), then live ones, each exactly once
   * and in order. Live entries arriving during the catch-up wait in a queue and are filtered by id; when that
   * queue passes `maxQueuedBytes` (a reader slower than the writers), the listener is dropped and `onOverflow`
   * called, once: the reader should resume later from its last id, out of the log instead of out of memory.
   */
  resume(
    afterId: string,
    deliver: (entry: ReplayLogEntry) => void | Promise<void>,
    { maxQueuedBytes, onOverflow, pageSize = 500 }: ResumeLimits,
  ): { readonly caughtUp: Promise<void>; readonly unsubscribe: () => void } {
    let cursor = afterId;
    let pending: ReplayLogEntry[] | undefined = [];
    let queuedBytes = 0;
    let overflowed = false;
    const send = (entry: ReplayLogEntry) => {
      if (compareLogIds(entry.id, cursor) <= 0) return;
      cursor = entry.id;
      return deliver(entry);
    };
    // Subscribed before reading: whatever is appended meanwhile is either read or queued (or both).
    const unsubscribe = this.subscribe((entries) => {
      if (!pending) {
        for (const entry of entries) void send(entry);
        return;
      }
      for (const entry of entries) queuedBytes += entry.data.length;
      pending.push(...entries);
      if (queuedBytes > maxQueuedBytes) {
        overflowed = true;
        pending = undefined;
        unsubscribe();
        onOverflow(queuedBytes);
      }
    });
    const caughtUp = (async () => {
      while (!overflowed) {
        const page = await this.#log.readAfter(cursor, pageSize);
        for (const entry of page) if (!overflowed) await send(entry);
        if (page.length < pageSize) break;
      }
      if (overflowed) return;
      const queued = pending ?? [];
      pending = undefined;
      for (const entry of queued) void send(entry);
    })();
    return { caughtUp, unsubscribe };
  }

  async stop(): Promise<void> {
    this.#listeners.clear();
    await this.#tail?.close();
  }
}
