import { connect, createServer, type Server, type Socket } from 'node:net';

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
  /** What the client sent so far (its first 100 kB), to tell connections apart by their commands. */
  sent: string;
  silenced: boolean;
}

/**
 * A TCP proxy that can silence some of its connections and leave the others working: a NAT or load balancer that
 * dropped one idle flow without a FIN or RST. A silenced connection stays open and passes nothing either way; new
 * connections work.
 */
export class SelectiveTcpProxy {
  readonly #server: Server;
  readonly #pairs = new Set<Pair>();

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(host: string, port: number): Promise<SelectiveTcpProxy> {
    const server = createServer();
    const proxy = new SelectiveTcpProxy(server);
    server.on('connection', (client: Socket) => proxy.#accept(client, host, port));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  /** Silences the open connections whose traffic so far matches `which`; returns how many. */
  silence(which: (sent: string) => boolean): number {
    let silenced = 0;
    for (const pair of this.#pairs)
      if (!pair.silenced && which(pair.sent)) {
        pair.silenced = true;
        silenced += 1;
      }
    return silenced;
  }

  async stop(): Promise<void> {
    for (const pair of this.#pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket, host: string, port: number): void {
    const upstream = connect({ host, port });
    const pair: Pair = { client, upstream, sent: '', silenced: false };
    this.#pairs.add(pair);
    client.on('data', (data: Buffer) => {
      if (pair.sent.length < 100_000) pair.sent += data.toString('latin1');
      if (!pair.silenced) upstream.write(data);
    });
    upstream.on('data', (data: Buffer) => {
      if (!pair.silenced) client.write(data);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.#pairs.delete(pair);
    };
    for (const socket of [client, upstream]) {
      socket.on('close', end);
      socket.on('error', end);
    }
  }
}

/** A connection that subscribed to something (a pub/sub connection). */
export const subscribed = (sent: string) => /subscribe/i.test(sent);

/** bentocache's bus publisher: it published a notification and subscribed to nothing. */
export const bentocacheBusPublisher = (sent: string) =>
  sent.includes('bentocache.notifications') && !subscribed(sent);
