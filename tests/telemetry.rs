//! Telemetry of the real binaries: spans and metrics exported over OTLP/gRPC
//! and OTLP/HTTP (protobuf) to a real receiver (opentelemetry-proto's
//! collector services and messages, in this process), trace context continued from the caller's `traceparent`, the
//! exporters flushed on SIGTERM, and the JSON logs: one line per RPC, no
//! secret anywhere, nothing complaining when no collector is configured.
//!
//! Runs `target/<profile>/authd` and `.../introspect`: `cargo test` does not
//! build another package's binaries, so run `cargo build --workspace --bins`
//! first (`scripts/test.sh` does); a missing binary fails the test, naming
//! the command. Needs `redis-server` (fails loudly without it).

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cred_proto::authd::v1 as pb;
use cred_proto::introspect::v1 as ipb;
use cred_tests::RedisServer;
use cred_tests::binaries::{Operator, Proc, bin, operator};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tonic::Code;

/// Starts authd and introspect against `redis`, with `env` on top of a
/// cleared environment (so no stray OTEL_* from the caller).
fn start(redis: &RedisServer, op: &Operator, env: &[(&str, String)]) -> (Proc, String, Proc, String) {
    let mut a = Command::new(bin("authd"));
    a.env_clear()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("AUTHD_REDIS_URL", redis.url())
        .env("AUTHD_OPERATOR_SECRET_FILE", op.dir.path().join("secret"))
        .env("AUTHD_OPERATOR_ALLOWLIST_FILE", op.dir.path().join("allowlist"))
        .env("AUTHD_DRAIN_TIMEOUT_MS", "2000")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut i = Command::new(bin("introspect"));
    i.env_clear()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("INTROSPECT_REDIS_URL", redis.url())
        .env("INTROSPECT_DRAIN_TIMEOUT_MS", "2000")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let (mut authd, mut introspect) = (Proc::spawn(a), Proc::spawn(i));
    let (aa, ia) = (authd.wait_serving(), introspect.wait_serving());
    (authd, aa, introspect, ia)
}

// ---------------------------------------------------------------- clients

