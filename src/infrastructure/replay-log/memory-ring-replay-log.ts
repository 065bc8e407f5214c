import {
  EMPTY_LOG_ID,
  NotLogWriterError,
  compareLogIds,
  type AppendResult,
  type NewReplayLogEntry,
  type ReplayLog,
  type ReplayLogEntry,
  type ReplayLogRetention,
  type ReplayLogTail,
  type ReplayLogTailListener,
} from '../../application/ports/replay-log.ts';

export interface MemoryRingReplayLogOptions {
  /** Entries kept; the oldest is dropped past it. */
  readonly maxEntries: number;
}

/**
 * The replay log of the embedded mode (REDIS_URL=memory:, one process): a ring of the newest entries. Ids are
 * stream-style `<ms>-<seq>` like Redis's; everything before this process started counts as trimmed, so a
 * client resuming with an id from an earlier run is told to reload.
 */
export class MemoryRingReplayLog implements ReplayLog {
  readonly #maxEntries: number;
  /** Oldest first; `#start` is the index of the oldest once the ring is full. */
  readonly #ring: ReplayLogEntry[] = [];
  #start = 0;
  /** Message id → log id, for de-duplication; bounded to twice the ring. */
  readonly #appended = new Map<string, string>();
  readonly #tails = new Set<ReplayLogTailListener>();
  #lastMs: number;
  #lastSeq = 0;
  #trimmedThrough: string;
  #writer: { id: string; until: number } | undefined;

  constructor(options: MemoryRingReplayLogOptions) {
    this.#maxEntries = options.maxEntries;
    this.#lastMs = Date.now();
    // The log begins now: an id from an earlier process (a client resuming across a restart) is older.
    this.#trimmedThrough = `${this.#lastMs}-0`;
  }

  async append(entry: NewReplayLogEntry, writerId: string): Promise<AppendResult> {
    if (!this.#holds(writerId)) throw new NotLogWriterError(writerId);
    const earlier = this.#appended.get(entry.messageId);
    if (earlier !== undefined) return { id: earlier, duplicate: true };
    const stored: ReplayLogEntry = { id: this.#nextId(), ...entry };
    if (this.#ring.length < this.#maxEntries) this.#ring.push(stored);
    else {
      const dropped = this.#ring[this.#start];
      if (dropped) this.#trimmedThrough = dropped.id;
      this.#ring[this.#start] = stored;
      this.#start = (this.#start + 1) % this.#maxEntries;
    }
    this.#appended.set(entry.messageId, stored.id);
    if (this.#appended.size > this.#maxEntries * 2) {
      const oldest = this.#appended.keys().next();
      if (!oldest.done) this.#appended.delete(oldest.value);
    }
    for (const tail of this.#tails) tail.entries([stored]);
    return { id: stored.id, duplicate: false };
  }

  async claimWriter(writerId: string, ttlMs: number): Promise<boolean> {
    if (this.#writer && this.#writer.id !== writerId && this.#writer.until > Date.now()) return false;
    this.#writer = { id: writerId, until: Date.now() + ttlMs };
    return true;
  }

  async releaseWriter(writerId: string): Promise<void> {
    if (this.#writer?.id === writerId) this.#writer = undefined;
  }

  async readAfter(afterId: string, limit: number): Promise<readonly ReplayLogEntry[]> {
    return this.#entriesAfter(afterId, limit);
  }

  tail(afterId: string, listener: ReplayLogTailListener): ReplayLogTail {
    // Appends are synchronous here, so entries after `afterId` already in the ring are the only catch-up, and a
    // tail misses entries only when it starts from before the ring.
    if (compareLogIds(afterId, this.#trimmedThrough) < 0) listener.missed(this.#retention());
    const backlog = this.#entriesAfter(afterId, this.#ring.length);
    if (backlog.length > 0) listener.entries(backlog);
    this.#tails.add(listener);
    return { close: async () => void this.#tails.delete(listener) };
  }

  async retention(): Promise<ReplayLogRetention> {
    return this.#retention();
  }

  #retention(): ReplayLogRetention {
    const length = this.#ring.length;
    return {
      firstId: this.#at(0)?.id,
      lastId: this.#at(length - 1)?.id ?? EMPTY_LOG_ID,
      trimmedThrough: this.#trimmedThrough,
      length,
    };
  }

  status() {
    return { connected: true, adapter: 'memory' };
  }

  async close(): Promise<void> {
    this.#tails.clear();
  }

  #holds(writerId: string): boolean {
    return this.#writer?.id === writerId && this.#writer.until > Date.now();
  }

  /** The `index`th entry, oldest first, read in place: copying the ring per read would block for a large one. */
  #at(index: number): ReplayLogEntry | undefined {
    return this.#ring[(this.#start + index) % this.#ring.length];
  }

  #entriesAfter(afterId: string, limit: number): ReplayLogEntry[] {
    // Binary search: ids increase along the ring.
    let low = 0;
    let high = this.#ring.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const entry = this.#at(middle);
      if (entry && compareLogIds(entry.id, afterId) <= 0) low = middle + 1;
      else high = middle;
    }
    const end = Math.min(low + limit, this.#ring.length);
    const entries: ReplayLogEntry[] = [];
    for (let index = low; index < end; index++) entries.push(this.#at(index)!);
    return entries;
  }

  #nextId(): string {
    const now = Date.now();
    if (now > this.#lastMs) {
      this.#lastMs = now;
      this.#lastSeq = 0;
    } else this.#lastSeq++;
    return `${this.#lastMs}-${this.#lastSeq}`;
  }
}
