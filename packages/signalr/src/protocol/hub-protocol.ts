import type { HubMessage } from './messages.ts';

export type TransferFormat = 'Text' | 'Binary';

/**
 * A hub protocol (JSON or MessagePack). Parsing is incremental: transports deliver arbitrary chunks,
 * and a record split across chunks is kept until its end arrives.
 */
export interface HubProtocol {
  readonly name: 'json' | 'messagepack';
  readonly transferFormat: TransferFormat;
  /** Serializes one message as a whole record (separator or length prefix included). */
  write(message: HubMessage): Buffer;
  createParser(maxMessageSize: number): MessageParser;
}

export interface MessageParser {
  /** Returns every complete message in `chunk` plus any kept remainder; throws ProtocolError on bad input. */
  push(chunk: Buffer): HubMessage[];
}
