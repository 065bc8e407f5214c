import type { HubProtocol, TransferFormat } from './hub-protocol.ts';
import { RECORD_SEPARATOR } from './json-protocol.ts';
import { messagePackProtocol } from './messagepack-protocol.ts';
import { jsonProtocol } from './json-protocol.ts';

const protocols: readonly HubProtocol[] = [jsonProtocol, messagePackProtocol];
/** Version 2 is how the 10.x and 11.x clients signal stateful reconnect; anything newer is unknown. */
const MAX_VERSION = 2;

export type HandshakeOutcome =
  | { readonly kind: 'incomplete' }
  | {
      readonly kind: 'accepted';
      readonly protocol: HubProtocol;
      readonly version: number;
      readonly rest: Buffer;
    }
  | { readonly kind: 'rejected'; readonly error: string };

export const HANDSHAKE_OK = Buffer.from('{}\u001e', 'utf8');

export function handshakeError(error: string): Buffer {
  return Buffer.from(JSON.stringify({ error }) + '\u001e', 'utf8');
}

/** Reads the handshake request (always JSON + 0x1E) at the start of `data`. */
export function readHandshake(data: Buffer, transportFormats: readonly TransferFormat[]): HandshakeOutcome {
  const end = data.indexOf(RECORD_SEPARATOR);
  if (end === -1) return { kind: 'incomplete' };
  let request: unknown;
  try {
    request = JSON.parse(data.subarray(0, end).toString('utf8'));
  } catch {
    return { kind: 'rejected', error: 'Handshake request is not valid JSON.' };
  }
  const { protocol: name, version } = (request ?? {}) as { protocol?: unknown; version?: unknown };
  if (typeof name !== 'string' || typeof version !== 'number' || !Number.isInteger(version)) {
    return { kind: 'rejected', error: 'Handshake request must have a protocol name and an integer version.' };
  }
  const protocol = protocols.find((candidate) => candidate.name === name);
  if (!protocol) return { kind: 'rejected', error: `The protocol '${name}' is not supported.` };
  if (version < 1 || version > MAX_VERSION) {
    return {
      kind: 'rejected',
      error: `The server does not support version ${version} of the '${name}' protocol.`,
    };
  }
  if (!transportFormats.includes(protocol.transferFormat)) {
    return {
      kind: 'rejected',
      error: `Cannot use the '${name}' protocol on the current transport. The transport does not support '${protocol.transferFormat}' transfer format.`,
    };
  }
  return { kind: 'accepted', protocol, version, rest: data.subarray(end + 1) };
}
