import type { OutgoingMessage } from '../outgoing-message.ts';
import type { HubProtocol, TransferFormat } from '../protocol/hub-protocol.ts';

export type TransportKind = 'WebSockets' | 'ServerSentEvents' | 'LongPolling';

export const TRANSPORT_KINDS: readonly TransportKind[] = ['WebSockets', 'ServerSentEvents', 'LongPolling'];

/** The connection's view of a transport: it writes whole records and learns about drops via the connection. */
export interface Transport {
  readonly kind: TransportKind;
  readonly formats: readonly TransferFormat[];
  /** Queues whole records; `protocol` is undefined before the handshake (replies are then text). */
  send(out: OutgoingMessage, protocol: HubProtocol | undefined): void;
  /** How far the client lags behind (see SendLag); past `maxBufferedBytes` it is closed as too slow. */
  lagBytes(): number;
  /** While the client has not taken what was sent, a promise for when it has (a stream waits on it). */
  drained(): Promise<void> | undefined;
  /** True while the client is attached: socket open, event stream open, or a poll held. */
  isActive(): boolean;
  /** Ends after queued bytes are out: WS close (1000, or 1011 when `failed`), SSE end, or LP final flush then 204. */
  end(failed?: boolean): void;
}

/**
 * How far a client lags behind, for the slow-client limit: bytes its transport has not handed over, not
 * counting the batch of this event-loop turn, nor the batch flushed when the client had last caught up. A
 * single large message or burst therefore never counts against a client that keeps reading, while what
 * piles up behind it does; a client that stops reading is cut off with at most the limit plus one batch
 * of memory on top of what was in flight.
 */
export class SendLag {
  private batchBytes = 0;
  private leadBytes = 0;

  written(bytes: number): void {
    this.batchBytes += bytes;
  }

  /** As a batch is flushed; `unsent` is what the transport holds, that batch included. */
  flushed(unsent: number): void {
    if (unsent <= this.batchBytes) this.leadBytes = this.batchBytes;
    this.batchBytes = 0;
  }

  bytes(unsent: number): number {
    return Math.max(0, unsent - this.batchBytes - this.leadBytes);
  }
}

/** A socket or HTTP response, as far as waiting for it to drain goes. */
interface Drainable {
  readonly writableNeedDrain: boolean;
  on(event: 'drain' | 'close', listener: () => void): unknown;
  off(event: 'drain' | 'close', listener: () => void): unknown;
}

/** A socket or HTTP response, as far as batched writing goes. */
interface Corkable extends Drainable {
  readonly writableLength: number;
  cork(): void;
  uncork(): void;
  write(chunk: Buffer | string): boolean;
}

/**
 * The writes of a stream transport (WebSocket socket, event-stream response): corked from the first write of an
 * event-loop turn until the batcher flushes them, and counted for the slow-client limit.
 */
export class CorkedWrites {
  private batching = false;
  private readonly lag = new SendLag();

  constructor(
    private readonly stream: Corkable,
    private readonly batcher: WriteBatcher,
  ) {}

  write(chunk: Buffer | string): void {
    if (!this.batching) {
      this.batching = true;
      this.stream.cork();
      this.batcher.add(this);
    }
    const before = this.stream.writableLength;
    this.stream.write(chunk);
    // Measured, not the chunk's length: a chunked response adds its framing.
    this.lag.written(this.stream.writableLength - before);
  }

  flush(): void {
    this.batching = false;
    this.lag.flushed(this.stream.writableLength);
    this.stream.uncork();
  }

  lagBytes(): number {
    return this.lag.bytes(this.stream.writableLength);
  }

  drained(): Promise<void> | undefined {
    return drainOf(this.stream);
  }
}

const draining = new WeakMap<Drainable, Promise<void>>();

/** Once `stream` has handed all it held to the kernel (or is gone); undefined when nothing is held back. */
function drainOf(stream: Drainable): Promise<void> | undefined {
  if (!stream.writableNeedDrain) return undefined;
  let drained = draining.get(stream);
  if (!drained) {
    drained = new Promise((resolve) => {
      const done = (): void => {
        stream.off('drain', done);
        stream.off('close', done);
        draining.delete(stream);
        resolve();
      };
      stream.on('drain', done);
      stream.on('close', done);
    });
    draining.set(stream, drained);
  }
  return drained;
}

/** Longest stretch spent flushing before yielding to the event loop. */
const FLUSH_SLICE_MS = 4;

/**
 * Writes made during one event-loop turn go out together: a transport starts a batch (corks its socket) at
 * its first write and is flushed on setImmediate. A flush that takes longer than a slice yields, so under
 * load the transports still waiting collect the next messages too and send them in one write: fewer
 * syscalls exactly when they cost most.
 */
export class WriteBatcher {
  private pending: { flush(): void }[] = [];
  private next = 0;
  private scheduled = false;

  add(transport: { flush(): void }): void {
    this.pending.push(transport);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    const deadline = performance.now() + FLUSH_SLICE_MS;
    const transports = this.pending;
    let index = this.next;
    while (index < transports.length) {
      transports[index++]!.flush();
      if ((index & 63) === 0 && performance.now() > deadline) break;
    }
    if (index < transports.length) {
      this.next = index;
      setImmediate(this.flush);
      return;
    }
    this.pending = [];
    this.next = 0;
    this.scheduled = false;
  };
}
