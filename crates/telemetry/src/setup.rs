//! The subscriber, the OTLP providers and the Prometheus registry.
//!
//! Export is on when a collector is configured (`OTEL_EXPORTER_OTLP_ENDPOINT`
//! or its per-signal `..._TRACES_ENDPOINT` / `..._METRICS_ENDPOINT`) and
//! `OTEL_SDK_DISABLED` is not `true`; otherwise no exporter is built, so
//! nothing is sent and nothing complains. `OTEL_TRACES_EXPORTER` /
//! `OTEL_METRICS_EXPORTER` = `none` turn one signal off.
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (or its per-signal `..._TRACES_PROTOCOL` /
//! `..._METRICS_PROTOCOL`) picks `grpc` (the default here) or
//! `http/protobuf`; over HTTP the SDK appends `/v1/traces` and `/v1/metrics`
//! to `OTEL_EXPORTER_OTLP_ENDPOINT` (a per-signal endpoint is used as is),
//! and a blocking client (reqwest, rustls; the system's roots, which
//! `SSL_CERT_FILE` can replace) runs on the SDK's own export threads, which
//! have no tokio runtime. Everything else
//! (service name, resource attributes, sampler, export interval, headers,
//! timeouts) is read by the OpenTelemetry SDK itself from the standard
//! variables. Independently, a binary asked to serve Prometheus gets a
//! registry the same instruments feed ([`Scrape`]), with or without OTLP.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, global};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How log lines look on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable lines (dev mode).
    Human,
}

/// Whether spans are exported: the RPC layer only parses `traceparent` then.
static TRACES_ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported.
pub fn traces_on() -> bool {
    TRACES_ON.load(Ordering::Relaxed)
}

/// How one signal reaches the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (`grpc`).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`).
    HttpProtobuf,
}

/// Which signals to export, and how, from the environment (`None`: off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Export {
    pub traces: Option<Protocol>,
    pub metrics: Option<Protocol>,
}

impl Export {
    /// Reads the `OTEL_*` switches; a value this build cannot honour fails,
    /// naming the variable.
    pub fn from_env() -> Result<Export, String> {
        Export::from_vars(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Export, String> {
        let off = Export { traces: None, metrics: None };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(off);
        }
        // The per-signal variable wins over the general one, as in the SDK.
        let protocol = |signal: &str| {
            let (name, v) = [signal, "OTEL_EXPORTER_OTLP_PROTOCOL"]
                .into_iter()
                .find_map(|n| var(n).map(|v| (n, v)))
                .unwrap_or(("", "grpc".into()));
            match v.trim() {
                "grpc" => Ok(Protocol::Grpc),
                "http/protobuf" => Ok(Protocol::HttpProtobuf),
                _ => Err(format!("{name}={v}: only grpc or http/protobuf is supported")),
            }
        };
        let exporter = |name: &str| match var(name).as_deref().map(str::trim) {
            None | Some("otlp") => Ok(true),
            Some("none") => Ok(false),
            Some(v) => Err(format!("{name}={v}: only otlp or none is supported")),
        };
        let any = var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        let traces = protocol("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")?;
        let metrics = protocol("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")?;
        Ok(Export {
            traces: (exporter("OTEL_TRACES_EXPORTER")? && (any || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()))
                .then_some(traces),
            metrics: (exporter("OTEL_METRICS_EXPORTER")?
                && (any || var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").is_some()))
            .then_some(metrics),
        })
    }
}

/// The running providers; [`Telemetry::shutdown`] flushes them.
#[must_use = "call shutdown() before exit, or the last spans and metrics are lost"]
pub struct Telemetry {
    /// Exports spans in batches; `None` when traces are off.
    traces: Option<SdkTracerProvider>,
    /// Exports metrics periodically and/or feeds the Prometheus registry;
    /// `None` when neither is on.
    metrics: Option<SdkMeterProvider>,
    /// The Prometheus registry, when asked for.
    scrape: Option<Scrape>,
}

/// The metrics in Prometheus' text exposition format, on demand (a
/// scrape collects the instruments then).
#[derive(Clone)]
pub struct Scrape(prometheus::Registry);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

impl Scrape {
    /// The content type of [`Scrape::text`].
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    /// Every metric, now, in the text format.
    pub fn text(&self) -> String {
        use prometheus::Encoder as _;
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.0.gather(), &mut out) {
            tracing::warn!(error = %e, "prometheus encoding");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Sets up logs on stderr and, when a collector is configured, OTLP export
/// of spans and metrics. `service` is the default `service.name`
/// (`OTEL_SERVICE_NAME` wins). Call once, early, inside the tokio runtime
/// (the gRPC exporter's channel lives on it).
pub fn init(service: &'static str, format: LogFormat) -> Result<Telemetry, String> {
    init_with(service, format, false)
}

/// [`init`], and with `prometheus` a registry for [`Telemetry::scrape`].
pub fn init_with(service: &'static str, format: LogFormat, prometheus: bool) -> Result<Telemetry, String> {
    let export = Export::from_env()?;
    // The OTLP/HTTP client's rustls (for an https:// collector) takes the
    // process default provider; ring, as everywhere else here. An Err means
    // one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resource = resource(service);
    let traces = if let Some(protocol) = export.traces {
        let exporter = match protocol {
            Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder().with_tonic().build(),
            Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .build(),
        }
        .map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT (traces): {e}"))?;
        // The sampler comes from OTEL_TRACES_SAMPLER(_ARG): the SDK's default config reads them.
        Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.clone()).build())
    } else {
        None
    };
    let mut meters = SdkMeterProvider::builder().with_resource(resource);
    if let Some(protocol) = export.metrics {
        let exporter = match protocol {
            Protocol::Grpc => opentelemetry_otlp::MetricExporter::builder().with_tonic().build(),
            Protocol::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .build(),
        }
        .map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT (metrics): {e}"))?;
        // The interval comes from OTEL_METRIC_EXPORT_INTERVAL (default 60 s).
        meters = meters.with_periodic_exporter(exporter);
    }
    let scrape = if prometheus {
        let registry = prometheus::Registry::new();
        let reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(|e| format!("prometheus exporter: {e}"))?;
        meters = meters.with_reader(reader);
        Some(Scrape(registry))
    } else {
        None
    };
    let metrics = (export.metrics.is_some() || prometheus).then(|| meters.build());

    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr).json().with_span_list(false).boxed()
        }
        // Colours only for a terminal: a file or a pipe gets plain text.
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
    };
    // The log layer sees events only: formatting span fields on every call
    // would cost more than the line itself (spans are for the collector).
    let events = env.and(filter_fn(|m| m.is_event()));
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![logs.with_filter(events).boxed()];
    if let Some(p) = &traces {
        // Only this workspace's spans (RPCs and store calls) become OTLP
        // spans; log events stay in the logs.
        // No busy/idle timing, thread or source attributes, and no OTel
        // context activation on every enter: nothing here reads them, and
        // each costs on every call.
        let otel = tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_context_activation(false)
            .with_filter(filter_fn(|m| m.is_span() && m.target().starts_with("cred::")));
        layers.push(otel.boxed());
    }
    tracing_subscriber::registry().with(layers).try_init().map_err(|e| format!("logging setup: {e}"))?;

