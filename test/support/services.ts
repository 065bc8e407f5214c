// Real servers for tests. Outside CI a suite whose server is unreachable is skipped with a one-line reason;
// under CI=true the same situation fails, so a missing service can never pass as green.
import { connect } from 'node:net';
import type { TestContext } from 'node:test';
import { Redis } from 'ioredis';

export const POSTGRES_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const AMQP_URL = process.env.TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

function reachable(url: string, defaultPort: number): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port || defaultPort) });
    socket.setTimeout(1_000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Options for `describe`/`test` that skip (or, under CI, fail) when the server is unreachable. */
async function requirement(name: string, url: string, defaultPort: number): Promise<{ skip?: string }> {
  if (await reachable(url, defaultPort)) return {};
  const reason = `${name} unreachable at ${new URL(url).host}`;
  if (process.env.CI === 'true') throw new Error(`${reason} (CI=true: server suites must not be skipped)`);
  return { skip: reason };
}

export const needsPostgres = () => requirement('PostgreSQL', POSTGRES_URL, 5432);
export const needsRabbitMq = () => requirement('RabbitMQ', AMQP_URL, 5672);
export const needsRedis = () => requirement('Redis', REDIS_URL, 6379);

export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
}

export type { TestContext };

/** Deletes every key under `prefix` (a test's own, from uniqueName): on `redis`, else on a connection of its own. */
export async function deleteRedisKeys(prefix: string, redis?: Redis): Promise<void> {
  const client = redis ?? new Redis(REDIS_URL);
  try {
    // SCAN, not KEYS: the shared Redis may hold far more than this test's keys.
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await client.del(...keys);
    } while (cursor !== '0');
  } finally {
    if (!redis) await client.quit();
  }
}
