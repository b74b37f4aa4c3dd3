//! The client crate's layer (`credd-client`) in the example axum and tonic
//! services (their own code, included below), served on `127.0.0.1:0` in
//! front of a real introspect replica, authd and redis-server. A probe
//! between the layer and the handler counts what gets through and records
//! the identity it carries.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cred_proto::authd::v1 as apb;
use cred_tests::authd::{TenantKeys, authed};
use cred_tests::{Authd, Replica, assert_eventually};
use credd_client::{Credential, Environment, Identity, IntrospectLayer};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Empty};
use introspect::VerifyOptions;
use serde_json::Value;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

#[path = "../crates/client/examples/axum_service.rs"]
#[allow(dead_code)]
mod axum_service;
#[path = "../crates/client/examples/tonic_service.rs"]
#[allow(dead_code)]
mod tonic_service;

/// Counts the requests that pass the layer and keeps the last identity.
#[derive(Clone, Default)]
struct Probe {
    calls: Arc<AtomicUsize>,
    last: Arc<Mutex<Option<Identity>>>,
}

impl Probe {
    fn layer<B>(&self) -> tower::util::MapRequestLayer<impl Fn(http::Request<B>) -> http::Request<B> + Clone + use<B>> {
        let p = self.clone();
        tower::util::MapRequestLayer::new(move |r: http::Request<B>| {
            p.calls.fetch_add(1, Ordering::SeqCst);
            *p.last.lock().unwrap() = r.extensions().get::<Identity>().cloned();
            r
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn last(&self) -> Option<Identity> {
        self.last.lock().unwrap().clone()
    }
}

/// The example axum routes behind a probe and `layer`.
async fn axum_app(layer: IntrospectLayer) -> (SocketAddr, Probe) {
    let probe = Probe::default();
    let app = axum_service::routes().layer(probe.layer()).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("axum serves") });
    (addr, probe)
}

/// The example tonic handler behind a probe and `layer`.
async fn tonic_app(layer: IntrospectLayer) -> (HealthClient<Channel>, Probe) {
    let probe = Probe::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    let p = probe.layer::<tonic::body::Body>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layer)
            .layer(p)
            .add_service(tonic_health::pb::health_server::HealthServer::new(tonic_service::WhoAmI))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("tonic serves")
    });
    let ch = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.expect("connect");
    (HealthClient::new(ch), probe)
}

struct Http {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Http {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 GET with the given headers.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Http {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send.send_request(req.body(Empty::<Bytes>::new()).unwrap()).await.expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Http { status: parts.status, headers: parts.headers, body: String::from_utf8(body.to_vec()).unwrap() }
}

async fn bearer(addr: SocketAddr, path: &str, token: &str) -> Http {
    get(addr, path, &[("authorization", &format!("Bearer {token}"))]).await
}

/// One Health/Check with `authorization: Bearer <token>` (none if empty).
async fn check(client: &HealthClient<Channel>, token: &str) -> Result<tonic::Response<()>, tonic::Status> {
    let msg = HealthCheckRequest { service: String::new() };
    let req = if token.is_empty() { tonic::Request::new(msg) } else { authed(token, msg) };
    client.clone().check(req).await.map(|r| {
        let (md, _, ext) = r.into_parts();
        tonic::Response::from_parts(md, (), ext)
    })
}

struct World {
    authd: Authd,
    replica: Replica,
    keys: TenantKeys,
}

async fn world() -> World {
    let authd = Authd::start().await;
    let replica = Replica::start(&authd.redis.target(), VerifyOptions::default()).await;
    let keys = authd.tenant(None).await;
    World { authd, replica, keys }
}

impl World {
    fn layer(&self) -> IntrospectLayer {
        IntrospectLayer::new(self.replica.channel.clone())
    }

    async fn client(&self, key: &str) -> apb::CreateClientResponse {
        let req = apb::CreateClientRequest { labels: [("plan".to_string(), "pro".to_string())].into() };
        self.authd.clients().create_client(authed(key, req)).await.expect("create client").into_inner()
    }

