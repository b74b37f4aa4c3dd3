//! Redis over TLS with an ACL user, for both binaries: a real redis-server
//! with `--tls-port` (certificates made here; client certificates
//! required), authd and introspect over `rediss://` with the CA, a client
//! certificate and the user's password from a file. A session is verified,
//! revoked and refused (the invalidation push runs over TLS too); a wrong
//! CA, a missing client certificate, a wrong password and a CA with a
//! plaintext URL fail at start, naming the flags.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cred_proto::authd::v1 as pb;
use cred_proto::introspect::v1 as ipb;
use cred_tests::binaries::{Operator, Proc, bin, operator};
use cred_tests::{RedisServer, assert_eventually};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

/// A CA and what it signed, as files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, name);
            CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
        };
        let (ca, rogue) = (ca("credd test Redis CA"), ca("credd test Redis CA"));
        let leaf = |cn: &str, usage: ExtendedKeyUsagePurpose| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.subject_alt_names = vec![
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
                SanType::DnsName("localhost".try_into().unwrap()),
            ];
            p.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server, server_key) = leaf("redis", ExtendedKeyUsagePurpose::ServerAuth);
        let (client, client_key) = leaf("credd", ExtendedKeyUsagePurpose::ClientAuth);
        for (name, text) in [
            ("ca.pem", ca.pem()),
            ("rogue-ca.pem", rogue.pem()),
            ("server.pem", server),
            ("server.key", server_key),
            ("client.pem", client),
            ("client.key", client_key),
            ("password", "pw-of-credd\n".to_string()),
            ("wrong-password", "not-the-password\n".to_string()),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Pki { dir }
    }
}

/// A binary's command over the TLS Redis with every setting given.
fn command(name: &str, url: &str, pki: &Pki, op: &Operator, skip: &[&str]) -> Command {
    let env = name.to_ascii_uppercase();
    let mut c = Command::new(bin(name));
    c.env_clear().args(["serve", "--listen", "127.0.0.1:0"]).env(format!("{env}_REDIS_URL"), url);
    let settings = [
        ("REDIS_CA_FILE", pki.path("ca.pem")),
        ("REDIS_CLIENT_CERT_FILE", pki.path("client.pem")),
        ("REDIS_CLIENT_KEY_FILE", pki.path("client.key")),
        ("REDIS_PASSWORD_FILE", pki.path("password")),
    ];
    for (k, v) in settings {
        if !skip.contains(&k) {
            c.env(format!("{env}_{k}"), v);
        }
    }
    c.env(format!("{env}_REDIS_USERNAME"), "credd");
    if name == "authd" {
        c.env("AUTHD_OPERATOR_SECRET_FILE", op.dir.path().join("secret"))
            .env("AUTHD_OPERATOR_ALLOWLIST_FILE", op.dir.path().join("allowlist"));
    }
    c
}

/// Runs `cmd`, which must exit non-zero within 20 s; its stderr.
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

fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn redis_args(pki: &Pki, tls_port: u16) -> Vec<String> {
    let p = |n: &str| pki.path(n).to_str().unwrap().to_string();
    vec![
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        p("server.pem"),
        "--tls-key-file".into(),
        p("server.key"),
        "--tls-ca-cert-file".into(),
        p("ca.pem"),
        "--tls-auth-clients".into(),
        "yes".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_run_over_tls_with_an_acl_user_and_refuse_bad_settings_at_start() {
    let pki = Pki::new();
    let (redis, tls_port) = RedisServer::start_with_tls(|p| redis_args(&pki, p));
    let mut admin = redis.conn().await;
    let acl = ["SETUSER", "credd", "on", ">pw-of-credd", "~*", "&*", "+@all"];
    let () = redis::cmd("ACL").arg(&acl[..]).query_async(&mut admin).await.unwrap();
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let op = operator();

    let mut authd = Proc::spawn(command("authd", &url, &pki, &op, &[]));
    let mut introspect = Proc::spawn(command("introspect", &url, &pki, &op, &[]));
    let (aaddr, iaddr) = (authd.wait_serving(), introspect.wait_serving());
    let ch = channel(&aaddr).await;
    let mut admin_api = pb::admin_service_client::AdminServiceClient::new(ch.clone());
    let mut clients = pb::client_service_client::ClientServiceClient::new(ch);
    let mut verify = ipb::introspect_service_client::IntrospectServiceClient::new(channel(&iaddr).await);
    let tenant = admin_api
        .create_tenant(authed(&op.token, pb::CreateTenantRequest { name: "tls".into(), ..Default::default() }))
        .await
        .expect("create tenant over TLS")
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
    let key = admin_api.create_api_key(authed(&op.token, key_req)).await.unwrap().into_inner().secret;
    let created = clients.create_client(authed(&key, pb::CreateClientRequest::default())).await.unwrap().into_inner();
    let (client_id, cst) = (created.client.unwrap().client_id, created.token);
    let req = || ipb::VerifyRequest { token: cst.clone(), ..Default::default() };
    verify.verify(req()).await.expect("introspect verifies over TLS");
    clients
        .revoke_all_sessions(authed(&key, pb::RevokeAllSessionsRequest { client_id }))
        .await
        .expect("revoke over TLS");
    assert_eventually!(
        verify.verify(req()).await.is_err_and(|s| s.code() == tonic::Code::Unauthenticated),
        Duration::from_secs(3),
        "the revocation never reached introspect's cache over the TLS subscription"
    );

    // Every connection of both services is on the TLS port, as the ACL user.
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut admin).await.unwrap();
    let ours: Vec<&str> = list.lines().filter(|l| l.contains(" user=credd ")).collect();
    // At least authd's commands, introspect's commands and its subscription (authd may share one
    // multiplexed connection for everything, so the exact count is not fixed).
    assert!(ours.len() >= 3, "expected the services' connections (commands, subscriptions):\n{list}");
    assert!(ours.iter().any(|l| l.contains(" sub=1 ")), "no subscription as the ACL user:\n{list}");
    for l in &ours {
        assert!(l.contains(&format!("laddr=127.0.0.1:{tls_port} ")), "not over TLS: {l}");
    }
    assert_eq!(authd.terminate(), Some(0));
    assert_eq!(introspect.terminate(), Some(0));

    // Bad settings fail at start, naming what is at fault.
    let mut rogue = command("introspect", &url, &pki, &op, &["REDIS_CA_FILE"]);
    rogue.env("INTROSPECT_REDIS_CA_FILE", pki.path("rogue-ca.pem"));
    let e = fails_at_start(rogue, "a CA that did not sign the server's certificate");
    assert!(e.contains("--redis-url") && e.contains("--redis-ca-file"), "{e}");
    let e = fails_at_start(
        command("authd", &url, &pki, &op, &["REDIS_CLIENT_CERT_FILE", "REDIS_CLIENT_KEY_FILE"]),
        "no client certificate",
    );
    assert!(e.contains("--redis-url"), "{e}");
    let mut wrong = command("authd", &url, &pki, &op, &["REDIS_PASSWORD_FILE"]);
    wrong.env("AUTHD_REDIS_PASSWORD_FILE", pki.path("wrong-password"));
    let e = fails_at_start(wrong, "a wrong password");
    assert!(e.contains("--redis-password-file"), "{e}");
    let plain = format!("redis://127.0.0.1:{}", redis.port);
    let e = fails_at_start(command("introspect", &plain, &pki, &op, &[]), "a CA with a plaintext URL");
    assert!(e.contains("rediss://") && !e.contains("pw-of-credd"), "{e}");
}
