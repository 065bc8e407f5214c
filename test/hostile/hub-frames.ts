// Generators of broken SignalR traffic: handshakes, JSON records and MessagePack frames, each with fields of the
// wrong type, unknown message types, wrong or missing record separators and sizes past the limit. See
// packages/signalr/test/protocol-errors.test.ts for the hand-written cases these go beyond.
import { Encoder } from '@msgpack/msgpack';
import fc from 'fast-check';
import {
  hostileString,
  jsonText,
  jsonTree,
  treeWithPollution,
  type JsonEntry,
  type JsonTree,
} from './arbitraries.ts';

export const RS = '\u001e';
// Writes bigints as 64-bit integers, which the server's decoder reads back as (lossy) numbers.
const encoder = new Encoder({ useBigInt64: true });
export const encode = (value: unknown): Buffer => Buffer.from(encoder.encode(value));
/** The hub's default maximum message size (HubServerOptions.maxMessageSize). */
export const MAX_MESSAGE_SIZE = 32 * 1024;

const optional = (key: string, value: fc.Arbitrary<JsonTree>): fc.Arbitrary<JsonEntry[]> =>
  fc
    .option(value, { nil: undefined })
    .map((tree) => (tree === undefined ? [] : [[key, tree, false] as const]));

const number = (n: number): JsonTree => ({ number: String(n) });

/** Targets: the hub's methods in any case, names it does not have, and names every object has. */
export const target: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('JoinGroup', 'LeaveGroup', 'joingroup', 'LEAVEGROUP'),
  fc.constantFrom('Connected', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', ''),
  hostileString,
);

/** Group names: the ones the service sends to, and anything else JSON can carry. */
export const groupArgument: fc.Arbitrary<JsonTree> = fc.oneof(
  fc.constantFrom<JsonTree>('Students', 'student:00000000-0000-7000-8000-000000000000'),
  hostileString,
  jsonTree,
);

/** A JSON hub message: well-formed or not, of a known type or not, with fields of any type. */
export const jsonHubRecord: fc.Arbitrary<JsonTree> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(
        optional('type', fc.oneof(fc.constantFrom(1, 4).map(number), jsonTree)),
        optional('target', fc.oneof(target, jsonTree)),
        optional('arguments', fc.oneof(fc.array(groupArgument, { maxLength: 3 }), jsonTree)),
        optional('invocationId', fc.oneof(fc.string({ maxLength: 8 }), jsonTree)),
        optional('streamIds', fc.oneof(fc.array(fc.string({ maxLength: 4 }), { maxLength: 2 }), jsonTree)),
      )
      .map((parts) => ({ entries: parts.flat() })),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.integer({ min: -1, max: 12 }).map((type) => [['type', number(type), false] as const]),
        optional('invocationId', fc.oneof(fc.string({ maxLength: 8 }), jsonTree)),
        optional('item', jsonTree),
        optional('result', jsonTree),
        optional('error', jsonTree),
        optional('sequenceId', fc.oneof(fc.integer({ min: -2, max: 10 }).map(number), jsonTree)),
        optional('allowReconnect', jsonTree),
      )
      .map((parts) => ({ entries: parts.flat() })),
  },
  { weight: 1, arbitrary: jsonTree },
  { weight: 1, arbitrary: treeWithPollution },
);

export interface TextFrame {
  readonly text: string;
  /** Ends with a record separator: the server has everything it needs to decide. */
  readonly complete: boolean;
}

/** One or more JSON records, separated right or wrong, sometimes cut short or past the size limit. */
export const jsonHubFrame: fc.Arbitrary<TextFrame> = fc
  .tuple(
    fc.array(jsonHubRecord.map(jsonText), { minLength: 1, maxLength: 3 }),
    fc.constantFrom(RS, RS, RS, '\n', '\u001f', '', `${RS}${RS}`),
    fc.oneof(
      { weight: 6, arbitrary: fc.constant('') },
      { weight: 1, arbitrary: fc.constant(`{"type":6,"pad":"${'x'.repeat(MAX_MESSAGE_SIZE)}"}${RS}`) },
      {
        weight: 1,
        arbitrary: fc.constant(
          `{"type":1,"target":"JoinGroup","arguments":["${'y'.repeat(MAX_MESSAGE_SIZE)}`,
        ),
      },
    ),
  )
  .map(([records, separator, tail]) => {
    const text = records.join(separator) + separator + tail;
    return { text, complete: text.endsWith(RS) };
  });

/** Handshake requests: right, wrong, for the other protocol, of another version, not JSON, not an object. */
export const handshake: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '{"protocol":"json","version":1}',
    '{"protocol":"json","version":2}',
    '{"protocol":"messagepack","version":1}',
    '{"protocol":"json","version":0}',
    '{"protocol":"json","version":1.5}',
    '{"protocol":"json","version":"1"}',
    '{"protocol":"JSON","version":1}',
    '{"protocol":"xml","version":1}',
    '{"protocol":"json"}',
    '{"version":1}',
    '{"protocol":"json","version":1,"__proto__":{"polluted":"yes"}}',
    '{"protocol":"json","version":1e400}',
    'null',
    '[]',
    '',
  ),
  jsonTree.map(jsonText),
  treeWithPollution.map(jsonText),
  hostileString,
);

