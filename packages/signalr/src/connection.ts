import { HubError } from './errors.ts';
import type { HubCallContext, HubMethod, HubStreamMethod, HubUser } from './hub.ts';
import { OutgoingMessage } from './outgoing-message.ts';
import { HANDSHAKE_OK, handshakeError, readHandshake } from './protocol/handshake.ts';
import type { HubProtocol, MessageParser } from './protocol/hub-protocol.ts';
import {
  type CompletionMessage,
  type HubMessage,
  type InvocationMessage,
  MessageType,
  ProtocolError,
  type StreamInvocationMessage,
} from './protocol/messages.ts';
import { StatefulBuffer } from './stateful-buffer.ts';
import { UploadStream } from './upload-stream.ts';
import type { Transport, TransportKind } from './transports/transport.ts';

export interface ConnectionLimits {
  readonly keepAliveIntervalMs: number;
  readonly clientTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly disconnectTimeoutMs: number;
  readonly maxMessageSize: number;
  readonly maxBufferedBytes: number;
  readonly statefulReconnectBufferSize: number;
}

/** A declared hub method; a `streaming` one serves StreamInvocations only, the others Invocations only. */
export interface HubMethodEntry {
  readonly invoke: HubMethod | HubStreamMethod;
  readonly streaming: boolean;
}

/** What a connection needs from the server that owns it. */
export interface ConnectionHost {
  readonly limits: ConnectionLimits;
  /** A coarse clock, advanced on the server's tick. */
  now(): number;
  findMethod(name: string): HubMethodEntry | undefined;
  /** The context of a hub call; `signal` defaults to the connection's. */
  contextFor(connection: Connection, signal?: AbortSignal): HubCallContext;
  /** Its first transport attached: the client is there (a negotiate alone may never be followed up). */
  attached(connection: Connection): void;
  /** The handshake succeeded: the connection can now be addressed; runs the connected hook. */
  connected(connection: Connection): Promise<void>;
  /** The connection ended for good: unregister it and run the disconnected hook. */
  disconnected(connection: Connection, error: Error | undefined): void;
  /** An exception from app code (hub method or hook) that the client only sees as a generic text. */
  reportError(error: unknown, connection: Connection, target: string | undefined): void;
}

export type ConnectionState = 'handshake' | 'connected' | 'closed';

const GENERIC_CLOSE_ERROR = 'Connection closed with an error.';
const SLOW_CLIENT_ERROR = 'The client did not keep up with its messages.';
/** Several of a reading client's Ack periods (about a second each). */
const ACK_STALL_MS = 5_000;
const IDLE: Promise<void> = Promise.resolve();
/**
 * Hub calls that may wait behind the running one before the connection stops reading from the client. ASP.NET's read
 * loop awaits a free invocation slot (MaximumParallelInvocationsPerClient = 1), so the transport stops reading; without
 * a bound, one client could queue invocations of a slow method until the process runs out of memory.
 */
const MAX_QUEUED_CALLS = 16;
/**
 * While a call awaits a client result, reading goes on past MAX_QUEUED_CALLS (the Completion may be behind the calls
 * that wait); a client that queues this many meanwhile, owing the result, is closed rather than let fill the memory.
 */
const MAX_QUEUED_CALLS_AWAITING_RESULT = 1_024;
const QUEUE_OVERFLOW_ERROR = 'Too many hub calls queued while the server awaited a client result.';

interface PausedReading {
  inbox: HubMessage[];
  readonly resumed: Promise<void>;
  readonly resume: () => void;
}

/** A server-to-client stream, registered before its method runs so that an early CancelInvocation is not lost. */
interface ServerStream {
  readonly target: string;
  iterator: AsyncIterator<unknown> | undefined;
  cancelled: boolean;
  /** The method's `context.signal`: aborted on CancelInvocation and when the connection ends. */
  readonly abort: AbortController;
  /** Set while the stream waits for its next item; a cancel ends that wait without the generator. */
  interrupt: (() => void) | undefined;
}

