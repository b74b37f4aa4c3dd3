//! The authd binary as an operator runs it: dev mode's banner works as
//! printed, operator keys made offline are accepted by `serve`, and SIGHUP
//! reloads the allowlist (removals apply even from a file with bad lines),
//! and a victim whose ids an attacker knows keeps working under attack.
//! Needs `redis-server` (fails loudly without it).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use cred_proto::authd::v1 as pb;
use cred_tests::RedisServer;
use cred_tests::authd::authed;
use cred_tests::binaries::{Proc, bin};
use tonic::Code;

async fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

fn field<'a>(banner: &'a str, label: &str) -> &'a str {
    banner
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("banner lacks {label:?}:\n{banner}"))
}

/// The value of `export <var>=<value>` in the banner.
fn export<'a>(banner: &'a str, var: &str) -> &'a str {
    field(banner, &format!("export {var}="))
}

/// The command on the line after the banner's comment starting `# <what>`.
fn command_after<'a>(banner: &'a str, what: &str) -> &'a str {
    let mut lines = banner.lines().skip_while(|l| !l.starts_with(&format!("# {what}")));
    lines.next().unwrap_or_else(|| panic!("banner lacks \"# {what}\":\n{banner}"));
    lines.next().unwrap()
}

/// Runs the banner's `export` lines then `command` in bash, as a user who
/// pasted them would, with upstream grpcurl on PATH.
fn pasted(banner: &str, command: &str) -> std::process::Output {
    let tools = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(cred_tests::binaries::grpcurl(), tools.path().join("grpcurl")).unwrap();
    let exports: Vec<&str> = banner.lines().filter(|l| l.starts_with("export ")).collect();
    let script = format!("set -e\n{}\n{command}\n", exports.join("\n"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("PATH", format!("{}:/usr/bin:/bin", tools.path().display()))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("unbound"), "{script}");
    out
}

#[tokio::test]
async fn dev_mode_banner_works_as_printed() {
    let mut cmd = Command::new(bin("authd"));
    cmd.args(["dev", "--listen", "127.0.0.1:0", "--introspect-listen", "127.0.0.1:0"]);
    let mut p = Proc::spawn_with_stdout(cmd);
    let mut out = BufReader::new(p.child.stdout.take().unwrap());
    let mut banner = String::new();
    while !banner.contains("buf curl --protocol") {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "authd dev exited early:\n{banner}");
        banner.push_str(&line);
    }
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    banner.push_str(&line);
    let addr = banner.split("listening on ").nth(1).and_then(|s| s.split(',').next()).unwrap().to_string();
    let test_key = export(&banner, "CREDD_TEST_KEY");
    let live_key = export(&banner, "CREDD_LIVE_KEY");
    let session = export(&banner, "CREDD_SESSION_TOKEN");
    let operator = export(&banner, "CREDD_OPERATOR_KEY");
    let tenant = field(&banner, "tenant id:");
    let client = field(&banner, "demo client id:");
    assert!(banner.matches("grpcurl -plaintext").count() >= 11, "{banner}");
    assert!(banner.contains(&format!("{addr} authd.v1.ClientService/CreateClient")));
    // The long keys are printed once, in their export line; the commands use the variables.
    for secret in [test_key, live_key, session, operator] {
        assert_eq!(banner.matches(secret).count(), 1, "{secret} repeated:\n{banner}");
    }

    let ch = channel(&addr).await;
    let mut clients = pb::client_service_client::ClientServiceClient::new(ch.clone());
    clients.create_client(authed(test_key, pb::CreateClientRequest::default())).await.expect("test key works");
    clients.create_client(authed(live_key, pb::CreateClientRequest::default())).await.expect("production key works");
    let mut sessions = pb::session_service_client::SessionServiceClient::new(ch.clone());
    sessions.get_current_session(authed(session, pb::GetCurrentSessionRequest {})).await.expect("session works");
    let mut admin = pb::admin_service_client::AdminServiceClient::new(ch);
    admin
        .list_api_keys(authed(operator, pb::ListApiKeysRequest { tenant_id: tenant.into(), ..Default::default() }))
        .await
        .expect("operator key works");

    // The printed Verify, pasted with the exports, runs against dev mode's introspect
    // (same store): valid, then refused once the printed RevokeSession ran.
    let verify = command_after(&banner, "Verify the demo session token");
    assert!(verify.contains("introspect.v1.IntrospectService/Verify") && verify.contains("$CREDD_SESSION_TOKEN"));
    let ok = pasted(&banner, verify);
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    assert!(ok.status.success(), "{verify}\n{}", text(&ok));
    assert!(text(&ok).contains(client), "Verify does not name the demo client {client}: {}", text(&ok));
    let revoke = command_after(&banner, "Revoke the demo session");
    let r = pasted(&banner, revoke);
    assert!(r.status.success(), "{revoke}\n{}", text(&r));
    let refused = pasted(&banner, verify);
    assert!(!refused.status.success() && text(&refused).contains("Unauthenticated"), "{}", text(&refused));

    // Its human log lines went to a pipe: plain text, no colour escapes.
    assert_eq!(p.terminate(), Some(0));
    let logs = p.lines();
    assert!(logs.iter().any(|l| l.contains("CreateClient")), "no call logged: {logs:?}");
    assert!(logs.iter().all(|l| !l.contains('\u{1b}')), "ANSI escapes in logs that are not a terminal: {logs:?}");
}

