// Redis going away and coming back, as the log tells it: each change said once, not once per connection (the cache
// has four: commands, pub/sub, and the cache library's bus pair; two here) or per trial of the breaker.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CacheConnection } from '../../src/infrastructure/caching/redis-cache-connection.ts';
import { recordingLogger } from '../support/logger.ts';
import { needsRedis, REDIS_URL } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { until } from '../support/until.ts';

test('Redis lost and back: the outage and the recovery are each said once', await needsRedis(), async () => {
  const target = new URL(REDIS_URL);
  const proxy = await TcpProxy.start(target.hostname, Number(target.port || 6379));
  const { logger, logged } = recordingLogger();
  const connection = new CacheConnection(`redis://127.0.0.1:${proxy.port}`, logger, { halfOpenAfterMs: 200 });
  const said = (message: string) =>
    logged()
      .split('\n')
      .filter((line) => line.includes(`"msg":"${message}`)).length;
  try {
    await connection.connected();
    await until(() => connection.available, 'the cache in use');
    await proxy.pause();
    await until(() => !connection.available, 'the cache off');
    // Several half-open periods of trials that fail.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    void connection.available;
    await proxy.resume();
    await until(() => connection.available, 'the cache back', 20_000);
    assert.equal(said('cache unavailable (Redis)'), 1, logged());
    assert.equal(said('cache connection back (Redis)'), 1, logged());
  } finally {
    await connection.close();
    await proxy.stop();
  }
});
