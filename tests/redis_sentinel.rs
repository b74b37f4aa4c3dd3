//! Redis Sentinel for both binaries: a master, two replicas and three
//! sentinels on loopback (`redis-server --sentinel`, down after 1 s), authd
//! (writes followed by `WAIT 1`) and introspect over
//! `redis+sentinel://:<sentinels' password>@…/<master>` as an ACL user whose
//! password is in a file.
//! Under a bounded load of CreateSession and Verify calls the master is
//! killed (SIGKILL): both services answer UNAVAILABLE while there is no
//! master, then follow the promoted replica without a restart (the recovery
//! times are printed); nothing is answered a wrong success meanwhile (a
//! revoked token is never valid, every session authd answered for verifies
//! afterwards), and a revocation made after the failover reaches
//! introspect's cache through its new subscription. A wrong master name
//! fails at start, naming the flag.
//!
//! A second test runs both over `rediss+sentinel://` (TLS to the sentinels
//! and the servers, a private CA and a client certificate).
//!
//! Two replicas, not one: after a failover the promoted replica must have
//! a replica of its own for `WAIT 1` to be answered (the killed master
//! stays dead), which is what shows the WAIT path working on the new master.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cred_proto::authd::v1 as pb;
use cred_proto::introspect::v1 as ipb;
use cred_tests::assert_eventually;
use cred_tests::binaries::{Operator, Proc, bin, operator};
use cred_tests::redis_sentinel::{SentinelSetup, TlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use tonic::Code;

/// Clients the sessions are spread over (the per-client live-session quota
/// is 100).
const CLIENTS: usize = 20;
/// Sessions minted before the kill, each verified once after it: a store
/// read every time (never in introspect's cache).
const FRESH: usize = 25 * CLIENTS;
/// How long both services may take to follow the failover.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

/// A binary's command over the sentinels, as the ACL user `credd`.
fn command(name: &str, url: &str, password: &std::path::Path, op: &Operator) -> Command {
    let env = name.to_ascii_uppercase();
    let mut c = Command::new(bin(name));
    c.env_clear()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env(format!("{env}_REDIS_URL"), url)
        .env(format!("{env}_REDIS_USERNAME"), "credd")
        .env(format!("{env}_REDIS_PASSWORD_FILE"), password);
    if name == "authd" {
        c.env("AUTHD_OPERATOR_SECRET_FILE", op.dir.path().join("secret"))
            .env("AUTHD_OPERATOR_ALLOWLIST_FILE", op.dir.path().join("allowlist"))
            .env("AUTHD_REDIS_WAIT_REPLICAS", "1")
            .env("AUTHD_REDIS_WAIT_TIMEOUT_MS", "500");
    }
    c
}

/// Runs `cmd`, which must exit with code 2 within 20 s; its stderr.
fn fails_at_start(cmd: Command, what: &str) -> String {
    let mut p = Proc::spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.alive() {
        assert!(Instant::now() < deadline, "{what}: still running after 20 s:\n{}", p.lines().join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let code = p.child.wait().unwrap().code();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(code, Some(2), "{what}: {:?}", p.lines());
    p.lines().join("\n")
}

async fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

/// A request with a bearer token and a 5 s deadline.
fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    r.set_timeout(Duration::from_secs(5));
    r
}

fn verify_req(token: &str) -> tonic::Request<ipb::VerifyRequest> {
    let mut r = tonic::Request::new(ipb::VerifyRequest { token: token.to_string(), ..Default::default() });
    r.set_timeout(Duration::from_secs(5));
    r
}

/// One call of the load: when it started, and its code.
#[derive(Clone, Copy)]
struct Call {
    at: Instant,
    code: Code,
}

/// The first success among calls started after `kill`, as time after it;
/// and how many of those failed.
fn recovery(calls: &[Call], kill: Instant) -> (Option<Duration>, usize) {
    let after: Vec<&Call> = calls.iter().filter(|c| c.at >= kill).collect();
    let first = after.iter().find(|c| c.code == Code::Ok).map(|c| c.at - kill);
    (first, after.iter().filter(|c| c.code != Code::Ok).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_follow_a_sentinel_failover_without_a_restart() {
    let acl: &[&str] = &["ACL", "SETUSER", "credd", "on", ">pw-of-credd", "~*", "&*", "+@all"];
    let mut setup = SentinelSetup::start(2, &[acl], Some("pw-of-the-sentinels")).await;
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "pw-of-credd\n").unwrap();
    let op = operator();
    let url = setup.url();

    // A master name the sentinels do not know fails at start, naming the flag.
    let wrong = setup.url().replace(cred_tests::redis_sentinel::MASTER_NAME, "no-such-master");
    let err = fails_at_start(command("introspect", &wrong, &password, &op), "a wrong master name");
    assert!(err.contains("--redis-url") && err.contains("no-such-master"), "{err}");
    println!("a wrong master name: {}", err.lines().last().unwrap_or(""));

    let mut authd = Proc::spawn(command("authd", &url, &password, &op));
    let mut introspect = Proc::spawn(command("introspect", &url, &password, &op));
    let (aaddr, iaddr) = (authd.wait_serving(), introspect.wait_serving());
    let (authd_pid, introspect_pid) = (authd.child.id(), introspect.child.id());
    let ach = channel(&aaddr).await;
    let mut admin = pb::admin_service_client::AdminServiceClient::new(ach.clone());
    let mut clients = pb::client_service_client::ClientServiceClient::new(ach);
    let mut verify = ipb::introspect_service_client::IntrospectServiceClient::new(channel(&iaddr).await);

    let tenant = admin
        .create_tenant(authed(&op.token, pb::CreateTenantRequest { name: "sentinel".into(), ..Default::default() }))
        .await
        .expect("create a tenant behind Sentinel")
        .into_inner()
        .tenant
        .unwrap()
        .tenant_id;
    let key_req = pb::CreateApiKeyRequest {
        tenant_id: tenant,
        environment: pb::Environment::Production.into(),
        name: "k".into(),
        ..Default::default()
    };
    let key = admin.create_api_key(authed(&op.token, key_req)).await.unwrap().into_inner().secret;
    let mut client_ids = Vec::new();
    let mut cst = String::new();
    for _ in 0..CLIENTS {
        let c = clients.create_client(authed(&key, pb::CreateClientRequest::default())).await.unwrap().into_inner();
        client_ids.push(c.client.unwrap().client_id);
        cst = c.token;
    }
    let session = |i: usize| pb::CreateSessionRequest { client_id: client_ids[i % CLIENTS].clone() };
    let mut fresh = Vec::with_capacity(FRESH);
    for i in 0..FRESH {
        fresh.push(clients.create_session(authed(&key, session(i))).await.unwrap().into_inner().token);
    }
    verify.verify(verify_req(&cst)).await.expect("introspect verifies behind Sentinel");
    // A revoked token, which must never be valid again.
    let doomed = clients.create_session(authed(&key, session(0))).await.unwrap().into_inner();
    verify.verify(verify_req(&doomed.token)).await.expect("verify before revoking");
    let revoke =
        pb::RevokeSessionRequest { client_id: client_ids[0].clone(), session_id: doomed.session.unwrap().session_id };
    clients.revoke_session(authed(&key, revoke)).await.expect("revoke");
    assert_eventually!(
        verify.verify(verify_req(&doomed.token)).await.is_err_and(|s| s.code() == Code::Unauthenticated),
        Duration::from_secs(5),
        "the revocation before the failover never reached introspect"
    );

    // The load: CreateSession on authd; on introspect the revoked token, and
    // after the kill one never-verified token per call.
    let kill_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writes: Arc<Mutex<Vec<Call>>> = Arc::default();
    let minted: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer = {
        let (mut clients, key, stop, writes, minted) =
            (clients.clone(), key.clone(), stop.clone(), writes.clone(), minted.clone());
        let ids = client_ids.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let at = Instant::now();
                let req = pb::CreateSessionRequest { client_id: ids[i % CLIENTS].clone() };
                let r = clients.create_session(authed(&key, req)).await;
                let code = match r {
                    Ok(ok) => {
                        minted.lock().unwrap().push(ok.into_inner().token);
                        Code::Ok
                    }
                    Err(s) => s.code(),
                };
                writes.lock().unwrap().push(Call { at, code });
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let reads: Arc<Mutex<Vec<Call>>> = Arc::default();
    let revoked_valid: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let reader = {
        let (mut verify, stop, reads, kill_at, revoked_valid) =
            (verify.clone(), stop.clone(), reads.clone(), kill_at.clone(), revoked_valid.clone());
        let (doomed, mut fresh) = (doomed.token.clone(), fresh.clone().into_iter());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if verify.verify(verify_req(&doomed)).await.is_ok() {
                    revoked_valid.lock().unwrap().push(Instant::now());
                }
                if kill_at.lock().unwrap().is_some() {
                    let Some(token) = fresh.next() else { break };
                    let at = Instant::now();
                    let code = verify.verify(verify_req(&token)).await.err().map_or(Code::Ok, |s| s.code());
                    reads.lock().unwrap().push(Call { at, code });
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    let old = setup.master_port().await;
    let node = setup.nodes.iter_mut().find(|n| n.port == old).unwrap();
    node.kill9();
    let kill = Instant::now();
    *kill_at.lock().unwrap() = Some(kill);
    let recovered = || {
        let (w, _) = recovery(&writes.lock().unwrap(), kill);
        let (r, _) = recovery(&reads.lock().unwrap(), kill);
        w.is_some() && r.is_some()
    };
    while !recovered() {
        assert!(
            kill.elapsed() < RECOVERY_BOUND,
            "not recovered within {RECOVERY_BOUND:?} of the kill (authd {:?}, introspect {:?}; \
             fresh tokens left: {})\nauthd:\n{}\nintrospect:\n{}",
            recovery(&writes.lock().unwrap(), kill),
            recovery(&reads.lock().unwrap(), kill),
            !reader.is_finished(),
            authd.lines().join("\n"),
            introspect.lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A little more load on the new master, then stop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    reader.await.unwrap();

    let new = setup.master_port().await;
    assert_ne!(new, old, "the sentinels did not promote a replica");
    let (w, w_failed) = recovery(&writes.lock().unwrap(), kill);
    let (r, r_failed) = recovery(&reads.lock().unwrap(), kill);
    println!(
        "sentinel failover: master :{old} killed, :{new} promoted; first success after the kill: \
         authd CreateSession {:.2} s ({w_failed} calls refused meanwhile), introspect Verify (store read) \
         {:.2} s ({r_failed} refused)",
        w.unwrap().as_secs_f64(),
        r.unwrap().as_secs_f64()
    );
    // Failed closed: every refusal was UNAVAILABLE (or a deadline), never a
    // verdict on a valid credential; some were seen (the outage was real).
    let bad = |calls: &[Call]| -> Vec<Code> {
        calls
            .iter()
            .map(|c| c.code)
            .filter(|c| !matches!(c, Code::Ok | Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded))
            .collect()
    };
    assert_eq!(bad(&writes.lock().unwrap()), vec![], "authd answered something else than UNAVAILABLE");
    assert_eq!(bad(&reads.lock().unwrap()), vec![], "introspect refused a valid token with a verdict");
    assert!(w_failed > 0 && r_failed > 0, "no outage seen ({w_failed}, {r_failed}): was the master killed?");
    assert_eq!(revoked_valid.lock().unwrap().len(), 0, "a revoked token was answered valid");
    // No wrong success: every session authd answered for exists on the new
    // master (WAIT 1 before each answer, and the most up-to-date replica won).
    let minted = minted.lock().unwrap().clone();
    for t in &minted {
        let r = verify.verify(verify_req(t)).await;
        assert!(r.is_ok(), "a session authd answered for is not valid after the failover: {:?}", r.err());
    }
    // Neither service restarted.
    assert!(authd.alive() && introspect.alive(), "a service exited");
    assert_eq!((authd.child.id(), introspect.child.id()), (authd_pid, introspect_pid));

    // Revocations after the failover reach introspect: its subscription is
    // on the new master, as the ACL user.
    let mut admin_conn = setup.node(new).conn().await;
    assert_eventually!(
        {
            let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut admin_conn).await.unwrap();
            list.lines().any(|l| l.contains(" user=credd ") && l.contains(" sub=1 "))
        },
        Duration::from_secs(10),
        "introspect did not resubscribe on the promoted master"
    );
    // UNAVAILABLE is retried, as a caller would: the other replica may still
    // be resyncing with the new master, and every answer waits for one
    // replica's acknowledgement (WAIT 1).
    let mut late = None;
    assert_eventually!(
        {
            match clients.create_session(authed(&key, session(1))).await {
                Ok(r) => late = Some(r.into_inner()),
                Err(e) => assert_eq!(e.code(), Code::Unavailable, "a session after the failover: {e:?}"),
            }
            late.is_some()
        },
        Duration::from_secs(10),
        "no session minted within 10 s after the failover"
    );
    let late = late.unwrap();
    verify.verify(verify_req(&late.token)).await.expect("verify after the failover");
    let revoke =
        pb::RevokeSessionRequest { client_id: client_ids[1].clone(), session_id: late.session.unwrap().session_id };
    let revoked_at = Instant::now();
    clients.revoke_session(authed(&key, revoke)).await.expect("revoke after the failover");
    assert_eventually!(
        verify.verify(verify_req(&late.token)).await.is_err_and(|s| s.code() == Code::Unauthenticated),
        Duration::from_secs(5),
        "a revocation after the failover never reached introspect's cache"
    );
    println!(
        "sentinel failover: {} sessions minted under load all valid afterwards; a revocation after it reached \
         introspect in {:.3} s",
        minted.len(),
        revoked_at.elapsed().as_secs_f64()
    );

    // A master demoted while alive (`SENTINEL FAILOVER`): both follow again,
    // and no write lands on the demoted one (it would answer READONLY, which
    // drops the connection; Sentinel also closes its clients).
    setup.failover().await;
    let switch = Instant::now();
    assert_eventually!(
        setup.master_port().await != new,
        Duration::from_secs(20),
        "SENTINEL FAILOVER did not promote another node"
    );
    let third = setup.master_port().await;
    let switched = switch.elapsed();
    // Both move to the promoted node at once, although the demoted one still
    // answers as a master until Sentinel turns it into a replica: authd's
    // writes (and their WAIT) and introspect's subscription.
    let mut promoted = setup.node(third).conn().await;
    let mut moved = (None, None);
    while moved.0.is_none() || moved.1.is_none() {
        assert!(
            switch.elapsed() < RECOVERY_BOUND,
            "not on the promoted node within {RECOVERY_BOUND:?}: authd {:?}, introspect {:?}",
            moved.0,
            moved.1
        );
        // A write to try (refused until a replica acknowledges it).
        let _ = clients.create_session(authed(&key, session(3))).await;
        let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut promoted).await.unwrap();
        let credd: Vec<&str> = list.lines().filter(|l| l.contains(" user=credd ")).collect();
        if moved.0.is_none() && credd.iter().any(|l| l.contains(" cmd=wait ")) {
            moved.0 = Some(switch.elapsed());
        }
        if moved.1.is_none() && credd.iter().any(|l| l.contains(" sub=1 ")) {
            moved.1 = Some(switch.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The sentinels are asked every second; Sentinel turns the old master
    // into a replica only after 8 s or more, so following must not wait for that.
    let lag = moved.0.unwrap().max(moved.1.unwrap()) - switched;
    assert!(lag < Duration::from_secs(6), "followed the promoted node {lag:?} after the sentinels named it");
    println!(
        "sentinel failover: after SENTINEL FAILOVER, the sentinels named :{third} at {:.2} s; authd's WAIT writer \
         on it at {:.2} s, introspect's subscription at {:.2} s",
        switched.as_secs_f64(),
        moved.0.unwrap().as_secs_f64(),
        moved.1.unwrap().as_secs_f64()
    );
    let (mut after, mut first, mut why) = (Vec::new(), None, std::collections::BTreeMap::new());
    while after.len() < 10 {
        assert!(
            switch.elapsed() < RECOVERY_BOUND,
            "authd did not follow the second failover within {RECOVERY_BOUND:?}"
        );
        match clients.create_session(authed(&key, session(2 + after.len()))).await {
            Ok(r) => {
                first.get_or_insert(switch.elapsed());
                after.push(r.into_inner().token);
            }
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "authd during the second failover: {s:?}");
                *why.entry(s.message().chars().take(60).collect::<String>()).or_insert(0) += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let writing = first.unwrap();
    println!("sentinel failover: refusals after SENTINEL FAILOVER: {why:?}");

    for t in &after {
        assert_eventually!(
            verify.verify(verify_req(t)).await.is_ok(),
            RECOVERY_BOUND,
            "a session minted after the second failover never verified"
        );
    }
    let readonly = readonly_errors(&setup, new).await;
    println!(
        "sentinel failover: :{new} demoted, :{third} promoted (SENTINEL FAILOVER); first session written with \
         WAIT 1 {:.2} s after it (when the demoted node replicates the promoted one), 10 verified; READONLY \
         answers on the demoted node: {readonly}",
        writing.as_secs_f64(),
    );
    // A revocation reaches introspect through its moved subscription.
    let last = clients.create_session(authed(&key, session(4))).await.expect("a session").into_inner();
    verify.verify(verify_req(&last.token)).await.expect("verify after the second failover");
    let revoke =
        pb::RevokeSessionRequest { client_id: client_ids[4].clone(), session_id: last.session.unwrap().session_id };
    clients.revoke_session(authed(&key, revoke)).await.expect("revoke after the second failover");
    assert_eventually!(
        verify.verify(verify_req(&last.token)).await.is_err_and(|s| s.code() == Code::Unauthenticated),
        Duration::from_secs(5),
        "a revocation after the second failover never reached introspect's cache"
    );
    assert!(authd.alive() && introspect.alive(), "a service exited");
    assert_eq!(authd.terminate(), Some(0));
    assert_eq!(introspect.terminate(), Some(0));
}

/// `errorstat_READONLY` of the node on `port` (`INFO errorstats`).
async fn readonly_errors(setup: &SentinelSetup, port: u16) -> u64 {
    let info: String =
        redis::cmd("INFO").arg("errorstats").query_async(&mut setup.node(port).conn().await).await.unwrap();
    let count = info.lines().find_map(|l| l.strip_prefix("errorstat_READONLY:count="));
    count.map_or(0, |n| n.trim().parse().unwrap_or(0))
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// files in `dir`.
fn pki(dir: &std::path::Path) -> TlsFiles {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "credd test Sentinel CA");
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let leaf = |cn: &str, usage: ExtendedKeyUsagePurpose| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
        // The servers' certificate is also their client certificate (replication, sentinel links).
        p.extended_key_usages = vec![usage, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server, server_key) = leaf("redis", ExtendedKeyUsagePurpose::ServerAuth);
    let (client, client_key) = leaf("credd", ExtendedKeyUsagePurpose::ClientAuth);
    for (name, text) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server),
        ("server.key", server_key),
        ("client.pem", client),
        ("client.key", client_key),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    TlsFiles { cert: dir.join("server.pem"), key: dir.join("server.key"), ca: dir.join("ca.pem") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_run_behind_sentinel_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = pki(dir.path());
    let acl: &[&str] = &["ACL", "SETUSER", "credd", "on", ">pw-of-credd", "~*", "&*", "+@all"];
    let setup = SentinelSetup::start_with(1, &[acl], None, Some(&tls)).await;
    let password = dir.path().join("password");
    std::fs::write(&password, "pw-of-credd\n").unwrap();
    let op = operator();
    let url = setup.url();
    assert!(url.starts_with("rediss+sentinel://"), "{url}");
    let with_tls = |name: &str| {
        let env = name.to_ascii_uppercase();
        let mut c = command(name, &url, &password, &op);
        c.env(format!("{env}_REDIS_CA_FILE"), &tls.ca)
            .env(format!("{env}_REDIS_CLIENT_CERT_FILE"), dir.path().join("client.pem"))
            .env(format!("{env}_REDIS_CLIENT_KEY_FILE"), dir.path().join("client.key"))
            .env("AUTHD_REDIS_WAIT_REPLICAS", "1");
        c
    };
    let mut authd = Proc::spawn(with_tls("authd"));
    let mut introspect = Proc::spawn(with_tls("introspect"));
    let (aaddr, iaddr) = (authd.wait_serving(), introspect.wait_serving());
    let ach = channel(&aaddr).await;
    let mut admin = pb::admin_service_client::AdminServiceClient::new(ach.clone());
    let mut clients = pb::client_service_client::ClientServiceClient::new(ach);
    let mut verify = ipb::introspect_service_client::IntrospectServiceClient::new(channel(&iaddr).await);
    let tenant = admin
        .create_tenant(authed(&op.token, pb::CreateTenantRequest { name: "tls".into(), ..Default::default() }))
        .await
        .expect("create a tenant behind Sentinel over TLS")
        .into_inner()
        .tenant
        .unwrap()
        .tenant_id;
    let key_req = pb::CreateApiKeyRequest {
        tenant_id: tenant,
        environment: pb::Environment::Production.into(),
        name: "k".into(),
        ..Default::default()
    };
    let key = admin.create_api_key(authed(&op.token, key_req)).await.unwrap().into_inner().secret;
    let created = clients.create_client(authed(&key, pb::CreateClientRequest::default())).await.unwrap().into_inner();
    let (client_id, cst) = (created.client.unwrap().client_id, created.token);
    verify.verify(verify_req(&cst)).await.expect("introspect verifies behind Sentinel over TLS");
    clients.revoke_all_sessions(authed(&key, pb::RevokeAllSessionsRequest { client_id })).await.expect("revoke");
    assert_eventually!(
        verify.verify(verify_req(&cst)).await.is_err_and(|s| s.code() == Code::Unauthenticated),
        Duration::from_secs(5),
        "the revocation never reached introspect over the TLS subscription"
    );
    // Every connection of both services to the master is on its TLS port.
    let master = setup.master_port().await;
    let list: String =
        redis::cmd("CLIENT").arg("LIST").query_async(&mut setup.node(master).conn().await).await.unwrap();
    let ours: Vec<&str> = list.lines().filter(|l| l.contains(" user=credd ")).collect();
    assert!(ours.iter().any(|l| l.contains(" sub=1 ")), "no subscription as the ACL user:\n{list}");
    for l in &ours {
        assert!(l.contains(&format!("laddr=127.0.0.1:{master} ")), "not over TLS: {l}");
    }
    assert_eq!(authd.terminate(), Some(0));
    assert_eq!(introspect.terminate(), Some(0));
}
