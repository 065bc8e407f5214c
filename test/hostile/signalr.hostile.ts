// The notifications hub over WebSockets under broken SignalR traffic: generated handshakes, JSON records and
// MessagePack frames (split across WebSocket frames at random points), and calls of the hub's methods with
// arguments of every type. After each input the connection either still works (a probe invocation completes) or
// was closed with a reason; the server never stalls, and a client connected throughout keeps getting notifications.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { Decoder } from '@msgpack/msgpack';
import fc from 'fast-check';
import { WebSocket } from 'ws';
import { createNotifications, type Notifications } from '../../src/apps/notifications/main.ts';
import { parseConfig } from '../../src/config.ts';
import { InProcessMessageBus } from '../../src/infrastructure/messaging/in-process-message-bus.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import { silentLogger } from '../support/logger.ts';
import { hubClient, notificationMessage } from '../notifications/support.ts';
import { until } from '../support/until.ts';
import { hasOwnKeyDeep, jsonText } from './arbitraries.ts';
import { checkAlive } from './http-client.ts';
import {
  encode,
  groupArgument,
  handshakeFrame,
  handshakeVerdict,
  jsonHubFrame,
  MAX_MESSAGE_SIZE,
  msgpackHubFrame,
  RS,
  varint,
} from './hub-frames.ts';
import { countCrash, countStoredFromInvalid, property } from './tally.ts';

const DECIDE_MS = 5_000;
const PROBE_ID = 'probe';
const decoder = new Decoder();

type Outcome = { readonly kind: 'completion'; readonly record: unknown } | { readonly kind: 'closed' };

/** A bare WebSocket on the hub that records what the server says, as JSON records or MessagePack messages. */
class RawHubSocket {
  readonly messages: unknown[] = [];
  readonly closed: Promise<number>;
  isClosed = false;
  private text = '';
  private binary = Buffer.alloc(0);
  private handshaken = false;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => this.receive(data, isBinary));
    this.closed = new Promise((resolve) =>
      ws.on('close', (code: number) => {
        this.isClosed = true;
        resolve(code);
      }),
    );
    ws.on('error', () => undefined);
  }

  static async open(hubUrl: string): Promise<RawHubSocket> {
    const ws = new WebSocket(hubUrl.replace(/^http/u, 'ws'));
    await once(ws, 'open', { signal: AbortSignal.timeout(DECIDE_MS) });
    return new RawHubSocket(ws);
  }

  /** The handshake answer (`{}` or `{"error":…}`) is text; after it, MessagePack connections speak binary. */
  private receive(data: Buffer, isBinary: boolean): void {
    if (!isBinary || !this.handshaken) {
      this.text += data.toString('utf8');
      const records = this.text.split(RS);
      this.text = records.pop() ?? '';
      for (const record of records) {
        this.handshaken = true;
        this.messages.push(JSON.parse(record));
      }
      return;
    }
    this.binary = Buffer.concat([this.binary, data]);
    for (;;) {
      let length = 0;
      let shift = 0;
      let offset = 0;
      let byte: number;
      do {
        if (offset >= this.binary.length) return;
        byte = this.binary[offset++]!;
        length |= (byte & 0x7f) << shift;
        shift += 7;
      } while (byte & 0x80);
      if (this.binary.length < offset + length) return;
      this.messages.push(decoder.decode(this.binary.subarray(offset, offset + length)));
      this.binary = this.binary.subarray(offset + length);
    }
  }

  /**
   * Sends one WebSocket message, or two split at `splitAt` (a record arriving in pieces). Text is split between
   * characters: a text frame must be valid UTF-8, or `ws` closes the socket (1007) before the hub sees it.
   */
  send(data: Buffer | string, splitAt?: number): void {
    const units = typeof data === 'string' ? [...data] : [...data.values()];
    const at = splitAt === undefined ? 0 : splitAt % (units.length + 1);
    const pieces = at > 0 && at < units.length ? [units.slice(0, at), units.slice(at)] : [units];
    for (const piece of pieces)
      this.ws.send(typeof data === 'string' ? (piece as string[]).join('') : Buffer.from(piece as number[]), {
        binary: typeof data !== 'string',
      });
  }

  /** Waits for the first message matching `predicate`, or for the connection to close. */
  async until(predicate: (message: unknown) => boolean, ms = DECIDE_MS): Promise<Outcome | undefined> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.messages.find(predicate);
      if (found !== undefined) return { kind: 'completion', record: found };
      if (this.isClosed) return { kind: 'closed' };
      if (Date.now() > deadline) return undefined;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** The close code, or undefined while the connection is still open after `ms`. */
  closedWithin(ms: number): Promise<number | undefined> {
    return Promise.race([
      this.closed,
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms)),
    ]);
  }

  close(): void {
    this.ws.terminate();
  }
}

