//! authd's HTTP/JSON listener end to end, over a real Redis: the README's
//! curl walkthrough of the Portal flow (with hyper as the HTTP/1.1 client,
//! and the real `curl` binary for some steps), every step's status and body
//! checked; bad input, bad and revoked keys, a missing scope, not found,
//! wrong paths and methods, an oversized body, the failure budget shared
//! with gRPC (429 and Retry-After), h2c, Redis down (503), and admin mTLS
//! (the admin routes refused over HTTP).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use authd::auth::OperatorAuth;
use bytes::Bytes;
use cred_core::Authority;
use cred_core::cache::CacheOptions;
use cred_core::guard::GuardOptions;
use cred_core::operator::{Allowlist, OperatorSecret};
use cred_core::store::RedisStore;
use cred_core::store::redis::RedisOptions;
use cred_proto::authd::v1 as pb;
use cred_tests::authd::authed;
use cred_tests::{Backend, Redis};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// authd serving gRPC and HTTP/JSON over its own Redis.
struct Server {
    http: SocketAddr,
    grpc: SocketAddr,
    operator: String,
    redis: Redis,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start(guard: Option<GuardOptions>) -> Server {
        Server::start_with(guard, cred_serve::serve::ServeOptions::new(Duration::from_secs(2))).await
    }

    async fn start_with(guard: Option<GuardOptions>, opts: cred_serve::serve::ServeOptions) -> Server {
        let redis = Redis::start(Backend::Standalone);
        let store = RedisStore::open(&redis.target(), RedisOptions::default()).await.expect("connect to test redis");
        let (secret, _) = OperatorSecret::generate();
        let (id, operator) = secret.issue();
        let operators = OperatorAuth::new(secret, Allowlist::of([id]));
        let mut authority = Authority::new(store).with_api_key_cache(CacheOptions::default());
        if let Some(g) = guard {
            authority = authority.with_failure_guard(g);
        }
        let cache = authority.api_key_cache().cloned().expect("cache on");
        let grpc_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc, http) = (grpc_l.local_addr().unwrap(), http_l.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            authd::server::run_with_http(
                grpc_l,
                Some(authd::http::Listen { listener: http_l, console: false }),
                authority,
                operators,
                opts,
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .expect("authd serves");
        });
        cred_tests::assert_eventually!(
            cache.push_connected(),
            Duration::from_secs(5),
            "authd's push channel never came up"
        );
        Server { http, grpc, operator, redis, stop: Some(stop), task: Some(task) }
    }

    /// One HTTP/1.1 request on a new connection.
    async fn call(&self, method: Method, path: &str, bearer: Option<&str>, body: &str) -> Reply {
        let tcp = TcpStream::connect(self.http).await.expect("connect to the HTTP listener");
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.expect("HTTP/1.1");
        tokio::spawn(conn);
        let resp =
            tokio::time::timeout(Duration::from_secs(10), send.send_request(request(method, path, bearer, body)))
                .await
                .expect("an answer within 10 s")
                .expect("a response");
        Reply::of(resp).await
    }

    /// The same over h2c (HTTP/2 with prior knowledge).
    async fn call_h2c(&self, method: Method, path: &str, bearer: Option<&str>, body: &str) -> Reply {
        let tcp = TcpStream::connect(self.http).await.expect("connect to the HTTP listener");
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.expect("h2c");
        tokio::spawn(conn);
        let resp = send.send_request(request(method, path, bearer, body)).await.expect("a response");
        Reply::of(resp).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t).await.expect("authd stops").expect("authd task");
        }
    }
}

