import { Decoder, Encoder } from '@msgpack/msgpack';
import type { HubProtocol, MessageParser } from './hub-protocol.ts';
import { tooLarge } from './json-protocol.ts';
import { type HubMessage, MessageType, ProtocolError } from './messages.ts';

const ERROR_RESULT = 1;
const VOID_RESULT = 2;
const NON_VOID_RESULT = 3;
const MAX_LENGTH_PREFIX_BYTES = 5;

const encoder = new Encoder();
const decoder = new Decoder();
const EMPTY_HEADERS = {};

/** Prefixes a MessagePack body with its VarInt length (7 bits a byte, least significant group first). */
function frameBinary(body: Uint8Array): Buffer {
  const prefix: number[] = [];
  let length = body.byteLength;
  do {
    let byte = length & 0x7f;
    length >>>= 7;
    if (length > 0) byte |= 0x80;
    prefix.push(byte);
  } while (length > 0);
  const out = Buffer.allocUnsafe(prefix.length + body.byteLength);
  out.set(prefix, 0);
  out.set(body, prefix.length);
  return out;
}

function encode(message: HubMessage): unknown[] {
  switch (message.type) {
    case MessageType.Invocation:
    case MessageType.StreamInvocation: {
      const out: unknown[] = [
        message.type,
        EMPTY_HEADERS,
        message.invocationId ?? null,
        message.target,
        message.arguments,
      ];
      if (message.streamIds && message.streamIds.length > 0) out.push(message.streamIds);
      return out;
    }
    case MessageType.StreamItem:
      return [message.type, EMPTY_HEADERS, message.invocationId, message.item];
    case MessageType.Completion:
      if (message.error !== undefined) {
        return [message.type, EMPTY_HEADERS, message.invocationId, ERROR_RESULT, message.error];
      }
      if (message.result === undefined)
        return [message.type, EMPTY_HEADERS, message.invocationId, VOID_RESULT];
      return [message.type, EMPTY_HEADERS, message.invocationId, NON_VOID_RESULT, message.result];
    case MessageType.CancelInvocation:
      return [message.type, EMPTY_HEADERS, message.invocationId];
    case MessageType.Ping:
      return [message.type];
    case MessageType.Close:
      return [message.type, message.error ?? null, message.allowReconnect === true];
    case MessageType.Ack:
    case MessageType.Sequence:
      return [message.type, message.sequenceId];
  }
}

function invalid(type: unknown): ProtocolError {
  return new ProtocolError(`Invalid payload for message type ${String(type)}.`);
}

function str(value: unknown, type: number): string {
  if (typeof value !== 'string' || value === '') throw invalid(type);
  return value;
}

function args(value: unknown, type: number): unknown[] {
  if (!Array.isArray(value)) throw invalid(type);
  return value;
}

function streamIds(value: unknown, type: number): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((id) => typeof id === 'string')) throw invalid(type);
  return value as string[];
}

function seq(value: unknown, type: number): number {
  const id = typeof value === 'bigint' ? Number(value) : value;
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) throw invalid(type);
  return id;
}

/** Maps a decoded array to a hub message; headers (index 1 of types 1–5) are ignored. */
function fromArray(raw: unknown): HubMessage {
  if (!Array.isArray(raw) || raw.length === 0) throw new ProtocolError('Invalid payload: expected an array.');
  const type: unknown = raw[0];
  const need = (count: number): void => {
    if (raw.length < count) throw invalid(type);
  };
  switch (type) {
    case MessageType.Invocation:
      need(5);
      return {
        type,
        invocationId: raw[2] === null || raw[2] === undefined ? undefined : str(raw[2], type),
        target: str(raw[3], type),
        arguments: args(raw[4], type),
        streamIds: streamIds(raw[5], type),
      };
    case MessageType.StreamItem:
      need(4);
      return { type, invocationId: str(raw[2], type), item: raw[3] };
    case MessageType.Completion: {
      need(4);
      const invocationId = str(raw[2], type);
      const kind: unknown = raw[3];
      if (kind === VOID_RESULT) return { type, invocationId };
      need(5);
      if (kind === ERROR_RESULT) return { type, invocationId, error: String(raw[4]) };
      if (kind === NON_VOID_RESULT) return { type, invocationId, result: raw[4] };
      throw invalid(type);
    }
    case MessageType.StreamInvocation:
      need(5);
      return {
        type,
        invocationId: str(raw[2], type),
        target: str(raw[3], type),
        arguments: args(raw[4], type),
        streamIds: streamIds(raw[5], type),
      };
    case MessageType.CancelInvocation:
      need(3);
      return { type, invocationId: str(raw[2], type) };
    case MessageType.Ping:
      return { type };
    case MessageType.Close:
      return {
        type,
        error: typeof raw[1] === 'string' ? raw[1] : undefined,
        allowReconnect: raw[2] === true,
      };
    case MessageType.Ack:
    case MessageType.Sequence:
      need(2);
      return { type, sequenceId: seq(raw[1], type) };
    default:
      throw new ProtocolError(`Unknown message type '${String(type)}'.`);
  }
}

/** Reads VarInt-length-prefixed MessagePack records from a byte stream. */
class MessagePackParser implements MessageParser {
  private remainder: Buffer | undefined;

  constructor(private readonly maxMessageSize: number) {}

  push(chunk: Buffer): HubMessage[] {
    const data = this.remainder ? Buffer.concat([this.remainder, chunk]) : chunk;
    const messages: HubMessage[] = [];
    let offset = 0;
    while (offset < data.length) {
      let length = 0;
      let prefixBytes = 0;
      let complete = false;
      while (offset + prefixBytes < data.length && prefixBytes < MAX_LENGTH_PREFIX_BYTES) {
        const byte = data[offset + prefixBytes]!;
        length += (byte & 0x7f) * 2 ** (prefixBytes * 7);
        prefixBytes++;
        if ((byte & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        if (prefixBytes >= MAX_LENGTH_PREFIX_BYTES)
          throw new ProtocolError('Messages bigger than 2GB are not supported.');
        break;
      }
      if (length > this.maxMessageSize) throw tooLarge(this.maxMessageSize);
      const start = offset + prefixBytes;
      if (start + length > data.length) break;
      let raw: unknown;
      try {
        raw = decoder.decode(data.subarray(start, start + length));
      } catch {
        throw new ProtocolError('Invalid payload: a message is not valid MessagePack.');
      }
      messages.push(fromArray(raw));
      offset = start + length;
    }
    this.remainder = offset < data.length ? data.subarray(offset) : undefined;
    return messages;
  }
}

export const messagePackProtocol: HubProtocol = {
  name: 'messagepack',
  transferFormat: 'Binary',
  write: (message) => frameBinary(encoder.encode(encode(message))),
  createParser: (maxMessageSize) => new MessagePackParser(maxMessageSize),
};
