import type { ServerResponse } from 'node:http';
import type { Connection } from '../connection.ts';
import type { OutgoingMessage } from '../outgoing-message.ts';
import type { HubProtocol, TransferFormat } from '../protocol/hub-protocol.ts';
import type { Transport, WriteBatcher } from './transport.ts';

const FORMATS: readonly TransferFormat[] = ['Text'];

/** Server-Sent Events downstream; upstream arrives by POST. Text only. */
export class ServerSentEventsTransport implements Transport {
  readonly kind = 'ServerSentEvents';
  readonly formats = FORMATS;
  private open = true;
  private corked = false;

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
    if (!this.corked) {
      this.corked = true;
      this.batcher.add(this);
    }
    this.res.write(out.sseEvent(protocol));
  }

  cork(): void {
    this.res.cork();
  }

  uncork(): void {
    this.corked = false;
    this.res.uncork();
  }

  bufferedBytes(): number {
    return this.res.writableLength;
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