fn request(method: Method, path: &str, bearer: Option<&str>, body: &str) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(path).header("host", "localhost");
    if let Some(t) = bearer {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if !body.is_empty() {
        b = b.header("content-type", "application/json");
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

/// A response: status, headers, and its body, which is always JSON.
struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    json: Value,
}

impl Reply {
    async fn of(resp: http::Response<hyper::body::Incoming>) -> Reply {
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("response body").to_bytes();
        assert_eq!(parts.headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/json"[..]));
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        Reply { status: parts.status, headers: parts.headers, json }
    }

    /// Asserts 200 and returns the body.
    fn ok(self, what: &str) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{what}: {}", self.json);
        self.json
    }

    /// Asserts an AIP-193 error of this HTTP status and gRPC code name.
    fn refused(&self, status: StatusCode, code: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.json);
        assert_eq!(self.json["error"]["code"], status.as_u16(), "{what}: {}", self.json);
        assert_eq!(self.json["error"]["status"], code, "{what}: {}", self.json);
        assert!(self.json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {}", self.json);
    }

    /// The reason of the ErrorInfo detail, if any.
    fn reason(&self) -> Option<&str> {
        self.details("ErrorInfo").and_then(|d| d["reason"].as_str())
    }

    fn details(&self, kind: &str) -> Option<&Value> {
        self.json["error"]["details"]
            .as_array()?
            .iter()
            .find(|d| d["@type"] == format!("type.googleapis.com/google.rpc.{kind}"))
    }

    fn invalid_api_key(&self, what: &str) {
        self.refused(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", what);
        assert_eq!(self.reason(), Some("INVALID_API_KEY"), "{what}: {}", self.json);
    }

    /// Asserts 400 and that the message or a field violation names `needle`.
    fn bad_request(&self, needle: &str, what: &str) {
        self.refused(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", what);
        let text = self.json["error"].to_string();
        assert!(text.contains(needle), "{what}: `{needle}` not named in {text}");
    }
}

/// Runs the real `curl` binary; returns the HTTP status and the JSON body.
async fn curl(args: &[&str]) -> (u16, Value) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .await
        .expect("the curl binary is needed by this test (apt-get install curl)");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let (body, code) = text.rsplit_once('\n').expect("status line");
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("curl body not JSON ({e}): {body}"));
    (code.parse().expect("status"), json)
}

fn str_of<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_str().unwrap_or_else(|| panic!("no string at {path:?}"))
}

