//! introspect at the gateway, with real peers on loopback: a real Envoy
//! (ext_authz over gRPC) and a real nginx (`auth_request` to forward-auth)
//! in front of an upstream that records what reaches it, and RFC 7662
//! introspection with curl. introspect is the real binary over a real
//! redis-server; the credentials come from authd.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use cred_proto::authd::v1 as pb;
use cred_tests::authd::{TenantKeys, authed};
use cred_tests::binaries::{Proc, bin};
use cred_tests::gateways::{Envoy, Nginx, Reply, Upstream, curl};
use cred_tests::{Authd, assert_eventually};

/// The RFC 7662 caller the tests configure.
const CALLER: &str = "kong:secret-of-kong-0123456789";

struct World {
    authd: Authd,
    introspect: Proc,
    grpc: SocketAddr,
    http: SocketAddr,
    keys: TenantKeys,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let authd = Authd::start().await;
        let keys = authd.tenant(None).await;
        let dir = tempfile::tempdir().unwrap();
        let callers = dir.path().join("callers");
        std::fs::write(&callers, format!("# RFC 7662 callers\n{CALLER}\n")).unwrap();
        let mut cmd = Command::new(bin("introspect"));
        cmd.env_clear()
            .args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .arg("--introspection-clients-file")
            .arg(&callers)
            .env("INTROSPECT_REDIS_URL", authd.redis.server().url());
        let mut introspect = Proc::spawn(cmd);
        let grpc = introspect.wait_serving().parse().unwrap();
        let http = introspect
            .lines()
            .iter()
            .find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                v["fields"]["http_addr"].as_str().map(str::to_string)
            })
            .expect("http_addr in the serving line")
            .parse()
            .unwrap();
        World { authd, introspect, grpc, http, keys, _dir: dir }
    }

    /// A new production client's first session token and client id.
    async fn session_with(&self, key: &str) -> (String, String) {
        let req = pb::CreateClientRequest { labels: Default::default() };
        let r = self.authd.clients().create_client(authed(key, req)).await.expect("create client").into_inner();
        (r.token, r.client.expect("client").client_id)
    }

    async fn session(&self) -> (String, String) {
        self.session_with(&self.keys.live_key).await
    }

    /// A session token whose client's sessions were all revoked.
    async fn revoked(&self) -> String {
        let (token, client_id) = self.session().await;
        let req = pb::RevokeAllSessionsRequest { client_id };
        self.authd.clients().revoke_all_sessions(authed(&self.keys.live_key, req)).await.expect("revoke all");
        token
    }

    /// A session token of a tenant with a 1 s idle timeout, left idle past it.
    async fn expired(&self) -> String {
        let t = self.authd.tenant(Some((1, 60))).await;
        let (token, _) = self.session_with(&t.live_key).await;
        tokio::time::sleep(Duration::from_millis(1600)).await;
        token
    }

    /// A production API key of the tenant with these scopes.
    async fn api_key(&self, scopes: &[&str]) -> String {
        self.authd.api_key(&self.keys.tenant_id, pb::Environment::Production, scopes).await
    }

    fn stderr(&self) -> String {
        self.introspect.lines().join("\n")
    }
}

fn bearer(token: &str) -> String {
    format!("authorization: Bearer {token}")
}

