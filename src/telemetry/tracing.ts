/**
 * OpenTelemetry traces for BullMQ (bullmq-otel): when an OTLP endpoint is configured, a tracer
 * provider with the OTLP/HTTP exporter is registered and every Queue and Worker gets
 * `telemetry: new BullMQOtel(…)`, so a receipt's trace runs from settle's enqueue to the worker's
 * processing. When no endpoint is set nothing is loaded: the OpenTelemetry modules are imported
 * only on this path.
 */
import type { Telemetry } from 'bullmq'

export interface Tracing {
  /** Pass to every BullMQ Queue and Worker; undefined when tracing is off. */
  readonly telemetry: Telemetry | undefined
  /** Flushes buffered spans and unregisters the provider. */
  shutdown(): Promise<void>
}

const OFF: Tracing = { telemetry: undefined, shutdown: async () => {} }

/** Where spans go (config's OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME); no endpoint = off. */
export interface TracingOptions {
  readonly endpoint: string | undefined
  readonly serviceName: string
}

export async function startTracing(otel: TracingOptions): Promise<Tracing> {
  if (!otel.endpoint) return OFF
  const [{ NodeTracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }, { BullMQOtel }, api] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
    import('bullmq-otel'),
    import('@opentelemetry/api'),
  ])
  // OTEL_EXPORTER_OTLP_ENDPOINT is the base URL of the collector; traces go to <base>/v1/traces.
  const exporter = new OTLPTraceExporter({ url: `${otel.endpoint}/v1/traces` })
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': otel.serviceName }),
    spanProcessors: [new BatchSpanProcessor(exporter)],
  })
  provider.register()
  return {
    telemetry: new BullMQOtel({ tracerName: otel.serviceName }),
    async shutdown() {
      await provider.shutdown()
      api.trace.disable()
      api.context.disable()
      api.propagation.disable()
    },
  }
}
