import type { ServerResponse } from 'node:http';
import type { Connection } from '../connection.ts';
import type { OutgoingMessage } from '../outgoing-message.ts';
import type { HubProtocol, TransferFormat } from '../protocol/hub-protocol.ts';
import { CorkedWrites, type Transport, type WriteBatcher } from './transport.ts';

const FORMATS: readonly TransferFormat[] = ['Text'];

/** Server-Sent Events downstream; upstream arrives by POST. Text only. */
export class ServerSentEventsTransport implements Transport {
  readonly kind = 'ServerSentEvents';
  readonly formats = FORMATS;
  private open = true;
  private readonly writes: CorkedWrites;

  constructor(
    private readonly res: ServerResponse,
    batcher: WriteBatcher,
    connection: Connection,
  ) {
    this.writes = new CorkedWrites(res, batcher);
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
    this.writes.write(out.sseEvent(protocol));
  }

  lagBytes(): number {
    return this.writes.lagBytes();
  }

  drained(): Promise<void> | undefined {
    return this.writes.drained();
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
