//! The introspect binary under hostile input: oversized and malformed
//! messages (raw HTTP/2, since a gRPC client would not send them), huge
//! metadata, thousands of connections, and a call past the request timeout.
//! Each case gets a clear status, the process' RSS (from /proc, via `procfs`) stays
//! bounded, and a normal verify works afterwards. Needs `redis-server`
//! (fails loudly without it).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use cred_core::Authority;
use cred_core::authority::NewApiKey;
use cred_core::model::{Environment, Scopes};
use cred_proto::introspect::v1 as pb;
use cred_tests::RedisServer;
use cred_tests::binaries::{Proc, bin};
use pb::introspect_service_client::IntrospectServiceClient;
use tonic::Code;
use tonic::transport::Channel;

const VERIFY: &str = "/introspect.v1.IntrospectService/Verify";

/// A running introspect binary (killed on drop) and its address.
struct Introspect {
    /// The process.
    proc: Proc,
    /// Where it serves.
    addr: SocketAddr,
}

impl Introspect {
    fn start(redis: &RedisServer, env: &[(&str, &str)]) -> Introspect {
        let mut cmd = Command::new(bin("introspect"));
        cmd.arg("serve")
            .env("INTROSPECT_LISTEN", "127.0.0.1:0")
            .env("INTROSPECT_REDIS_URL", redis.url())
            .envs(env.iter().copied());
        let mut proc = Proc::spawn(cmd);
        let addr = proc.wait_serving().parse().expect("socket address");
        Introspect { proc, addr }
    }

    fn rss_kib(&self) -> u64 {
        self.proc.rss_kib()
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.expect("connect")
    }

    fn alive(&mut self) -> bool {
        self.proc.alive()
    }
}

/// A valid API key stored in `redis`.
async fn api_key(redis: &RedisServer) -> String {
    api_key_of(redis, Environment::Production).await
}

/// A valid API key of `env` stored in `redis`.
async fn api_key_of(redis: &RedisServer, env: Environment) -> String {
    let a = Authority::new(redis.store().await);
    let t = a.create_tenant("op", "t".into(), None, None, Default::default()).await.expect("tenant");
    let req = NewApiKey { tenant_id: t.id, env, name: "k".into(), scopes: Scopes::default(), expires_at: None };
    a.create_api_key("op", req).await.expect("api key").token
}

/// What a raw call got back: HTTP status, grpc-status, grpc-message.
#[derive(Debug)]
struct Raw {
    http: u16,
    code: Option<Code>,
    message: String,
}

/// One unary call over a fresh HTTP/2 connection, with `body` as the raw
/// gRPC payload (framing included) and extra headers.
async fn raw_call(addr: SocketAddr, body: Bytes, extra: &[(&str, String)]) -> Result<Raw, h2::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await?;
    tokio::spawn(conn);
    let mut req = http::Request::post(format!("http://{addr}{VERIFY}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in extra {
        req = req.header(*k, v);
    }
    let (resp, mut send) = client.ready().await?.send_request(req.body(()).unwrap(), false)?;
    // The server may answer (and reset the stream) before reading it all.
    let _ = send.send_data(body, true);
    let resp = resp.await?;
    let (parts, mut body) = resp.into_parts();
    let mut headers = parts.headers.clone();
    if !headers.contains_key("grpc-status") {
        while let Some(d) = body.data().await {
            let d = d?;
            let _ = body.flow_control().release_capacity(d.len());
        }
        if let Some(t) = body.trailers().await? {
            headers.extend(t);
        }
    }
    let code = headers.get("grpc-status").and_then(|v| v.to_str().ok()?.parse::<i32>().ok()).map(Code::from);
    let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    Ok(Raw { http: parts.status.as_u16(), code, message })
}

/// A gRPC frame: flag, claimed length, payload.
fn frame(flag: u8, claimed: u32, payload: &[u8]) -> Bytes {
    let mut v = vec![flag];
    v.extend_from_slice(&claimed.to_be_bytes());
    v.extend_from_slice(payload);
    Bytes::from(v)
}

async fn verify(ch: &Channel, token: &str) -> Result<pb::VerifyResponse, tonic::Status> {
    let req = pb::VerifyRequest { token: token.into(), passive: true, ..Default::default() };
    IntrospectServiceClient::new(ch.clone()).verify(req).await.map(|r| r.into_inner())
}

const MIB: u64 = 1024;

