import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';

/**
 * Registers the tracing SDK in this test process (as the roles do when OTEL_EXPORTER_OTLP_ENDPOINT is set),
 * recording every finished span in memory. Once per process: the provider is global.
 */
export function recordSpans(): InMemorySpanExporter {
  const exporter = new InMemorySpanExporter();
  new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).register();
  return exporter;
}
