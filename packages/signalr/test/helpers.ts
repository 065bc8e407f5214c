import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  HttpTransportType,
  type HubConnection,
  HubConnectionBuilder,
  type IHttpConnectionOptions,
  LogLevel,
} from '@microsoft/signalr';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';
import Fastify, { type FastifyInstance } from 'fastify';
import { WebSocket } from 'ws';
import {
  defineHub,
  HubError,
  HubServer,
  type HubServerOptions,
  mountOnHttpServer,
  registerFastifyHub,
} from '../src/index.ts';

export const HUB_PATH = '/hubs/notifications';

/** The hub the tests talk to: the app's JoinGroup/LeaveGroup/Connected shape plus probes. */
export const testHub = defineHub({
  methods: {
    Echo: (_context, value: unknown) => value,
    Add: (_context, a: number, b: number) => a + b,
    Nothing: () => undefined,
    Fail: (_context, message: string) => {
      throw new HubError(message);
    },
    Crash: () => {
      throw new Error('secret detail');
    },
    WhoAmI: (context) => context.user?.id ?? null,
    JoinGroup: (context, name: string) => context.groups.add(context.connectionId, name),
    LeaveGroup: (context, name: string) => context.groups.remove(context.connectionId, name),
    SendToGroup: (context, group: string, payload: unknown) =>
      context.clients.group(group).send('notify', payload),
    SendToCaller: (context, payload: unknown) => context.clients.caller.send('notify', payload),
    SendToOthers: (context, payload: unknown) => context.clients.others.send('notify', payload),
    SendToOthersInGroup: (context, group: string, payload: unknown) =>
      context.clients.othersInGroup(group).send('notify', payload),
    Sum: async (_context, numbers: AsyncIterable<number>) => {
      let total = 0;
      for await (const n of numbers) total += n;
      return total;
    },
    Repeat: (_context, text: string, count: number) => text.repeat(count),
    /** `text`'s UTF-8 bytes, as a Buffer and as a plain Uint8Array (a `byte[]` to a .NET hub). */
    Bytes: (_context, text: string) => {
      const bytes = Buffer.from(text, 'utf8');
      return { buffer: bytes, array: new Uint8Array(bytes) };
    },
    /** `count` notifications to the caller, all within one event-loop turn. */
    Burst: async (context, count: number, size: number) => {
      const text = 'y'.repeat(size);
      for (let i = 0; i < count; i++) await context.clients.caller.send('item', i, text);
      return count;
    },
    /** Starts reading its upload only after a while, as a method busy with something else would. */
    SumLater: async (_context, numbers: AsyncIterable<number>) => {
      await delay(100);
      let total = 0;
      for await (const n of numbers) total += n;
      return total;
    },
  },
  streams: {
    FailMidway: async function* (_context, message: string) {
      yield 1;
      throw new HubError(message);
    },
    Counter: async function* (_context, count: number) {
      for (let i = 0; i < count; i++) yield i;
    },
    Payloads: async function* (_context, count: number, size: number) {
      const text = 'y'.repeat(size);
      for (let i = 0; i < count; i++) yield { i, text };
    },
    WithUndefined: async function* () {
      yield 1;
      yield undefined;
      yield 3;
    },
    /** A stream whose cleanup (its `finally`) fails when it is cancelled. */
    FailingCleanup: async function* () {
      try {
        for (let i = 0; ; i++) {
          await delay(10);
          yield i;
        }
      } finally {
        // eslint-disable-next-line no-unsafe-finally -- the failing cleanup is what is tested
        throw new Error('cleanup failed');
      }
    },
    /** A stream whose method awaits (say, a lookup) before returning its iterable. */
    SlowCounter: async (_context, count: number) => {
      await delay(50);
      return (async function* () {
        for (let i = 0; i < count; i++) {
          await delay(10);
          yield i;
        }
      })();
    },
  },
  onConnected: (context) =>
    context.clients.caller.send('Connected', { clientId: context.connectionId, timestamp: Date.now() }),
});

export const fastTimers = {
  keepAliveIntervalMs: 200,
  clientTimeoutMs: 2_000,
  handshakeTimeoutMs: 1_000,
  disconnectTimeoutMs: 1_000,
} satisfies Partial<HubServerOptions>;

export interface RunningHub {
  readonly url: string;
  readonly port: number;
  readonly hub: HubServer;
  /** Server-side sockets of WebSocket upgrades (node mount), to simulate network loss. */
  readonly upgradedSockets: Duplex[];
  /** The node:http server (node mount only). */
  readonly httpServer?: Server;
  close(): Promise<void>;
}

