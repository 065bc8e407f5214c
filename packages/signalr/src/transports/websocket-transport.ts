import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { Connection } from '../connection.ts';
import type { OutgoingMessage } from '../outgoing-message.ts';
import type { HubProtocol, TransferFormat } from '../protocol/hub-protocol.ts';
import { CorkedWrites, type Transport, type WriteBatcher } from './transport.ts';

const FORMATS: readonly TransferFormat[] = ['Text', 'Binary'];

/**
 * WebSockets. `ws` reads frames and runs the close handshake; data frames are written straight to the
 * socket, prebuilt once per message and protocol, so a broadcast costs one socket write per client.
 */
export class WebSocketTransport implements Transport {
  readonly kind = 'WebSockets';
  readonly formats = FORMATS;
  private open = true;
  private readonly writes: CorkedWrites;

  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
    batcher: WriteBatcher,
    connection: Connection,
  ) {
    this.writes = new CorkedWrites(socket, batcher);
    // Once ended (or replaced by a resumed socket), late frames must not reach the connection.
    ws.on('message', (data: Buffer) => {
      if (!this.open) return;
      const resumed = connection.receive(data);
      if (resumed && !ws.isPaused) {
        // An upload is full: read nothing more until its method takes items (frames ws already read still come).
        ws.pause();
        void resumed.then(() => ws.resume());
      }
    });
    ws.on('error', () => undefined);
    ws.on('close', () => {
      this.open = false;
      connection.transportClosed(this);
    });
  }

  send(out: OutgoingMessage, protocol: HubProtocol | undefined): void {
    if (!this.open || this.socket.destroyed) return;
    this.writes.write(out.webSocketFrame(protocol));
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

  end(failed = false): void {
    if (!this.open) return;
    this.open = false;
    this.ws.close(failed ? 1011 : 1000);
  }
}
