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
  /** Bytes accepted but not yet handed to the kernel; bounded by `maxBufferedBytes`. */
  bufferedBytes(): number;
  /** True while the client is attached: socket open, event stream open, or a poll held. */
  isActive(): boolean;
  /** Ends after queued bytes are out: WS close (1000, or 1011 when `failed`), SSE end, or LP final flush then 204. */
  end(failed?: boolean): void;
}

/** Longest stretch spent uncorking before yielding to the event loop. */
const FLUSH_SLICE_MS = 4;

/**
 * Writes made during one event-loop turn go out together: each stream is corked once and uncorked on
 * setImmediate. A flush that takes longer than a slice yields, so under load the streams still waiting
 * collect the next messages too and send them in one write: fewer syscalls exactly when they cost most.
 */
export class WriteBatcher {
  private pending: { uncork(): void }[] = [];
  private next = 0;
  private scheduled = false;

  add(stream: { cork(): void; uncork(): void }): void {
    stream.cork();
    this.pending.push(stream);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    const deadline = performance.now() + FLUSH_SLICE_MS;
    const streams = this.pending;
    let index = this.next;
    while (index < streams.length) {
      streams[index++]!.uncork();
      if ((index & 63) === 0 && performance.now() > deadline) break;
    }
    if (index < streams.length) {
      this.next = index;
      setImmediate(this.flush);
      return;
    }
    this.pending = [];
    this.next = 0;
    this.scheduled = false;
  };
}