/// A request with a bearer token and, if given, a W3C traceparent.
fn req<T>(token: &str, traceparent: Option<&str>, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if !token.is_empty() {
        r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    if let Some(tp) = traceparent {
        r.metadata_mut().insert("traceparent", tp.parse().unwrap());
    }
    r
}

async fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

struct Clients {
    admin: pb::admin_service_client::AdminServiceClient<tonic::transport::Channel>,
    clients: pb::client_service_client::ClientServiceClient<tonic::transport::Channel>,
    sessions: pb::session_service_client::SessionServiceClient<tonic::transport::Channel>,
    verify: ipb::introspect_service_client::IntrospectServiceClient<tonic::transport::Channel>,
}

async fn clients(authd: &str, introspect: &str) -> Clients {
    let ch = channel(authd).await;
    Clients {
        admin: pb::admin_service_client::AdminServiceClient::new(ch.clone()),
        clients: pb::client_service_client::ClientServiceClient::new(ch.clone()),
        sessions: pb::session_service_client::SessionServiceClient::new(ch),
        verify: ipb::introspect_service_client::IntrospectServiceClient::new(channel(introspect).await),
    }
}

fn verify_req(token: &str) -> ipb::VerifyRequest {
    ipb::VerifyRequest { token: token.into(), ..Default::default() }
}

/// Every secret a flow saw: whole tokens, their 256-bit secret parts (the
/// 44 characters before the 6-character checksum), the operator secret.
fn secrets(op: &Operator, tokens: &[&str]) -> Vec<String> {
    let mut out = vec![op.secret.clone(), op.token.clone()];
    for t in tokens {
        assert!(t.len() > 60, "not a token: {t}");
        out.push(t.to_string());
        out.push(t[t.len() - 50..t.len() - 6].to_string());
    }
    out
}

// ---------------------------------------------------------------- receiver

/// An OTLP/gRPC receiver: keeps every export request, decoded and encoded.
#[derive(Clone, Default)]
struct Receiver {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    /// OTLP/HTTP only: the (path, content-type) of every request.
    posts: Arc<Mutex<Vec<(String, String)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.traces.lock().unwrap().push(r.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        r: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics.lock().unwrap().push(r.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let rx = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(rx.clone()))
            .add_service(MetricsServiceServer::new(rx.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        (rx, format!("http://{addr}"))
    }

    /// An OTLP/HTTP receiver (`http/protobuf`): `POST /v1/traces` and
    /// `/v1/metrics`, bodies decoded as the collector's request messages.
    async fn start_http() -> (Receiver, String) {
        let (rx, app) = Receiver::http_app();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (rx, format!("http://{addr}"))
    }

    /// [`Receiver::start_http`] over TLS only, with a certificate for
    /// 127.0.0.1 from a CA made now: (receiver, https endpoint, CA PEM).
    async fn start_https() -> (Receiver, String, String) {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, "credd test OTLP CA");
        let ca = rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &ca).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (rx, app) = Receiver::http_app();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        (rx, format!("https://{addr}"), ca.pem())
    }

    fn http_app() -> (Receiver, axum::Router) {
        use axum::body::Bytes;
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode, Uri, header};

        async fn post(State(rx): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> (StatusCode, Vec<u8>) {
            let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
            rx.posts.lock().unwrap().push((uri.path().to_string(), ct.to_string()));
            let answer = match uri.path() {
                "/v1/traces" => ExportTraceServiceRequest::decode(body).map(|r| {
                    rx.traces.lock().unwrap().push(r);
                    ExportTraceServiceResponse::default().encode_to_vec()
                }),
                _ => ExportMetricsServiceRequest::decode(body).map(|r| {
                    rx.metrics.lock().unwrap().push(r);
                    ExportMetricsServiceResponse::default().encode_to_vec()
                }),
            };
            match answer {
                Ok(b) => (StatusCode::OK, b),
                Err(e) => (StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
            }
        }
        let rx = Receiver::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(post))
            .route("/v1/metrics", axum::routing::post(post))
            .with_state(rx.clone());
        (rx, app)
    }

    /// Every span exported by `service`.
    fn spans(&self, service: &str) -> Vec<Span> {
        let mut out = vec![];
        for r in self.traces.lock().unwrap().iter() {
            for rs in &r.resource_spans {
                let res = rs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
                if str_attr(res, "service.name") == Some(service) {
                    out.extend(rs.scope_spans.iter().flat_map(|s| s.spans.iter().cloned()));
                }
            }
        }
        out
    }

    /// The data of every metric named `name` exported by `service`.
    fn metric(&self, service: &str, name: &str) -> Vec<metric::Data> {
        let mut out = vec![];
        for r in self.metrics.lock().unwrap().iter() {
            for rm in &r.resource_metrics {
                let res = rm.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
                if str_attr(res, "service.name") != Some(service) {
                    continue;
                }
                for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                    if m.name == name {
                        out.extend(m.data.clone());
                    }
                }
            }
        }
        out
    }

    /// A counter's total over the data points with all of `attrs`, in its
    /// latest export (the values are cumulative).
    fn counter(&self, service: &str, name: &str, attrs: &[(&str, &str)]) -> i64 {
        let mut best = 0;
        for d in self.metric(service, name) {
            let metric::Data::Sum(s) = d else { panic!("{name} is not a sum") };
            let total = s
                .data_points
                .iter()
                .filter(|p| attrs.iter().all(|(k, v)| attr_text(&p.attributes, k).as_deref() == Some(*v)))
                .map(|p| match p.value {
                    Some(number_data_point::Value::AsInt(i)) => i,
                    Some(number_data_point::Value::AsDouble(f)) => f as i64,
                    None => 0,
                })
                .sum();
            best = best.max(total);
        }
        best
    }

    /// Every byte exported, re-encoded as it came over the wire.
    fn bytes(&self) -> Vec<u8> {
        let mut out = vec![];
        for r in self.traces.lock().unwrap().iter() {
            out.extend(r.encode_to_vec());
        }
        for r in self.metrics.lock().unwrap().iter() {
            out.extend(r.encode_to_vec());
        }
        out
    }
}

fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

