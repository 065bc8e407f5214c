// Work a request merely happens to start, such as the trials that bring the cache back after Redis went away, is
// not that request's: it runs outside its trace, so the recovery's log lines and spans do not claim to be part of it.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { trace } from '@opentelemetry/api';
import { CacheConnection } from '../../src/infrastructure/caching/redis-cache-connection.ts';
import { inSpan } from '../../src/infrastructure/observability/tracing.ts';
import { silentLogger } from '../support/logger.ts';
import { needsRedis, REDIS_URL } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { recordSpans } from '../support/tracing.ts';
import { until } from '../support/until.ts';

recordSpans();

describe('background work a request starts', await needsRedis(), () => {
  let proxy: TcpProxy | undefined;
  let connection: CacheConnection | undefined;
  after(async () => {
    await connection?.close();
    await proxy?.stop();
  });

  test("the cache's trials and its recovery after a Redis outage run outside the trace of the request that found it", async () => {
    const opened = await TcpProxy.inFrontOf(REDIS_URL, 6379);
    proxy = opened.proxy;
    connection = new CacheConnection(opened.url, silentLogger, { halfOpenAfterMs: 100, pingIntervalMs: 100 });
    await connection.connected();
    const recoveredIn: (string | undefined)[] = [];
    connection.onRecovered(() => recoveredIn.push(trace.getActiveSpan()?.spanContext().traceId));

    await proxy.pause();
    const request = await inSpan('GET /api/students/:id', {}, async (span) => {
      // The request finds Redis gone: the breaker opens here, in its trace.
      await until(() => !connection!.available, 'the cache found unavailable');
      return span.spanContext().traceId;
    });
    await proxy.resume();
    await until(() => connection!.available && recoveredIn.length > 0, 'the cache back');
    assert.ok(
      recoveredIn.every((traceId) => traceId !== request),
      `recovered outside the request's trace: ${JSON.stringify(recoveredIn)}`,
    );
  });
});