/** A client result awaited: settled by the client's Completion, or rejected when the connection ends. */
interface PendingResult {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** One logical SignalR connection: handshake, message dispatch, keep-alive and (optionally) stateful resume. */
export class Connection {
  state: ConnectionState = 'handshake';
  transport: Transport | undefined;
  transportKind: TransportKind | undefined;
  protocol: HubProtocol | undefined;
  /** Groups this connection belongs to; allocated on first join to keep idle connections small. */
  groups: Set<string> | undefined;
  closedAt = 0;
  private parser: MessageParser | undefined;
  private handshakeBytes: Buffer | undefined;
  private stateful: StatefulBuffer | undefined;
  /**
   * The TS client counts messages only once its start() continues after the handshake, so records in the
   * same read as the handshake reply would be uncounted and later replayed twice. Stateful connections
   * therefore hold trackable sends until the client's first message (its initial Ping) shows it is ready.
   */
  private clientCounting = true;
  private attachedAt = 0;
  private lastSentAt = 0;
  private lastReceivedAt = 0;
  private inactiveSince = 0;
  private clientTimeoutArmed = false;
  private busy = 0;
  private closing = false;
  private queue: Promise<void> = IDLE;
  private serverStreams: Map<string, ServerStream> | undefined;
  private clientResults: Map<string, PendingResult> | undefined;
  private lastClientResultId = 0;
  private uploads: Map<string, UploadStream> | undefined;
  /**
   * Set while an upload's buffer is full: ASP.NET's read loop awaits the upload, so messages read meanwhile
   * wait here, in order, and the transports stop reading until `resumed`.
   */
  private pausedReading: PausedReading | undefined;
  /** Stateful sends waiting, in order, for Acks to free buffer space; shared messages, so cheap to hold. */
  private held: OutgoingMessage[] | undefined;
  private heldBytes = 0;
  private heldSince = 0;
  /** Streams waiting for `held` to empty or a resumed socket; made on first wait, settled by `wakeStreams`. */
  private room: { readonly promise: Promise<void>; readonly resolve: () => void } | undefined;
  /** Aborted when the connection ends; made on first use, so idle connections carry none. */
  private ended: AbortController | undefined;
  /**
   * Set while the connected hook runs. Calls that run beside the queue (streams, calls with uploads) wait for it,
   * as ASP.NET dispatches no message before OnConnectedAsync has finished (and none if it failed).
   */
  private connecting: Promise<void> | undefined;
  /** The connected hook failed: no call of the client runs, not even one queued behind the hook. */
  private refused = false;

  constructor(
    private readonly host: ConnectionHost,
    readonly id: string,
    readonly token: string,
    readonly user: HubUser | undefined,
    /** Negotiate agreed to stateful reconnect; the handshake version decides whether it is used. */
    private readonly statefulAllowed: boolean,
    /** The `admit` hook's, called when the connection ends. */
    private readonly release?: () => void,
  ) {
    this.inactiveSince = host.now();
  }

  /** Attaches the first transport, or a new WebSocket resuming a stateful connection. */
  attach(transport: Transport): void {
    const now = this.host.now();
    const previous = this.transport;
    this.transport = transport;
    previous?.end(); // a resume replaces a socket we still think is open; its close is then ignored
    this.transportKind = transport.kind;
    this.inactiveSince = 0;
    this.lastReceivedAt = now;
    if (this.attachedAt === 0) {
      this.attachedAt = now;
      this.host.attached(this);
      return;
    }
    const resume = this.stateful?.resume();
    if (!resume) return;
    if (this.held) this.heldSince = now; // no Ack could come while the socket was gone
    this.clientCounting = true; // the replay below already carries everything held back
    this.write(OutgoingMessage.of({ type: MessageType.Sequence, sequenceId: resume.sequenceId }));
    for (const record of resume.records) this.write(OutgoingMessage.raw(record));
    this.wakeStreams();
  }

  /** Aborted when the connection ends: the `context.signal` of invocations and hooks. */
  get signal(): AbortSignal {
    if (!this.ended) {
      this.ended = new AbortController();
      if (this.state === 'closed') this.ended.abort();
    }
    return this.ended.signal;
  }