const isJsonCompletion = (id: string) => (message: unknown) =>
  (message as { type?: unknown; invocationId?: unknown }).type === 3 &&
  (message as { invocationId?: unknown }).invocationId === id;

const isMsgpackCompletion = (id: string) => (message: unknown) =>
  Array.isArray(message) && message[0] === 3 && message[2] === id;

const isClose = (message: unknown) =>
  (message as { type?: unknown }).type === 7 || (Array.isArray(message) && message[0] === 7);

const JSON_PROBE = `${JSON.stringify({ type: 1, invocationId: PROBE_ID, target: 'JoinGroup', arguments: ['Students'] })}${RS}`;
const MSGPACK_PROBE = (() => {
  const body = encode([1, {}, PROBE_ID, 'JoinGroup', ['Students']]);
  return Buffer.concat([Buffer.from(varint(body.length)), body]);
})();

export function describeSignalRHostility(): void {
  describe('SignalR hub under broken frames', () => {
    const bus = new InProcessMessageBus();
    const replayLog = new MemoryRingReplayLog({ maxEntries: 100 });
    const config = parseConfig({ NOTIFICATIONS_PORT: '0', LOG_LEVEL: 'silent' });
    let notifications: Notifications;
    let url: string;
    let hubUrl: string;
    /** A client connected through every test: the hub must keep serving it. */
    let bystander: Awaited<ReturnType<typeof hubClient>>;

    const logLength = async () => (await replayLog.retention()).length;

    before(async () => {
      notifications = await createNotifications({ config, logger: silentLogger, bus, replayLog });
      url = await notifications.start();
      hubUrl = `${url}/hubs/notifications`;
      bystander = await hubClient(url);
    });
    after(async () => {
      await bystander?.close();
      await notifications?.stop();
      await bus.close();
      await replayLog.close();
    });

    /** Opens a socket and completes a handshake in `protocol`. */
    const handshaken = async (protocol: 'json' | 'messagepack') => {
      const socket = await RawHubSocket.open(hubUrl);
      socket.send(`{"protocol":"${protocol}","version":1}${RS}`);
      const answer = await socket.until((message) => JSON.stringify(message) === '{}');
      assert.equal(answer?.kind, 'completion', 'the handshake is accepted');
      return socket;
    };

    /** After each input: nothing in the replay log from a client, and the service still answers. */
    const settle = async (socket: RawHubSocket, logBefore: number, what: string) => {
      socket.close();
      countStoredFromInvalid((await logLength()) !== logBefore, what);
      await checkAlive(url, what);
    };

    test('handshakes: accepted, refused with a reason, or awaited; never a stall once terminated', async () => {
      await property(
        'signalr: handshakes over WebSocket',
        fc.tuple(handshakeFrame, fc.option(fc.nat(), { nil: undefined })),
        async ([{ text }, splitAt]) => {
          const logBefore = await logLength();
          const verdict = handshakeVerdict(Buffer.from(text), true);
          const what = `handshake ${JSON.stringify(text.slice(0, 300))}`;
          const socket = await RawHubSocket.open(hubUrl);
          socket.send(text, splitAt);
          const first = await socket.until(() => true, verdict === 'incomplete' ? 100 : DECIDE_MS);
          if (verdict === 'incomplete') assert.equal(first, undefined, `${what}: nothing to answer yet`);
          else {
            assert.equal(first?.kind, 'completion', `${what}: the handshake got no answer`);
            const answer = socket.messages[0] as { error?: unknown };
            if (verdict === 'accepted') assert.deepEqual(answer, {}, what);
            else {
              assert.equal(typeof answer.error, 'string', `${what}: refused with a reason`);
              assert.equal(await socket.closedWithin(DECIDE_MS), 1000, `${what}: then closed`);
            }
          }
          await settle(socket, logBefore, what);
        },
        100,
      );
    });

    test('JSON: broken records after the handshake; the connection answers a probe or closes with a reason', async () => {
      await property(
        'signalr: JSON records over WebSocket',
        fc.tuple(jsonHubFrame, fc.option(fc.nat(), { nil: undefined })),
        async ([{ text }, splitAt]) => {
          const logBefore = await logLength();
          const what = `JSON frame ${JSON.stringify(text.slice(0, 300))}`;
          const socket = await handshaken('json');
          socket.send(text, splitAt);
          socket.send(JSON_PROBE);
          await expectDecided(socket, isJsonCompletion(PROBE_ID), what, /"type":7/u.test(text));
          await settle(socket, logBefore, what);
        },
        120,
      );
    });

    test('MessagePack: broken frames after the handshake; a complete one is answered or closes the connection', async () => {
      await property(
        'signalr: MessagePack frames over WebSocket',
        fc.tuple(msgpackHubFrame, fc.option(fc.nat(), { nil: undefined })),
        async ([{ bytes, complete }, splitAt]) => {
          const logBefore = await logLength();
          const what = `MessagePack frame ${bytes.toString('hex').slice(0, 300)}`;
          const socket = await handshaken('messagepack');
          socket.send(bytes, splitAt);
          socket.send(MSGPACK_PROBE);
          // A frame whose length prefix promises more than was sent swallows the probe: the server rightly waits.
          if (complete) await expectDecided(socket, isMsgpackCompletion(PROBE_ID), what, true);
          else await socket.until(isMsgpackCompletion(PROBE_ID), 100);
          await settle(socket, logBefore, what);
        },
        120,
      );
    });

    test("the hub's methods called with arguments of every type and count, in both protocols", async () => {
      const call = fc.tuple(
        fc.constantFrom('JoinGroup', 'LeaveGroup', 'joingroup', 'LEAVEGROUP'),
        fc.array(groupArgument, { maxLength: 3 }),
        fc.constantFrom('json' as const, 'messagepack' as const),
      );
      await property(
        'signalr: hub method arguments',
        call,
        async ([method, args, protocol]) => {
          const logBefore = await logLength();
          const what = `${protocol} ${method}(${args.map((arg) => jsonText(arg).slice(0, 100)).join(', ')})`;
          const socket = await handshaken(protocol);
          const values = args.map((arg) => JSON.parse(jsonText(arg)) as unknown);
          const record = `{"type":1,"invocationId":"call","target":"${method}","arguments":[${args.map(jsonText).join(',')}]}`;
          const body = protocol === 'json' ? Buffer.from(record) : encode([1, {}, 'call', method, values]);
          socket.send(
            protocol === 'json' ? `${record}${RS}` : Buffer.concat([Buffer.from(varint(body.length)), body]),
          );
          const completion = await socket.until(
            protocol === 'json' ? isJsonCompletion('call') : isMsgpackCompletion('call'),
          );
          // Too big, or a map key MessagePack's decoder refuses: the message is not read, the connection ends.
          if (
            body.length > MAX_MESSAGE_SIZE ||
            (protocol === 'messagepack' && hasOwnKeyDeep(values, '__proto__'))
          ) {
            assert.equal(completion?.kind, 'closed', `${what}: unreadable, so the connection closes`);
            await settle(socket, logBefore, what);
            return;
          }
          assert.equal(completion?.kind, 'completion', `${what}: no completion`);
          const error =
            protocol === 'json'
              ? (completion.record as { error?: string }).error
              : (completion.record as unknown[])[3] === 1
                ? String((completion.record as unknown[])[4])
                : undefined;
          // ASP.NET binds one string (ours of at most 200 characters); anything else fails the call, and only the call.
          if (args.length === 1 && typeof values[0] === 'string' && values[0].length <= 200)
            assert.equal(error, undefined, what);
          else assert.match(error ?? '', /JoinGroup|LeaveGroup|joingroup|LEAVEGROUP/u, `${what}: refused`);
          socket.send(protocol === 'json' ? JSON_PROBE : MSGPACK_PROBE);
          const probe = await socket.until(
            protocol === 'json' ? isJsonCompletion(PROBE_ID) : isMsgpackCompletion(PROBE_ID),
          );
          assert.equal(probe?.kind, 'completion', `${what}: the connection still works`);
          await settle(socket, logBefore, what);
        },
        80,
      );
    });

    test('afterwards, the client connected throughout gets a new notification', async () => {
      const before = bystander.received.length;
      await bus.publish([notificationMessage('StudentCreated')]);
      await until(() => bystander.received.length === before + 1, 'the notification');
      countCrash(bystander.connection.state === 'Connected', 'the bystander');
    });
  });
}

/**
 * The probe completes, or the server closes the connection with a Close message giving the reason. Only a Close
 * the client may have sent itself (`mayHaveClosed`) ends the connection without one.
 */
async function expectDecided(
  socket: RawHubSocket,
  probeAnswered: (message: unknown) => boolean,
  what: string,
  mayHaveClosed: boolean,
): Promise<void> {
  const outcome = await socket.until(probeAnswered);
  assert.ok(outcome, `${what}: the server neither answered the probe nor closed the connection`);
  if (outcome.kind === 'completion') return;
  const close = socket.messages.find(isClose) as { error?: unknown } | unknown[] | undefined;
  const reason = Array.isArray(close) ? close[1] : close?.error;
  if (close || !mayHaveClosed)
    assert.ok(typeof reason === 'string' && reason.length > 0, `${what}: closed without a reason`);
}