#[tokio::test]
async fn hostile_input_gets_clear_errors_bounded_memory_and_the_service_stays_up() {
    let redis = RedisServer::start();
    let key = api_key(&redis).await;
    let mut p = Introspect::start(&redis, &[]);
    let ch = p.channel().await;
    verify(&ch, &key).await.expect("a normal verify");
    let rss0 = p.rss_kib();

    // Oversized, from a real client: refused before it is read, naming the limit.
    let huge = "A".repeat(1 << 20);
    for _ in 0..50 {
        let s = verify(&ch, &huge).await.unwrap_err();
        assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
        assert!(s.message().contains("limit of 65536 bytes"), "{s:?}");
    }
    // Just under the limit: decoded and refused as a token, not as a size.
    let s = verify(&ch, &"A".repeat(60_000)).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");

    // A length prefix claiming 4 GiB, with 3 bytes behind it: refused at
    // once, nothing reserved.
    for _ in 0..200 {
        let r = raw_call(p.addr, frame(0, u32::MAX, b"abc"), &[]).await.expect("an answer");
        assert_eq!(r.code, Some(Code::ResourceExhausted), "{r:?}");
        assert!(r.message.contains("4294967295"), "{r:?}");
    }
    // Not protobuf: INVALID_ARGUMENT.
    let r = raw_call(p.addr, frame(0, 5, &[0xff; 5]), &[]).await.expect("an answer");
    assert_eq!(r.code, Some(Code::InvalidArgument), "{r:?}");
    // Protobuf whose string field is not UTF-8: INVALID_ARGUMENT.
    let r = raw_call(p.addr, frame(0, 4, &[0x0a, 0x02, 0xff, 0xfe]), &[]).await.expect("an answer");
    assert_eq!(r.code, Some(Code::InvalidArgument), "{r:?}");
    // The stream ends inside the message: tonic's INTERNAL ("Unexpected EOF").
    let r = raw_call(p.addr, frame(0, 100, b"short"), &[]).await.expect("an answer");
    assert_eq!(r.code, Some(Code::Internal), "{r:?}");
    // Compressed flag without an encoding: INTERNAL, as the gRPC spec says.
    let r = raw_call(p.addr, frame(1, 2, &[0x0a, 0x00]), &[]).await.expect("an answer");
    assert_eq!(r.code, Some(Code::Internal), "{r:?}");

    // Metadata over the 16 KiB header list limit: refused with HTTP 431 on
    // that stream (the connection lives on); far over it, hyper's h2 ends the
    // connection (GOAWAY ENHANCE_YOUR_CALM) without reading it all.
    let junk = |n: usize| [("x-junk", "j".repeat(n))];
    let r = raw_call(p.addr, frame(0, 0, b""), &junk(8 << 10)).await.expect("an answer");
    assert_eq!(r.code, Some(Code::Unauthenticated), "8 KiB of metadata is fine: {r:?}");
    for _ in 0..10 {
        let r = raw_call(p.addr, frame(0, 0, b""), &junk(20 << 10)).await.expect("an answer");
        assert_eq!((r.http, r.code), (431, None), "{r:?}");
        for n in [100 << 10, 1 << 20] {
            match raw_call(p.addr, frame(0, 0, b""), &junk(n)).await {
                Ok(r) => panic!("{n} bytes of metadata answered {r:?}"),
                // GOAWAY, or the peer closed while we were still writing.
                Err(e) => assert!(e.is_go_away() || e.is_io(), "{n}: {e:?}"),
            }
        }
        verify(&ch, &key).await.expect("other connections are unaffected");
    }
    let mut req = tonic::Request::new(pb::VerifyRequest { token: key.clone(), ..Default::default() });
    req.metadata_mut().insert("x-junk", "j".repeat(64 * 1024).parse().unwrap());
    let s = IntrospectServiceClient::new(p.channel().await).verify(req).await.unwrap_err();
    eprintln!("64 KiB of metadata through tonic: {:?} {:?}", s.code(), s.message());
    assert!(matches!(s.code(), Code::ResourceExhausted | Code::Unavailable), "{s:?}");

    let rss_hostile = p.rss_kib();

    // 2,000 connections at once, each with a call in flight, then closed;
    // twice, to tell a leak (growth per wave) from the allocator keeping
    // what it once used.
    let mut waves = Vec::new();
    let n: usize = std::env::var("HOSTILE_WAVES").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    for _ in 0..n {
        let conns: Vec<Channel> = futures::future::join_all((0..2000).map(|_| async {
            let c = Channel::from_shared(format!("http://{}", p.addr)).unwrap();
            c.connect_timeout(Duration::from_secs(20)).connect().await.expect("connect")
        }))
        .await;
        let calls = futures::future::join_all(conns.iter().map(|c| verify(c, "x"))).await;
        let peak = p.rss_kib();
        for r in &calls {
            let s = r.as_ref().unwrap_err();
            assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
        }
        drop(calls);
        drop(conns);
        tokio::time::sleep(Duration::from_millis(500)).await;
        waves.push((peak, p.rss_kib()));
    }

    assert!(p.alive(), "introspect died");
    verify(&p.channel().await, &key).await.expect("a normal verify afterwards");
    let rss1 = p.rss_kib();
    eprintln!(
        "introspect VmRSS (KiB): {rss0} before; {rss_hostile} after the oversized, malformed and metadata cases; \
         2,000-connection waves (open, closed): {waves:?}; {rss1} at the end"
    );
    assert!(rss_hostile < rss0 + 200 * MIB, "RSS grew from {rss0} KiB to {rss_hostile} KiB");
    for (peak, _) in &waves {
        assert!(*peak < rss0 + 200 * MIB, "RSS peaked at {peak} KiB from {rss0} KiB");
    }
    assert!(rss1 < rss0 + 200 * MIB, "RSS grew from {rss0} KiB to {rss1} KiB");
}

