//! The real introspect binary over TLS reloads its certificate when the
//! files change, the way Kubernetes updates a mounted Secret (the files are
//! symlinks through `..data`, which is swapped to a new directory): a new
//! connection sees the new certificate within a bound, an open one keeps
//! working, and a garbage file keeps the last good certificate and is
//! logged at ERROR naming the flag; authd's admin client CA is reloaded the
//! same way. Certificates are made at test time (rcgen); needs
//! `redis-server` and the binaries (`cargo build --bins`).

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cred_proto::authd::v1 as pb;
use cred_tests::RedisServer;
use cred_tests::binaries::{Proc, bin, operator};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A self-signed CA: (its PEM, a server leaf for localhost and 127.0.0.1 as
/// (certificate PEM, key PEM)).
fn ca_and_leaf(name: &str) -> (String, (String, String)) {
    ca_and_leaf_for(name, ExtendedKeyUsagePurpose::ServerAuth)
}

/// As [`ca_and_leaf`], the leaf for `usage`.
fn ca_and_leaf_for(name: &str, usage: ExtendedKeyUsagePurpose) -> (String, (String, String)) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.subject_alt_names =
        vec![SanType::DnsName("localhost".try_into().unwrap()), SanType::IpAddress("127.0.0.1".parse().unwrap())];
    leaf.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    (ca.pem(), (cert.pem(), key.serialize_pem()))
}

/// Writes `tls.crt` / `tls.key` as a Kubernetes Secret volume holds them:
/// `dir/tls.crt -> ..data/tls.crt`, `..data -> ..<version>`, the swap of
/// `..data` a rename (atomic, as the kubelet's).
fn publish(dir: &Path, version: &str, cert: &str, key: &str) {
    publish_files(dir, version, &[("tls.crt", cert), ("tls.key", key)]);
}

