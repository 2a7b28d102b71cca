import { context, propagation, trace, type Context, type Span, type Tracer } from "@opentelemetry/api";
import { OTLPTraceExporter as OtlpJsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OtlpProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { envDetector, detectResources, resourceFromAttributes } from "@opentelemetry/resources";
import { AlwaysOffSampler, BatchSpanProcessor, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import type { Logger } from "./log.js";

/** What `initTracing` set up. */
export interface TracingHandle {
  /** True when spans leave the process (an OTLP endpoint is configured). */
  exporting: boolean;
  /** Flushes and stops exporting (call on shutdown). */
  shutdown(): Promise<void>;
}

/**
 * Sets up tracing for one service from the standard `OTEL_*` variables: W3C trace context always
 * (so every response carries a real `traceparent` and calls between services share one trace),
 * export only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set and
 * `OTEL_TRACES_EXPORTER` is not `none`. `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` (default) or
 * `http/json`. Sampling follows `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
 */
export function initTracing(serviceName: string, logger: Logger, env: NodeJS.ProcessEnv = process.env): TracingHandle {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const wanted = Boolean(endpoint) && (env.OTEL_TRACES_EXPORTER ?? "otlp") !== "none";
  const processors: SpanProcessor[] = [];
  if (wanted) {
    const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || "http/protobuf";
    let exporter: SpanExporter | undefined;
    if (protocol === "http/protobuf") exporter = new OtlpProtoExporter();
    else if (protocol === "http/json") exporter = new OtlpJsonExporter();
    else logger.warn("unsupported OTEL_EXPORTER_OTLP_PROTOCOL; traces are not exported (use http/protobuf or http/json, port 4318)", { protocol });
    if (exporter) processors.push(new BatchSpanProcessor(exporter, { scheduledDelayMillis: 500 }));
  }
  const resource = resourceFromAttributes({ "service.name": env.OTEL_SERVICE_NAME || serviceName, "service.namespace": "switchyard" }).merge(
    detectResources({ detectors: [envDetector] }),
  );
  // With nothing to export, spans are not recorded (no attributes, no events, no timing work) but
  // still get real trace and span ids, so responses carry a usable traceparent and context still
  // flows between services.
  const provider = new NodeTracerProvider({ resource, spanProcessors: processors, ...(processors.length === 0 ? { sampler: new AlwaysOffSampler() } : {}) });
  provider.register();
  if (processors.length > 0) logger.info("exporting traces over OTLP", { endpoint: redactUrl(endpoint ?? "") });
  return { exporting: processors.length > 0, shutdown: () => provider.shutdown() };
}

/** The tracer every Switchyard span comes from. */
export function tracer(): Tracer {
  return trace.getTracer("switchyard");
}

/** W3C `traceparent` of a span, for response headers and message payloads. */
export function traceparentOf(span: Span): string {
  const c = span.spanContext();
  return `00-${c.traceId}-${c.spanId}-${(c.traceFlags & 1) === 1 ? "01" : "00"}`;
}

/** Extracts a remote parent from carrier fields (`traceparent`, `tracestate`). */
export function extractContext(get: (key: string) => string | undefined | null, base: Context = context.active()): Context {
  return propagation.extract(base, null, {
    keys: () => ["traceparent", "tracestate"],
    get: (_carrier, key) => get(key) ?? undefined,
  });
}

/** Writes the active (or given) context into carrier fields. */
export function injectContext(set: (key: string, value: string) => void, ctx: Context = context.active()): void {
  propagation.inject(ctx, null, { set: (_carrier, key, value) => set(key, value) });
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "(invalid URL)";
  }
}
