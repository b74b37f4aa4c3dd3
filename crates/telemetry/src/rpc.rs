//! The per-RPC tower layer: a span (`rpc.system`, `rpc.service`,
//! `rpc.method`, `rpc.grpc.status_code`, `tenant.id` once a handler knows
//! it), whose parent is the caller's span when the request carries a W3C
//! `traceparent`; a log line when the response is ready; the request
//! metrics.
//!
//! Which calls log at INFO is the service's [`CallLog`]: authd logs every
//! call (each is a state change or an operator's read, and costs a Redis
//! round trip beside which the line is small); introspect, on every
//! request's path, logs what an operator must see (refusals, errors, slow
//! calls) at INFO and a fast OK at DEBUG, so `RUST_LOG=info,cred::rpc=debug`
//! opts into a line per verify, as Envoy's access log is opt-in. A disabled
//! DEBUG line costs one atomic load.
//!
//! Cheap on the hot path: the span exists only for the OpenTelemetry layer
//! (the log layer sees events only, so it formats no span fields), and the
//! tenant travels in a thread-local slot that [`RpcFuture`] swaps in around
//! each poll of the handler (a copied `Uuid`, no allocation), not through
//! `Span::record`.
//!
//! It wraps each API service (not health or reflection, which probes call
//! every few seconds). Method names come from a table built once from the
//! workspace's descriptor set, so a request costs a hash lookup, not a
//! string allocation. The status code is read from the response headers:
//! tonic puts a handler's error there (trailers-only response); a response
//! without it carries a message, i.e. OK, for these unary RPCs.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use prost::Message;
use tracing::Instrument;
use tracing::instrument::Instrumented;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::metrics::{RpcMetrics, rpc_attributes};

thread_local! {
    /// The tenant of the RPC being polled on this thread, if known yet.
    static TENANT: Cell<Option<Uuid>> = const { Cell::new(None) };
}

/// Records the tenant of the current RPC (for its log line and its span).
/// Call from a handler wrapped by [`RpcLayer`]; elsewhere it is ignored.
pub fn record_tenant(id: Uuid) {
    TENANT.with(|t| t.set(Some(id)));
}

/// A method of the API, named once for the process' life.
#[derive(Debug)]
pub struct Method {
    /// `package.Service/Method`: the span name.
    pub full: &'static str,
    /// `package.Service`.
    pub service: &'static str,
    /// `Method`.
    pub method: &'static str,
    /// Its metric points' attributes for each gRPC status code (0 to 16),
    /// built once rather than per call.
    attributes: Vec<[KeyValue; 4]>,
}

impl Method {
    fn new(full: &'static str, service: &'static str, method: &'static str) -> Method {
        let attributes = (0..=16).map(|code| rpc_attributes(service, method, code)).collect();
        Method { full, service, method, attributes }
    }

    /// The attributes of a call that answered `code`.
    fn attributes(&self, code: i32) -> Cow<'_, [KeyValue]> {
        match usize::try_from(code).ok().and_then(|c| self.attributes.get(c)) {
            Some(a) => Cow::Borrowed(a),
            None => Cow::Owned(rpc_attributes(self.service, self.method, code).to_vec()),
        }
    }
}

/// The span attribute naming the call's tenant.
pub const TENANT_ATTRIBUTE: &str = "tenant.id";

/// The methods by request path, hashed with FNV-1a: the keys are fixed at
/// start and the table is only read, so a request path chosen to collide
/// costs a few string comparisons at most, and hashing it costs a few
/// instructions a byte, not SipHash's.
type Table = HashMap<&'static str, Method, fnv::FnvBuildHasher>;

/// What a path not in the table is named.
fn unknown() -> &'static Method {
    static UNKNOWN: OnceLock<Method> = OnceLock::new();
    UNKNOWN.get_or_init(|| Method::new("unknown", "unknown", "unknown"))
}

