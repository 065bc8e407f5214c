import type { HubProtocol } from './protocol/hub-protocol.ts';
import { jsonProtocol } from './protocol/json-protocol.ts';
import type { HubMessage } from './protocol/messages.ts';

const OPCODE_TEXT = 0x1;
const OPCODE_BINARY = 0x2;

/** Builds one unmasked, unfragmented WebSocket frame (server frames are never masked). */
function webSocketFrame(payload: Buffer, binary: boolean): Buffer {
  const length = payload.length;
  const headerLength = length < 126 ? 2 : length < 0x10000 ? 4 : 10;
  const frame = Buffer.allocUnsafe(headerLength + length);
  frame[0] = 0x80 | (binary ? OPCODE_BINARY : OPCODE_TEXT);
  if (length < 126) {
    frame[1] = length;
  } else if (length < 0x10000) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  payload.copy(frame, headerLength);
  return frame;
}

/** Formats text records as one Server-Sent Event: a `data:` line per payload line, then a blank line. */
function sseEvent(payload: Buffer): Buffer {
  const lines = payload.toString('utf8').split('\n');
  const body = lines.map((line) => `data: ${line.endsWith('\r') ? line.slice(0, -1) : line}\r\n`).join('');
  return Buffer.from(body + '\r\n', 'utf8');
}

/**
 * One message on its way to any number of connections. Each encoding (per protocol, framed for
 * WebSockets or SSE) is computed once and shared, so a broadcast costs one serialization per protocol.
 */
export class OutgoingMessage {
  private json: Buffer | undefined;
  private messagepack: Buffer | undefined;
  private wsText: Buffer | undefined;
  private wsBinary: Buffer | undefined;
  private sse: Buffer | undefined;

  private constructor(
    readonly message: HubMessage | undefined,
    private readonly raw: Buffer | undefined,
  ) {}

  static of(message: HubMessage): OutgoingMessage {
    return new OutgoingMessage(message, undefined);
  }

  /** Preformatted bytes (handshake replies, replayed buffers) that are the same for every protocol. */
  static raw(bytes: Buffer): OutgoingMessage {
    return new OutgoingMessage(undefined, bytes);
  }

  bytes(protocol: HubProtocol | undefined): Buffer {
    if (this.raw) return this.raw;
    const message = this.message!;
    if (protocol?.name === 'messagepack') return (this.messagepack ??= protocol.write(message));
    return (this.json ??= (protocol ?? jsonProtocol).write(message));
  }

  /** The WebSocket frame; MessagePack (and its handshake reply) travels in binary frames. */
  webSocketFrame(protocol: HubProtocol | undefined): Buffer {
    if (protocol?.transferFormat === 'Binary') {
      return (this.wsBinary ??= webSocketFrame(this.bytes(protocol), true));
    }
    return (this.wsText ??= webSocketFrame(this.bytes(protocol), false));
  }

  sseEvent(protocol: HubProtocol | undefined): Buffer {
    return (this.sse ??= sseEvent(this.bytes(protocol)));
  }
}