fn publish_files(dir: &Path, version: &str, files: &[(&str, &str)]) {
    let v = dir.join(format!("..{version}"));
    std::fs::create_dir(&v).unwrap();
    for (name, text) in files {
        std::fs::write(v.join(name), text).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (name, _) in files {
        if !dir.join(name).exists() {
            symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
    }
}

/// A new TLS connection trusting only `ca`, and its health answer.
async fn health_with(addr: &str, ca: &str) -> Result<ServingStatus, String> {
    let ch = connect(addr, ca).await?;
    health(ch).await
}

async fn connect(addr: &str, ca: &str) -> Result<Channel, String> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| format!("{e:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn health(ch: Channel) -> Result<ServingStatus, String> {
    let r = HealthClient::new(ch).check(HealthCheckRequest { service: String::new() }).await;
    r.map(|r| r.into_inner().status()).map_err(|e| format!("{e:?}"))
}

/// Polls until a new connection trusting `want` is served and one trusting
/// `not` is refused; the time it took.
async fn until_served_by(addr: &str, want: &str, not: &str, p: &Proc) -> Duration {
    let start = Instant::now();
    loop {
        let good = health_with(addr, want).await;
        let bad = health_with(addr, not).await;
        if good == Ok(ServingStatus::Serving) && bad.is_err() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no new certificate within 10 s: trusted CA {good:?}, other CA {bad:?}\n{}",
            p.lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_applies_to_new_connections_and_a_bad_one_is_refused() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (ca_a, (cert_a, key_a)) = ca_and_leaf("credd reload CA A");
    let (ca_b, (cert_b, key_b)) = ca_and_leaf("credd reload CA B");
    publish(dir.path(), "1", &cert_a, &key_a);

    let mut cmd = Command::new(bin("introspect"));
    cmd.env_clear()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--tls-cert-file")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.path().join("tls.key"))
        .env("INTROSPECT_REDIS_URL", redis.url())
        .env("INTROSPECT_DRAIN_TIMEOUT_MS", "1000");
    let mut p = Proc::spawn(cmd);
    let addr = p.wait_serving();

    // Certificate A: served to clients trusting A only.
    assert_eq!(health_with(&addr, &ca_a).await, Ok(ServingStatus::Serving));
    assert!(health_with(&addr, &ca_b).await.is_err(), "a client trusting only B accepted A");
    let open = connect(&addr, &ca_a).await.unwrap();
    assert_eq!(health(open.clone()).await, Ok(ServingStatus::Serving));

    // The Secret is updated to B: new connections get B.
    publish(dir.path(), "2", &cert_b, &key_b);
    let took = until_served_by(&addr, &ca_b, &ca_a, &p).await;
    eprintln!("certificate B served {took:?} after the swap");
    assert_eq!(health(open.clone()).await, Ok(ServingStatus::Serving), "the open connection keeps working");
    let reloaded = |p: &Proc| p.lines().iter().filter(|l| l.contains("TLS certificate reloaded")).count();
    assert_eq!(reloaded(&p), 1, "{}", p.lines().join("\n"));

    // A garbage certificate (and a half-written key) is refused: B stays,
    // and the error names the flag.
    publish(dir.path(), "3", "-----BEGIN CERTIFICATE-----\nnot base64\n", &key_b[..key_b.len() / 2]);
    let start = Instant::now();
    let error = loop {
        let errors: Vec<String> = p.lines().into_iter().filter(|l| l.contains(r#""level":"ERROR""#)).collect();
        if let Some(e) = errors.first() {
            break e.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no ERROR within 10 s:\n{}", p.lines().join("\n"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(error.contains("--tls-cert-file") && error.contains("TLS files not reloaded"), "{error}");
    for _ in 0..3 {
        assert_eq!(health_with(&addr, &ca_b).await, Ok(ServingStatus::Serving), "B no longer served");
        assert!(health_with(&addr, &ca_a).await.is_err());
    }
    assert_eq!(reloaded(&p), 1);

    // Fixed files apply again; SIGHUP alone (files unchanged) changes nothing.
    publish(dir.path(), "4", &cert_a, &key_a);
    until_served_by(&addr, &ca_a, &ca_b, &p).await;
    assert_eq!(reloaded(&p), 2);
    let pid = p.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(p.alive(), "SIGHUP killed it:\n{}", p.lines().join("\n"));
    assert_eq!(health_with(&addr, &ca_a).await, Ok(ServingStatus::Serving));
    assert_eq!(reloaded(&p), 2, "an unchanged file is not a reload");
    assert_eq!(p.terminate(), Some(0), "{}", p.lines().join("\n"));
}

/// An admin call over TLS trusting `server_ca`, with `identity` as the
/// client certificate: `Err` when the handshake or the call fails.
async fn list_tenants(addr: &str, server_ca: &str, identity: &(String, String), token: &str) -> Result<(), String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca))
        .domain_name("localhost")
        .identity(Identity::from_pem(&identity.0, &identity.1));
    let ch = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| format!("{e:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut req = tonic::Request::new(pb::ListTenantsRequest::default());
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let admin = pb::admin_service_client::AdminServiceClient::new(ch).list_tenants(req).await;
    admin.map(|_| ()).map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authd_reloads_the_admin_client_ca() {
    let redis = RedisServer::start();
    let op = operator();
    let (tls_dir, ca_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (server_ca, (cert, key)) = ca_and_leaf("credd reload server CA");
    let (ca_x, admin_x) = ca_and_leaf_for("credd admin CA X", ExtendedKeyUsagePurpose::ClientAuth);
    let (ca_y, admin_y) = ca_and_leaf_for("credd admin CA Y", ExtendedKeyUsagePurpose::ClientAuth);
    publish(tls_dir.path(), "1", &cert, &key);
    publish_files(ca_dir.path(), "1", &[("ca.crt", &ca_x)]);

    let mut cmd = Command::new(bin("authd"));
    cmd.env_clear()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--tls-cert-file")
        .arg(tls_dir.path().join("tls.crt"))
        .arg("--tls-key-file")
        .arg(tls_dir.path().join("tls.key"))
        .arg("--admin-client-ca-file")
        .arg(ca_dir.path().join("ca.crt"))
        .env("AUTHD_REDIS_URL", redis.url())
        .env("AUTHD_OPERATOR_SECRET_FILE", op.dir.path().join("secret"))
        .env("AUTHD_OPERATOR_ALLOWLIST_FILE", op.dir.path().join("allowlist"))
        .env("AUTHD_DRAIN_TIMEOUT_MS", "1000");
    let mut p = Proc::spawn(cmd);
    let addr = p.wait_serving();
    list_tenants(&addr, &server_ca, &admin_x, &op.token).await.expect("an admin certificate from CA X");
    assert!(list_tenants(&addr, &server_ca, &admin_y, &op.token).await.is_err(), "CA Y accepted before the swap");

    publish_files(ca_dir.path(), "2", &[("ca.crt", &ca_y)]);
    let start = Instant::now();
    loop {
        let (x, y) = (
            list_tenants(&addr, &server_ca, &admin_x, &op.token).await,
            list_tenants(&addr, &server_ca, &admin_y, &op.token).await,
        );
        if x.is_err() && y.is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "client CA not reloaded within 10 s: X {x:?}, Y {y:?}\n{}",
            p.lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A garbage CA keeps Y.
    publish_files(ca_dir.path(), "3", &[("ca.crt", "garbage\n")]);
    let start = Instant::now();
    while !p.lines().iter().any(|l| l.contains(r#""level":"ERROR""#) && l.contains("--admin-client-ca-file")) {
        assert!(start.elapsed() < Duration::from_secs(10), "no ERROR naming the flag:\n{}", p.lines().join("\n"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    list_tenants(&addr, &server_ca, &admin_y, &op.token).await.expect("CA Y still trusted");
    assert_eq!(p.terminate(), Some(0), "{}", p.lines().join("\n"));
}
