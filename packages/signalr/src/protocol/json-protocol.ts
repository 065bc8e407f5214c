import type { HubProtocol, MessageParser } from './hub-protocol.ts';
import { type HubMessage, MessageType, ProtocolError } from './messages.ts';

export const RECORD_SEPARATOR = 0x1e;
const SEPARATOR_CHAR = '\u001e';

/** Splits a byte stream on the 0x1E record separator, keeping a partial record between chunks. */
class TextRecordReader {
  private remainder: Buffer | undefined;

  constructor(private readonly maxRecordSize: number) {}

  push(chunk: Buffer): Buffer[] {
    const data = this.remainder ? Buffer.concat([this.remainder, chunk]) : chunk;
    const records: Buffer[] = [];
    let start = 0;
    for (let end = data.indexOf(RECORD_SEPARATOR); end !== -1; end = data.indexOf(RECORD_SEPARATOR, start)) {
      if (end - start > this.maxRecordSize) throw tooLarge(this.maxRecordSize);
      records.push(data.subarray(start, end));
      start = end + 1;
    }
    this.remainder = start < data.length ? data.subarray(start) : undefined;
    if (this.remainder && this.remainder.length > this.maxRecordSize) throw tooLarge(this.maxRecordSize);
    return records;
  }
}

export function tooLarge(limit: number): ProtocolError {
  return new ProtocolError(`The maximum message size of ${limit}B was exceeded.`);
}

type Json = Record<string, unknown>;

function requireString(value: unknown, field: string, type: number): string {
  if (typeof value !== 'string' || value === '') {
    throw new ProtocolError(
      `Invalid payload for message type ${type}: '${field}' must be a non-empty string.`,
    );
  }
  return value;
}

function optionalId(value: unknown, type: number): string | undefined {
  return value === undefined || value === null ? undefined : requireString(value, 'invocationId', type);
}

function requireArguments(value: unknown, type: number): unknown[] {
  if (!Array.isArray(value))
    throw new ProtocolError(`Invalid payload for message type ${type}: 'arguments' must be an array.`);
  return value;
}

function optionalStreamIds(value: unknown, type: number): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((id) => typeof id === 'string')) {
    throw new ProtocolError(
      `Invalid payload for message type ${type}: 'streamIds' must be an array of strings.`,
    );
  }
  return value as string[];
}

function requireSequenceId(value: unknown, type: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ProtocolError(
      `Invalid payload for message type ${type}: 'sequenceId' must be a non-negative integer.`,
    );
  }
  return value;
}

/** Validates a decoded JSON record into a hub message; unknown types are a protocol error. */
function toHubMessage(raw: unknown): HubMessage {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ProtocolError('Invalid payload: a message must be a JSON object.');
  }
  const obj = raw as Json;
  const type = obj.type;
  switch (type) {
    case MessageType.Invocation:
      return {
        type,
        invocationId: optionalId(obj.invocationId, type),
        target: requireString(obj.target, 'target', type),
        arguments: requireArguments(obj.arguments, type),
        streamIds: optionalStreamIds(obj.streamIds, type),
      };
    case MessageType.StreamItem:
      return { type, invocationId: requireString(obj.invocationId, 'invocationId', type), item: obj.item };
    case MessageType.Completion: {
      const invocationId = requireString(obj.invocationId, 'invocationId', type);
      if (obj.error !== undefined && obj.error !== null)
        return { type, invocationId, error: String(obj.error) };
      return 'result' in obj ? { type, invocationId, result: obj.result } : { type, invocationId };
    }
    case MessageType.StreamInvocation:
      return {
        type,
        invocationId: requireString(obj.invocationId, 'invocationId', type),
        target: requireString(obj.target, 'target', type),
        arguments: requireArguments(obj.arguments, type),
        streamIds: optionalStreamIds(obj.streamIds, type),
      };
    case MessageType.CancelInvocation:
      return { type, invocationId: requireString(obj.invocationId, 'invocationId', type) };
    case MessageType.Ping:
      return { type };
    case MessageType.Close:
      return {
        type,
        error: typeof obj.error === 'string' ? obj.error : undefined,
        allowReconnect: obj.allowReconnect === true,
      };
    case MessageType.Ack:
    case MessageType.Sequence:
      return { type, sequenceId: requireSequenceId(obj.sequenceId, type) };
    default:
      throw new ProtocolError(`Unknown message type '${String(type)}'.`);
  }
}

/**
 * Writes only the fields the TS client accepts: no `invocationId: null`, no empty `streamIds`, and always an
 * `item` (JSON.stringify would drop an undefined one, and the client rejects a StreamItem without it).
 */
function toJson(message: HubMessage): Json {
  switch (message.type) {
    case MessageType.StreamItem:
      return { type: message.type, invocationId: message.invocationId, item: message.item ?? null };
    case MessageType.Invocation:
    case MessageType.StreamInvocation: {
      const out: Json = { type: message.type, target: message.target, arguments: message.arguments };
      if (message.invocationId !== undefined) out.invocationId = message.invocationId;
      if (message.streamIds && message.streamIds.length > 0) out.streamIds = message.streamIds;
      return out;
    }
    case MessageType.Completion: {
      const out: Json = { type: message.type, invocationId: message.invocationId };
      if (message.error !== undefined) out.error = message.error;
      else if ('result' in message) out.result = message.result ?? null;
      return out;
    }
    case MessageType.Close: {
      const out: Json = { type: message.type };
      if (message.error !== undefined) out.error = message.error;
      if (message.allowReconnect) out.allowReconnect = true;
      return out;
    }
    default:
      return { ...message };
  }
}

class JsonMessageParser implements MessageParser {
  private readonly reader: TextRecordReader;

  constructor(maxMessageSize: number) {
    this.reader = new TextRecordReader(maxMessageSize);
  }

  push(chunk: Buffer): HubMessage[] {
    return this.reader.push(chunk).map((record) => {
      let raw: unknown;
      try {
        raw = JSON.parse(record.toString('utf8'));
      } catch {
        throw new ProtocolError('Invalid payload: a message is not valid JSON.');
      }
      return toHubMessage(raw);
    });
  }
}

/**
 * Bytes as ASP.NET's JSON protocol writes a `byte[]`: a base64 string. Left to JSON.stringify, a Buffer would be
 * `{"type":"Buffer","data":[…]}` and any other Uint8Array an object keyed by index, which no client reads as bytes.
 * `this[key]`: the value before its toJSON, which a Buffer has.
 */
function bytesAsBase64(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const original = this[key];
  if (!(original instanceof Uint8Array)) return value;
  return Buffer.from(original.buffer, original.byteOffset, original.byteLength).toString('base64');
}

export const jsonProtocol: HubProtocol = {
  name: 'json',
  transferFormat: 'Text',
  write: (message) => Buffer.from(JSON.stringify(toJson(message), bytesAsBase64) + SEPARATOR_CHAR, 'utf8'),
  createParser: (maxMessageSize) => new JsonMessageParser(maxMessageSize),
};
