// OpenTelemetry tracing: the SDK is started only when an OTLP endpoint is configured. Without one, every span
// below comes from the API's no-op tracer (no context manager, no propagator, nothing recorded or exported).
import {
  DiagLogLevel,
  ROOT_CONTEXT,
  SpanStatusCode,
  context,
  diag,
  propagation,
  trace,
  type Context,
  type Link,
  type Span,
  type SpanOptions,
} from '@opentelemetry/api';
import { setGlobalErrorHandler } from '@opentelemetry/core';
import { OTLPTraceExporter as OtlpJsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtobufTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import {
  defaultResource,
  detectResources,
  envDetector,
  resourceFromAttributes,
} from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { Logger } from '../logging/logger.ts';
import { valueWithoutUrlPassword } from '../logging/url-password.ts';
import { outsideTraces } from './outside-traces.ts';
import { settledWithin } from '../runtime/settled-within.ts';

export interface TracingSettings {
  /** Base URL of an OTLP/HTTP receiver (`…/v1/traces` is appended, as the OTLP spec says). */
  readonly otlpEndpoint?: string;
  /** The URL traces are sent to, used as is; wins over `otlpEndpoint`. With neither, tracing is off. */
  readonly otlpTracesEndpoint?: string;
  readonly otlpProtocol: 'http/protobuf' | 'http/json';
}

export interface Tracing {
  readonly enabled: boolean;
  /** Exports the spans still buffered, then stops. Call last, after the roles have stopped. */
  shutdown(): Promise<void>;
}

const SERVICE_NAMESPACE = 'the-background-experience';
/** How long a stop waits for the last spans to reach the receiver. */
const TRACE_FLUSH_MS = 2_000;

/**
 * Registers a tracer provider that batches spans to the OTLP endpoint, with W3C trace context propagation and
 * an AsyncLocalStorage context manager. One per process; `serviceName` names the role(s) it runs.
 */
export function startTracing(settings: TracingSettings, serviceName: string, logger: Logger): Tracing {
  const url =
    settings.otlpTracesEndpoint ??
    (settings.otlpEndpoint && new URL('v1/traces', settings.otlpEndpoint.replace(/\/?$/, '/')).href);
  if (!url) return { enabled: false, shutdown: async () => {} };
  const log = logger.child({ component: 'tracing' });
  // The SDK's own trouble (a receiver that is down, after its retries) is logged and never reaches the
  // application; outside any span, or the line would carry the trace of whatever request was running.
  setGlobalErrorHandler((error) => outsideTraces(() => log.warn({ err: error }, 'trace export failed')));
  diag.setLogger(
    {
      error: (message, ...args) => outsideTraces(() => log.warn({ args }, message)),
      warn: (message, ...args) => outsideTraces(() => log.warn({ args }, message)),
      info: (message, ...args) => outsideTraces(() => log.info({ args }, message)),
      debug: (message, ...args) => outsideTraces(() => log.debug({ args }, message)),
      verbose: (message, ...args) => outsideTraces(() => log.trace({ args }, message)),
    },
    DiagLogLevel.WARN,
  );
  const exporter =
    settings.otlpProtocol === 'http/json'
      ? new OtlpJsonTraceExporter({ url })
      : new OtlpProtobufTraceExporter({ url });
  const provider = new NodeTracerProvider({
    // The SDK's attributes, ours, then the environment's (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME): each wins
    // over the one before, so an operator can rename a role.
    resource: defaultResource()
      .merge(
        resourceFromAttributes({
          'service.name': serviceName,
          'service.namespace': SERVICE_NAMESPACE,
          'service.instance.id': `${serviceName}-${process.pid}`,
        }),
      )
      .merge(detectResources({ detectors: [envDetector] })),
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  provider.register();
  log.info({ endpoint: valueWithoutUrlPassword(url), protocol: settings.otlpProtocol }, 'exporting traces');
  return {
    enabled: true,
    // The last spans go out, but a receiver that does not answer would hold the stop for the exporter's 10 s.
    async shutdown() {
      const flushed = provider
        .shutdown()
        .catch((error: unknown) => log.warn({ err: error }, 'trace export failed'));
      if (!(await settledWithin(flushed, TRACE_FLUSH_MS)))
        log.warn(
          { endpoint: valueWithoutUrlPassword(url) },
          `last spans not sent within ${TRACE_FLUSH_MS} ms`,
        );
    },
  };
}

/** Every span of this code base comes from this tracer (a proxy until the provider above is registered). */
export const tracer = trace.getTracer(SERVICE_NAMESPACE);

/** The trace context carried by message or HTTP headers (`traceparent`, `tracestate`); the root context if none. */
export function contextFromHeaders(
  headers: Readonly<Record<string, string | string[] | undefined>>,
): Context {
  return propagation.extract(ROOT_CONTEXT, headers);
}

/** `traceparent` (and `tracestate`) of a context, to store or send with a message; empty when nothing is traced. */
export function traceHeaders(from: Context = context.active()): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(from, carrier);
  return carrier;
}

/** A link to the span a context carries, or none: links to an invalid (untraced) context are noise. */
export function linksTo(parent: Context): Link[] {
  const spanContext = trace.getSpanContext(parent);
  return spanContext && trace.isSpanContextValid(spanContext) ? [{ context: spanContext }] : [];
}

/**
 * Runs `work` in a new span that is the active one meanwhile: a failure (a throw) marks the span as an error and
 * is rethrown; the span ends when `work` settles.
 */
export async function inSpan<T>(
  name: string,
  options: SpanOptions & { readonly parent?: Context },
  work: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = options.parent ?? context.active();
  const span = tracer.startSpan(name, options, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => work(span));
  } catch (error) {
    recordFailure(span, error);
    throw error;
  } finally {
    span.end();
  }
}

export function recordFailure(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: error instanceof Error ? error.message : String(error),
  });
}