fn run(args: &[&str]) -> String {
    let out = Command::new(bin("authd")).args(args).output().expect("run authd");
    assert!(out.status.success(), "authd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `authd dev --http-listen --console`: the banner's HTTP/JSON part works as
/// printed (its curl lines pasted into bash with the exports, each answered
/// with JSON and no error), and the console is served at the printed address
/// with its security headers.
#[tokio::test]
async fn dev_mode_http_banner_and_console_work_as_printed() {
    let mut cmd = Command::new(bin("authd"));
    cmd.args(["dev", "--listen", "127.0.0.1:0", "--introspect-listen", "127.0.0.1:0"]).args([
        "--http-listen",
        "127.0.0.1:0",
        "--console",
    ]);
    let mut p = Proc::spawn_with_stdout(cmd);
    let mut out = BufReader::new(p.child.stdout.take().unwrap());
    let mut banner = String::new();
    while !banner.contains("/console/") {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "authd dev exited early:\n{banner}");
        banner.push_str(&line);
    }
    let curls: Vec<&str> = banner.lines().filter(|l| l.starts_with("curl ")).collect();
    assert!(curls.len() >= 6, "the HTTP banner's curl lines:\n{banner}");
    assert!(curls.iter().any(|c| c.contains("/clients?pageSize")), "ListClients in the banner:\n{banner}");
    for c in &curls {
        let o = pasted(&banner, c);
        let body = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{c}: {}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{c}: not JSON ({e}): {body}"));
        assert!(v.get("error").is_none() && v.get("code").is_none(), "{c}: an error: {body}");
    }
    let console = banner.split_whitespace().find(|w| w.ends_with("/console/")).expect("the console's address");
    let o = Command::new("curl").args(["-sS", "-D", "-", "-o", "/dev/null", console]).output().expect("curl");
    let head = String::from_utf8_lossy(&o.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{console}: {head}");
    assert!(head.contains("content-security-policy: default-src 'self'; script-src 'self'"), "{head}");
    assert!(!head.contains("set-cookie"), "{head}");
    assert_eq!(p.terminate(), Some(0));
}

/// `authd serve` as an operator sets it up: a redis-server, an operator
/// secret and key made offline, an allowlist file.
struct Served {
    /// The authd process.
    authd: Proc,
    /// Its Redis, frozen and thawed by the drain test.
    redis: RedisServer,
    /// Where authd serves.
    addr: String,
    /// The operator key's token.
    operator: String,
    /// The allowlist file, rewritten by the reload test.
    allowlist: std::path::PathBuf,
    /// Holds the files for as long as the test runs.
    _dir: tempfile::TempDir,
}

fn serve(extra_env: &[(&str, &str)]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, run(&["operator-key", "secret"])).unwrap();
    let secret_arg = secret_file.to_str().unwrap();
    let new = run(&["operator-key", "new", "--operator-secret-file", secret_arg]);
    let key_id = new.lines().find_map(|l| l.strip_prefix("key id:")).unwrap().trim().to_string();
    let operator = new.lines().find_map(|l| l.strip_prefix("token:")).unwrap().trim().to_string();
    let allowlist = dir.path().join("operators");
    std::fs::write(&allowlist, format!("# ops\n{key_id}\n")).unwrap();
    let mut cmd = Command::new(bin("authd"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("AUTHD_REDIS_URL", redis.url())
        .env("AUTHD_OPERATOR_SECRET_FILE", secret_arg)
        .env("AUTHD_OPERATOR_ALLOWLIST_FILE", &allowlist)
        .envs(extra_env.iter().copied());
    let mut authd = Proc::spawn(cmd);
    let addr = authd.wait_serving();
    Served { authd, redis, addr, operator, allowlist, _dir: dir }
}

#[tokio::test]
async fn offline_operator_keys_and_sighup_reload() {
    // A missing setting fails at start, naming it.
    let bad = Command::new(bin("authd")).args(["serve", "--listen", "127.0.0.1:0"]).env_clear().output().unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--redis-url") && err.contains("--redis-cluster-nodes"), "{err}");
    // Both store settings: a start error naming both.
    let both = Command::new(bin("authd"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("AUTHD_REDIS_URL", "redis://127.0.0.1:1/0")
        .env("AUTHD_REDIS_CLUSTER_NODES", "redis://127.0.0.1:2,redis://127.0.0.1:3")
        .output()
        .unwrap();
    assert!(!both.status.success());
    let err = String::from_utf8_lossy(&both.stderr);
    assert!(err.contains("--redis-url") && err.contains("--redis-cluster-nodes"), "{err}");

    let Served { authd: mut p, redis: _redis, addr, operator: token, allowlist, _dir } = serve(&[]);
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel(&addr).await);
    let get = pb::GetTenantRequest { tenant_id: uuid::Uuid::new_v4().to_string() };
    let e = admin.get_tenant(authed(&token, get.clone())).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "the operator key is accepted: {e:?}");

    let pid = p.child.id().to_string();
    let hup = || assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let works = |token: String| {
        let (mut admin, get) = (admin.clone(), get.clone());
        async move { admin.get_tenant(authed(&token, get)).await.unwrap_err().code() == Code::NotFound }
    };
    async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check().await {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Two more keys, made offline; one joins the list.
    let secret = _dir.path().join("secret");
    let key = || {
        let new = run(&["operator-key", "new", "--operator-secret-file", secret.to_str().unwrap()]);
        let id = new.lines().find_map(|l| l.strip_prefix("key id:")).unwrap().trim().to_string();
        (id, new.lines().find_map(|l| l.strip_prefix("token:")).unwrap().trim().to_string())
    };
    let ((b_id, b), (c_id, c)) = (key(), key());
    let a_id = std::fs::read_to_string(&allowlist).unwrap().lines().nth(1).unwrap().to_string();
    std::fs::write(&allowlist, format!("{a_id}\n{b_id}\n")).unwrap();
    hup();
    eventually("SIGHUP did not add key b", async || works(b.clone()).await).await;
    // A file with a bad line: b's removal applies at once, c's addition
    // waits for a file that parses; a stays.
    std::fs::write(&allowlist, format!("{a_id}\n{c_id}\nnot-a-uuid\n")).unwrap();
    hup();
    eventually("a removal in a file with a bad line was not applied", async || !works(b.clone()).await).await;
    assert!(works(token.clone()).await, "a key still on a good line stopped working");
    assert!(!works(c.clone()).await, "an addition in a file with a bad line was applied");
    std::fs::write(&allowlist, format!("{a_id}\n{c_id}\n")).unwrap();
    hup();
    eventually("the fixed file's addition was not applied", async || works(c.clone()).await).await;

    // Remove every key from the allowlist and reload.
    std::fs::write(&allowlist, "# nobody\n").unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let e = admin.get_tenant(authed(&token, get.clone())).await.unwrap_err();
        if e.code() == Code::Unauthenticated {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not revoke the operator key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A bad allowlist adds nothing (still: nobody) and the server stays up,
    // saying so at ERROR.
    std::fs::write(&allowlist, format!("not-a-uuid\n{a_id}\n")).unwrap();
    hup();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = admin.get_tenant(authed(&token, get)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(p.child.try_wait().unwrap().is_none(), "authd exited on a bad allowlist");
    assert_eq!(p.terminate(), Some(0));
    let logs = p.lines();
    assert!(
        logs.iter().any(|l| l.contains("ERROR") && l.contains("bad allowlist line") && l.contains("not-a-uuid")),
        "no ERROR naming the bad line: {logs:?}"
    );
}

/// SIGTERM: new connections are refused, the calls in flight finish, and
/// authd exits 0. Calls are held in flight by freezing Redis (SIGSTOP).
#[tokio::test]
async fn sigterm_drains_calls_in_flight() {
    let Served { authd: mut p, redis, addr, operator, allowlist: _, _dir } =
        serve(&[("AUTHD_REDIS_TIMEOUT_MS", "10000"), ("AUTHD_DRAIN_TIMEOUT_MS", "8000")]);
    let ch = channel(&addr).await;
    let mut admin = pb::admin_service_client::AdminServiceClient::new(ch.clone());
    let tenant = admin
        .create_tenant(authed(&operator, pb::CreateTenantRequest { name: "t".into(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap()
        .tenant_id;
    let key = admin
        .create_api_key(authed(
            &operator,
            pb::CreateApiKeyRequest {
                tenant_id: tenant,
                environment: pb::Environment::Test.into(),
                name: "k".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let clients = pb::client_service_client::ClientServiceClient::new(ch);
    // Warm the API-key cache, so the held calls wait only on their write.
    clients.clone().create_client(authed(&key, pb::CreateClientRequest::default())).await.unwrap();

    redis.pause();
    let in_flight: Vec<_> = (0..8)
        .map(|_| {
            let (mut c, key) = (clients.clone(), key.clone());
            tokio::spawn(async move { c.create_client(authed(&key, pb::CreateClientRequest::default())).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = p.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // New connections are refused once authd has stopped accepting.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(&addr).is_ok() {
        assert!(Instant::now() < deadline, "authd still accepts connections after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(p.child.try_wait().unwrap().is_none(), "authd exited with calls in flight");
    redis.resume();
    for call in in_flight {
        let r = call.await.unwrap();
        assert!(r.is_ok(), "a call in flight at SIGTERM failed: {r:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "authd did not exit after draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "authd exited with {status}");
}

/// TLS settings (here given by their env vars) are checked at start, before
/// Redis is reached: a bad one stops authd with exit 2, naming the setting.
#[test]
fn bad_tls_settings_stop_authd_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let allowlist = dir.path().join("allowlist");
    std::fs::write(&allowlist, "").unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, "").unwrap();
    let secret = run(&["operator-key", "secret"]);
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("AUTHD_ADMIN_CLIENT_CA_FILE", ca.to_str().unwrap())], "--admin-client-ca-file needs server TLS"),
        (&[("AUTHD_TLS_CERT_FILE", "/nonexistent/tls.crt")], "--tls-cert-file is set without --tls-key-file"),
        (
            &[("AUTHD_TLS_CERT_FILE", "/nonexistent/tls.crt"), ("AUTHD_TLS_KEY_FILE", "/nonexistent/tls.key")],
            "--tls-cert-file /nonexistent/tls.crt",
        ),
    ];
    for (env, expected) in cases {
        let out = Command::new(bin("authd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--redis-url", "redis://127.0.0.1:1"])
            .arg("--operator-allowlist-file")
            .arg(&allowlist)
            .env("AUTHD_OPERATOR_SECRET", secret.trim())
            .envs(env.iter().copied())
            .output()
            .expect("run authd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(expected), "{env:?}: expected {expected:?} in {stderr}");
    }
}

#[test]
fn bad_limits_fail_at_start_naming_the_setting() {
    for (var, value, named) in [
        ("AUTHD_MAX_REQUEST_BYTES", "0", "--max-request-bytes"),
        ("AUTHD_MAX_CONCURRENT_STREAMS", "0", "--max-concurrent-streams"),
        ("AUTHD_REQUEST_TIMEOUT_MS", "0", "--request-timeout-ms"),
        ("AUTHD_FAILED_AUTH_TRACKED", "0", "--failed-auth-tracked"),
    ] {
        let out = Command::new(bin("authd"))
            .args(["serve", "--redis-url", "redis://127.0.0.1:1/0", "--operator-allowlist-file", "/nonexistent"])
            .env(var, value)
            .output()
            .expect("run authd");
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{var}={value}: {err}");
    }
}

#[test]
fn a_zero_wait_timeout_fails_at_start_naming_the_setting() {
    let out = Command::new(bin("authd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--redis-url", "redis://127.0.0.1:1/0"])
        .args(["--operator-allowlist-file", "/nonexistent", "--redis-wait-replicas", "1"])
        .env("AUTHD_REDIS_WAIT_TIMEOUT_MS", "0")
        .output()
        .expect("run authd");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--redis-wait-timeout-ms") && err.contains("AUTHD_REDIS_WAIT_TIMEOUT_MS"), "{err}");
}

/// A new tenant's id, made with the operator key.
async fn new_tenant(
    admin: &pb::admin_service_client::AdminServiceClient<tonic::transport::Channel>,
    operator: &str,
    name: &str,
) -> String {
    let req = pb::CreateTenantRequest { name: name.into(), ..Default::default() };
    admin.clone().create_tenant(authed(operator, req)).await.unwrap().into_inner().tenant.unwrap().tenant_id
}

/// One round of the victim's calls against one of the attacker's, for
/// `span`: the victim's API key and session token (both never used before
/// the attack starts) each call every 10 ms; the attacker's tasks send, as
/// fast as authd answers, forged tokens with the victim's ids (the ids are
/// in every token, audit event and listing) and, if `guess`, tokens of
/// random ids, spending the address' budget too. Metadata `xff`, if set,
/// is the `x-forwarded-for` of each side. The victim's success ratio.
async fn under_attack(addr: &str, operator: &str, xff: Option<(&str, &str)>, guess: bool) -> f64 {
    use cred_core::model::Environment;
    use cred_core::token::{Token, TokenKind};
    let ch = channel(addr).await;
    let admin = pb::admin_service_client::AdminServiceClient::new(ch.clone());
    let mut clients = pb::client_service_client::ClientServiceClient::new(ch.clone());
    let t = new_tenant(&admin, operator, "v").await;
    let key_req = |name: &str| pb::CreateApiKeyRequest {
        tenant_id: t.clone(),
        environment: pb::Environment::Production.into(),
        name: name.into(),
        ..Default::default()
    };
    let setup = admin.clone().create_api_key(authed(operator, key_req("setup"))).await.unwrap().into_inner().secret;
    let key = admin.clone().create_api_key(authed(operator, key_req("victim"))).await.unwrap().into_inner().secret;
    let cst =
        clients.create_client(authed(&setup, pb::CreateClientRequest::default())).await.unwrap().into_inner().token;
    let tenant: uuid::Uuid = t.parse().unwrap();
    let with = |mut r: tonic::Request<pb::GetClientRequest>, who: Option<&str>| {
        if let Some(ip) = who {
            r.metadata_mut().insert("x-forwarded-for", ip.parse().unwrap());
        }
        r
    };
    let get = |token: &str| authed(token, pb::GetClientRequest { client_id: uuid::Uuid::new_v4().to_string() });
    let forged = |token: &str| {
        let t = Token::parse(token).unwrap();
        Token::mint(t.kind, t.env, t.route, t.id).expose()
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (attacker, victim) = (xff.map(|x| x.0), xff.map(|x| x.1));
    let mut tasks = Vec::new();
    for n in 0..4 {
        let (ch, stop, key, cst, attacker) =
            (ch.clone(), stop.clone(), key.clone(), cst.clone(), attacker.map(String::from));
        tasks.push(tokio::spawn(async move {
            let mut c = pb::client_service_client::ClientServiceClient::new(ch.clone());
            let mut s = pb::session_service_client::SessionServiceClient::new(ch);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 20_000 {
                i += 1;
                let token = match (n + i) % 3 {
                    0 if guess => {
                        Token::mint(TokenKind::ApiKey, Environment::Production, tenant, uuid::Uuid::new_v4()).expose()
                    }
                    1 => {
                        let mut r = authed(&forged(&cst), pb::GetCurrentSessionRequest {});
                        if let Some(ip) = &attacker {
                            r.metadata_mut().insert("x-forwarded-for", ip.parse().unwrap());
                        }
                        let _ = s.get_current_session(r).await;
                        continue;
                    }
                    _ => forged(&key),
                };
                let _ = c.get_client(with(get(&token), attacker.as_deref())).await;
            }
            i
        }));
    }
    // Let the attack spend what it can before the victim's first call.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut ok, mut all) = (0, 0);
    let mut sessions = pb::session_service_client::SessionServiceClient::new(ch.clone());
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        all += 2;
        // GetClient of a random id: NOT_FOUND once the key is authenticated.
        if let Err(e) = clients.get_client(with(get(&key), victim)).await
            && e.code() == Code::NotFound
        {
            ok += 1;
        }
        let mut r = authed(&cst, pb::GetCurrentSessionRequest {});
        if let Some(ip) = victim {
            r.metadata_mut().insert("x-forwarded-for", ip.parse().unwrap());
        }
        if sessions.get_current_session(r).await.is_ok() {
            ok += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap();
    }
    let ratio = ok as f64 / all as f64;
    println!("victim: {ok}/{all} calls succeeded while the attacker sent {sent} forged or guessed tokens");
    ratio
}

/// The shipped authd, its default budgets: a victim whose credential ids an
/// attacker knows keeps working (>= 99 % success) while the attacker sends
/// forged tokens with those ids, and random ids that spend the address'
/// budget, as fast as authd answers, from the same address; and behind a
/// trusted proxy, where the budget spent is the attacker's own.
#[tokio::test]
async fn a_victim_keeps_working_while_an_attacker_spends_every_budget() {
    let served = serve(&[]);
    let shared = under_attack(&served.addr, &served.operator, None, true).await;
    assert!(shared >= 0.99, "the victim succeeded {:.1} % of the time, sharing the attacker's address", shared * 100.0);
    let proxied = serve(&[("AUTHD_TRUSTED_PROXIES", "127.0.0.0/8")]);
    let behind = under_attack(&proxied.addr, &proxied.operator, Some(("198.51.100.66", "198.51.100.7")), true).await;
    assert!(behind >= 0.99, "the victim succeeded {:.1} % of the time behind the proxy", behind * 100.0);
}

/// SIGTERM with a drain delay: readiness ("") goes NOT_SERVING at once,
/// liveness ("credd.live") stays SERVING, and new connections and calls are
/// still served during the delay; then authd drains and exits 0.
#[tokio::test]
async fn sigterm_keeps_serving_through_the_drain_delay() {
    let Served { authd: mut p, redis: _redis, addr, operator, allowlist: _, _dir } =
        serve(&[("AUTHD_DRAIN_DELAY_MS", "1500"), ("AUTHD_DRAIN_TIMEOUT_MS", "1000")]);
    let health = |ch: tonic::transport::Channel, service: &'static str| async move {
        let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
        h.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.map(|r| r.into_inner().status)
    };
    use tonic_health::pb::health_check_response::ServingStatus;
    let ch = channel(&addr).await;
    assert_eq!(health(ch.clone(), "").await.unwrap(), ServingStatus::Serving as i32);
    let sent = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &p.child.id().to_string()]).status().unwrap().success());
    let get = || pb::GetTenantRequest { tenant_id: uuid::Uuid::new_v4().to_string() };
    let mut answered = 0;
    while sent.elapsed() < Duration::from_millis(1000) {
        // A new connection each time: still accepted during the delay.
        let fresh = channel(&addr).await;
        let e = pb::admin_service_client::AdminServiceClient::new(fresh.clone())
            .get_tenant(authed(&operator, get()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "a call during the drain delay: {e:?}");
        if sent.elapsed() > Duration::from_millis(200) {
            assert_eq!(health(fresh.clone(), "").await.unwrap(), ServingStatus::NotServing as i32);
            assert_eq!(health(fresh, "credd.live").await.unwrap(), ServingStatus::Serving as i32);
        }
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered > 5, "only {answered} calls during the delay");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "authd did not exit after the delay and the drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "authd exited {status:?}");
    assert!(sent.elapsed() >= Duration::from_millis(1500), "exited before the drain delay ended");
}

/// Redis with a password and an ACL user: authd takes the password from a
/// file (`--redis-password-file`), introspect an ACL user and password from
/// the environment; both work. A wrong password stops authd at start, with
/// Redis' reason.
#[tokio::test]
async fn redis_credentials_come_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let acl = ["SETUSER", "credd", "on", ">pw-of-credd", "~*", "&*", "+@all"];
    let () = redis::cmd("ACL").arg(&acl[..]).query_async(&mut conn).await.unwrap();
    let () = redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("s3cret").query_async(&mut conn).await.unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, run(&["operator-key", "secret"])).unwrap();
    let new = run(&["operator-key", "new", "--operator-secret-file", secret_file.to_str().unwrap()]);
    let key_id = new.lines().find_map(|l| l.strip_prefix("key id:")).unwrap().trim().to_string();
    let operator = new.lines().find_map(|l| l.strip_prefix("token:")).unwrap().trim().to_string();
    let allowlist = dir.path().join("operators");
    std::fs::write(&allowlist, format!("{key_id}\n")).unwrap();
    let authd = |password_file: &std::path::Path| {
        let mut cmd = Command::new(bin("authd"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env_clear()
            .env("AUTHD_REDIS_URL", redis.url())
            .env("AUTHD_REDIS_PASSWORD_FILE", password_file)
            .env("AUTHD_OPERATOR_SECRET_FILE", &secret_file)
            .env("AUTHD_OPERATOR_ALLOWLIST_FILE", &allowlist);
        cmd
    };
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-it\n").unwrap();
    let out = authd(&wrong).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "authd started with a wrong Redis password");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--redis-url") && err.contains("--redis-password-file") && err.contains("authentication failed"),
        "{err}"
    );

    let good = dir.path().join("redis-password");
    std::fs::write(&good, "s3cret\n").unwrap();
    let mut a = Proc::spawn(authd(&good));
    let addr = a.wait_serving();
    let ch = channel(&addr).await;
    let t = pb::admin_service_client::AdminServiceClient::new(ch.clone())
        .create_tenant(authed(&operator, pb::CreateTenantRequest { name: "t".into(), ..Default::default() }))
        .await
        .expect("authd works over a password-protected Redis")
        .into_inner()
        .tenant
        .unwrap()
        .tenant_id;
    let req = pb::CreateApiKeyRequest {
        tenant_id: t,
        environment: pb::Environment::Production.into(),
        name: "k".into(),
        ..Default::default()
    };
    let key =
        pb::admin_service_client::AdminServiceClient::new(ch).create_api_key(authed(&operator, req)).await.unwrap();
    let key = key.into_inner().secret;

    let mut i = Command::new(bin("introspect"));
    i.args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("INTROSPECT_REDIS_URL", redis.url())
        .env("INTROSPECT_REDIS_USERNAME", "credd")
        .env("INTROSPECT_REDIS_PASSWORD", "pw-of-credd");
    let mut i = Proc::spawn(i);
    let iaddr = i.wait_serving();
    let v = cred_proto::introspect::v1::introspect_service_client::IntrospectServiceClient::new(channel(&iaddr).await)
        .verify(cred_proto::introspect::v1::VerifyRequest { token: key, ..Default::default() })
        .await
        .expect("introspect verifies as an ACL user");
    assert!(!v.into_inner().key_id.is_empty());
    assert_eq!(a.terminate(), Some(0));
    assert_eq!(i.terminate(), Some(0));
}

/// The allowlist file changed in place, as Kubernetes updates a mounted
/// Secret (a new file renamed over the old), and no SIGHUP: the removal takes
/// effect by itself.
#[tokio::test]
async fn an_allowlist_changed_on_disk_reloads_without_a_signal() {
    let Served { authd: mut p, redis: _redis, addr, operator, allowlist, _dir } = serve(&[]);
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel(&addr).await);
    let get = pb::GetTenantRequest { tenant_id: uuid::Uuid::new_v4().to_string() };
    let e = admin.get_tenant(authed(&operator, get.clone())).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "the operator key is accepted: {e:?}");
    let staged = allowlist.with_extension("new");
    std::fs::write(&staged, "# nobody\n").unwrap();
    std::fs::rename(&staged, &allowlist).unwrap();
    let changed = Instant::now();
    loop {
        let e = admin.get_tenant(authed(&operator, get.clone())).await.unwrap_err();
        if e.code() == Code::Unauthenticated {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(5), "the allowlist change did not take effect by itself");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("allowlist change in effect after {:?}, no signal sent", changed.elapsed());
    assert_eq!(p.terminate(), Some(0));
}

/// Refusals of an outside caller take the same time at the server whatever
/// the reason: 2,000 refusals per reason against the shipped binary (default
/// flags and log level, stderr collected), each call from its own address
/// behind a trusted proxy so that no budget throttles them, timed by authd's
/// own per-call log line (`latency_us`, from the request's arrival to its
/// answer). Every refusal is held to at least `REFUSAL_FLOOR`; the medians
/// by reason are printed (README, "Limits") and must agree within 2 ms,
/// where a store read against none would otherwise show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_take_the_same_time_at_the_server_whatever_the_reason() {
    use cred_core::model::Environment;
    use cred_core::token::{Token, TokenKind};
    use futures::StreamExt;
    let served = serve(&[("AUTHD_TRUSTED_PROXIES", "127.0.0.0/8")]);
    let ch = channel(&served.addr).await;
    let admin = pb::admin_service_client::AdminServiceClient::new(ch.clone());
    let op = &served.operator;
    let t = new_tenant(&admin, op, "timing").await;
    let tenant: uuid::Uuid = t.parse().unwrap();
    let new_key = |expire: Option<prost_types::Timestamp>| {
        let (mut admin, t) = (admin.clone(), t.clone());
        async move {
            let req = pb::CreateApiKeyRequest {
                tenant_id: t,
                environment: pb::Environment::Production.into(),
                name: "k".into(),
                expire_time: expire,
                ..Default::default()
            };
            admin.create_api_key(authed(op, req)).await.unwrap().into_inner()
        }
    };
    let forged = |token: &str| {
        let t = Token::parse(token).unwrap();
        Token::mint(t.kind, t.env, t.route, t.id).expose()
    };
    let get = |token: &str, n: u32| {
        let mut r = authed(token, pb::GetClientRequest { client_id: uuid::Uuid::new_v4().to_string() });
        // A fresh address per call (198.18.0.0/15, benchmarking space).
        let ip = std::net::Ipv4Addr::from(0xC612_0000 | (n & 0x1_ffff));
        r.metadata_mut().insert("x-forwarded-for", ip.to_string().parse().unwrap());
        r
    };
    let cached = new_key(None).await.secret;
    let e =
        pb::client_service_client::ClientServiceClient::new(ch.clone()).get_client(get(&cached, 0)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "the real key, once, to cache it: {e:?}");
    let uncached = new_key(None).await.secret;
    let revoked = {
        let k = new_key(None).await;
        let req = pb::RevokeApiKeyRequest {
            tenant_id: t.clone(),
            key_id: k.api_key.unwrap().key_id,
            include_successor: false,
        };
        admin.clone().revoke_api_key(authed(op, req)).await.unwrap();
        k.secret
    };
    let soon = std::time::SystemTime::now() + Duration::from_secs(1);
    let expired = new_key(Some(prost_types::Timestamp::from(soon))).await.secret;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    type Make = Box<dyn Fn() -> String + Send + Sync>;
    let reasons: Vec<(&str, Make)> = vec![
        (
            "unknown id",
            Box::new(move || {
                Token::mint(TokenKind::ApiKey, Environment::Production, tenant, uuid::Uuid::new_v4()).expose()
            }),
        ),
        ("wrong secret, cached key", Box::new(move || forged(&cached))),
        ("wrong secret, uncached key", Box::new(move || forged(&uncached))),
        ("revoked key", Box::new(move || revoked.clone())),
        ("expired key", Box::new(move || expired.clone())),
        ("malformed", Box::new(|| "sk_live_not-a-token".to_string())),
    ];
    const N: u32 = 2_000;
    // GetClient's lines: (code, latency_us); the one NOT_FOUND is the setup call.
    let get_client_lines = |p: &Proc| -> Vec<(i64, u64)> {
        p.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "rpc")
            .filter(|v| v["fields"]["method"].as_str().is_some_and(|m| m.ends_with("/GetClient")))
            .map(|v| {
                (v["fields"]["code"].as_i64().expect("code"), v["fields"]["latency_us"].as_u64().expect("latency_us"))
            })
            .collect()
    };
    let rpc_lines = |p: &Proc| -> Vec<u64> {
        get_client_lines(p).into_iter().filter(|(code, _)| *code == 16).map(|(_, us)| us).collect()
    };
    let mut medians = Vec::new();
    let mut seen = rpc_lines(&served.authd).len();
    for (i, (what, make)) in reasons.into_iter().enumerate() {
        let make = std::sync::Arc::new(make);
        futures::stream::iter(0..N)
            .map(|n| {
                let (mut clients, make) =
                    (pb::client_service_client::ClientServiceClient::new(ch.clone()), make.clone());
                async move {
                    let s = clients.get_client(get(&make(), (i as u32 + 1) * N + n)).await.unwrap_err();
                    assert_eq!(s.code(), Code::Unauthenticated, "{what}: {s:?}");
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<()>>()
            .await;
        // Every answer's line was written before the answer left.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut times = loop {
            let lines = rpc_lines(&served.authd);
            if lines.len() >= seen + N as usize || Instant::now() > deadline {
                break lines[seen..].to_vec();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(times.len(), N as usize, "{what}: one log line per call");
        seen += N as usize;
        times.sort_unstable();
        let floor = authd::auth::REFUSAL_FLOOR.as_micros() as u64;
        assert!(times[0] >= floor, "{what}: a refusal answered in {} µs, under the {floor} µs floor", times[0]);
        let median = times[times.len() / 2];
        println!(
            "server-side refusal time, {what}: median {median} µs, p99 {} µs, max {} µs (n = {})",
            times[times.len() * 99 / 100],
            times[times.len() - 1],
            times.len()
        );
        medians.push((what, median));
    }
    let others: Vec<_> = get_client_lines(&served.authd).into_iter().filter(|(code, _)| *code != 16).collect();
    assert_eq!(others.len(), 1, "only the setup call is not UNAUTHENTICATED: {others:?}");
    let (lo, hi) = (medians.iter().map(|m| m.1).min().unwrap(), medians.iter().map(|m| m.1).max().unwrap());
    assert!(hi - lo < 2_000, "medians by reason differ by {} µs: {medians:?}", hi - lo);
}

/// README's HTTP/JSON walkthrough, run as written: its `sh` block is read
/// from README.md, each `curl` command run in bash with the real curl against
/// `authd serve --http-listen` over a real Redis, the placeholders (`$H`,
/// `$OP`, `$KEY`, `<tenant id>`, `<client id>`, `<session id>`,
/// `cst_live_...`) filled from the answers before it; each must answer 200
/// with JSON holding every field its `→` comment names (`{}` exactly).
#[tokio::test]
async fn the_readme_http_walkthrough_runs_as_written() {
    let served = serve(&[("AUTHD_HTTP_LISTEN", "127.0.0.1:0")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let http = loop {
        let found = served.authd.lines().iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["fields"]["message"] == "authd serving HTTP/JSON")
                .then(|| v["fields"]["addr"].as_str().map(String::from))?
        });
        if let Some(a) = found {
            break a;
        }
        assert!(Instant::now() < deadline, "no HTTP/JSON listener in the log");
        std::thread::sleep(Duration::from_millis(20));
    };
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let block = readme
        .split("\n## HTTP/JSON\n")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("\n```").next())
        .expect("README's HTTP/JSON sh block");
    // (command, what its answer must hold) pairs, continuation lines joined.
    let mut steps: Vec<(String, Option<String>)> = Vec::new();
    let mut lines = block.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.starts_with("curl ") {
            if let (Some(expect), Some(last)) = (line.trim_start().strip_prefix("#   →"), steps.last_mut()) {
                last.1 = Some(expect.trim().to_string());
            }
            continue;
        }
        let mut cmd = line.to_string();
        while cmd.ends_with('\\') {
            cmd.pop();
            cmd.push_str(lines.next().expect("a continued line").trim_start());
        }
        match cmd.split_once("# →") {
            Some((c, e)) => steps.push((c.trim_end().to_string(), Some(e.trim().to_string()))),
            None => steps.push((cmd, None)),
        }
    }
    assert!(steps.len() >= 10, "the walkthrough's commands: {steps:?}");

    let mut vars: Vec<(String, String)> =
        vec![("$H".into(), format!("http://{http}")), ("$OP".into(), served.operator.clone())];
    for (cmd, expect) in &steps {
        let mut run = cmd.clone();
        for (k, v) in &vars {
            run = run.replace(k.as_str(), v);
        }
        assert!(!run.contains('<') && !run.contains("..."), "a placeholder nothing filled: {run}");
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("{run} -w '\\n%{{http_code}}'"))
            .output()
            .expect("bash and curl (apt-get install curl)");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, status) = text.rsplit_once('\n').unwrap_or_else(|| panic!("{run}: {text}"));
        assert_eq!(status, "200", "{cmd}\n→ {body}");
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{cmd}: not JSON ({e}): {body}"));
        fn has(v: &serde_json::Value, key: &str) -> bool {
            match v {
                serde_json::Value::Object(m) => m.contains_key(key) || m.values().any(|x| has(x, key)),
                serde_json::Value::Array(a) => a.iter().any(|x| has(x, key)),
                _ => false,
            }
        }
        match expect.as_deref() {
            Some("{}") => assert_eq!(v, serde_json::json!({}), "{cmd}"),
            Some(e) => {
                for key in e.split('"').skip(1).step_by(2).filter(|k| e.contains(&format!("\"{k}\":"))) {
                    assert!(has(&v, key), "{cmd}: the answer lacks \"{key}\" (README says {e}): {body}");
                }
                if let Some(n) = e.strip_prefix("{\"revokedCount\": ").and_then(|n| n.strip_suffix('}')) {
                    assert_eq!(v["revokedCount"].as_u64().map(|x| x.to_string()).as_deref(), Some(n), "{cmd}: {body}");
                }
            }
            None => {}
        }
        // What later steps use, first seen first kept.
        let mut learn = |k: &str, val: Option<&str>| {
            if let Some(val) = val
                && !vars.iter().any(|(n, _)| n == k)
            {
                vars.push((k.to_string(), val.to_string()));
            }
        };
        learn("<tenant id>", v["tenant"]["tenantId"].as_str());
        learn("<client id>", v["client"]["clientId"].as_str());
        learn("<session id>", v["session"]["sessionId"].as_str());
        if let Some(s) = v["secret"].as_str().filter(|s| s.starts_with("sk_live_")) {
            learn("$KEY", Some(s));
        }
        if let Some(t) = v["token"].as_str().filter(|t| t.starts_with("cst_live_")) {
            learn("cst_live_...", Some(t));
        }
    }
}