/** A handshake and what follows it in the same write: a separator, or not, then maybe records. */
export const handshakeFrame: fc.Arbitrary<TextFrame> = fc
  .tuple(handshake, fc.constantFrom(RS, RS, '', '\n'), fc.option(jsonHubFrame, { nil: undefined }))
  .map(([request, separator, rest]) => {
    const text = `${request}${separator}${rest?.text ?? ''}`;
    return { text, complete: text.includes(RS) };
  });

/** MessagePack values of every kind the decoder knows, including maps with prototype keys. */
const msgpackValue: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constantFrom(null, undefined, true, false, 0, -1, 2 ** 53, 2 ** 64, -(2 ** 63), 1.5, Number.NaN),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
    hostileString,
    fc.uint8Array({ maxLength: 16 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc
      .array(
        fc.tuple(
          fc.oneof(fc.constantFrom('__proto__', 'constructor', 'target'), hostileString),
          tie('value'),
        ),
        {
          maxLength: 3,
        },
      )
      .map((entries) => new Map(entries)),
  ),
})).value;

/** A MessagePack hub message as an array: type first, then fields of the right shape or not. */
export const msgpackHubMessage: fc.Arbitrary<unknown> = fc.oneof(
  fc
    .tuple(
      fc.constantFrom(1, 4),
      fc.oneof(fc.constant({}), msgpackValue),
      fc.oneof(fc.constant(null), fc.string({ maxLength: 8 }), msgpackValue),
      fc.oneof(target, msgpackValue),
      fc.oneof(fc.array(fc.oneof(fc.constant('Students'), msgpackValue), { maxLength: 3 }), msgpackValue),
    )
    .chain((fields) => fc.integer({ min: 1, max: fields.length }).map((length) => fields.slice(0, length))),
  fc
    .tuple(fc.integer({ min: -1, max: 12 }), fc.array(msgpackValue, { maxLength: 5 }))
    .map(([type, rest]) => [type, ...rest]),
  msgpackValue,
);

export function varint(length: number): number[] {
  const bytes: number[] = [];
  do {
    let byte = length & 0x7f;
    length >>>= 7;
    if (length > 0) byte |= 0x80;
    bytes.push(byte);
  } while (length > 0);
  return bytes;
}

export interface BinaryFrame {
  readonly bytes: Buffer;
  /** Every length prefix matches its body: the server has everything it needs to decide. */
  readonly complete: boolean;
}

/** MessagePack frames: right length prefixes around wrong messages, wrong prefixes, truncated, or random bytes. */
export const msgpackHubFrame: fc.Arbitrary<BinaryFrame> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.array(msgpackHubMessage, { minLength: 1, maxLength: 3 }).map((messages) => {
      const bodies = messages.map(encode);
      return {
        bytes: Buffer.concat(bodies.map((body) => Buffer.concat([Buffer.from(varint(body.length)), body]))),
        complete: true,
      };
    }),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(msgpackHubMessage, fc.integer({ min: -5, max: 5 })).map(([message, skew]) => {
      const body = encode(message);
      return {
        bytes: Buffer.concat([Buffer.from(varint(Math.max(0, body.length + skew))), body]),
        complete: skew <= 0,
      };
    }),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      // A prefix claiming more than 2 GB, one past the size limit, and five continuation bytes.
      { bytes: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), complete: true },
      { bytes: Buffer.from([...varint(MAX_MESSAGE_SIZE + 1), 0x91, 0x06]), complete: true },
      { bytes: Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), complete: true },
      { bytes: Buffer.from([0x00]), complete: true },
    ),
  },
  {
    weight: 1,
    arbitrary: fc
      .uint8Array({ minLength: 1, maxLength: 64 })
      .map((bytes) => ({ bytes: Buffer.from(bytes), complete: false })),
  },
);

export type HandshakeVerdict = 'accepted' | 'rejected' | 'incomplete';

/**
 * The handshake rules, restated: JSON up to the first record separator, naming `json` or `messagepack` (the
 * latter only where the transport carries binary) with an integer version 1 or 2; waiting for the separator
 * stops at the maximum message size.
 */
export function handshakeVerdict(bytes: Buffer, binaryTransport: boolean): HandshakeVerdict {
  const end = bytes.indexOf(0x1e);
  if (end === -1) return bytes.length > MAX_MESSAGE_SIZE ? 'rejected' : 'incomplete';
  let request: unknown;
  try {
    request = JSON.parse(bytes.subarray(0, end).toString('utf8'));
  } catch {
    return 'rejected';
  }
  const { protocol, version } = (request ?? {}) as { protocol?: unknown; version?: unknown };
  const known = protocol === 'json' || (protocol === 'messagepack' && binaryTransport);
  return known && (version === 1 || version === 2) ? 'accepted' : 'rejected';
}