/// Every method of the workspace's protos, by request path.
fn methods() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let mut table = Table::default();
        // The descriptor set is compiled in; a decode failure would only
        // leave every method named "unknown".
        let set = prost_types::FileDescriptorSet::decode(cred_proto::FILE_DESCRIPTOR_SET).unwrap_or_default();
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for svc in file.service {
                let service = leak(format!("{package}.{}", svc.name.unwrap_or_default()));
                for m in svc.method {
                    let method = leak(m.name.unwrap_or_default());
                    let full = leak(format!("{service}/{method}"));
                    table.insert(leak(format!("/{full}")), Method::new(full, service, method));
                }
            }
        }
        // Served from another crate's protos (envoy-types), not in the set.
        let (service, method) = ("envoy.service.auth.v3.Authorization", "Check");
        table.insert(
            "/envoy.service.auth.v3.Authorization/Check",
            Method::new("envoy.service.auth.v3.Authorization/Check", service, method),
        );
        table
    })
}

/// Whether a status code is a server-side failure (OpenTelemetry's gRPC
/// conventions): the span is then marked as an error.
fn server_error(code: i32) -> bool {
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Which calls of a service log their line at INFO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CallLog {
    /// Every call.
    #[default]
    Every,
    /// Calls that did not answer OK, and calls slower than [`SLOW_CALL`];
    /// the others at DEBUG.
    Notable,
}

/// A call at least this slow logs at INFO whatever its [`CallLog`].
pub const SLOW_CALL: Duration = Duration::from_millis(100);

/// Gives every RPC of the wrapped service a span, a log line and metrics.
#[derive(Clone, Default)]
pub struct RpcLayer {
    /// Shared by every call: one reference count per call, not one per
    /// instrument.
    metrics: Arc<RpcMetrics>,
    log: CallLog,
}

impl RpcLayer {
    /// A layer recording into the current meter provider, logging every
    /// call: build it after [`crate::init`].
    pub fn new() -> RpcLayer {
        methods();
        RpcLayer { metrics: Arc::new(RpcMetrics::new()), log: CallLog::Every }
    }

    /// The same, logging at INFO only the calls `log` names.
    pub fn with_call_log(self, log: CallLog) -> RpcLayer {
        RpcLayer { log, ..self }
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Rpc<S> {
        Rpc { inner, metrics: self.metrics.clone(), log: self.log }
    }
}

/// A service wrapped by [`RpcLayer`].
#[derive(Clone)]
pub struct Rpc<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
    log: CallLog,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Rpc<S> {
    const NAME: &'static str = S::NAME;
}

/// `traceparent` (and `tracestate`) from the request headers.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for Rpc<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RpcFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let m = methods().get(req.uri().path()).unwrap_or_else(unknown);
        let span = tracing::info_span!(
            target: "cred::rpc",
            parent: None,
            "rpc",
            otel.name = m.full,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = m.service,
            rpc.method = m.method,
        );
        if crate::setup::traces_on() && req.headers().contains_key("traceparent") {
            let parent = TraceContextPropagator::new().extract(&Headers(req.headers()));
            // Fails only if the span is disabled, and then there is nothing to link.
            let _ = span.set_parent(parent);
        }
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        RpcFuture {
            inner: fut.instrument(span),
            method: m,
            started: Instant::now(),
            tenant: None,
            metrics: self.metrics.clone(),
            log: self.log,
        }
    }
}

pin_project_lite::pin_project! {
    /// The wrapped call; records the outcome when the response is ready.
    pub struct RpcFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        method: &'static Method,
        started: Instant,
        // The tenant recorded so far (moved in and out of `TENANT` around polls).
        tenant: Option<Uuid>,
        metrics: Arc<RpcMetrics>,
        log: CallLog,
    }
}

