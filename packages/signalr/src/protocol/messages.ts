/** Hub message types of the SignalR hub protocol (HubProtocol.md). */
export const MessageType = {
  Invocation: 1,
  StreamItem: 2,
  Completion: 3,
  StreamInvocation: 4,
  CancelInvocation: 5,
  Ping: 6,
  Close: 7,
  Ack: 8,
  Sequence: 9,
} as const;

export interface InvocationMessage {
  readonly type: 1;
  readonly invocationId?: string;
  readonly target: string;
  readonly arguments: readonly unknown[];
  readonly streamIds?: readonly string[];
}

export interface StreamItemMessage {
  readonly type: 2;
  readonly invocationId: string;
  readonly item: unknown;
}

/** `result` absent means a void completion; `error` set means a failed one. */
export interface CompletionMessage {
  readonly type: 3;
  readonly invocationId: string;
  readonly result?: unknown;
  readonly error?: string;
}

export interface StreamInvocationMessage {
  readonly type: 4;
  readonly invocationId: string;
  readonly target: string;
  readonly arguments: readonly unknown[];
  readonly streamIds?: readonly string[];
}

export interface CancelInvocationMessage {
  readonly type: 5;
  readonly invocationId: string;
}

export interface PingMessage {
  readonly type: 6;
}

export interface CloseMessage {
  readonly type: 7;
  readonly error?: string;
  readonly allowReconnect?: boolean;
}

export interface AckMessage {
  readonly type: 8;
  readonly sequenceId: number;
}

export interface SequenceMessage {
  readonly type: 9;
  readonly sequenceId: number;
}

export type HubMessage =
  | InvocationMessage
  | StreamItemMessage
  | CompletionMessage
  | StreamInvocationMessage
  | CancelInvocationMessage
  | PingMessage
  | CloseMessage
  | AckMessage
  | SequenceMessage;

/** Types 1–5 are numbered and buffered by stateful reconnect; the others are not. */
export function isTrackable(message: HubMessage): boolean {
  return message.type <= MessageType.CancelInvocation;
}

/** Thrown by parsers for input that breaks the protocol; the connection is closed with its message. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}
