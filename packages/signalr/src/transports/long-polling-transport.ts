import type { ServerResponse } from 'node:http';
import type { OutgoingMessage } from '../outgoing-message.ts';
import type { HubProtocol, TransferFormat } from '../protocol/hub-protocol.ts';
import type { Transport } from './transport.ts';

const FORMATS: readonly TransferFormat[] = ['Text', 'Binary'];
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
  private flushScheduled = false;

  constructor(private readonly pollTimeoutMs: number) {}

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
    if (this.held && !this.flushScheduled) {
      // Answer after this turn so everything sent in it shares one response.
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        if (this.held && this.pendingBytes > 0) this.answer(200);
      });
    }
  }

  bufferedBytes(): number {
    return this.pendingBytes;
  }

  isActive(): boolean {
    return this.held !== undefined;
  }

  /** Flushes what is queued to a held poll (or the next one), after which polls get 204. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.held) this.answer(this.pendingBytes > 0 ? 200 : 204);
  }

  /** DELETE: the client is leaving; a held poll ends with 204 and queued data is dropped. */
  abort(): void {
    this.ended = true;
    this.pending = [];
    this.pendingBytes = 0;
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

  private respondWithPending(res: ServerResponse): void {
    const body =
      this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
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
