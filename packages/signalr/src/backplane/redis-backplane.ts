import { decode, encode } from '@msgpack/msgpack';
import { Redis, type RedisOptions } from 'ioredis';
import type { SendScope } from '../hub.ts';
import type { Backplane, BackplaneListener, BackplaneMessage } from './backplane.ts';

const ENVELOPE_VERSION = 1;

export interface RedisBackplaneOptions {
  /** ioredis options or a redis:// URL; the backplane opens two connections (publish and subscribe). */
  readonly redis?: RedisOptions | string;
  /** The pub/sub channel shared by every instance of one hub, e.g. `myapp:signalr:notifications`. */
  readonly channel: string;
  /** Connection errors (ioredis reconnects by itself); without a handler they are ignored. */
  readonly onError?: (error: Error) => void;
}

function connect(redis: RedisOptions | string | undefined): Redis {
  return typeof redis === 'string'
    ? new Redis(redis, { lazyConnect: true })
    : new Redis({ ...redis, lazyConnect: true });
}

/**
 * Redis pub/sub backplane. Every instance publishes each send once on one channel and delivers it to its
 * own matching connections. The envelope is this library's own MessagePack array, not ASP.NET's
 * RedisProtocol: it cannot share a channel with .NET servers.
 */
export class RedisBackplane implements Backplane {
  private readonly publisher: Redis;
  private readonly subscriber: Redis;
  private readonly listeners = new Set<BackplaneListener>();
  private subscribed: Promise<void> | undefined;

  constructor(private readonly options: RedisBackplaneOptions) {
    this.publisher = connect(options.redis);
    this.subscriber = connect(options.redis);
    const onError = (error: Error): void => options.onError?.(error);
    this.publisher.on('error', onError);
    this.subscriber.on('error', onError);
    this.subscriber.on('messageBuffer', (channel: Buffer, payload: Buffer) => {
      if (channel.toString() !== this.options.channel) return;
      const message = this.decode(payload);
      if (message) for (const listener of this.listeners) listener(message);
    });
  }

  async subscribe(listener: BackplaneListener): Promise<() => Promise<void>> {
    this.listeners.add(listener);
    this.subscribed ??= this.subscriber.connect().then(async () => {
      await this.subscriber.subscribe(this.options.channel);
    });
    await this.subscribed;
    return async () => {
      this.listeners.delete(listener);
    };
  }

  async publish(message: BackplaneMessage): Promise<void> {
    if (this.publisher.status === 'wait') await this.publisher.connect();
    const envelope = [ENVELOPE_VERSION, message.origin, message.scope, message.target, message.arguments];
    await this.publisher.publish(this.options.channel, Buffer.from(encode(envelope)));
  }

  async close(): Promise<void> {
    this.listeners.clear();
    await Promise.all([quit(this.publisher), quit(this.subscriber)]);
  }

  private decode(payload: Buffer): BackplaneMessage | undefined {
    try {
      const [version, origin, scope, target, args] = decode(payload) as unknown[];
      if (version !== ENVELOPE_VERSION || typeof origin !== 'string' || typeof target !== 'string')
        return undefined;
      if (!Array.isArray(args) || typeof scope !== 'object' || scope === null) return undefined;
      return { origin, scope: scope as SendScope, target, arguments: args };
    } catch (error) {
      this.options.onError?.(error as Error);
      return undefined;
    }
  }
}

async function quit(redis: Redis): Promise<void> {
  if (redis.status === 'wait' || redis.status === 'end') {
    redis.disconnect();
    return;
  }
  await redis.quit().catch(() => redis.disconnect());
}
