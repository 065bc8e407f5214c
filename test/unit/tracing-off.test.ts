// Without OTEL_EXPORTER_OTLP_ENDPOINT only the OpenTelemetry API's no-ops run: no SDK, no context manager,
// no propagator, so tracing costs next to nothing and nothing is recorded.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ROOT_CONTEXT, context, trace } from '@opentelemetry/api';
import {
  inSpan,
  startTracing,
  traceHeaders,
  tracer,
} from '../../src/infrastructure/observability/tracing.ts';
import { silentLogger } from '../support/logger.ts';

test('with no endpoint, tracing starts nothing: spans do not record and no context is kept or propagated', async () => {
  const tracing = startTracing({ otlpProtocol: 'http/protobuf' }, 'test', silentLogger);
  assert.equal(tracing.enabled, false);

  const span = tracer.startSpan('anything');
  assert.equal(span.isRecording(), false);
  assert.equal(trace.isSpanContextValid(span.spanContext()), false);
  await inSpan('work', {}, async () => {
    assert.equal(context.active(), ROOT_CONTEXT, 'no context manager: nothing to carry');
    assert.deepEqual(traceHeaders(), {}, 'nothing injected into messages');
  });
  await tracing.shutdown();
});
