//! The binaries' `health-check` subcommand (what the chart's `helm test` Pods
//! run) against the real authd and introspect over a real redis-server: exit
//! 0 only on SERVING, non-zero naming the reason otherwise (unknown health
//! name, the store frozen, draining after SIGTERM, nothing listening).
//! Needs `redis-server` (fails loudly without it).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cred_tests::RedisServer;
use cred_tests::binaries::{Proc, bin, operator};

/// `<binary> health-check --addr <addr> [--service <name>]`, bounded.
fn check(binary: &str, addr: &str, service: Option<&str>) -> Output {
    let mut cmd = Command::new(bin(binary));
    cmd.env_clear().args(["health-check", "--addr", addr, "--timeout-ms", "3000"]);
    if let Some(s) = service {
        cmd.args(["--service", s]);
    }
    let start = Instant::now();
    let out = cmd.output().expect("run health-check");
    assert!(start.elapsed() < Duration::from_secs(10), "health-check took {:?}", start.elapsed());
    out
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn serving(o: &Output) {
    assert!(o.status.success(), "want exit 0:\n{}", text(o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("SERVING"), "{}", text(o));
}

#[track_caller]
fn refused(o: &Output, reason: &str) {
    assert!(!o.status.success(), "want a non-zero exit:\n{}", text(o));
    assert!(String::from_utf8_lossy(&o.stderr).contains(reason), "stderr does not name {reason:?}:\n{}", text(o));
}

/// Polls until `binary health-check` of `service` on `addr` gives `want`
/// (exit success or not), within 10 s; the last output.
fn until(binary: &str, addr: &str, service: Option<&str>, want: bool) -> Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = check(binary, addr, service);
        if o.status.success() == want || Instant::now() > deadline {
            return o;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn health_check_exits_zero_only_on_serving() {
    let redis = RedisServer::start();
    let op = operator();
    let mut a = Command::new(bin("authd"));
    a.env_clear()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("AUTHD_REDIS_URL", redis.url())
        .env("AUTHD_OPERATOR_SECRET_FILE", op.dir.path().join("secret"))
        .env("AUTHD_OPERATOR_ALLOWLIST_FILE", op.dir.path().join("allowlist"))
        .env("AUTHD_DRAIN_DELAY_MS", "5000");
    let mut i = Command::new(bin("introspect"));
    i.env_clear()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("INTROSPECT_REDIS_URL", redis.url())
        .env("INTROSPECT_REDIS_TIMEOUT_MS", "200");
    let (mut authd, mut introspect) = (Proc::spawn(a), Proc::spawn(i));
    let (authd_addr, introspect_addr) = (authd.wait_serving(), introspect.wait_serving());

    // Both binaries check both servers: the overall status, the process, the store.
    for (binary, addr) in [("authd", &authd_addr), ("introspect", &introspect_addr)] {
        serving(&check(binary, addr, None));
        serving(&check(binary, addr, Some("credd.live")));
        serving(&until(binary, addr, Some("credd.store"), true));
        serving(&check("authd", addr, Some("")));
        refused(&check(binary, addr, Some("no.such.Service")), "NOT_FOUND");
    }
    // A name resolves like an address.
    let port = introspect_addr.rsplit(':').next().unwrap();
    serving(&check("introspect", &format!("localhost:{port}"), None));

    // The store frozen: the store's name says NOT_SERVING, the process and readiness stay SERVING.
    redis.pause();
    let store = until("introspect", &introspect_addr, Some("credd.store"), false);
    redis.resume();
    refused(&store, "NOT_SERVING");
    serving(&check("introspect", &introspect_addr, Some("credd.live")));
    serving(&until("introspect", &introspect_addr, Some("credd.store"), true));

    // Draining after SIGTERM (the drain delay keeps it answering): readiness NOT_SERVING.
    let pid = authd.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    refused(&until("authd", &authd_addr, None, false), "NOT_SERVING");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = authd.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "authd did not exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "authd exited {status}");

    // Nothing listening there any more: named, not a hang.
    refused(&check("authd", &authd_addr, None), "cannot connect");
    // Not host:port.
    refused(&check("authd", "not an address", None), "--addr");
    drop(introspect);
}