#[tokio::test]
async fn a_call_past_the_request_timeout_is_cancelled() {
    let redis = RedisServer::start();
    let key = api_key(&redis).await;
    let p =
        Introspect::start(&redis, &[("INTROSPECT_REQUEST_TIMEOUT_MS", "300"), ("INTROSPECT_REDIS_TIMEOUT_MS", "5000")]);
    let ch = p.channel().await;
    // The store hangs; the 5 s store deadline would answer UNAVAILABLE, the
    // 300 ms request timeout ends the call first.
    redis.pause();
    let s = verify(&ch, &key).await.unwrap_err();
    redis.resume();
    assert_eq!(s.code(), Code::Cancelled, "{s:?}");
    assert!(s.message().contains("Timeout expired"), "{s:?}");
    verify(&ch, &key).await.expect("a normal verify afterwards");
}

#[test]
fn bad_limits_fail_at_start_naming_the_setting() {
    for (var, value, named) in [
        ("INTROSPECT_MAX_REQUEST_BYTES", "0", "--max-request-bytes"),
        ("INTROSPECT_MAX_REQUEST_BYTES", "99999999", "--max-request-bytes"),
        ("INTROSPECT_MAX_HEADER_LIST_BYTES", "10", "--max-header-list-bytes"),
        ("INTROSPECT_REQUEST_TIMEOUT_MS", "0", "--request-timeout-ms"),
        ("INTROSPECT_FAILED_VERIFY_TRACKED", "0", "--failed-verify-tracked"),
    ] {
        let out = Command::new(bin("introspect"))
            .args(["serve", "--redis-url", "redis://127.0.0.1:1/0"])
            .env(var, value)
            .output()
            .expect("run introspect");
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{var}={value}: {err}");
    }
}

/// As shipped, a replica refuses test credentials unless the caller asks
/// for the test environment; `--environment any` accepts both.
#[tokio::test]
async fn the_shipped_replica_refuses_test_credentials_unless_asked() {
    let redis = RedisServer::start();
    let (test, live) = (api_key_of(&redis, Environment::Test).await, api_key_of(&redis, Environment::Production).await);
    let verify = |ch: Channel, token: &str, env: pb::Environment| {
        let req = pb::VerifyRequest { token: token.into(), required_environment: env.into(), ..Default::default() };
        async move { IntrospectServiceClient::new(ch).verify(req).await }
    };
    let shipped = Introspect::start(&redis, &[]);
    let ch = shipped.channel().await;
    verify(ch.clone(), &live, pb::Environment::Unspecified).await.expect("a production key");
    let e = verify(ch.clone(), &test, pb::Environment::Unspecified).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert_eq!(cred_tests::introspect::cause(&e), "ENV_MISMATCH", "{e:?}");
    verify(ch.clone(), &test, pb::Environment::Test).await.expect("a test key, asked for");
    let e = verify(ch, &live, pb::Environment::Test).await.unwrap_err();
    assert_eq!(cred_tests::introspect::cause(&e), "ENV_MISMATCH", "{e:?}");
    let any = Introspect::start(&redis, &[("INTROSPECT_ENVIRONMENT", "any")]);
    let ch = any.channel().await;
    verify(ch.clone(), &test, pb::Environment::Unspecified).await.expect("a test key on an `any` replica");
    verify(ch, &live, pb::Environment::Unspecified).await.expect("a production key on an `any` replica");
}
