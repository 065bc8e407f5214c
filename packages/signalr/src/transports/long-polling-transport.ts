import type { ServerResponse } from 'node:http';
import type { OutgoingMessage } from '../outgoing-message.ts';
import type { HubProtocol, TransferFormat } from '../protocol/hub-protocol.ts';
import { SendLag, type Transport, type WriteBatcher } from './transport.ts';

const FORMATS: readonly TransferFormat[] = ['Text', 'Binary'];
/** Pending bytes past which a server stream waits for a poll to take them. */
const POLL_WORTH = 64 * 1024;
const NO_CACHE = { 'Cache-Control': 'no-cache, no-store', Pragma: 'no-cache', Expires: '0' };

/**
 * Long polling: records queue up until a poll takes them all. The first poll is answered at once and
 * empty (the client sends its handshake only then); after the end, the next poll gets 204.
 */
export class LongPollingTransport implements Transport {
  readonly kind = 'LongPolling';
  readonly formats = FORMATS;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private held: { readonly res: ServerResponse; readonly timer: NodeJS.Timeout } | undefined;
  private polled = false;
  private ended = false;
  private batching = false;
  private readonly lag = new SendLag();
  /** Resolved when a poll takes what is pending, or at the end. */
  private taken: { readonly promise: Promise<void>; readonly resolve: () => void } | undefined;

  constructor(
    private readonly pollTimeoutMs: number,
    private readonly batcher: WriteBatcher,
  ) {}

  /** Serves a GET; returns true when this poll was the final one (204), so the connection can be forgotten. */
  poll(res: ServerResponse): boolean {
    if (this.held) this.answer(204);
    if (!this.polled) {
      this.polled = true;
      respond(res, 200);
      return false;
    }
    if (this.pendingBytes > 0) {
      this.respondWithPending(res);
      return false;
    }
    if (this.ended) {
      respond(res, 204);
      return true;
    }
    const timer = setTimeout(() => this.answer(200), this.pollTimeoutMs);
    this.held = { res, timer };
    res.on('close', () => {
      if (this.held?.res !== res) return;
      clearTimeout(timer);
      this.held = undefined;
    });
    return false;
  }

  send(out: OutgoingMessage, protocol: HubProtocol | undefined): void {
    if (this.ended) return;
    const bytes = out.bytes(protocol);
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    this.lag.written(bytes.length);
    if (!this.batching) {
      this.batching = true;
      this.batcher.add(this);
    }
  }

  /** After the turn, so that everything sent in it shares one response. */
  flush(): void {
    this.batching = false;
    this.lag.flushed(this.pendingBytes);
    if (this.held && this.pendingBytes > 0) this.answer(200);
  }

  lagBytes(): number {
    return this.lag.bytes(this.pendingBytes);
  }

  drained(): Promise<void> | undefined {
    if (this.pendingBytes < POLL_WORTH || this.ended) return undefined;
    if (!this.taken) {
      let resolve!: () => void;
      const promise = new Promise<void>((done) => (resolve = done));
      this.taken = { promise, resolve };
    }
    return this.taken.promise;
  }

  isActive(): boolean {
    return this.held !== undefined;
  }

  /** Flushes what is queued to a held poll (or the next one), after which polls get 204. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.releaseTaken();
    if (this.held) this.answer(this.pendingBytes > 0 ? 200 : 204);
  }

  /** DELETE: the client is leaving; a held poll ends with 204 and queued data is dropped. */
  abort(): void {
    this.ended = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.releaseTaken();
    if (this.held) this.answer(204);
  }

  private answer(status: 200 | 204): void {
    const held = this.held;
    if (!held) return;
    clearTimeout(held.timer);
    this.held = undefined;
    if (status === 200 && this.pendingBytes > 0) this.respondWithPending(held.res);
    else respond(held.res, status);
  }

  private releaseTaken(): void {
    this.taken?.resolve();
    this.taken = undefined;
  }

  private respondWithPending(res: ServerResponse): void {
    const body =
      this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.releaseTaken();
    res.writeHead(200, {
      ...NO_CACHE,
      'Content-Type': 'application/octet-stream',
      'Content-Length': body.length,
    });
    res.end(body);
  }
}

function respond(res: ServerResponse, status: number): void {
  res.writeHead(status, { ...NO_CACHE, 'Content-Length': 0 });
  res.end();
}