/** Starts a hub on 127.0.0.1 (port 0 unless given) behind node:http or Fastify. */
export async function startHub(
  options: Partial<HubServerOptions> = {},
  {
    mount = 'node',
    port = 0,
    configure,
  }: { mount?: 'node' | 'fastify'; port?: number; configure?: (app: FastifyInstance) => void } = {},
): Promise<RunningHub> {
  const hub = await HubServer.create({ hub: testHub, ...fastTimers, ...options });
  if (mount === 'fastify') {
    const app = Fastify({ forceCloseConnections: true });
    configure?.(app);
    await registerFastifyHub(app, HUB_PATH, hub);
    await app.listen({ host: '127.0.0.1', port });
    const actual = (app.server.address() as AddressInfo).port;
    return {
      url: `http://127.0.0.1:${actual}${HUB_PATH}`,
      port: actual,
      hub,
      upgradedSockets: [],
      close: () => app.close(),
    };
  }
  const server = createServer();
  mountOnHttpServer(server, HUB_PATH, hub);
  const upgradedSockets: Duplex[] = [];
  server.on('upgrade', (_req, socket: Duplex) => upgradedSockets.push(socket));
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}${HUB_PATH}`,
    port: actual,
    hub,
    upgradedSockets,
    httpServer: server,
    close: async () => {
      await hub.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface ClientOptions {
  readonly transport?: HttpTransportType;
  readonly protocol?: 'json' | 'messagepack';
  readonly http?: IHttpConnectionOptions;
  readonly stateful?: boolean;
  readonly reconnectDelays?: number[];
}

export function buildClient(url: string, options: ClientOptions = {}): HubConnection {
  let builder = new HubConnectionBuilder()
    .withUrl(url, { transport: options.transport ?? HttpTransportType.WebSockets, ...options.http })
    .configureLogging(LogLevel.None);
  if (options.protocol === 'messagepack') builder = builder.withHubProtocol(new MessagePackHubProtocol());
  if (options.stateful) builder = builder.withStatefulReconnect();
  if (options.reconnectDelays) builder = builder.withAutomaticReconnect(options.reconnectDelays);
  return builder.build();
}

/**
 * What a client with automatic reconnect does after the server closes it: `reconnecting: <reason>` or `closed: <reason>`
 * (a close without allowReconnect ends it for good); `reconnected` resolves with its new connection id.
 */
export function afterServerClose(client: HubConnection): {
  readonly outcome: Promise<string>;
  readonly reconnected: Promise<string | undefined>;
} {
  const outcome = new Promise<string>((resolve) => {
    client.onreconnecting((error) => resolve(`reconnecting: ${error?.message}`));
    client.onclose((error) => resolve(`closed: ${error?.message}`));
  });
  const reconnected = new Promise<string | undefined>((resolve) => client.onreconnected(resolve));
  return { outcome, reconnected };
}

export interface StallingProxy {
  /** The hub URL through the proxy. */
  readonly url: string;
  /** Stops passing server→client bytes on the connections open now (a slow network); new ones flow. */
  stall(): void;
  /** Passes on what waited, and everything after it. */
  resume(): void;
  close(): Promise<void>;
}

/** A TCP proxy in front of a hub whose server→client direction can stall, as a client on a bad network. */
export async function startStallingProxy(running: RunningHub): Promise<StallingProxy> {
  const pairs = new Set<{ readonly down: Socket; readonly up: Socket }>();
  const stalled = new Set<Socket>();
  const server = createTcpServer((down) => {
    const up = connect(running.port, '127.0.0.1');
    const pair = { down, up };
    pairs.add(pair);
    down.pipe(up);
    up.pipe(down);
    up.on('error', () => down.destroy());
    down.on('error', () => up.destroy());
    down.on('close', () => {
      up.destroy();
      pairs.delete(pair);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    url: running.url.replace(`:${running.port}`, `:${port}`),
    stall() {
      for (const { up, down } of pairs) {
        up.unpipe(down);
        up.pause();
        stalled.add(up);
      }
    },
    resume() {
      for (const { up, down } of pairs) if (stalled.has(up)) up.pipe(down);
      stalled.clear();
    },
    async close() {
      for (const { up, down } of pairs) {
        up.destroy();
        down.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Resolves with the arguments of the next `target` invocation the client receives. */
export function nextInvocation(
  connection: HubConnection,
  target: string,
  timeoutMs = 5_000,
): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      connection.off(target, handler);
      reject(new Error(`no '${target}' within ${timeoutMs} ms`));
    }, timeoutMs);
    const handler = (...args: unknown[]): void => {
      clearTimeout(timer);
      connection.off(target, handler);
      resolve(args);
    };
    connection.on(target, handler);
  });
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What a promise gave within `ms`, or 'no answer': a hung call must fail its test, not hang the file. */
export function within<T>(promise: Promise<T>, ms = 3_000): Promise<T | 'no answer'> {
  return Promise.race([promise, delay(ms).then(() => 'no answer' as const)]);
}

/** Polls `condition` until it holds (or fails after `timeoutMs`). */
export async function eventually(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await delay(20);
  }
}

/** A bare WebSocket speaking JSON records, for frames the official client would never send. */
export class RawClient {
  readonly records: Record<string, unknown>[] = [];
  readonly closed: Promise<number>;
  private text = '';

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      this.text += data.toString('utf8');
      const parts = this.text.split('\u001e');
      this.text = parts.pop() ?? '';
      for (const part of parts) this.records.push(JSON.parse(part) as Record<string, unknown>);
    });
    this.closed = new Promise((resolve) => ws.on('close', (code: number) => resolve(code)));
  }

  /** Opens a socket without negotiate (the skipNegotiation path). */
  static async connect(hubUrl: string): Promise<RawClient> {
    const ws = new WebSocket(hubUrl.replace(/^http/, 'ws'));
    // Listening before 'open': a resumed socket gets its Sequence in the same read as the 101.
    const client = new RawClient(ws);
    await once(ws, 'open');
    return client;
  }

  static async handshaken(hubUrl: string): Promise<RawClient> {
    const client = await RawClient.connect(hubUrl);
    client.send({ protocol: 'json', version: 1 });
    await client.next((record) => Object.keys(record).length === 0);
    return client;
  }

  send(...records: unknown[]): void {
    this.ws.send(records.map((record) => JSON.stringify(record) + '\u001e').join(''));
  }

  /** Waits for (and returns) the first record matching `predicate`, including ones already received. */
  async next(
    predicate: (record: Record<string, unknown>) => boolean,
    timeoutMs = 5_000,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.records.find(predicate);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching record; got ${JSON.stringify(this.records)}`);
      await delay(10);
    }
  }

  close(): void {
    this.ws.terminate();
  }
}