    async fn revoke(&self, key: &str, c: &apb::CreateClientResponse) {
        let req = apb::RevokeSessionRequest {
            client_id: c.client.as_ref().unwrap().client_id.clone(),
            session_id: c.session.as_ref().unwrap().session_id.clone(),
        };
        self.authd.clients().revoke_session(authed(key, req)).await.expect("revoke");
    }

    /// A well-formed token of nobody's, a revoked and an expired one.
    async fn dead_tokens(&self) -> Vec<(&'static str, String)> {
        let unknown = cred_core::token::Token::mint(
            cred_core::token::TokenKind::Session,
            cred_core::model::Environment::Test,
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
        )
        .expose();
        let revoked = self.client(&self.keys.test_key).await;
        self.replica.verify(&revoked.token).await.expect("valid before the revoke");
        self.revoke(&self.keys.test_key, &revoked).await;
        let idle = self.authd.tenant(Some((1, 60))).await;
        let expired = self.client(&idle.test_key).await;
        tokio::time::sleep(Duration::from_millis(1300)).await;
        vec![("unknown", unknown), ("revoked", revoked.token), ("expired", expired.token)]
    }
}

fn assert_unauthorized(r: &Http, what: &str, challenge: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
    assert_eq!(r.headers["www-authenticate"], challenge, "{what}");
    let j = r.json();
    assert_eq!(j["error"]["status"], "UNAUTHENTICATED", "{what}");
    assert_eq!(j["error"]["details"][0]["reason"], "INVALID_API_KEY", "{what}");
    assert_eq!(j["error"]["details"][0]["metadata"], serde_json::json!({}), "{what}: a cause was told");
}

fn assert_grpc_invalid(s: &tonic::Status, what: &str) {
    assert_eq!(s.code(), Code::Unauthenticated, "{what}: {s:?}");
    let info = s.get_details_error_info().unwrap_or_else(|| panic!("{what}: no ErrorInfo in {s:?}"));
    assert_eq!((info.reason.as_str(), info.domain.as_str()), ("INVALID_API_KEY", "credd"), "{what}");
    assert!(info.metadata.is_empty(), "{what}: a cause was told: {:?}", info.metadata);
}

#[tokio::test]
async fn axum_valid_credentials_reach_the_handler_and_no_other_does() {
    let w = world().await;
    let (addr, probe) = axum_app(w.layer()).await;
    let c = w.client(&w.keys.live_key).await;

    let r = bearer(addr, "/whoami", &c.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert_eq!(j["kind"], "session");
    assert_eq!(j["tenant_id"], w.keys.tenant_id.as_str());
    assert_eq!(j["client_id"], c.client.as_ref().unwrap().client_id.as_str());
    assert_eq!(j["session_id"], c.session.as_ref().unwrap().session_id.as_str());
    assert_eq!(j["environment"], "production");
    assert_eq!(j["labels"]["plan"], "pro");
    let seen = probe.last().expect("the identity in the extensions");
    assert!(matches!(seen.credential, Credential::Session { .. }) && seen.expire_time.is_some());
    // The scheme in any case, and the raw token.
    for h in [format!("bearer {}", c.token), c.token.clone()] {
        assert_eq!(get(addr, "/whoami", &[("authorization", &h)]).await.status, StatusCode::OK, "{h}");
    }

    let scoped = w.authd.api_key(&w.keys.tenant_id, apb::Environment::Test, &["clients.read"]).await;
    let r = bearer(addr, "/whoami", &scoped).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert_eq!((j["kind"].as_str(), j["environment"].as_str()), (Some("api_key"), Some("test")));
    assert!(j["key_id"].is_string() && j["client_id"].is_null());
    assert_eq!(j["scopes"], serde_json::json!(["clients.read"]));
    assert_eq!(probe.last().unwrap().environment, Environment::Test);
    let passed = probe.calls();
    assert_eq!(passed, 4);

    let r = get(addr, "/whoami", &[]).await;
    assert_unauthorized(&r, "no credential", "Bearer");
    for (what, h) in [("garbage", "Bearer not-a-token"), ("another scheme", "Basic dXNlcjpwdw=="), ("empty", "Bearer ")]
    {
        assert_unauthorized(
            &get(addr, "/whoami", &[("authorization", h)]).await,
            what,
            r#"Bearer error="invalid_token""#,
        );
    }
    for (what, token) in w.dead_tokens().await {
        let r = bearer(addr, "/whoami", &token).await;
        assert_unauthorized(&r, what, r#"Bearer error="invalid_token""#);
        assert!(
            !r.body.contains("REVOKED") && !r.body.contains("EXPIRED") && !r.body.contains("UNKNOWN"),
            "{}",
            r.body
        );
    }
    // An identity header of the caller's own is nobody's identity.
    let forged = [("x-credd-tenant-id", w.keys.tenant_id.as_str()), ("x-credd-client-id", "someone")];
    assert_unauthorized(&get(addr, "/whoami", &forged).await, "forged headers", "Bearer");
    assert_eq!(probe.calls(), passed, "a refused request reached the handler");
}

#[tokio::test]
async fn tonic_valid_credentials_reach_the_handler_and_no_other_does() {
    let w = world().await;
    let (client, probe) = tonic_app(w.layer()).await;
    let c = w.client(&w.keys.test_key).await;

    let r = check(&client, &c.token).await.expect("a valid session");
    let md = r.metadata();
    assert_eq!(md.get("tenant-id").unwrap(), w.keys.tenant_id.as_str());
    assert_eq!(md.get("subject").unwrap(), c.client.as_ref().unwrap().client_id.as_str());
    assert_eq!(md.get("kind").unwrap(), "session");
    let r = check(&client, &w.keys.live_key).await.expect("a valid API key");
    assert_eq!(r.metadata().get("kind").unwrap(), "api_key");
    let seen = probe.last().expect("identity");
    assert_eq!((seen.environment, seen.key_id().is_some()), (Environment::Production, true));
    assert_eq!(probe.calls(), 2);

    assert_grpc_invalid(&check(&client, "").await.unwrap_err(), "no credential");
    assert_grpc_invalid(&check(&client, "not-a-token").await.unwrap_err(), "garbage");
    for (what, token) in w.dead_tokens().await {
        assert_grpc_invalid(&check(&client, &token).await.unwrap_err(), what);
    }
    assert_eq!(probe.calls(), 2, "a refused call reached the handler");
}

#[tokio::test]
async fn a_missing_scope_is_403_or_permission_denied() {
    let w = world().await;
    let layer = w.layer().scopes(["clients.delete", "clients.read"]).expect("known scopes");
    let (addr, probe) = axum_app(layer.clone()).await;
    let (client, tprobe) = tonic_app(layer).await;
    let narrow = w.authd.api_key(&w.keys.tenant_id, apb::Environment::Test, &["clients.read"]).await;
    let wide = w.authd.api_key(&w.keys.tenant_id, apb::Environment::Test, &["clients.read", "clients.delete"]).await;
    let session = w.client(&w.keys.test_key).await.token;

    for (what, token) in [("narrow key", &narrow), ("session", &session)] {
        let r = bearer(addr, "/whoami", token).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.body);
        assert_eq!(
            r.headers["www-authenticate"],
            r#"Bearer error="insufficient_scope", scope="clients.delete clients.read""#
        );
        assert_eq!(r.json()["error"]["status"], "PERMISSION_DENIED");
        assert_eq!(check(&client, token).await.unwrap_err().code(), Code::PermissionDenied, "{what}");
    }
    assert_eq!((probe.calls(), tprobe.calls()), (0, 0));
    assert_eq!(bearer(addr, "/whoami", &wide).await.status, StatusCode::OK);
    check(&client, &wide).await.expect("the key holds both scopes");
    assert_eq!((probe.calls(), tprobe.calls()), (1, 1));

    // Environment requirement: the other environment is an unusable credential.
    let (addr, _) = axum_app(w.layer().environment(Environment::Production)).await;
    assert_unauthorized(
        &bearer(addr, "/whoami", &wide).await,
        "test key, production required",
        r#"Bearer error="invalid_token""#,
    );
    assert_eq!(bearer(addr, "/whoami", &w.keys.live_key).await.status, StatusCode::OK);
    // An unknown scope is refused when the layer is built, not per request.
    assert!(w.layer().scopes(["root"]).is_err());
}

/// introspect refused, black-holed or stopped: 503 / UNAVAILABLE within
/// the deadline, and the handler never called.
#[tokio::test]
async fn introspect_down_or_black_holed_fails_closed_within_the_deadline() {
    let w = world().await;
    let token = w.client(&w.keys.test_key).await.token;
    let deadline = Duration::from_millis(300);

    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // Accepts, then never answers a byte.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    for (what, addr) in [("refused", closed), ("black hole", hole_addr)] {
        let layer = IntrospectLayer::lazy(&format!("http://{addr}")).unwrap().deadline(deadline);
        let (http, probe) = axum_app(layer.clone()).await;
        let (grpc, tprobe) = tonic_app(layer).await;
        for _ in 0..2 {
            let t = Instant::now();
            let r = bearer(http, "/whoami", &token).await;
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {}", r.body);
            assert_eq!(r.json()["error"]["status"], "UNAVAILABLE");
            let http_took = t.elapsed();
            let t = Instant::now();
            let e = check(&grpc, &token).await.unwrap_err();
            assert_eq!(e.code(), Code::Unavailable, "{what}: {e:?}");
            let grpc_took = t.elapsed();
            eprintln!("{what}: HTTP 503 after {http_took:?}, gRPC UNAVAILABLE after {grpc_took:?}");
            for took in [http_took, grpc_took] {
                assert!(took < deadline + Duration::from_millis(700), "{what}: refused after {took:?}");
            }
        }
        assert_eq!((probe.calls(), tprobe.calls()), (0, 0), "{what}: reached the handler");
    }

    // A replica that was serving, then stopped.
    let doomed = Replica::start(&w.authd.redis.target(), VerifyOptions::default()).await;
    let layer = IntrospectLayer::new(doomed.channel.clone()).deadline(deadline);
    let (http, probe) = axum_app(layer.clone()).await;
    let (grpc, tprobe) = tonic_app(layer).await;
    assert_eq!(bearer(http, "/whoami", &token).await.status, StatusCode::OK);
    check(&grpc, &token).await.expect("served while introspect is up");
    drop(doomed);
    assert_eventually!(
        bearer(http, "/whoami", &token).await.status == StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(5),
        "still served after introspect stopped"
    );
    assert_eventually!(
        check(&grpc, &token).await.is_err_and(|e| e.code() == Code::Unavailable),
        Duration::from_secs(5),
        "still served after introspect stopped (gRPC)"
    );
    let (before, tbefore) = (probe.calls(), tprobe.calls());
    for _ in 0..3 {
        assert_eq!(bearer(http, "/whoami", &token).await.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(check(&grpc, &token).await.unwrap_err().code(), Code::Unavailable);
    }
    assert_eq!((probe.calls(), tprobe.calls()), (before, tbefore), "reached the handler with introspect down");
}

/// A passive layer's verify does not slide the session's idle expiry; an
/// active one does (so the comparison can fail).
#[tokio::test]
async fn passive_mode_does_not_slide_the_session() {
    let w = world().await;
    let keys = w.authd.tenant(Some((60, 600))).await;
    let c = w.client(&keys.test_key).await;
    let (cid, sid) = (
        c.client.as_ref().unwrap().client_id.parse().unwrap(),
        c.session.as_ref().unwrap().session_id.parse().unwrap(),
    );
    let store = w.authd.redis.store().await;
    let expiry = || {
        let store = store.clone();
        async move {
            use cred_core::store::Store;
            store.get_session(cid, sid).await.unwrap().session.expect("alive").expires_at.expect("an expiry")
        }
    };
    let (passive, _) = axum_app(w.layer().passive(true)).await;
    let (tpassive, _) = tonic_app(w.layer().passive(true)).await;
    let (active, _) = axum_app(w.layer()).await;
    let first = expiry().await;
    // Past introspect's touch granularity (1 s), so an active verify would write.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(bearer(passive, "/whoami", &c.token).await.status, StatusCode::OK);
    check(&tpassive, &c.token).await.expect("passive gRPC");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(expiry().await, first, "a passive verify slid the session");
    assert_eq!(bearer(active, "/whoami", &c.token).await.status, StatusCode::OK);
    assert_eventually!(expiry().await > first, Duration::from_secs(2), "an active verify did not slide the session");
}

/// Optional mode: no credential goes on without an identity, a bad one is
/// still refused; the extractor refuses a handler reached without one.
#[tokio::test]
async fn optional_mode_and_the_extractor() {
    let w = world().await;
    let (addr, probe) = axum_app(w.layer().optional(true)).await;
    let c = w.client(&w.keys.test_key).await;
    let r = get(addr, "/hello", &[("x-credd-tenant-id", &w.keys.tenant_id)]).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "hello, stranger"));
    assert!(probe.last().is_none());
    let r = bearer(addr, "/hello", &c.token).await;
    assert_eq!(r.body, format!("hello, {}", c.client.as_ref().unwrap().client_id));
    assert_unauthorized(
        &bearer(addr, "/hello", "garbage").await,
        "garbage, optional",
        r#"Bearer error="invalid_token""#,
    );
    // A route whose handler needs an identity still refuses the anonymous.
    assert_unauthorized(&get(addr, "/whoami", &[]).await, "no credential, extractor", "Bearer");
    assert_eq!(probe.calls(), 3, "the garbage token reached the handler");