/// A refusal that never reached the upstream: its status, and (for 401)
/// the RFC 6750 challenge.
fn assert_refused(r: &Reply, status: u16, upstream: &Upstream, before: usize, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    assert_eq!(upstream.count(), before, "{what} reached the upstream");
    if status == 401 {
        let w = r.headers.get("www-authenticate").unwrap_or_else(|| panic!("{what}: no WWW-Authenticate in {r:?}"));
        assert!(w.starts_with("Bearer"), "{what}: {w}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_authz_passes_valid_tokens_with_their_identity_and_nothing_else() {
    let w = World::start().await;
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(w.grpc, upstream.addr);
    let (token, client_id) = w.session().await;

    // A valid session token reaches the upstream with its identity; the
    // identity headers the client forged are replaced or removed.
    let r = curl(&[
        "-H",
        &bearer(&token),
        "-H",
        "x-credd-tenant-id: forged-tenant",
        "-H",
        "x-credd-key-id: forged-key",
        &envoy.url("/orders"),
    ]);
    assert_eq!((r.status, r.body.as_str()), (200, "upstream"), "{r:?}");
    let seen = upstream.last();
    assert_eq!(seen.get("x-credd-tenant-id"), Some(&w.keys.tenant_id), "{seen:?}");
    assert_eq!(seen.get("x-credd-client-id"), Some(&client_id));
    assert_eq!(seen.get("x-credd-kind").map(String::as_str), Some("session"));
    assert_eq!(seen.get("x-credd-environment").map(String::as_str), Some("production"));
    assert!(seen.get("x-credd-session-id").is_some_and(|s| !s.is_empty()));
    assert_eq!(seen.get("x-credd-key-id"), None, "a forged identity header reached the upstream: {seen:?}");

    // Garbage, a revoked and an expired token, and no token: 401 with the
    // challenge and a JSON body naming INVALID_API_KEY; none reaches it.
    let (revoked, expired) = (w.revoked().await, w.expired().await);
    let before = upstream.count();
    for (what, header) in [
        ("garbage", bearer("cst_live_garbage")),
        ("revoked", bearer(&revoked)),
        ("expired", bearer(&expired)),
        ("no token", "x-nothing: 1".to_string()),
    ] {
        let r = curl(&["-H", &header, &envoy.url("/orders")]);
        assert_refused(&r, 401, &upstream, before, what);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: {e}: {r:?}"));
        assert_eq!(body["error"]["details"][0]["reason"], "INVALID_API_KEY", "{what}: {body}");
        assert!(!r.body.contains("REVOKED") && !r.body.contains("EXPIRED"), "{what}: the cause went outside: {body}");
    }
    let r = curl(&["-H", &bearer(&revoked), &envoy.url("/orders")]);
    assert_eq!(r.headers.get("www-authenticate").map(String::as_str), Some(r#"Bearer error="invalid_token""#));

    // A route's required scope: an API key holding it passes, with its key
    // id and scopes; one without it is 403.
    let reader = w.api_key(&["clients.read"]).await;
    let r = curl(&["-H", &bearer(&reader), &envoy.url("/scoped/clients")]);
    assert_eq!(r.status, 200, "{r:?}");
    let seen = upstream.last();
    assert_eq!(seen.get("x-credd-kind").map(String::as_str), Some("api_key"));
    assert_eq!(seen.get("x-credd-scopes").map(String::as_str), Some("clients.read"));
    assert_eq!(seen.get("x-credd-client-id"), None);
    let writer = w.api_key(&["sessions.create"]).await;
    let before = upstream.count();
    let r = curl(&["-H", &bearer(&writer), &envoy.url("/scoped/clients")]);
    assert_refused(&r, 403, &upstream, before, "a key without the route's scope");
    // A session token can never hold an API scope.
    let r = curl(&["-H", &bearer(&token), &envoy.url("/scoped/clients")]);
    assert_refused(&r, 403, &upstream, before, "a session token on a scoped route");

    // Redis frozen: a token introspect has not cached cannot be checked:
    // 503, never a pass. The cached one still passes (the cache is what an
    // outage is served from).
    let (fresh, _) = w.session().await;
    w.authd.redis.server().pause();
    let r = curl(&["-H", &bearer(&fresh), &envoy.url("/orders")]);
    assert_refused(&r, 503, &upstream, before, "an uncached token with Redis frozen");
    let r = curl(&["-H", &bearer(&token), &envoy.url("/orders")]);
    assert_eq!(r.status, 200, "the cached token during the outage: {r:?}");
    w.authd.redis.server().resume();
    assert_eventually!(
        curl(&["-H", &bearer(&fresh), &envoy.url("/orders")]).status == 200,
        Duration::from_secs(10),
        "the fresh token after Redis came back"
    );

    // introspect gone: Envoy fails closed (status_on_error 503).
    let mut w = w;
    w.introspect.terminate();
    let before = upstream.count();
    let r = curl(&["-H", &bearer(&token), &envoy.url("/orders")]);
    assert_refused(&r, 503, &upstream, before, "introspect stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_passes_valid_tokens_with_their_identity_and_nothing_else() {
    let w = World::start().await;
    let upstream = Upstream::start().await;
    let nginx = Nginx::start(w.http, upstream.addr);
    let (token, client_id) = w.session().await;

    let r = curl(&[
        "-H",
        &bearer(&token),
        "-H",
        "x-credd-tenant-id: forged",
        "-H",
        "x-credd-key-id: forged",
        &nginx.url("/orders"),
    ]);
    assert_eq!((r.status, r.body.as_str()), (200, "upstream"), "{r:?}");
    let seen = upstream.last();
    assert_eq!(seen.get("x-credd-tenant-id"), Some(&w.keys.tenant_id), "{seen:?}");
    assert_eq!(seen.get("x-credd-client-id"), Some(&client_id));
    assert_eq!(seen.get("x-credd-kind").map(String::as_str), Some("session"));
    assert_eq!(seen.get("x-credd-key-id"), None, "a forged identity header reached the upstream: {seen:?}");

    let (revoked, expired) = (w.revoked().await, w.expired().await);
    let before = upstream.count();
    for (what, header) in [
        ("garbage", bearer("cst_live_garbage")),
        ("revoked", bearer(&revoked)),
        ("expired", bearer(&expired)),
        ("no token", "x-nothing: 1".to_string()),
    ] {
        let r = curl(&["-H", &header, &nginx.url("/orders")]);
        assert_refused(&r, 401, &upstream, before, what);
    }

    // Redis frozen: the uncached token is 503 (nginx's 500 for an auth step
    // that did not answer 2xx/401/403, mapped as the README says).
    let (fresh, _) = w.session().await;
    w.authd.redis.server().pause();
    let r = curl(&["-H", &bearer(&fresh), &nginx.url("/orders")]);
    assert_refused(&r, 503, &upstream, before, "an uncached token with Redis frozen");
    w.authd.redis.server().resume();
    assert_eventually!(
        curl(&["-H", &bearer(&fresh), &nginx.url("/orders")]).status == 200,
        Duration::from_secs(10),
        "the fresh token after Redis came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_answers_directly_and_names_the_route_requirements() {
    let w = World::start().await;
    let url = |q: &str| format!("http://{}/forward-auth{q}", w.http);
    let (token, client_id) = w.session().await;
    let r = curl(&["-H", &bearer(&token), &url("")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.headers.get("x-credd-client-id"), Some(&client_id));
    // Traefik and nginx ingress send the original method; any is served.
    let r = curl(&["-X", "DELETE", "-H", &bearer(&token), &url("")]);
    assert_eq!(r.status, 200, "{r:?}");
    // Requirements from the query: a session token is not test, and holds
    // no API scope; a misconfigured route is 400, naming the parameter.
    let r = curl(&["-H", &bearer(&token), &url("?environment=test")]);
    assert_eq!(r.status, 401, "{r:?}");
    let r = curl(&["-H", &bearer(&token), &url("?scopes=clients.read")]);
    assert_eq!(r.status, 403, "{r:?}");
    let r = curl(&["-H", &bearer(&token), &url("?scopes=everything")]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("scopes"), "{}", r.body);
    // Anything else is 404, counted and logged as unserved, as is a gRPC
    // method introspect does not serve.
    let r = curl(&[&format!("http://{}/verify-please", w.http)]);
    assert_eq!(r.status, 404, "{r:?}");
    let r = curl(&[
        "--http2-prior-knowledge",
        "-X",
        "POST",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        &format!("http://{}/authd.v1.AdminService/CreateTenant", w.grpc),
    ]);
    assert_eq!(r.headers.get("grpc-status").map(String::as_str), Some("12"), "{r:?}");
    assert_eventually!(
        w.stderr().contains("/verify-please") && w.stderr().contains("/authd.v1.AdminService/CreateTenant"),
        Duration::from_secs(5),
        "unserved requests not logged:\n{}",
        w.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7662_introspection_with_curl() {
    let w = World::start().await;
    let url = format!("http://{}/oauth2/introspect", w.http);
    let (user, secret) = CALLER.split_once(':').unwrap();
    let basic = format!("{user}:{secret}");
    let introspect = |token: &str| {
        let r = curl(&["-u", &basic, "--data-urlencode", &format!("token={token}"), &url]);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"));
        (r.status, body)
    };

    let (token, client_id) = w.session().await;
    let (status, v) = introspect(&token);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["sub"], client_id.as_str());
    assert_eq!(v["client_id"], w.keys.tenant_id.as_str());
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["kind"], "session");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(v["exp"].as_i64().is_some_and(|e| e > now) && v["iat"].as_i64().is_some_and(|i| i <= now), "{v}");

    let key = w.api_key(&["clients.read", "sessions.read"]).await;
    let (_, v) = introspect(&format!("Bearer {key}"));
    assert_eq!((v["active"].clone(), v["kind"].clone()), (true.into(), "api_key".into()), "{v}");
    assert_eq!(v["scope"], "clients.read sessions.read");

    // Every unusable credential is {"active": false} and nothing more.
    let (revoked, expired) = (w.revoked().await, w.expired().await);
    for (what, t) in [("garbage", "garbage"), ("revoked", revoked.as_str()), ("expired", expired.as_str())] {
        let (status, v) = introspect(t);
        assert_eq!((status, v), (200, serde_json::json!({"active": false})), "{what}");
    }
    // A test credential under the production default is inactive too.
    let test_session = {
        let req = pb::CreateClientRequest { labels: Default::default() };
        w.authd.clients().create_client(authed(&w.keys.test_key, req)).await.unwrap().into_inner().token
    };
    assert_eq!(introspect(&test_session).1, serde_json::json!({"active": false}));

    // The caller must authenticate (RFC 7662 §2.1).
    for args in [vec![], vec!["-u", "kong:wrong-secret-0123456789"], vec!["-u", "nobody:secret-of-kong-0123456789"]] {
        let mut a = args.clone();
        let t = format!("token={token}");
        a.extend(["--data-urlencode", &t, &url]);
        let r = curl(&a);
        assert_eq!(r.status, 401, "{args:?}: {r:?}");
        assert!(r.body.contains("invalid_client"), "{}", r.body);
        assert!(r.headers.contains_key("www-authenticate"), "{r:?}");
    }
    // A request without a token, or not a form, is 400; GET is 405.
    let r = curl(&["-u", &basic, "-X", "POST", &url]);
    assert_eq!(r.status, 400, "{r:?}");
    let r = curl(&["-u", &basic, "-H", "content-type: application/json", "-d", "{\"token\":\"x\"}", &url]);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(curl(&["-u", &basic, &url]).status, 405);
}

/// A gateway's refusal reaches end users, so it tells nothing by its time:
/// a real Envoy's ext_authz denial, forward-auth's 401 and RFC 7662's
/// `{"active":false}` take at least the refusal floor whatever the reason
/// (garbage, an unknown id, a wrong secret for a token this replica has
/// cached, a revoked token), timed by curl (the first byte of the answer),
/// where an answer from memory would take well under a millisecond on
/// loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_refusals_take_the_refusal_floor_whatever_the_reason() {
    use cred_core::model::Environment;
    use cred_core::token::{Token, TokenKind};
    let w = World::start().await;
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(w.grpc, upstream.addr);
    let (cached, _) = w.session().await;
    let r = curl(&["-H", &bearer(&cached), &format!("http://{}/forward-auth", w.http)]);
    assert_eq!(r.status, 200, "the real token, once, to cache it: {r:?}");
    let forged = {
        let t = Token::parse(&cached).unwrap();
        Token::mint(t.kind, t.env, t.route, t.id).expose()
    };
    let unknown = Token::mint(TokenKind::Session, Environment::Production, uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let revoked = w.revoked().await;
    let (user, secret) = CALLER.split_once(':').unwrap();
    let basic = format!("{user}:{secret}");
    let floor = cred_serve::status::REFUSAL_FLOOR.as_secs_f64();
    for (what, token) in [
        ("garbage", "not-a-token".to_string()),
        ("unknown id", unknown.expose()),
        ("wrong secret, cached", forged),
        ("revoked", revoked),
    ] {
        for _ in 0..5 {
            let timed = |args: &[&str]| {
                let out = Command::new("curl")
                    .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_starttransfer}"])
                    .args(args)
                    .output()
                    .expect("curl");
                let text = String::from_utf8(out.stdout).unwrap();
                let (code, secs) = text.split_once(' ').unwrap_or_else(|| panic!("curl printed {text}"));
                (code.to_string(), secs.parse::<f64>().unwrap())
            };
            let (code, secs) = timed(&["-H", &bearer(&token), &envoy.url("/orders")]);
            assert_eq!(code, "401", "Envoy ext_authz, {what}");
            assert!(secs >= floor, "Envoy denied {what} in {secs} s, under the floor");
            let (code, secs) = timed(&["-H", &bearer(&token), &format!("http://{}/forward-auth", w.http)]);
            assert_eq!(code, "401", "forward-auth, {what}");
            assert!(secs >= floor, "forward-auth refused {what} in {secs} s, under the floor");
            let url = format!("http://{}/oauth2/introspect", w.http);
            let (code, secs) = timed(&["-u", &basic, "--data-urlencode", &format!("token={token}"), &url]);
            assert_eq!(code, "200", "RFC 7662, {what}");
            assert!(secs >= floor, "RFC 7662 answered {what} inactive in {secs} s, under the floor");
        }
    }
}
