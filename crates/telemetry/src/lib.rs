//! Logs, traces and metrics of authd and introspect, set up the same way for
//! both: the binaries call [`init`] first and [`Telemetry::shutdown`] last;
//! the servers wrap their services in [`RpcLayer`].
//!
//! Layout, one sentence a module, top floor first (each imports only from
//! those below it):
//! - `rpc`: the tower layer giving every RPC a span (parent taken from the
//!   caller's `traceparent`), a log line (every call, or the notable ones)
//!   and its request metrics;
//! - `setup`: the subscriber (JSON or human logs on stderr, plus the
//!   OpenTelemetry layer) and the OTLP providers (gRPC or HTTP/protobuf), configured by the
//!   standard `OTEL_*` variables, with their shutdown guard, and the
//!   Prometheus registry a `/metrics` endpoint scrapes;
//! - `metrics`: the instruments, including observable ones over
//!   `cred_core`'s atomic counters, and the store latency histogram.
//!
//! Nothing here ever records a token or a secret: spans and log lines carry
//! method names, status codes, latencies and tenant ids only.
#![forbid(unsafe_code)]

pub mod metrics;
pub mod rpc;
pub mod setup;

pub use rpc::{CallLog, RpcLayer, record_tenant};
pub use setup::{LogFormat, Scrape, Telemetry, init, init_with};
