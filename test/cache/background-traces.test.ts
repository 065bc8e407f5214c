// Work a request merely happens to start, such as the trials that bring the cache back after Redis went away, is
// not that request's: it runs outside its trace, so the recovery's log lines and spans do not claim to be part of it.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { trace } from '@opentelemetry/api';
import pino from 'pino';
import { CacheConnection } from '../../src/infrastructure/caching/redis-cache-connection.ts';
import { inSpan } from '../../src/infrastructure/observability/tracing.ts';
import { needsRedis, REDIS_URL } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { recordSpans } from '../support/tracing.ts';
import { until } from '../support/until.ts';

recordSpans();

interface Line {
  readonly msg: string;
  /** The trace the line was written in, as the roles' logger stamps it. */
  readonly traceId?: string;
}

/** A logger that keeps each line with the trace it was written in. */
function tracedLines(): { logger: pino.Logger; lines: Line[] } {
  const lines: Line[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Line);
      done();
    },
  });
  const mixin = () => ({ traceId: trace.getActiveSpan()?.spanContext().traceId });
  return { logger: pino({ level: 'info', mixin }, sink), lines };
}

describe('background work a request starts', await needsRedis(), () => {
  let proxy: TcpProxy | undefined;
  let connection: CacheConnection | undefined;
  after(async () => {
    await connection?.close();
    await proxy?.stop();
  });

  test("the cache's trials and the recovery they lead to run outside the trace of the request that found Redis gone", async () => {
    const opened = await TcpProxy.inFrontOf(REDIS_URL, 6379);
    proxy = opened.proxy;
    const { logger, lines } = tracedLines();
    connection = new CacheConnection(opened.url, logger, { halfOpenAfterMs: 100, pingIntervalMs: 100 });
    await connection.connected();

    await proxy.pause();
    const request = await inSpan('GET /api/students/:id', {}, async (span) => {
      // The request finds Redis gone: the breaker opens here, in its trace.
      await until(() => !connection!.available, 'the cache found unavailable');
      return span.spanContext().traceId;
    });
    await proxy.resume();
    // Nothing here asks the cache again: only the trials the request set off can close the breaker.
    await until(() => lines.some((line) => line.msg === 'cache available again (Redis)'), 'the cache back');
    const back = lines.find((line) => line.msg === 'cache available again (Redis)');
    assert.notEqual(
      back?.traceId,
      request,
      "the trial that closed the breaker ran outside the request's trace",
    );
  });
});
