import type { ServerResponse } from 'node:http';
import type { Connection } from '../connection.ts';
import type { OutgoingMessage } from '../outgoing-message.ts';
import type { HubProtocol, TransferFormat } from '../protocol/hub-protocol.ts';
import { drainOf, SendLag, type Transport, type WriteBatcher } from './transport.ts';

const FORMATS: readonly TransferFormat[] = ['Text'];

/** Server-Sent Events downstream; upstream arrives by POST. Text only. */
export class ServerSentEventsTransport implements Transport {
  readonly kind = 'ServerSentEvents';
  readonly formats = FORMATS;
  private open = true;
  private batching = false;
  private readonly lag = new SendLag();

  constructor(
    private readonly res: ServerResponse,
    private readonly batcher: WriteBatcher,
    connection: Connection,
  ) {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      'X-Accel-Buffering': 'no',
    });
    res.flushHeaders();
    // Browsers fire `open` only once data arrives; a comment line gets them there at once.
    res.write(':\r\n');
    res.on('close', () => {
      this.open = false;
      connection.transportClosed(this);
    });
  }

  send(out: OutgoingMessage, protocol: HubProtocol | undefined): void {
    if (!this.open) return;
    const event = out.sseEvent(protocol);
    if (!this.batching) {
      this.batching = true;
      this.res.cork();
      this.batcher.add(this);
    }
    const before = this.res.writableLength;
    this.res.write(event);
    this.lag.written(this.res.writableLength - before); // chunked encoding adds its framing
  }

  flush(): void {
    this.batching = false;
    this.lag.flushed(this.res.writableLength);
    this.res.uncork();
  }

  lagBytes(): number {
    return this.lag.bytes(this.res.writableLength);
  }

  drained(): Promise<void> | undefined {
    return drainOf(this.res);
  }

  isActive(): boolean {
    return this.open;
  }

  end(): void {
    if (!this.open) return;
    this.open = false;
    this.res.end();
  }
}