impl<F, R, E> Future for RpcFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let outer = TENANT.with(|t| t.replace(*this.tenant));
        let polled = this.inner.as_mut().poll(cx);
        *this.tenant = TENANT.with(|t| t.replace(outer));
        let out = ready!(polled);
        let code = match &out {
            Ok(resp) => resp
                .headers()
                .get(&tonic::Status::GRPC_STATUS)
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(0),
            // The transport failed the call: UNKNOWN.
            Err(_) => 2,
        };
        let elapsed = this.started.elapsed();
        let (m, tenant) = (*this.method, *this.tenant);
        if crate::setup::traces_on() {
            // Straight to the OTLP span: the log layer never formats these.
            let span = this.inner.span();
            span.set_attribute("rpc.grpc.status_code", i64::from(code));
            if let Some(t) = tenant {
                span.set_attribute(TENANT_ATTRIBUTE, t.to_string());
            }
            if server_error(code) {
                span.set_status(opentelemetry::trace::Status::error(""));
            }
        }
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    target: "cred::rpc",
                    method = m.full,
                    code,
                    latency_us = elapsed.as_micros() as u64,
                    tenant_id = tenant.map(tracing::field::display),
                    "rpc"
                )
            };
        }
        if *this.log == CallLog::Notable && code == 0 && elapsed < SLOW_CALL {
            line!(debug);
        } else {
            line!(info);
        }
        this.metrics.record_with(&m.attributes(code), elapsed);
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tower::{Layer, Service, ServiceExt};
    use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};

    use super::*;

    /// The levels of the `cred::rpc` lines the code under test logs.
    #[derive(Clone, Default)]
    struct Levels(Arc<Mutex<Vec<tracing::Level>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Levels {
        fn on_event(&self, e: &tracing::Event<'_>, _: LayerContext<'_, S>) {
            if e.metadata().target() == "cred::rpc" {
                self.0.lock().unwrap().push(*e.metadata().level());
            }
        }
    }

    /// One call through `layer` to a service answering `grpc-status`
    /// `code` after `delay`; the level its line was logged at.
    async fn line_level(layer: RpcLayer, code: &'static str, delay: Duration) -> tracing::Level {
        let levels = Levels::default();
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(levels.clone()));
        let svc = tower::service_fn(move |_req: http::Request<()>| async move {
            tokio::time::sleep(delay).await;
            let mut resp = http::Response::new(());
            if code != "0" {
                resp.headers_mut().insert("grpc-status", http::HeaderValue::from_static(code));
            }
            Ok::<_, std::convert::Infallible>(resp)
        });
        let mut svc = layer.layer(svc);
        let req = http::Request::builder().uri("/introspect.v1.IntrospectService/Verify").body(()).unwrap();
        svc.ready().await.unwrap().call(req).await.unwrap();
        let got = levels.0.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "one line per call: {got:?}");
        got[0]
    }

    #[tokio::test]
    async fn notable_calls_log_at_info_and_a_fast_ok_at_debug() {
        use tracing::Level;
        let every = RpcLayer::default();
        let notable = RpcLayer::default().with_call_log(CallLog::Notable);
        let fast = Duration::ZERO;
        assert_eq!(line_level(every.clone(), "0", fast).await, Level::INFO);
        assert_eq!(line_level(every, "16", fast).await, Level::INFO);
        assert_eq!(line_level(notable.clone(), "0", fast).await, Level::DEBUG);
        assert_eq!(line_level(notable.clone(), "16", fast).await, Level::INFO, "a refusal");
        assert_eq!(line_level(notable.clone(), "14", fast).await, Level::INFO, "an error");
        assert_eq!(line_level(notable, "0", SLOW_CALL).await, Level::INFO, "a slow OK");
    }

    #[test]
    fn every_api_method_is_named() {
        let m = methods().get("/authd.v1.AdminService/CreateTenant").expect("CreateTenant");
        assert_eq!(
            (m.full, m.service, m.method),
            ("authd.v1.AdminService/CreateTenant", "authd.v1.AdminService", "CreateTenant")
        );
        let v = methods().get("/introspect.v1.IntrospectService/Verify").expect("Verify");
        assert_eq!(v.service, "introspect.v1.IntrospectService");
    }
}
