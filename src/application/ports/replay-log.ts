/**
 * An append-only, bounded log of notifications shared by every notifications instance: the consumer appends,
 * every instance tails it to push to its own clients, and a reconnecting client resumes from its last id.
 * Ids are Redis stream ids (`<ms>-<seq>`), increasing in append order, in both adapters.
 */
export interface ReplayLogEntry {
  readonly id: string;
  /** The message id (CloudEvent id) the entry was appended for: appends are de-duplicated on it. */
  readonly messageId: string;
  readonly type: string;
  /** What the entry is about (the student id). */
  readonly subject: string;
  /** JSON text, sent to clients as is. */
  readonly data: string;
  /** W3C trace context of the append, so the pushes to clients (on any instance) continue its trace. */
  readonly traceparent?: string;
}

export type NewReplayLogEntry = Omit<ReplayLogEntry, 'id'>;

export interface AppendResult {
  readonly id: string;
  /** True when the message id was appended before: nothing was added, `id` is the earlier entry's. */
  readonly duplicate: boolean;
}

export interface ReplayLogRetention {
  /** The oldest entry still kept. */
  readonly firstId: string | undefined;
  /** The newest entry; `0-0` when the log is empty. */
  readonly lastId: string;
  /**
   * A reader whose last id is older than this missed entries: every entry up to it was dropped (retention), or
   * the log began here, after the one that gave out the older ids was lost (a restart without persistence).
   */
  readonly trimmedThrough: string;
  readonly length: number;
}

export interface ReplayLogTail {
  close(): Promise<void>;
}

/** What a tail hands on, in order. */
export interface ReplayLogTailListener {
  /** Entries appended after the tail's position. */
  entries(entries: readonly ReplayLogEntry[]): void;
  /**
   * Entries after the tail's position left the log before it could read them (it was cut off from the log for longer
   * than the log keeps them, or the log was lost): its readers missed them. The entries that follow come after.
   */
  missed(retention: ReplayLogRetention): void;
}

export interface ReplayLogStatus {
  readonly connected: boolean;
  readonly adapter: string;
  /** Why it has not been connected for a while (`connect ECONNREFUSED …`), when known; absent in a brief reconnect. */
  readonly detail?: string;
}

/** Thrown by `append` when `writerId` does not hold the writer lease (another instance took it over). */
export class NotLogWriterError extends Error {
  constructor(writerId: string) {
    super(`${writerId} does not hold the replay log's writer lease`);
    this.name = 'NotLogWriterError';
  }
}

/**
 * Thrown by the log's operations when its store cannot be reached (Redis down, a connection being re-established):
 * an outage to wait out, not a fault. `message` says why in the store's terms (`Redis unreachable: connect
 * ECONNREFUSED …`); the client library's own error is the `cause`.
 */
export class ReplayLogUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ReplayLogUnavailableError';
  }
}

export interface ReplayLog {
  /**
   * Appends unless the message id was appended before (idempotent). Only the holder of the writer lease may
   * append: one writer at a time keeps per-subject order from the queue to the log.
   */
  append(entry: NewReplayLogEntry, writerId: string): Promise<AppendResult>;
  /** Takes or renews the writer lease for `ttlMs`; false while another writer holds it. */
  claimWriter(writerId: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease up (if held by `writerId`) so another instance can take over at once. */
  releaseWriter(writerId: string): Promise<void>;
  /** Up to `limit` entries after `afterId`, oldest first. */
  readAfter(afterId: string, limit: number): Promise<readonly ReplayLogEntry[]>;
  /** Hands every entry appended after `afterId` to `listener`, in order, until closed; or says it missed some. */
  tail(afterId: string, listener: ReplayLogTailListener): ReplayLogTail;
  /**
   * What the log holds. A log that has no entries yet has already begun (`trimmedThrough` names where): the
   * position a reader is given for it is not older than the log once its first entry arrives.
   */
  retention(): Promise<ReplayLogRetention>;
  status(): ReplayLogStatus;
  close(): Promise<void>;
}

const LOG_ID = /^(\d{1,16})-(\d{1,16})$/;

/** Whether `id` is a log id (`<ms>-<seq>`). */
export function isLogId(id: string): boolean {
  return LOG_ID.test(id);
}

/** Orders two log ids; both must be valid (`isLogId`). */
export function compareLogIds(a: string, b: string): number {
  const [, aMs = '0', aSeq = '0'] = LOG_ID.exec(a) ?? [];
  const [, bMs = '0', bSeq = '0'] = LOG_ID.exec(b) ?? [];
  const byMs = BigInt(aMs) - BigInt(bMs);
  if (byMs !== 0n) return byMs < 0n ? -1 : 1;
  const bySeq = BigInt(aSeq) - BigInt(bSeq);
  return bySeq === 0n ? 0 : bySeq < 0n ? -1 : 1;
}

/** The later of two log ids. */
export function laterLogId(a: string, b: string): string {
  return compareLogIds(a, b) >= 0 ? a : b;
}

export const EMPTY_LOG_ID = '0-0';