  isClosed(): boolean {
    return this.state === 'closed';
  }

  /**
   * A stateful WebSocket connection can be resumed on the same token, even while its socket looks open:
   * the client resumes only once that socket is dead to it (half-open here), and ASP.NET replaces it too.
   */
  canResume(): boolean {
    return this.state === 'connected' && this.stateful !== undefined;
  }

  /** A long poll arrived: the client is there, even if no poll is held when the tick looks (polls answered at once). */
  polled(): void {
    this.inactiveSince = 0;
  }

  /** Called by the transport when its socket or stream is gone. */
  transportClosed(transport: Transport, error?: Error): void {
    if (transport !== this.transport) return;
    this.transport = undefined;
    if (this.state === 'closed') return;
    if (this.stateful && this.state === 'connected') {
      this.inactiveSince = this.host.now();
      return;
    }
    this.dispose(error);
  }

  /**
   * Takes bytes from the client. Returns a promise while an upload's buffer is full: the transport reads
   * nothing more (WebSocket paused, POST held) until it resolves, which keeps memory bounded.
   */
  receive(chunk: Buffer): Promise<void> | undefined {
    if (this.state === 'closed') return undefined;
    this.lastReceivedAt = this.host.now();
    try {
      if (this.state === 'handshake') {
        const rest = this.handshake(chunk);
        if (!rest || rest.length === 0) return undefined;
        chunk = rest;
      }
      const messages = this.parser!.push(chunk);
      if (this.pausedReading) {
        this.pausedReading.inbox = this.pausedReading.inbox.concat(messages);
      } else {
        const rest = this.deliver(messages);
        if (rest) this.pauseReading(rest);
      }
    } catch (error) {
      this.rejectInput(error);
    }
    return this.pausedReading?.resumed;
  }

  /** Sends a trackable hub message (invocation, stream item, completion). */
  send(out: OutgoingMessage): void {
    if (this.state !== 'connected') return;
    try {
      if (this.stateful) {
        // Past the buffer limit, sends wait (in order) for Acks to free space, as ASP.NET's MessageBuffer does.
        if (this.held || !this.stateful.hasRoom()) {
          if (!this.held) {
            this.held = [];
            this.heldSince = this.host.now();
          }
          this.held.push(out);
          // Counted for tick(): a broadcast storm piles up on a client that acks nothing meanwhile.
          this.heldBytes += out.bytes(this.protocol).byteLength;
          return;
        }
        this.stateful.push(out.bytes(this.protocol));
      }
      if (this.transport && this.clientCounting) this.write(out);
    } catch (error) {
      // A value the protocol cannot serialize (a BigInt, a cycle): ASP.NET's WriteCore ends only this connection.
      this.host.reportError(error, this, undefined);
      this.close(GENERIC_CLOSE_ERROR, true);
    }
  }

  /**
   * While the client cannot take more, a promise for when that may have changed (a stream waits on it, then
   * asks again): sends held for Acks, a stateful connection without a socket, or a socket not drained yet.
   * As ASP.NET's stream awaits each write (MessageBuffer waits for Acks, the pipe for its flush).
   */
  drained(): Promise<void> | undefined {
    if (this.state === 'closed') return undefined;
    if (this.held || (this.stateful && !this.transport)) {
      if (!this.room) {
        let resolve!: () => void;
        const promise = new Promise<void>((settle) => (resolve = settle));
        this.room = { promise, resolve };
      }
      return this.room.promise;
    }
    return this.transport?.drained();
  }

