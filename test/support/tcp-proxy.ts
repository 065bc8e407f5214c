import { createServer, connect, type Server, type Socket } from 'node:net';

interface Target {
  readonly host: string;
  readonly port: number;
}

/**
 * A TCP proxy in front of real servers, so a test can make a server "go down" (connections cut, new ones
 * refused) and "come back" on the same address without touching the shared server itself. With several targets
 * it is a round-robin load balancer that skips a target refusing connections, as one in front of several
 * instances would.
 */
/** A client's connection passed on to a target, with what the client sent so far (its first 100 kB). */
interface Passage {
  readonly client: Socket;
  readonly upstream: Socket;
  sent: string;
}

export class TcpProxy {
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();
  readonly #passages = new Set<Passage>();
  /** While holding: new connections, accepted but not yet passed on. */
  #held: Socket[] | undefined;
  readonly #targets: readonly Target[];
  #next = 0;
  #port = 0;

  private constructor(targets: readonly Target[]) {
    this.#targets = targets;
  }

  static async start(targetHost: string, targetPort: number): Promise<TcpProxy> {
    return TcpProxy.balance([{ host: targetHost, port: targetPort }]);
  }

  /** A proxy in front of the server `url` names (on `defaultPort` when it names none), and `url` through it. */
  static async inFrontOf(url: string, defaultPort: number): Promise<{ proxy: TcpProxy; url: string }> {
    const through = new URL(url);
    const proxy = await TcpProxy.start(through.hostname, Number(through.port || defaultPort));
    through.host = `127.0.0.1:${proxy.port}`;
    return { proxy, url: through.toString() };
  }

  static async balance(targets: readonly Target[]): Promise<TcpProxy> {
    const proxy = new TcpProxy(targets);
    await proxy.resume();
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  async resume(): Promise<void> {
    const server = createServer((client) => {
      this.#track(client);
      client.pause();
      client.on('error', () => client.destroy());
      if (this.#held) this.#held.push(client);
      else this.#connectUpstream(client, this.#targets.length);
    });
    await new Promise<void>((resolve) => server.listen(this.#port, '127.0.0.1', resolve));
    this.#port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  /** Cuts every open connection and refuses new ones until resume(). */
  async pause(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Cuts every open connection; new ones are accepted but wait, silent, until release(): a network that drops
   * and takes a while to come back, without refusing anyone.
   */
  hold(): void {
    this.#held = [];
    for (const socket of this.#sockets) socket.destroy();
  }

  /**
   * Keeps the open connections but passes nothing more either way: a peer whose host died without closing anything
   * (no FIN, no RST), as a power cut or a cable pulled looks from the other end; or, with `which`, only the
   * connections whose client sent something it matches (a NAT that dropped one idle flow). New connections work.
   * Returns how many were silenced.
   */
  silence(which: (sent: string) => boolean = () => true): number {
    let silenced = 0;
    for (const passage of this.#passages) {
      if (!which(passage.sent)) continue;
      for (const socket of [passage.client, passage.upstream]) {
        socket.unpipe();
        socket.pause();
      }
      this.#passages.delete(passage);
      silenced++;
    }
    return silenced;
  }

  release(): void {
    const held = this.#held ?? [];
    this.#held = undefined;
    for (const client of held) this.#connectUpstream(client, this.#targets.length);
  }

  stop(): Promise<void> {
    return this.pause();
  }

  /** The next target in turn; one that refuses the connection is skipped, until every one was tried. */
  #connectUpstream(client: Socket, attemptsLeft: number): void {
    if (attemptsLeft === 0 || client.destroyed) return void client.destroy();
    const target = this.#targets[this.#next++ % this.#targets.length]!;
    const upstream = connect(target);
    upstream.once('error', () => {
      upstream.destroy();
      this.#connectUpstream(client, attemptsLeft - 1);
    });
    upstream.once('connect', () => {
      this.#track(upstream);
      upstream.removeAllListeners('error');
      upstream.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      client.on('error', () => upstream.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      const passage: Passage = { client, upstream, sent: '' };
      this.#passages.add(passage);
      client.on('data', (data: Buffer) => {
        if (passage.sent.length < 100_000) passage.sent += data.toString('latin1');
      });
      client.on('close', () => this.#passages.delete(passage));
      client.pipe(upstream).pipe(client);
      client.resume();
    });
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
  }
}