    // The routes without the layer: the extractor fails closed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, axum_service::routes()).await.unwrap() });
    assert_unauthorized(&bearer(bare, "/whoami", &c.token).await, "no layer", r#"Bearer error="invalid_token""#);
    assert_eq!(get(bare, "/hello", &[]).await.body, "hello, stranger");
}

/// introspect's failure budget: 429 with Retry-After, RESOURCE_EXHAUSTED
/// with RetryInfo, never the handler.
#[tokio::test]
async fn throttled_is_429_with_retry_after() {
    let authd = Authd::start().await;
    let opts = VerifyOptions {
        guard: Some(cred_core::guard::GuardOptions {
            per_credential: None,
            per_peer: std::num::NonZeroU32::new(1),
            capacity: 1000,
        }),
        ..Default::default()
    };
    let replica = Replica::start(&authd.redis.target(), opts).await;
    let layer = IntrospectLayer::new(replica.channel.clone());
    let (addr, probe) = axum_app(layer.clone()).await;
    let (grpc, tprobe) = tonic_app(layer).await;
    // Guesses of new ids spend the budget of the caller's address (the
    // layer's, here 127.0.0.1).
    let unknown = || {
        cred_core::token::Token::mint(
            cred_core::token::TokenKind::Session,
            cred_core::model::Environment::Test,
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
        )
        .expose()
    };
    let mut throttled = None;
    for _ in 0..10 {
        let r = bearer(addr, "/whoami", &unknown()).await;
        match r.status {
            StatusCode::UNAUTHORIZED => continue,
            StatusCode::TOO_MANY_REQUESTS => {
                throttled = Some(r);
                break;
            }
            s => panic!("{s}: {}", r.body),
        }
    }
    let r = throttled.expect("never throttled");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.json()["error"]["status"], "RESOURCE_EXHAUSTED");
    let e = check(&grpc, &unknown()).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.get_details_retry_info().is_some_and(|r| r.retry_delay.is_some()));
    assert_eq!((probe.calls(), tprobe.calls()), (0, 0));
}

/// The tonic example's own `serve`: the layer on its one service.
#[tokio::test]
async fn the_tonic_example_serves_behind_the_layer() {
    let w = world().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tonic_service::serve(listener, w.layer(), async {
        let _ = stopped.await;
    }));
    let ch = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.expect("connect");
    let client = HealthClient::new(ch);
    let r = check(&client, &w.keys.test_key).await.expect("a valid API key");
    assert_eq!(r.metadata().get("tenant-id").unwrap(), w.keys.tenant_id.as_str());
    assert_grpc_invalid(&check(&client, "sk_test_garbage").await.unwrap_err(), "garbage");
    assert_grpc_invalid(&check(&client, "").await.unwrap_err(), "none");
    let _ = stop.send(());
    server.await.unwrap().expect("serves until stopped");
}