/// An attribute as text, whatever its type.
fn attr_text(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v: &AnyValue = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    Some(match v.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------- tests

/// SERVER span kind in OTLP.
const SERVER: i32 = 2;

// Multi-threaded: the receiver keeps serving while the test thread waits for
// the processes to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_a_real_otlp_receiver_and_carry_no_secret() {
    let redis = RedisServer::start();
    let op = operator();
    let (rx, endpoint) = Receiver::start().await;
    // Export only at shutdown (long batch delay and interval): what arrives
    // proves the SIGTERM flush.
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000".to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "600000".to_string()),
    ];
    let (mut authd, aaddr, mut introspect, iaddr) = start(&redis, &op, &env);
    let mut c = clients(&aaddr, &iaddr).await;

    // The caller's trace: every call below continues it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let tp = format!("00-{trace_id}-{parent}-01");
    let tp = Some(tp.as_str());

    let tenant = c
        .admin
        .create_tenant(req(&op.token, tp, pb::CreateTenantRequest { name: "t".into(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap()
        .tenant_id;
    let key = c
        .admin
        .create_api_key(req(
            &op.token,
            tp,
            pb::CreateApiKeyRequest {
                tenant_id: tenant.clone(),
                environment: pb::Environment::Production.into(),
                name: "k".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let created =
        c.clients.create_client(req(&key, tp, pb::CreateClientRequest::default())).await.unwrap().into_inner();
    let (client_id, cst) = (created.client.unwrap().client_id, created.token);
    let second = c
        .clients
        .create_session(req(&key, tp, pb::CreateSessionRequest { client_id: client_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    let (session2, cst2) = (second.session.unwrap().session_id, second.token);

    let v = c.verify.verify(req("", tp, verify_req(&cst))).await.unwrap().into_inner();
    assert_eq!(v.tenant_id, tenant);
    c.verify.verify(req("", tp, verify_req(&cst))).await.unwrap();
    c.verify.verify(req("", tp, verify_req(&cst2))).await.unwrap();
    let e = c.verify.verify(req("", tp, verify_req("garbage"))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // A revocation reaches introspect by push: the cached answer turns.
    c.clients
        .revoke_session(req(&key, tp, pb::RevokeSessionRequest { client_id, session_id: session2 }))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.verify.verify(req("", None, verify_req(&cst2))).await.is_ok() {
        assert!(Instant::now() < deadline, "the revocation never reached introspect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert!(rx.spans("authd").is_empty(), "spans arrived before shutdown; the flush test proves nothing");
    assert_eq!(authd.terminate(), Some(0), "authd exit:\n{}", authd.lines().join("\n"));
    assert_eq!(introspect.terminate(), Some(0), "introspect exit:\n{}", introspect.lines().join("\n"));

    // Spans: the RPC span's parent is the caller's span; store calls are its children.
    for (service, rpcs) in [
        (
            "authd",
            &[
                "authd.v1.AdminService/CreateTenant",
                "authd.v1.AdminService/CreateApiKey",
                "authd.v1.ClientService/CreateClient",
                "authd.v1.ClientService/CreateSession",
                "authd.v1.ClientService/RevokeSession",
            ][..],
        ),
        ("introspect", &["introspect.v1.IntrospectService/Verify"][..]),
    ] {
        let spans = rx.spans(service);
        for name in rpcs {
            let rpc = spans.iter().find(|s| s.name == *name).unwrap_or_else(|| {
                panic!("{service}: no span {name} among {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>())
            });
            assert_eq!(hex(&rpc.trace_id), trace_id, "{name}: the caller's trace continues");
            assert_eq!(hex(&rpc.parent_span_id), parent, "{name}: parent is the caller's span");
            assert_eq!(rpc.kind, SERVER, "{name}");
            let (service_name, method) = name.split_once('/').unwrap();
            assert_eq!(str_attr(&rpc.attributes, "rpc.system"), Some("grpc"), "{name}");
            assert_eq!(str_attr(&rpc.attributes, "rpc.service"), Some(service_name), "{name}");
            assert_eq!(str_attr(&rpc.attributes, "rpc.method"), Some(method), "{name}");
            assert_eq!(attr_text(&rpc.attributes, "rpc.grpc.status_code").as_deref(), Some("0"), "{name}");
            assert_eq!(str_attr(&rpc.attributes, "tenant.id"), Some(tenant.as_str()), "{name}: tenant id");
        }
        // Every store call made inside an RPC is a child of that RPC's span.
        let rpc_ids: Vec<_> = spans.iter().filter(|s| s.kind == SERVER).map(|s| s.span_id.clone()).collect();
        let store: Vec<_> = spans.iter().filter(|s| str_attr(&s.attributes, "db.operation.name").is_some()).collect();
        for name in rpcs.iter().filter(|n| !n.ends_with("/Verify")) {
            let rpc = spans.iter().find(|s| s.name == *name).unwrap();
            assert!(
                store.iter().any(|s| s.parent_span_id == rpc.span_id && s.trace_id == rpc.trace_id),
                "{name}: no store child span"
            );
        }
        assert!(store.iter().any(|s| rpc_ids.contains(&s.parent_span_id)), "{service}: no store span under an RPC");
    }
    let verifies: Vec<_> = rx.spans("introspect").into_iter().filter(|s| s.name.ends_with("/Verify")).collect();
    let miss = &verifies[0];
    let children: Vec<_> =
        rx.spans("introspect").into_iter().filter(|s| s.parent_span_id == miss.span_id).map(|s| s.name).collect();
    assert!(children.iter().any(|n| n == "get_session"), "the first verify read the store: {children:?}");
    let refused = verifies.iter().find(|s| attr_text(&s.attributes, "rpc.grpc.status_code").as_deref() == Some("16"));
    assert!(refused.is_some(), "the garbage token's verify is UNAUTHENTICATED (16)");

    // Metrics.
    let ok = [("rpc.method", "CreateTenant"), ("rpc.grpc.status_code", "0"), ("rpc.system", "grpc")];
    assert_eq!(rx.counter("authd", "rpc.server.requests", &ok), 1);
    assert!(rx.counter("introspect", "rpc.server.requests", &[("rpc.method", "Verify")]) >= 4);
    assert_eq!(rx.counter("introspect", "cred.verify.outcomes", &[("outcome", "MALFORMED")]), 1);
    assert!(rx.counter("introspect", "cred.verify.outcomes", &[("outcome", "VALID")]) >= 3);
    assert!(rx.counter("introspect", "cred.verify.outcomes", &[("outcome", "REVOKED")]) >= 1);
    assert!(rx.counter("introspect", "cred.cache.hits", &[("cache", "verify")]) >= 1);
    assert!(rx.counter("introspect", "cred.cache.misses", &[("cache", "verify")]) >= 2);
    assert!(rx.counter("introspect", "cred.invalidations.received", &[("cache", "verify")]) >= 1);
    let touches =
        rx.counter("introspect", "cred.touches.written", &[]) + rx.counter("introspect", "cred.touches.coalesced", &[]);
    assert!(touches >= 3, "every valid session verify is a touch, written or coalesced");
    for service in ["authd", "introspect"] {
        let store = rx.metric(service, "cred.store.duration");
        let count: u64 = store
            .iter()
            .map(|d| match d {
                metric::Data::Histogram(h) => h.data_points.iter().map(|p| p.count).sum::<u64>(),
                _ => panic!("cred.store.duration is not a histogram"),
            })
            .sum();
        assert!(count >= 1, "{service}: no store latency recorded");
    }

    // No secret anywhere in what was exported.
    let bytes = rx.bytes();
    assert!(bytes.len() > 1000, "hardly anything exported");
    for s in secrets(&op, &[&key, &cst, &cst2]) {
        assert!(!contains(&bytes, s.as_bytes()), "a secret was exported: {}..", &s[..8]);
    }
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`: both binaries post spans and
/// metrics to `<endpoint>/v1/traces` and `/v1/metrics` (the SDK's batch and
/// periodic threads, no tokio runtime there), while serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_a_real_otlp_http_receiver() {
    let (rx, endpoint) = Receiver::start_http().await;
    exports_over_http(rx, endpoint, vec![]).await;
}

/// The same to an `https://` collector whose CA is given by `SSL_CERT_FILE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_an_otlp_https_receiver() {
    let (rx, endpoint, ca) = Receiver::start_https().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
    let ca_file = dir.path().join("ca.pem").display().to_string();
    exports_over_http(rx, endpoint, vec![("SSL_CERT_FILE", ca_file)]).await;
}

async fn exports_over_http(rx: Receiver, endpoint: String, extra: Vec<(&str, String)>) {
    let redis = RedisServer::start();
    let op = operator();
    // Short delays: the exports must arrive while the processes run, not
    // only from the flush at shutdown.
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200".to_string()),
    ];
    env.extend(extra);
    let (mut authd, aaddr, mut introspect, iaddr) = start(&redis, &op, &env);
    let mut c = clients(&aaddr, &iaddr).await;
    let tp = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    let t =
        c.admin.create_tenant(req(&op.token, tp, pb::CreateTenantRequest { name: "t".into(), ..Default::default() }));
    t.await.unwrap();
    let e = c.verify.verify(req("", tp, verify_req("garbage"))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    let ok = [("rpc.method", "CreateTenant"), ("rpc.grpc.status_code", "0")];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let spans = |s| rx.spans(s).iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        let (a, i) = (spans("authd"), spans("introspect"));
        let done = a.iter().any(|n| n == "authd.v1.AdminService/CreateTenant")
            && i.iter().any(|n| n == "introspect.v1.IntrospectService/Verify")
            && rx.counter("authd", "rpc.server.requests", &ok) == 1
            && rx.counter("introspect", "cred.verify.outcomes", &[("outcome", "MALFORMED")]) == 1;
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no OTLP/HTTP export within 15 s: authd spans {a:?}, introspect spans {i:?}, posts {:?}\nauthd:\n{}\nintrospect:\n{}",
            rx.posts.lock().unwrap(),
            authd.lines().join("\n"),
            introspect.lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let verify = rx.spans("introspect").into_iter().find(|s| s.name.ends_with("/Verify")).unwrap();
    assert_eq!(hex(&verify.trace_id), "0af7651916cd43dd8448eb211c80319c", "the caller's trace continues");
    for (path, ct) in rx.posts.lock().unwrap().iter() {
        assert!(path == "/v1/traces" || path == "/v1/metrics", "{path}");
        assert_eq!(ct, "application/x-protobuf", "{path}");
    }
    assert_eq!(authd.terminate(), Some(0), "authd exit:\n{}", authd.lines().join("\n"));
    assert_eq!(introspect.terminate(), Some(0), "introspect exit:\n{}", introspect.lines().join("\n"));
    for (name, p) in [("authd", &authd), ("introspect", &introspect)] {
        for l in p.lines() {
            let level = json(&l)["level"].as_str().unwrap_or_default().to_string();
            assert!(level == "INFO" || level == "DEBUG", "{name}: the export complained: {l}");
        }
    }
}

/// One parsed JSON log line.
fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"))
}

/// The per-RPC lines: (method, code, latency_us, tenant).
fn rpc_lines(p: &Proc) -> Vec<(String, i64, u64, Option<String>)> {
    p.lines()
        .iter()
        .map(|l| json(l))
        .filter(|v| v["fields"]["message"] == "rpc")
        .map(|v| {
            let f = &v["fields"];
            (
                f["method"].as_str().expect("method").to_string(),
                f["code"].as_i64().expect("code"),
                f["latency_us"].as_u64().expect("latency_us"),
                f["tenant_id"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_flow_logs_one_json_line_per_rpc_and_no_secret() {
    // authd: one line per call. introspect: one per refusal (a fast OK is
    // at DEBUG).
    let redis = RedisServer::start();
    let op = operator();
    // No collector configured: nothing exported, nothing complains. The
    // flow uses test credentials (a test client key needs a test API key):
    // this replica accepts both environments.
    let any = [("INTROSPECT_ENVIRONMENT", "any".to_string())];
    let (mut authd, aaddr, mut introspect, iaddr) = start(&redis, &op, &any);
    let mut c = clients(&aaddr, &iaddr).await;
    let o = op.token.as_str();
    // (method, code, tenant expected on the line) of every call, in order.
    let mut want_authd: Vec<(&str, Code, bool)> = vec![];
    let mut want_introspect: Vec<(&str, Code, bool)> = vec![];

    let t = c.admin.create_tenant(req(o, None, pb::CreateTenantRequest { name: "t".into(), ..Default::default() }));
    let tenant = t.await.unwrap().into_inner().tenant.unwrap().tenant_id;
    want_authd.push(("CreateTenant", Code::Ok, true));
    c.admin.get_tenant(req(o, None, pb::GetTenantRequest { tenant_id: tenant.clone() })).await.unwrap();
    want_authd.push(("GetTenant", Code::Ok, true));
    let new_key = |name: &str| pb::CreateApiKeyRequest {
        tenant_id: tenant.clone(),
        environment: pb::Environment::Test.into(),
        name: name.into(),
        ..Default::default()
    };
    let issued = c.admin.create_api_key(req(o, None, new_key("k"))).await.unwrap().into_inner();
    let (key, key_id) = (issued.secret, issued.api_key.unwrap().key_id);
    want_authd.push(("CreateApiKey", Code::Ok, true));
    c.admin
        .list_api_keys(req(o, None, pb::ListApiKeysRequest { tenant_id: tenant.clone(), ..Default::default() }))
        .await
        .unwrap();
    want_authd.push(("ListApiKeys", Code::Ok, true));
    let created = c.clients.create_client(req(&key, None, pb::CreateClientRequest::default())).await.unwrap();
    let created = created.into_inner();
    let (client_id, cst) = (created.client.unwrap().client_id, created.token);
    want_authd.push(("CreateClient", Code::Ok, true));
    let s2 = c.clients.create_session(req(&key, None, pb::CreateSessionRequest { client_id: client_id.clone() }));
    let s2 = s2.await.unwrap().into_inner();
    let (session2, cst2) = (s2.session.unwrap().session_id, s2.token);
    want_authd.push(("CreateSession", Code::Ok, true));
    let test = c.clients.create_test_client(req(&key, None, pb::CreateTestClientRequest::default())).await.unwrap();
    let tck = test.into_inner().token;
    want_authd.push(("CreateTestClient", Code::Ok, true));
    c.clients.get_client(req(&key, None, pb::GetClientRequest { client_id: client_id.clone() })).await.unwrap();
    want_authd.push(("GetClient", Code::Ok, true));
    c.clients
        .list_sessions(req(&key, None, pb::ListSessionsRequest { client_id: client_id.clone(), ..Default::default() }))
        .await
        .unwrap();
    want_authd.push(("ListSessions", Code::Ok, true));
    c.sessions.get_current_session(req(&cst, None, pb::GetCurrentSessionRequest {})).await.unwrap();
    want_authd.push(("GetCurrentSession", Code::Ok, true));

    // introspect logs a fast OK verify at DEBUG only (off under the default
    // RUST_LOG): `introspect_logs_every_verify_when_asked` checks those lines.
    for t in [&cst, &cst2, &tck, &key] {
        c.verify.verify(req("", None, verify_req(t))).await.unwrap();
    }
    let e = c.verify.verify(req("", None, verify_req("garbage"))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    want_introspect.push(("Verify", Code::Unauthenticated, false));
    let scoped =
        ipb::VerifyRequest { token: cst.clone(), required_scopes: vec!["clients.read".into()], ..Default::default() };
    let e = c.verify.verify(req("", None, scoped)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    want_introspect.push(("Verify", Code::PermissionDenied, false));
    let bad =
        ipb::VerifyRequest { token: cst.clone(), required_scopes: vec!["NOT A SCOPE".into()], ..Default::default() };
    let e = c.verify.verify(req("", None, bad)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    want_introspect.push(("Verify", Code::InvalidArgument, false));

    let revoke = pb::RevokeSessionRequest { client_id: client_id.clone(), session_id: session2 };
    c.clients.revoke_session(req(&key, None, revoke)).await.unwrap();
    want_authd.push(("RevokeSession", Code::Ok, true));
    let e = c.sessions.get_current_session(req(&cst2, None, pb::GetCurrentSessionRequest {})).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    want_authd.push(("GetCurrentSession", Code::Unauthenticated, false));
    let rolled = pb::RollApiKeyRequest { tenant_id: tenant.clone(), key_id, grace_period: None };
    let rolled = c.admin.roll_api_key(req(o, None, rolled)).await.unwrap().into_inner();
    let (key2, key2_id) = (rolled.secret, rolled.api_key.unwrap().key_id);
    want_authd.push(("RollApiKey", Code::Ok, true));
    let audit = pb::ListAuditEventsRequest { tenant_id: tenant.clone(), ..Default::default() };
    c.admin.list_audit_events(req(o, None, audit)).await.unwrap();
    want_authd.push(("ListAuditEvents", Code::Ok, true));
    let all = pb::RevokeAllSessionsRequest { client_id: client_id.clone() };
    c.clients.revoke_all_sessions(req(&key2, None, all)).await.unwrap();
    want_authd.push(("RevokeAllSessions", Code::Ok, true));
    c.clients.delete_client(req(&key2, None, pb::DeleteClientRequest { client_id })).await.unwrap();
    want_authd.push(("DeleteClient", Code::Ok, true));
    let rk = pb::RevokeApiKeyRequest { tenant_id: tenant.clone(), key_id: key2_id, include_successor: false };
    c.admin.revoke_api_key(req(o, None, rk)).await.unwrap();
    want_authd.push(("RevokeApiKey", Code::Ok, true));
    let rt = pb::RevokeTenantCredentialsRequest { tenant_id: tenant.clone(), ..Default::default() };
    c.admin.revoke_tenant_credentials(req(o, None, rt)).await.unwrap();
    want_authd.push(("RevokeTenantCredentials", Code::Ok, true));
    // Failures.
    let e = c.clients.create_client(req("garbage", None, pb::CreateClientRequest::default())).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    want_authd.push(("CreateClient", Code::Unauthenticated, false));
    let e = c.admin.get_tenant(req(o, None, pb::GetTenantRequest { tenant_id: "nope".into() })).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    want_authd.push(("GetTenant", Code::InvalidArgument, false));
    let e = c.admin.create_tenant(req("", None, pb::CreateTenantRequest::default())).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    want_authd.push(("CreateTenant", Code::Unauthenticated, false));

    assert_eq!(authd.terminate(), Some(0));
    assert_eq!(introspect.terminate(), Some(0));

    for (name, p, want) in [("authd", &authd, &want_authd), ("introspect", &introspect, &want_introspect)] {
        let got = rpc_lines(p);
        assert_eq!(got.len(), want.len(), "{name}: one line per RPC:\n{}", p.lines().join("\n"));
        for ((method, code, _latency, tenant_on_line), (want_method, want_code, want_tenant)) in got.iter().zip(want) {
            assert!(method.ends_with(&format!("/{want_method}")), "{name}: {method} for {want_method}");
            assert_eq!(*code, *want_code as i64, "{name}: {method}");
            if *want_tenant {
                assert_eq!(tenant_on_line.as_deref(), Some(tenant.as_str()), "{name}: {method} names the tenant");
            } else {
                assert_eq!(*tenant_on_line, None, "{name}: {method}: no tenant known");
            }
        }
        // Nothing complains without a collector (or at all, in these flows).
        for l in p.lines() {
            let level = json(&l)["level"].as_str().unwrap_or_default().to_string();
            assert!(level == "INFO" || level == "DEBUG", "{name}: {l}");
        }
        let all = p.lines().join("\n");
        for s in secrets(&op, &[&key, &key2, &cst, &cst2, &tck]) {
            assert!(!all.contains(&s), "{name} logged a secret: {}..", &s[..8]);
        }
    }
}

/// `RUST_LOG=info,cred::rpc=debug` turns on introspect's line for every
/// verify, OK ones at DEBUG with the tenant; refusals stay at INFO.
#[tokio::test]
async fn introspect_logs_every_verify_when_asked() {
    let redis = RedisServer::start();
    let op = operator();
    let (mut authd, aaddr, mut introspect, iaddr) =
        start(&redis, &op, &[("RUST_LOG", "info,cred::rpc=debug".to_string())]);
    let mut c = clients(&aaddr, &iaddr).await;
    let o = op.token.as_str();
    let t = c.admin.create_tenant(req(o, None, pb::CreateTenantRequest { name: "t".into(), ..Default::default() }));
    let tenant = t.await.unwrap().into_inner().tenant.unwrap().tenant_id;
    let new_key = pb::CreateApiKeyRequest {
        tenant_id: tenant.clone(),
        environment: pb::Environment::Production.into(),
        name: "k".into(),
        ..Default::default()
    };
    let key = c.admin.create_api_key(req(o, None, new_key)).await.unwrap().into_inner().secret;
    let cst = c.clients.create_client(req(&key, None, pb::CreateClientRequest::default())).await.unwrap();
    let cst = cst.into_inner().token;
    for t in [&cst, &key] {
        c.verify.verify(req("", None, verify_req(t))).await.unwrap();
    }
    let e = c.verify.verify(req("", None, verify_req("garbage"))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(authd.terminate(), Some(0));
    assert_eq!(introspect.terminate(), Some(0));

    let lines: Vec<serde_json::Value> =
        introspect.lines().iter().map(|l| json(l)).filter(|v| v["fields"]["message"] == "rpc").collect();
    let got: Vec<(&str, i64, Option<&str>)> = lines
        .iter()
        .map(|v| {
            (v["level"].as_str().unwrap(), v["fields"]["code"].as_i64().unwrap(), v["fields"]["tenant_id"].as_str())
        })
        .collect();
    let t = Some(tenant.as_str());
    assert_eq!(got, [("DEBUG", 0, t), ("DEBUG", 0, t), ("INFO", Code::Unauthenticated as i64, None)], "{lines:?}");
    for v in &lines {
        assert_eq!(v["fields"]["method"], "introspect.v1.IntrospectService/Verify");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_sdk_disabled_exports_nothing_and_bad_otel_settings_fail_at_start() {
    let redis = RedisServer::start();
    let op = operator();
    let (rx, endpoint) = Receiver::start().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
        ("OTEL_SDK_DISABLED", "true".to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "10".to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100".to_string()),
    ];
    let (mut authd, aaddr, mut introspect, iaddr) = start(&redis, &op, &env);
    let mut c = clients(&aaddr, &iaddr).await;
    let t =
        c.admin.create_tenant(req(&op.token, None, pb::CreateTenantRequest { name: "t".into(), ..Default::default() }));
    t.await.unwrap();
    let e = c.verify.verify(req("", None, verify_req("garbage"))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(authd.terminate(), Some(0));
    assert_eq!(introspect.terminate(), Some(0));
    assert_eq!(rpc_lines(&authd).len(), 1, "logs still work");
    assert!(rx.traces.lock().unwrap().is_empty() && rx.metrics.lock().unwrap().is_empty(), "exported while disabled");

    // A setting this build cannot honour stops the binary at start, named.
    for (bin_name, var, value) in
        [("introspect", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), ("authd", "OTEL_TRACES_EXPORTER", "zipkin")]
    {
        let mut cmd = Command::new(bin(bin_name));
        cmd.env_clear().args(["serve", "--listen", "127.0.0.1:0"]);
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint).env(var, value);
        cmd.env("INTROSPECT_REDIS_URL", redis.url()).env("AUTHD_REDIS_URL", redis.url());
        cmd.env("AUTHD_OPERATOR_SECRET_FILE", op.dir.path().join("secret"));
        cmd.env("AUTHD_OPERATOR_ALLOWLIST_FILE", op.dir.path().join("allowlist"));
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin_name} with {var}={value}: {stderr}");
        assert!(stderr.contains(var), "{bin_name}: the message names {var}: {stderr}");
    }
}

/// The sum of the series of `name` whose labels include every `labels`
/// pair; `None` if there is none.
fn prom_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (metric == name && all).then(|| value.parse().ok()).flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_same_instruments_on_both_binaries() {
    let redis = RedisServer::start();
    let op = operator();
    // Ports: the binaries bind them, the test needs the numbers.
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (ap, ip) = (free(), free());
    let (mut a, mut i) = {
        let mut a = Command::new(bin("authd"));
        a.env_clear()
            .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", &format!("127.0.0.1:{ap}")])
            .env("AUTHD_REDIS_URL", redis.url())
            .env("AUTHD_OPERATOR_SECRET_FILE", op.dir.path().join("secret"))
            .env("AUTHD_OPERATOR_ALLOWLIST_FILE", op.dir.path().join("allowlist"));
        let mut i = Command::new(bin("introspect"));
        i.env_clear()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("INTROSPECT_METRICS_LISTEN", format!("127.0.0.1:{ip}"))
            .env("INTROSPECT_REDIS_URL", redis.url());
        (Proc::spawn(a), Proc::spawn(i))
    };
    let (aaddr, iaddr) = (a.wait_serving(), i.wait_serving());
    let mut c = clients(&aaddr, &iaddr).await;
    let tenant = c
        .admin
        .create_tenant(req(&op.token, None, pb::CreateTenantRequest { name: "t".into(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap()
        .tenant_id;
    let key = c
        .admin
        .create_api_key(req(
            &op.token,
            None,
            pb::CreateApiKeyRequest {
                tenant_id: tenant,
                environment: pb::Environment::Production.into(),
                name: "k".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let cst =
        c.clients.create_client(req(&key, None, pb::CreateClientRequest::default())).await.unwrap().into_inner().token;
    for _ in 0..3 {
        c.verify.verify(verify_req(&cst)).await.unwrap();
    }
    c.verify.verify(verify_req("cst_live_garbage")).await.unwrap_err();
    // A method neither serves: counted as unserved.
    let unknown = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--http2-prior-knowledge",
            "-X",
            "POST",
            "-H",
            "content-type: application/grpc",
        ])
        .arg(format!("http://{iaddr}/nope.v1.Nothing/Here"))
        .status()
        .expect("curl is missing: apt-get install -y curl");
    assert!(unknown.success());

    let scrape = |port: u16| {
        let out =
            Command::new("curl").args(["-s", "-D", "-", &format!("http://127.0.0.1:{port}/metrics")]).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let it = scrape(ip);
    assert!(it.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{it}");
    let v = |name, labels: &[(&str, &str)]| prom_value(&it, name, labels);
    assert_eq!(
        v("rpc_server_requests_total", &[("rpc_method", "Verify"), ("rpc_grpc_status_code", "0")]),
        Some(3.0),
        "{it}"
    );
    assert_eq!(v("rpc_server_requests_total", &[("rpc_method", "Verify"), ("rpc_grpc_status_code", "16")]), Some(1.0));
    assert_eq!(v("cred_verify_outcomes_total", &[("outcome", "VALID")]), Some(3.0));
    assert_eq!(v("cred_verify_outcomes_total", &[("outcome", "MALFORMED")]), Some(1.0));
    assert_eq!(v("cred_unserved_requests_total", &[("protocol", "grpc")]), Some(1.0));
    assert!(v("rpc_server_duration_milliseconds_count", &[("rpc_method", "Verify")]).is_some_and(|n| n >= 4.0));
    assert!(v("cred_cache_hits_total", &[("cache", "verify")]).is_some_and(|n| n >= 2.0), "{it}");
    let au = scrape(ap);
    assert_eq!(prom_value(&au, "rpc_server_requests_total", &[("rpc_method", "CreateClient")]), Some(1.0), "{au}");
    assert!(prom_value(&au, "cred_store_duration_milliseconds_count", &[]).is_some(), "{au}");
    // No secret in what anyone scraping sees.
    for s in secrets(&op, &[&cst, &key]) {
        assert!(!it.contains(&s) && !au.contains(&s), "a secret in the scrape");
    }
    assert_eq!(a.terminate(), Some(0));
    assert_eq!(i.terminate(), Some(0));
}

/// A call over authd's HTTP/JSON listener is the same call to telemetry as
/// over gRPC: its span (named by the RPC, parent the caller's `traceparent`
/// header), its `rpc.server.*` metric points and its one log line, for an
/// answer and for a refusal; made with the real curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_calls_have_the_same_spans_metrics_and_log_lines() {
    let redis = RedisServer::start();
    let op = operator();
    let (rx, endpoint) = Receiver::start().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200".to_string()),
        ("AUTHD_HTTP_LISTEN", "127.0.0.1:0".to_string()),
    ];
    let (mut authd, _aaddr, mut introspect, _iaddr) = start(&redis, &op, &env);
    let http = authd
        .lines()
        .iter()
        .map(|l| json(l))
        .find(|v| v["fields"]["message"] == "authd serving HTTP/JSON")
        .and_then(|v| v["fields"]["addr"].as_str().map(str::to_string))
        .expect("the HTTP/JSON listener's address in the log");
    let (trace_id, parent) = ("5bf92f3577b34da6a3ce929d0e0e4737", "10f067aa0ba902b8");
    let curl = |path: &str, token: &str, body: &str| {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .arg(format!("http://{http}{path}"))
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["-H", &format!("traceparent: 00-{trace_id}-{parent}-01")])
            .args(["-H", "Content-Type: application/json", "-d", body])
            .output()
            .expect("run curl (apt-get install curl)");
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(curl("/v1/tenants", &op.token, r#"{"name":"over-http"}"#), "200");
    assert_eq!(curl("/v1/tenants", "not-an-operator-key", r#"{"name":"x"}"#), "401");
    // A path nothing serves: 404, and logged as unserved, as introspect's are.
    assert_eq!(curl("/v1/no-such-thing", &op.token, "{}"), "404");

    let ok = [("rpc.method", "CreateTenant"), ("rpc.grpc.status_code", "0")];
    let refused = [("rpc.method", "CreateTenant"), ("rpc.grpc.status_code", "16")];
    let deadline = Instant::now() + Duration::from_secs(15);
    while rx.spans("authd").iter().filter(|s| s.name == "authd.v1.AdminService/CreateTenant").count() < 2
        || rx.counter("authd", "rpc.server.requests", &ok) != 1
        || rx.counter("authd", "rpc.server.requests", &refused) != 1
    {
        assert!(Instant::now() < deadline, "no span or metric point for the HTTP calls within 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in rx.spans("authd").iter().filter(|s| s.name == "authd.v1.AdminService/CreateTenant") {
        assert_eq!(hex(&s.trace_id), trace_id, "the caller's trace continues over HTTP");
        assert_eq!(hex(&s.parent_span_id), parent, "parent is the caller's span");
    }
    let lines: Vec<_> = rpc_lines(&authd).into_iter().filter(|l| l.0 == "authd.v1.AdminService/CreateTenant").collect();
    assert_eq!(lines.iter().map(|l| l.1).collect::<Vec<_>>(), [0, 16], "one log line per HTTP call: {lines:?}");
    assert!(
        authd
            .lines()
            .iter()
            .map(|l| json(l))
            .any(|v| v["level"] == "WARN" && v["fields"]["path"] == "/v1/no-such-thing"),
        "the unserved path is not logged:\n{}",
        authd.lines().join("\n")
    );
    assert_eq!(authd.terminate(), Some(0), "authd exit:\n{}", authd.lines().join("\n"));
    assert_eq!(introspect.terminate(), Some(0));
}