  /**
   * Invokes a client handler and resolves with its result (the client answers with a Completion). Once `signal`
   * aborts, it rejects with the signal's reason and forgets the call: an answer after that is ignored.
   */
  invokeClient(target: string, args: readonly unknown[], signal?: AbortSignal): Promise<unknown> {
    if (this.state !== 'connected') return Promise.reject(new Error('The connection is not connected.'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const invocationId = `s${++this.lastClientResultId}`;
    const result = new Promise<unknown>((resolve, reject) => {
      const results = (this.clientResults ??= new Map());
      if (!signal) {
        results.set(invocationId, { resolve, reject });
        return;
      }
      const abandon = () => {
        if (this.clientResults?.delete(invocationId)) reject(signal.reason);
      };
      signal.addEventListener('abort', abandon, { once: true });
      const settled = () => signal.removeEventListener('abort', abandon);
      results.set(invocationId, {
        resolve: (value: unknown) => {
          settled();
          resolve(value);
        },
        reject: (error: Error) => {
          settled();
          reject(error);
        },
      });
    });
    this.send(OutgoingMessage.of({ type: MessageType.Invocation, invocationId, target, arguments: args }));
    // Reading may have stopped behind a full queue: the client's answer must get through.
    if (this.pausedReading) queueMicrotask(() => this.resumeReading());
    return result;
  }

  /** Sends Close (when the handshake is done), ends the transport and disposes the connection. */
  close(error?: string, allowReconnect = false): void {
    if (this.state === 'closed' || this.closing) return;
    this.closing = true;
    if (this.state === 'connected' && this.transport) {
      this.write(OutgoingMessage.of({ type: MessageType.Close, error, allowReconnect }));
    }
    this.transport?.end(error !== undefined);
    this.dispose(error === undefined ? undefined : new Error(error));
  }

  /** Timers, driven by the server's tick: handshake, inactivity, keep-alive, client timeout, acks. */
  tick(now: number): void {
    if (this.state === 'closed') return;
    const limits = this.host.limits;
    const active = this.transport?.isActive() === true;
    if (!active) {
      if (this.inactiveSince === 0) this.inactiveSince = now;
      if (now - this.inactiveSince >= limits.disconnectTimeoutMs) {
        this.transport?.end();
        this.dispose(undefined);
      }
      return;
    }
    this.inactiveSince = 0;
    if (this.state === 'handshake') {
      if (now - this.attachedAt >= limits.handshakeTimeoutMs) this.rejectHandshake('Handshake was canceled.');
      return;
    }
    // The client timeout waits only while reading is paused (a full upload or call queue), as ASP.NET's waits while
    // its read loop is held; a running call does not stop the reading, so a live client's pings still get here.
    const reading = this.pausedReading === undefined;
    if (this.clientTimeoutArmed && reading && now - this.lastReceivedAt >= limits.clientTimeoutMs) {
      this.close(GENERIC_CLOSE_ERROR, true);
      return;
    }
    // A live client acks within about a second; one that frees no space for this long is as good as gone.
    if (this.held && now - this.heldSince >= limits.clientTimeoutMs) {
      this.close('The stateful reconnect buffer is full.', true);
      return;
    }
    // More waits for it than an unread socket may hold, and its Acks have freed nothing for a while: not keeping up.
    // Not at once: a healthy client takes a burst of any size, acking as it reads.
    if (this.held && this.heldBytes > limits.maxBufferedBytes && now - this.heldSince >= ACK_STALL_MS) {
      this.close(SLOW_CLIENT_ERROR, true);
      return;
    }
    const ack = this.stateful?.takeAck();
    if (ack !== undefined) this.write(OutgoingMessage.of({ type: MessageType.Ack, sequenceId: ack }));
    if (this.transportKind !== 'LongPolling' && now - this.lastSentAt >= limits.keepAliveIntervalMs) {
      this.write(PING);
    }
  }

  private write(out: OutgoingMessage): void {
    const transport = this.transport!;
    transport.send(out, this.protocol);
    this.lastSentAt = this.host.now();
    if (transport.lagBytes() > this.host.limits.maxBufferedBytes && !this.closing) {
      // Messages pile up behind what the client has not taken: dropping it protects memory and everyone else.
      // A slow network is no reason to give up on the client: it may reconnect, as after other server closes.
      this.close(SLOW_CLIENT_ERROR, true);
    }
  }

  /** Consumes the handshake; returns the bytes after it, or undefined while it is incomplete. */
  private handshake(chunk: Buffer): Buffer | undefined {
    const data = this.handshakeBytes ? Buffer.concat([this.handshakeBytes, chunk]) : chunk;
    this.handshakeBytes = undefined;
    const outcome = readHandshake(data, this.transport?.formats ?? []);
    if (outcome.kind === 'incomplete') {
      if (data.length > this.host.limits.maxMessageSize) {
        this.rejectHandshake('The handshake request exceeds the maximum message size.');
      } else {
        this.handshakeBytes = data;
      }
      return undefined;
    }
    if (outcome.kind === 'rejected') {
      this.rejectHandshake(outcome.error);
      return undefined;
    }
    this.protocol = outcome.protocol;
    this.parser = outcome.protocol.createParser(this.host.limits.maxMessageSize);
    if (this.statefulAllowed && outcome.version >= 2 && this.transportKind === 'WebSockets') {
      this.stateful = new StatefulBuffer(this.host.limits.statefulReconnectBufferSize);
      this.clientCounting = false;
    }
    this.write(OutgoingMessage.raw(HANDSHAKE_OK));
    this.state = 'connected';
    let hookDone!: () => void;
    this.connecting = new Promise<void>((resolve) => (hookDone = resolve));
    this.enqueue(async () => {
      try {
        await this.host.connected(this);
      } catch (error) {
        this.refused = true;
        this.host.reportError(error, this, undefined);
        this.close(
          error instanceof HubError
            ? `${GENERIC_CLOSE_ERROR} HubException: ${error.message}`
            : GENERIC_CLOSE_ERROR,
        );
      } finally {
        this.connecting = undefined;
        hookDone();
      }
    });
    return outcome.rest;
  }

  private rejectHandshake(error: string): void {
    if (this.transport) this.write(OutgoingMessage.raw(handshakeError(error)));
    this.transport?.end();
    this.dispose(new Error(error));
  }

  /** Handles messages in order; returns those left behind an item that filled its upload's buffer. */
  private deliver(messages: readonly HubMessage[]): HubMessage[] | undefined {
    for (let index = 0; index < messages.length; index++) {
      const message = messages[index]!;
      this.handle(message);
      if (this.isClosed()) return undefined;
      if (message.type === MessageType.StreamItem && this.uploads?.get(message.invocationId)?.isFull()) {
        return messages.slice(index + 1);
      }
      if (this.busy > MAX_QUEUED_CALLS_AWAITING_RESULT) {
        this.close(QUEUE_OVERFLOW_ERROR);
        return undefined;
      }
      if (this.queueFull()) return messages.slice(index + 1);
    }
    return undefined;
  }

  private pauseReading(inbox: HubMessage[]): void {
    let resume!: () => void;
    const resumed = new Promise<void>((resolve) => (resume = resolve));
    this.pausedReading = { inbox, resumed, resume };
  }

  /** An upload's reader made room: handle what waited, until an upload is full again. */
  private resumeReading(): void {
    const paused = this.pausedReading;
    if (!paused || this.isClosed()) return;
    for (const upload of this.uploads?.values() ?? []) if (upload.isFull()) return;
    if (this.queueFull()) return;
    this.lastReceivedAt = this.host.now();
    let rest: HubMessage[] | undefined;
    try {
      rest = this.deliver(paused.inbox);
    } catch (error) {
      this.rejectInput(error);
    }
    if (rest) {
      paused.inbox = rest;
      return;
    }
    this.pausedReading = undefined;
    paused.resume();
  }

  private rejectInput(error: unknown): void {
    this.close(error instanceof ProtocolError ? error.message : GENERIC_CLOSE_ERROR);
  }

  private handle(message: HubMessage): void {
    if (!this.clientCounting && this.transport) {
      this.clientCounting = true;
      for (const record of this.stateful!.unacked()) this.write(OutgoingMessage.raw(record));
    }
    if (this.stateful && !this.stateful.accept(message)) return;
    switch (message.type) {
      case MessageType.Invocation: {
        const uploads = this.openUploads(message);
        // An upload lasts as long as the client likes: such calls run alongside the queue, as in ASP.NET.
        if (uploads.length > 0) this.detach(this.invoke(message, uploads));
        else this.enqueue(() => this.invoke(message, uploads));
        return;
      }
      case MessageType.StreamInvocation:
        this.detach(this.stream(message, this.openUploads(message)));
        return;
      case MessageType.CancelInvocation: {
        const stream = this.serverStreams?.get(message.invocationId);
        if (!stream) return;
        this.serverStreams!.delete(message.invocationId);
        this.cancelStream(stream);
        return;
      }
      case MessageType.Ping:
        this.clientTimeoutArmed = true;
        return;
      case MessageType.Close:
        this.transport?.end();
        this.dispose(message.error === undefined ? undefined : new Error(message.error));
        return;
      case MessageType.Ack:
        if (this.stateful?.ack(message.sequenceId)) this.releaseHeld();
        return;
      case MessageType.Sequence:
        if (!this.stateful?.resetInbound(message.sequenceId)) {
          throw new ProtocolError('Sequence ID greater than amount of messages we have received.');
        }
        return;
      case MessageType.StreamItem:
        this.uploads?.get(message.invocationId)?.push(message.item);
        return;
      case MessageType.Completion: {
        const upload = this.uploads?.get(message.invocationId);
        if (upload) {
          this.uploads!.delete(message.invocationId);
          upload.complete(message.error === undefined ? undefined : new Error(message.error));
          return;
        }
        const pending = this.clientResults?.get(message.invocationId);
        if (!pending) return;
        this.clientResults!.delete(message.invocationId);
        if (message.error !== undefined) pending.reject(new Error(message.error));
        else pending.resolve(message.result);
        return;
      }
    }
  }

  /** Sends what an Ack made room for; the rest is held again, with a fresh wait. */
  private releaseHeld(): void {
    const held = this.held;
    if (!held) return;
    this.held = undefined;
    this.heldBytes = 0;
    for (const out of held) this.send(out);
    if (!this.held) this.wakeStreams();
  }

  /** Streams waiting in `drained()` look again: room was freed, a socket resumed, a stream or the connection ended. */
  private wakeStreams(): void {
    const room = this.room;
    if (!room) return;
    this.room = undefined;
    room.resolve();
  }

  /**
   * Too many hub calls wait: reading stops until the queue drains. Not while the server awaits a client result: its
   * Completion may be behind the calls that wait, and the running call (which awaits it) would never end.
   */
  private queueFull(): boolean {
    return this.busy > MAX_QUEUED_CALLS && !this.clientResults?.size;
  }

  /** ASP.NET runs one hub call at a time per connection; so do we. */
  private enqueue(work: () => Promise<void>): void {
    this.busy++;
    this.queue = this.queue
      .then(work)
      .catch(this.reportEscaped)
      .finally(() => {
        // An idle connection shares one settled promise instead of keeping its last chain link.
        if (--this.busy === 0) this.queue = IDLE;
        this.lastReceivedAt = this.host.now();
        // Reading stopped while too many calls waited: the queue has room again.
        if (this.pausedReading && !this.queueFull()) this.resumeReading();
      });
  }

  /** Work that runs beside the read loop; whatever escapes it is reported, never an unhandled rejection. */
  private detach(task: Promise<void>): void {
    task.catch(this.reportEscaped);
  }

  private readonly reportEscaped = (error: unknown): void => this.host.reportError(error, this, undefined);

  private invocationError(target: string, error: unknown): string {
    return this.errorText(`An unexpected error occurred invoking '${target}' on the server.`, target, error);
  }

  /** ASP.NET's texts: errors meant for the client (HubError) are appended, others stay generic and are reported. */
  private errorText(text: string, target: string, error: unknown): string {
    if (error instanceof HubError) return `${text} HubException: ${error.message}`;
    this.host.reportError(error, this, target);
    return text;
  }

  private complete(message: CompletionMessage): void {
    this.send(OutgoingMessage.of(message));
  }

  /** Resolves the method, checks the arguments and the kind of call; returns an error text when it cannot be made. */
  private bind(message: InvocationMessage | StreamInvocationMessage): HubMethodEntry['invoke'] | string {
    const { target } = message;
    const method = this.host.findMethod(target);
    // ASP.NET's binder fails on an unknown name (GetParameterTypes throws HubException) before the dispatcher runs.
    if (!method) return `${bindingFailure(target)} HubException: Method does not exist.`;
    const streamCount = message.streamIds?.length ?? 0;
    if (message.arguments.length + streamCount !== Math.max(0, method.invoke.length - 1)) {
      return bindingFailure(target);
    }
    if (method.streaming !== (message.type === MessageType.StreamInvocation)) {
      return method.streaming
        ? `The client attempted to invoke the streaming '${target}' method with a non-streaming invocation.`
        : `The client attempted to invoke the non-streaming '${target}' method with a streaming invocation.`;
    }
    return method.invoke;
  }

  /** Opened when the invocation arrives: its items may come before the call gets its turn. */
  private openUploads(message: InvocationMessage | StreamInvocationMessage): UploadStream[] {
    return (message.streamIds ?? []).map((streamId) => {
      const upload = new UploadStream(() => this.resumeReading());
      (this.uploads ??= new Map()).set(streamId, upload);
      return upload;
    });
  }

  /** Calls the method; upload streams (one per stream id) follow the client's arguments. */
  private async call(
    method: HubMethodEntry['invoke'],
    message: InvocationMessage | StreamInvocationMessage,
    uploads: readonly UploadStream[],
    signal?: AbortSignal,
  ): Promise<unknown> {
    const invoke = method as (context: HubCallContext, ...rest: unknown[]) => unknown;
    return invoke(this.host.contextFor(this, signal), ...message.arguments, ...uploads);
  }

  private async invoke(message: InvocationMessage, uploads: readonly UploadStream[]): Promise<void> {
    const { invocationId, target } = message;
    const fail = (error: string): void => {
      if (invocationId !== undefined) this.complete({ type: MessageType.Completion, invocationId, error });
    };
    if (this.connecting) await this.connecting;
    if (this.refused) return this.endUploads(message);
    const method = this.bind(message);
    if (typeof method === 'string') {
      this.endUploads(message);
      return fail(method);
    }
    let result: unknown;
    try {
      result = await this.call(method, message, uploads);
    } catch (error) {
      return fail(this.invocationError(target, error));
    } finally {
      this.endUploads(message);
    }
    if (invocationId !== undefined) {
      this.complete({ type: MessageType.Completion, invocationId, result: result ?? null });
    }
  }

  /** Server-to-client streaming: StreamItems, then a Completion (also after a CancelInvocation). */
  private async stream(message: StreamInvocationMessage, uploads: readonly UploadStream[]): Promise<void> {
    const { invocationId, target } = message;
    const fail = (error: string): void =>
      this.complete({ type: MessageType.Completion, invocationId, error });
    // As ASP.NET: taking the id over would leave the stream that has it running, and no CancelInvocation could stop it.
    if (this.serverStreams?.has(invocationId)) {
      fail(`Invocation ID '${invocationId}' is already in use.`);
      return this.endUploads(message);
    }
    // Registered before the method runs, as ASP.NET does: a cancel may arrive while it is still starting (or while
    // the connected hook runs).
    const stream: ServerStream = {
      target,
      iterator: undefined,
      cancelled: false,
      abort: new AbortController(),
      interrupt: undefined,
    };
    (this.serverStreams ??= new Map()).set(invocationId, stream);
    try {
      if (this.connecting) await this.connecting;
      // Cancelled meanwhile, or the connection ended (its hook failed): the method never runs.
      if (stream.cancelled) return this.complete({ type: MessageType.Completion, invocationId });
      const method = this.bind(message);
      if (typeof method === 'string') return fail(method);
      try {
        const result = await this.call(method, message, uploads, stream.abort.signal);
        stream.iterator = (result as AsyncIterable<unknown>)[Symbol.asyncIterator]();
      } catch (error) {
        return fail(this.invocationError(target, error));
      }
      if (stream.cancelled) this.endIterator(stream);
      while (!stream.cancelled) {
        const next = await this.nextItem(stream, stream.iterator);
        if (next === undefined || next.done || stream.cancelled) break;
        this.send(OutgoingMessage.of({ type: MessageType.StreamItem, invocationId, item: next.value }));
        // As ASP.NET awaits each write: a client that reads (or acks) slowly slows its stream down, and is not closed.
        for (let wait = this.drained(); wait && !stream.cancelled; wait = this.drained()) await wait;
      }
      this.complete({ type: MessageType.Completion, invocationId });
    } catch (error) {
      // Thrown while iterating, not by the method itself: ASP.NET's StreamAsync words it differently.
      fail(this.errorText('An error occurred on the server while streaming results.', target, error));
    } finally {
      if (this.serverStreams?.get(invocationId) === stream) this.serverStreams.delete(invocationId);
      this.endUploads(message);
    }
  }

  /**
   * The call is over: its uploads end and take no more items, as ASP.NET's CleanupInvocation completes them,
   * and reading that a full one held resumes.
   */
  private endUploads(message: InvocationMessage | StreamInvocationMessage): void {
    if (!message.streamIds) return;
    for (const streamId of message.streamIds) {
      this.uploads?.get(streamId)?.complete();
      this.uploads?.delete(streamId);
    }
    this.resumeReading();
  }

  /**
   * The stream's next item, or undefined once it is cancelled: a generator waiting for an event that never
   * comes must not hold back the Completion. What it throws after that (its answer to the signal) is no failure.
   */
  private nextItem(
    stream: ServerStream,
    iterator: AsyncIterator<unknown>,
  ): Promise<IteratorResult<unknown> | undefined> {
    const pending = iterator.next();
    return new Promise((resolve, reject) => {
      const interrupt = (): void => {
        resolve(undefined);
        pending.catch((error: unknown) => {
          if (error !== stream.abort.signal.reason && (error as Error | undefined)?.name !== 'AbortError') {
            this.host.reportError(error, this, stream.target);
          }
        });
      };
      stream.interrupt = interrupt;
      // Settles a few microtasks late, possibly after the next item's wait began: clear only this one.
      pending.then(resolve, reject).finally(() => {
        if (stream.interrupt === interrupt) stream.interrupt = undefined;
      });
    });
  }

  private cancelStream(stream: ServerStream): void {
    stream.cancelled = true;
    stream.abort.abort();
    stream.interrupt?.();
    this.wakeStreams(); // one waiting for room completes now; the others wait again
    this.endIterator(stream);
  }

  /** Runs the stream's cleanup (its `finally`); what that throws goes to the host, never unhandled. */
  private endIterator({ iterator, target }: ServerStream): void {
    if (!iterator?.return) return;
    Promise.resolve()
      .then(() => iterator.return!())
      .catch((error: unknown) => this.host.reportError(error, this, target));
  }

  private dispose(error: Error | undefined): void {
    if (this.state === 'closed') return;
    const wasConnected = this.state === 'connected';
    this.state = 'closed';
    this.closedAt = this.host.now();
    // At once, not after the hub calls still queued: the slot is free as soon as the connection is gone.
    this.release?.();
    this.ended?.abort();
    if (this.serverStreams) {
      for (const stream of this.serverStreams.values()) this.cancelStream(stream);
      this.serverStreams.clear();
    }
    if (this.uploads) {
      for (const upload of this.uploads.values()) upload.complete(new Error('The connection ended.'));
      this.uploads = undefined;
    }
    if (this.clientResults) {
      for (const pending of this.clientResults.values()) pending.reject(new Error('The connection ended.'));
      this.clientResults = undefined;
    }
    this.held = undefined;
    this.wakeStreams();
    // Transports waiting to read go on, and find the connection closed.
    this.pausedReading?.resume();
    this.pausedReading = undefined;
    if (wasConnected) {
      // Disconnect after queued hub calls, so onDisconnected never overtakes onConnected.
      this.enqueue(async () => this.host.disconnected(this, error));
    } else {
      this.host.disconnected(this, error);
    }
  }
}

const PING = OutgoingMessage.of({ type: MessageType.Ping });

function bindingFailure(target: string): string {
  return `Failed to invoke '${target}' due to an error on the server.`;
}