    global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(m) = &metrics {
        global::set_meter_provider(m.clone());
    }
    TRACES_ON.store(traces.is_some(), Ordering::Relaxed);
    tracing::debug!(traces = ?export.traces, metrics = ?export.metrics, "telemetry export");
    Ok(Telemetry { traces, metrics, scrape })
}

/// The SDK's resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES), with
/// `service` as the name when neither gives one.
fn resource(service: &'static str) -> Resource {
    let r = Resource::builder().build();
    let named =
        r.get(&Key::from_static_str("service.name")).is_some_and(|v| !v.as_str().starts_with("unknown_service"));
    if named { r } else { Resource::builder().with_service_name(service).build() }
}

impl Telemetry {
    /// The Prometheus registry, when [`init_with`] was asked for one.
    pub fn scrape(&self) -> Option<Scrape> {
        self.scrape.clone()
    }

    /// Whether anything is exported.
    pub fn exporting(&self) -> bool {
        self.traces.is_some() || self.metrics.is_some()
    }

    /// Flushes and stops the exporters: the spans of the last calls and a
    /// final metric collection are sent before this returns.
    pub async fn shutdown(self) {
        TRACES_ON.store(false, Ordering::Relaxed);
        // The SDK's shutdown blocks until its export thread is done; keep it
        // off the runtime's threads, which drive the exporter's connection.
        let done = tokio::task::spawn_blocking(move || {
            if let Some(t) = self.traces
                && let Err(e) = t.shutdown()
            {
                tracing::warn!(error = %e, "trace export shutdown");
            }
            if let Some(m) = self.metrics
                && let Err(e) = m.shutdown()
            {
                tracing::warn!(error = %e, "metric export shutdown");
            }
        });
        let _ = done.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(vars: &[(&str, &str)]) -> Result<Export, String> {
        Export::from_vars(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn export_follows_the_standard_variables() {
        let (g, h) = (Some(Protocol::Grpc), Some(Protocol::HttpProtobuf));
        let on = Export { traces: g, metrics: g };
        let off = Export { traces: None, metrics: None };
        assert_eq!(export(&[]), Ok(off), "no collector configured: nothing exported");
        assert_eq!(export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")]), Ok(on));
        let ep = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317");
        assert_eq!(export(&[ep, ("OTEL_SDK_DISABLED", "true")]), Ok(off));
        assert_eq!(export(&[ep, ("OTEL_TRACES_EXPORTER", "none")]), Ok(Export { traces: None, metrics: g }));
        assert_eq!(
            export(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://127.0.0.1:4317")]),
            Ok(Export { traces: None, metrics: g })
        );
        let http = ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        assert_eq!(export(&[ep, http]), Ok(Export { traces: h, metrics: h }));
        let grpc_traces = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc");
        assert_eq!(export(&[ep, http, grpc_traces]), Ok(Export { traces: g, metrics: h }), "per signal wins");
        let e = export(&[ep, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/json"), "{e}");
        let e = export(&[ep, ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "thrift")]).unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"), "{e}");
        let e = export(&[ep, ("OTEL_METRICS_EXPORTER", "prometheus")]).unwrap_err();
        assert!(e.contains("OTEL_METRICS_EXPORTER"), "{e}");
    }
}