#[tokio::test]
async fn the_portal_walkthrough_over_http_json() {
    let s = Server::start(None).await;
    let op = Some(s.operator.as_str());
    use Method as M;

    // Operator: a tenant and a production API key (README, "HTTP/JSON").
    let t = s
        .call(M::POST, "/v1/tenants", op, r#"{"name": "acme", "idleTimeout": "3600s", "maxLifetime": "86400s"}"#)
        .await
        .ok("create tenant");
    let tenant = str_of(&t, &["tenant", "tenantId"]).to_string();
    assert_eq!(t["tenant"]["name"], "acme");
    assert_eq!(t["tenant"]["idleTimeout"], "3600s");
    assert_eq!(t["tenant"]["maxLifetime"], "86400s");
    assert!(t["tenant"]["createTime"].as_str().unwrap().ends_with('Z'), "{t}");
    assert!(t["tenant"].get("tenant_id").is_none(), "proto3 JSON names are lowerCamelCase: {t}");
    let got = s.call(M::GET, &format!("/v1/tenants/{tenant}"), op, "").await.ok("get tenant");
    assert_eq!(got["tenant"]["tenantId"], tenant.as_str());
    let all = s.call(M::GET, "/v1/tenants?pageSize=10", op, "").await.ok("list tenants");
    assert_eq!(all["tenants"], json!([got["tenant"]]), "the one tenant, as GetTenant reads it");
    assert!(all.get("nextPageToken").is_none(), "the last page: {all}");
    let k = s
        .call(
            M::POST,
            &format!("/v1/tenants/{tenant}/apiKeys"),
            op,
            r#"{"environment": "ENVIRONMENT_PRODUCTION", "name": "backend"}"#,
        )
        .await
        .ok("create API key");
    let key = str_of(&k, &["secret"]).to_string();
    assert_eq!(k["apiKey"]["environment"], "ENVIRONMENT_PRODUCTION");
    assert_eq!(k["apiKey"]["tenantId"], tenant.as_str());
    let listed = s.call(M::GET, &format!("/v1/tenants/{tenant}/apiKeys?pageSize=10"), op, "").await.ok("list keys");
    assert_eq!(listed["apiKeys"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&key), "a listing never shows the secret");

    // The Portal flow, step 1 with the real curl: create a client, get its
    // id and first session token.
    let auth = format!("Authorization: Bearer {key}");
    let (code, c) = curl(&[
        "-X",
        "POST",
        &s.url("/v1/clients"),
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"labels": {"plan": "pro"}}"#,
    ])
    .await;
    assert_eq!(code, 200, "{c}");
    let client = str_of(&c, &["client", "clientId"]).to_string();
    let token1 = str_of(&c, &["token"]).to_string();
    let session1 = str_of(&c, &["session", "sessionId"]).to_string();
    assert_eq!(c["client"]["labels"], json!({"plan": "pro"}));
    assert_eq!(c["client"]["environment"], "ENVIRONMENT_PRODUCTION");
    assert_eq!(c["session"]["clientId"], client.as_str());

    // The end user's app: the current session, with curl too.
    let (code, cur) = curl(&[&s.url("/v1/session"), "-H", &format!("Authorization: Bearer {token1}")]).await;
    assert_eq!(code, 200, "{cur}");
    assert_eq!(cur["client"]["clientId"], client.as_str());
    assert_eq!(cur["session"]["sessionId"], session1.as_str());

    // A new session for the existing client (no body needed).
    let k = Some(key.as_str());
    let n = s.call(M::POST, &format!("/v1/clients/{client}/sessions"), k, "").await.ok("new session");
    let token2 = str_of(&n, &["token"]).to_string();
    let session2 = str_of(&n, &["session", "sessionId"]).to_string();
    assert_ne!(token1, token2);
    let got = s.call(M::GET, &format!("/v1/clients/{client}"), k, "").await.ok("get client");
    assert_eq!(got["client"]["clientId"], client.as_str());
    let list = s.call(M::GET, &format!("/v1/clients/{client}/sessions?pageSize=10"), k, "").await.ok("sessions");
    let ids: Vec<&str> =
        list["sessions"].as_array().unwrap().iter().map(|s| s["sessionId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(ids.contains(&session1.as_str()) && ids.contains(&session2.as_str()), "{list}");
    assert!(!list.to_string().contains(&token1), "a listing never shows a token");

    // Operator: the tenant's clients, two a page, following nextPageToken
    // to the end; each as GetClient reads it.
    let mut made = vec![got["client"].clone()];
    for _ in 0..2 {
        made.push(s.call(M::POST, "/v1/clients", k, "{}").await.ok("another client")["client"].clone());
    }
    let (mut seen, mut path) = (Vec::new(), format!("/v1/tenants/{tenant}/clients?pageSize=2"));
    loop {
        let page = s.call(M::GET, &path, op, "").await.ok("list clients");
        let items = page["clients"].as_array().unwrap();
        assert!(!items.is_empty() && items.len() <= 2, "{page}");
        seen.extend(items.iter().cloned());
        match page.get("nextPageToken") {
            Some(t) => path = format!("/v1/tenants/{tenant}/clients?pageSize=2&pageToken={}", t.as_str().unwrap()),
            None => break,
        }
    }
    let by_id = |v: &mut Vec<Value>| v.sort_by(|a, b| a["clientId"].as_str().cmp(&b["clientId"].as_str()));
    by_id(&mut seen);
    by_id(&mut made);
    assert_eq!(seen, made, "every client once, as GetClient and CreateClient show it");
    let test_only = s.call(M::GET, &format!("/v1/tenants/{tenant}/clients?environment=ENVIRONMENT_TEST"), op, "").await;
    assert_eq!(test_only.ok("test clients"), json!({}), "none yet: an empty list is left out");
    s.call(M::GET, &format!("/v1/tenants/{tenant}/clients?pageSize=1001"), op, "")
        .await
        .bad_request("page_size", "a page over 1000");
    s.call(M::GET, &format!("/v1/tenants/{tenant}/clients"), k, "").await.invalid_api_key("an API key is no operator");
    for c in made.iter().map(|c| c["clientId"].as_str().unwrap()).filter(|c| *c != client) {
        s.call(M::DELETE, &format!("/v1/clients/{c}"), k, "").await.ok("delete");
    }

    // Revoke one: its token is refused, the other still works.
    let r = s.call(M::DELETE, &format!("/v1/clients/{client}/sessions/{session1}"), k, "").await.ok("revoke one");
    assert_eq!(r, json!({}));
    s.call(M::GET, "/v1/session", Some(&token1), "").await.invalid_api_key("revoked session");
    s.call(M::GET, "/v1/session", Some(&token2), "").await.ok("the other session");
    // Revoke all, then delete the client.
    let r = s.call(M::POST, &format!("/v1/clients/{client}/sessions:revokeAll"), k, "").await.ok("revoke all");
    assert_eq!(r, json!({"revokedCount": 1}));
    s.call(M::GET, "/v1/session", Some(&token2), "").await.invalid_api_key("after revoke all");
    let r = s.call(M::DELETE, &format!("/v1/clients/{client}"), k, "").await.ok("delete client");
    assert_eq!(r, json!({}));
    s.call(M::GET, &format!("/v1/clients/{client}"), k, "").await.refused(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "deleted",
    );

    // The same audit trail as gRPC: every change, by whom.
    let a = s.call(M::GET, &format!("/v1/tenants/{tenant}/auditEvents?pageSize=100"), op, "").await.ok("audit");
    let actions: Vec<&str> = a["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for want in ["api_key.create", "client.create", "session.create", "session.revoke", "client.delete"] {
        assert!(actions.contains(&want), "{want} not audited: {actions:?}");
    }
    let ev = a["events"].as_array().unwrap().iter().find(|e| e["action"] == "client.create").unwrap();
    assert!(ev["actor"].as_str().unwrap().starts_with("api_key:"), "{ev}");

    // Test client keys, and h2c on the same port.
    let tk = s
        .call(M::POST, &format!("/v1/tenants/{tenant}/apiKeys"), op, r#"{"environment": 2, "name": "tests"}"#)
        .await
        .ok("test key");
    let test_key = str_of(&tk, &["secret"]).to_string();
    let tc = s.call(M::POST, "/v1/testClients", Some(&test_key), "{}").await.ok("test client");
    assert_eq!(tc["session"]["testKey"], true, "{tc}");
    let cur = s.call_h2c(M::GET, "/v1/session", Some(str_of(&tc, &["token"])), "").await.ok("h2c");
    assert_eq!(cur["client"]["clientId"], tc["client"]["clientId"]);

    // Admin: roll with grace, revoke, revoke-before, quotas.
    let key_id = str_of(&k_of(&s, &tenant, op).await, &["keyId"]).to_string();
    let rolled = s
        .call(M::POST, &format!("/v1/tenants/{tenant}/apiKeys/{key_id}:roll"), op, r#"{"gracePeriod": "60s"}"#)
        .await
        .ok("roll");
    let new_key = str_of(&rolled, &["secret"]).to_string();
    assert!(rolled["oldKeyExpireTime"].is_string(), "{rolled}");
    s.call(M::GET, "/v1/clients/00000000-0000-4000-8000-000000000000", Some(&key), "").await.refused(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "old key in its grace period",
    );
    let r = s.call(M::POST, &format!("/v1/tenants/{tenant}/apiKeys/{key_id}:revoke"), op, "{}").await.ok("revoke key");
    assert_eq!(r["revokedKeyIds"], json!([key_id]));
    s.call(M::GET, "/v1/clients/00000000-0000-4000-8000-000000000000", Some(&key), "")
        .await
        .invalid_api_key("revoked key");
    let q = s.call(M::PUT, &format!("/v1/tenants/{tenant}/quotas"), op, r#"{"clients": "5"}"#).await.ok("quotas");
    assert_eq!(q["tenant"]["quotas"]["clients"], "5", "uint64 is a string in proto3 JSON: {q}");
    let rb = s.call(M::POST, &format!("/v1/tenants/{tenant}:revokeCredentials"), op, "{}").await.ok("revoke before");
    assert!(rb["tenant"]["revokedBefore"].is_string(), "{rb}");
    s.call(M::POST, "/v1/clients", Some(&new_key), "{}").await.invalid_api_key("issued before the revoke-before");
    s.stop().await;
}

/// The tenant's first API key's metadata.
async fn k_of(s: &Server, tenant: &str, op: Option<&str>) -> Value {
    let l = s.call(Method::GET, &format!("/v1/tenants/{tenant}/apiKeys"), op, "").await.ok("list keys");
    l["apiKeys"][0].clone()
}

#[tokio::test]
async fn bad_input_bad_keys_and_wrong_routes_get_json_errors() {
    let s = Server::start(None).await;
    let op = Some(s.operator.as_str());
    use Method as M;
    let t = s.call(M::POST, "/v1/tenants", op, r#"{"name": "acme"}"#).await.ok("tenant");
    let tenant = str_of(&t, &["tenant", "tenantId"]).to_string();
    let mk = |scopes: &str| format!(r#"{{"environment": "ENVIRONMENT_PRODUCTION", "name": "k", "scopes": {scopes}}}"#);
    let keys = format!("/v1/tenants/{tenant}/apiKeys");
    let all = s.call(M::POST, &keys, op, &mk("[]")).await.ok("key");
    let key = str_of(&all, &["secret"]).to_string();
    let k = Some(key.as_str());

    // Bad JSON, unknown fields (refused: a typo never passes silently),
    // wrong types, trailing garbage, bodies where none is taken.
    s.call(M::POST, "/v1/clients", k, r#"{"labels": "#).await.bad_request("EOF", "truncated JSON");
    s.call(M::POST, "/v1/clients", k, r#"{"lables": {}}"#).await.bad_request("lables", "unknown field");
    let bad = s.call(M::POST, "/v1/clients", k, r#"{"labels": ["a"]}"#).await;
    bad.bad_request("invalid type", "wrong type");
    assert_eq!(bad.details("BadRequest").unwrap()["fieldViolations"][0]["field"], "labels");
    s.call(M::POST, "/v1/clients", k, r#"{} {}"#).await.bad_request("trailing", "trailing data");
    let bad = s.call(M::POST, "/v1/tenants", op, r#"{"name": "x", "idleTimeout": "soon"}"#).await;
    bad.bad_request("duration", "bad duration");
    assert_eq!(bad.details("BadRequest").unwrap()["fieldViolations"][0]["field"], "idleTimeout");
    let bad = s.call(M::POST, "/v1/tenants", op, r#"{"name": "x", "quotas": {"clients": -1}}"#).await;
    bad.bad_request("quotas.clients", "nested field");
    s.call(M::GET, "/v1/session", k, r#"{"a": 1}"#).await.bad_request("takes no body", "body on GET");
    let bad = s.call(M::GET, "/v1/clients/c1/sessions?pageSize=lots", k, "").await;
    bad.bad_request("pageSize", "bad query value");
    assert_eq!(bad.details("BadRequest").unwrap()["fieldViolations"][0]["field"], "pageSize");
    s.call(M::GET, "/v1/clients/c1/sessions?colour=red", k, "").await.bad_request("colour", "unknown query parameter");
    s.call(M::GET, "/v1/tenants?pageToken=nonsense", op, "").await.bad_request("page_token", "bad page token");
    s.call(M::GET, "/v1/tenants?pageSize=5000", op, "").await.bad_request("page_size", "page too large");
    // The service's own validation, as over gRPC: the field named.
    s.call(M::POST, "/v1/tenants", op, r#"{"name": ""}"#).await.bad_request("name", "empty name");
    s.call(M::GET, "/v1/clients/not-a-uuid", k, "").await.bad_request("client_id", "bad id");
    s.call(M::POST, "/v1/clients", k, r#"{"labels": {"Bad Key": "v"}}"#).await.bad_request("label", "bad label");

    // Bad keys: missing, garbage, a forged secret, an operator key on the
    // client API, an API key on the admin API.
    s.call(M::POST, "/v1/clients", None, "{}").await.invalid_api_key("no Authorization");
    s.call(M::POST, "/v1/clients", Some("garbage"), "{}").await.invalid_api_key("garbage key");
    let t = cred_core::token::Token::parse(&key).unwrap();
    let forged = cred_core::token::Token::mint(t.kind, t.env, t.route, t.id).expose();
    s.call(M::POST, "/v1/clients", Some(&forged), "{}").await.invalid_api_key("forged secret");
    s.call(M::POST, "/v1/clients", op, "{}").await.invalid_api_key("operator key on ClientService");
    s.call(M::GET, "/v1/tenants", k, "").await.refused(
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "API key lists tenants",
    );
    s.call(M::GET, &format!("/v1/tenants/{tenant}"), k, "").await.refused(
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "API key on AdminService",
    );

    // A missing scope: 403.
    let ro = s.call(M::POST, &keys, op, &mk(r#"["clients.read"]"#)).await.ok("read-only key");
    let ro = str_of(&ro, &["secret"]).to_string();
    s.call(M::POST, "/v1/clients", Some(&ro), "{}").await.refused(StatusCode::FORBIDDEN, "PERMISSION_DENIED", "scope");
    // Not found, and another tenant's client looks the same.
    let nobody = "/v1/clients/00000000-0000-4000-8000-000000000000";
    s.call(M::GET, nobody, k, "").await.refused(StatusCode::NOT_FOUND, "NOT_FOUND", "no such client");
    s.call(M::GET, &format!("/v1/tenants/{}", uuid::Uuid::new_v4()), op, "").await.refused(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such tenant",
    );

    // Unknown paths: 404 JSON; a known path with the wrong method: 405 with Allow.
    s.call(M::GET, "/v2/clients", k, "").await.refused(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown path");
    s.call(M::GET, "/", None, "").await.refused(StatusCode::NOT_FOUND, "NOT_FOUND", "root");
    s.call(M::GET, "/console/", None, "").await.refused(StatusCode::NOT_FOUND, "NOT_FOUND", "console off by default");
    let wrong = s.call(M::PUT, nobody, k, "{}").await;
    wrong.refused(StatusCode::METHOD_NOT_ALLOWED, "UNIMPLEMENTED", "wrong method");
    assert_eq!(wrong.headers.get("allow").unwrap(), "GET, DELETE");
    // A body over the request limit (64 KiB by default): 413, not read whole.
    let big = format!(r#"{{"labels": {{"a": "{}"}}}}"#, "x".repeat(70 * 1024));
    s.call(M::POST, "/v1/clients", k, &big).await.refused(StatusCode::PAYLOAD_TOO_LARGE, "RESOURCE_EXHAUSTED", "big");
    // A secret shown once is never cached on the way.
    let c = s.call(M::POST, "/v1/clients", k, "{}").await;
    assert_eq!(c.headers.get("cache-control").unwrap(), "no-store");
    c.ok("a good call after all that");
    s.stop().await;
}

#[tokio::test]
async fn budgets_are_shared_with_grpc_and_redis_down_is_503() {
    const BUDGET: u32 = 5;
    let guard = GuardOptions { per_credential: None, per_peer: NonZeroU32::new(BUDGET), capacity: 1000 };
    let mut s = Server::start(Some(guard)).await;
    let op = Some(s.operator.as_str());
    let t = s.call(Method::POST, "/v1/tenants", op, r#"{"name": "acme"}"#).await.ok("tenant");
    let tenant: uuid::Uuid = str_of(&t, &["tenant", "tenantId"]).parse().unwrap();
    let k = s
        .call(Method::POST, &format!("/v1/tenants/{tenant}/apiKeys"), op, r#"{"environment": 1, "name": "k"}"#)
        .await
        .ok("key");
    let key = str_of(&k, &["secret"]).to_string();
    let nobody = "/v1/clients/00000000-0000-4000-8000-000000000000";
    s.call(Method::GET, nobody, Some(&key), "").await.refused(StatusCode::NOT_FOUND, "NOT_FOUND", "cache the key");
    // Well-formed keys of random ids: each refusal draws on the peer's
    // budget, which the HTTP listener must see as 127.0.0.1.
    use cred_core::model::Environment;
    use cred_core::token::{Token, TokenKind};
    let guess = || Token::mint(TokenKind::ApiKey, Environment::Production, tenant, uuid::Uuid::new_v4()).expose();
    // (A burst of BUDGET, and the refusal that empties it, as in hostile.rs.)
    for _ in 0..=BUDGET {
        s.call(Method::GET, nobody, Some(&guess()), "").await.invalid_api_key("guess within the budget");
    }
    let throttled = s.call(Method::GET, nobody, Some(&guess()), "").await;
    throttled.refused(StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED", "past the budget");
    let wait: u64 = throttled.headers.get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert!(throttled.details("RetryInfo").is_some(), "{}", throttled.json);
    // The same budget over gRPC: this peer is throttled there too.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", s.grpc)).unwrap().connect().await.unwrap();
    let mut clients = pb::client_service_client::ClientServiceClient::new(channel);
    let req = pb::GetClientRequest { client_id: uuid::Uuid::new_v4().to_string() };
    let st = clients.get_client(authed(&guess(), req)).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
    // The real (cached) key is not slowed.
    s.call(Method::GET, nobody, Some(&key), "").await.refused(StatusCode::NOT_FOUND, "NOT_FOUND", "real key");

    // Redis down: 503, and the store is named only as unavailable.
    s.redis.server_mut().shutdown();
    let down = s.call(Method::GET, nobody, Some(&key), "").await;
    down.refused(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "redis down");
    s.stop().await;
}

#[tokio::test]
async fn with_admin_mtls_the_admin_routes_are_refused_over_http() {
    // Server TLS with a client CA: AdminService then needs a verified client
    // certificate, which the plaintext HTTP listener never has.
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["admin-ca".to_string()]).unwrap();
    let (cert, key) = (write("cert.pem", server.cert.pem()), write("key.pem", server.signing_key.serialize_pem()));
    let ca = write("ca.pem", ca.cert.pem());
    let tls = cred_serve::tls::ServerTls::load(&cert, &key, Some((cred_serve::tls::CLIENT_CA_FLAG, &ca))).unwrap();
    let opts = cred_serve::serve::ServeOptions {
        tls: Some(tls),
        ..cred_serve::serve::ServeOptions::new(Duration::from_secs(2))
    };
    let s = Server::start_with(None, opts).await;
    let r = s.call(Method::POST, "/v1/tenants", Some(&s.operator), r#"{"name": "acme"}"#).await;
    r.refused(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "admin over HTTP with mTLS on");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("client certificate"), "{}", r.json);
    // The client API is not behind the certificate: a bad key is told apart.
    s.call(Method::POST, "/v1/clients", Some("garbage"), "{}").await.invalid_api_key("client API");
    s.stop().await;
}
