//! TLS on both services, with certificates made at test time (rcgen): health
//! and real RPCs over TLS with a client that trusts the test CA, plaintext
//! refused, authd's admin mTLS (client certificate *and* operator key), the
//! plaintext health-only listener for probes, and bad settings refused at
//! start naming the flag. Real redis-server (fails loudly without it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use authd::auth::OperatorAuth;
use cred_core::Authority;
use cred_core::operator::{Allowlist, OperatorSecret};
use cred_proto::authd::v1 as pb;
use cred_proto::introspect::v1 as ipb;
use cred_serve::serve::ServeOptions;
use cred_serve::tls::{CLIENT_CA_FLAG, ServerTls};
use cred_tests::authd::authed;
use cred_tests::{Authd, RedisServer, assert_eventually};
use introspect::{Verifier, VerifyOptions};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A CA that signs leaf certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().expect("ca key")).expect("self-sign ca");
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `sans`, for `usage`: (certificate PEM, key PEM).
    fn leaf(&self, cn: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        p.distinguished_name.push(DnType::CommonName, cn);
        for s in sans {
            p.subject_alt_names.push(match s.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*s).try_into().expect("dns name")),
            });
        }
        p.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let cert = p.signed_by(&key, &self.issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// Every certificate of the tests, written to a temp dir.
struct Pki {
    _dir: tempfile::TempDir,
    /// The server CA, trusted by the clients.
    server_ca: String,
    server_cert: PathBuf,
    server_key: PathBuf,
    /// The CA of admin client certificates (authd's --admin-client-ca-file).
    client_ca: PathBuf,
    /// An admin client certificate and key issued by `client_ca`.
    admin: (String, String),
    /// A client certificate and key from a CA authd does not trust.
    rogue: (String, String),
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let server_ca = Ca::new("credd test server CA");
        let client_ca = Ca::new("credd test admin CA");
        let rogue_ca = Ca::new("credd test admin CA"); // same name, other key
        let (cert, key) = server_ca.leaf("localhost", &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write pem");
            p
        };
        Pki {
            server_ca: server_ca.pem(),
            server_cert: write("server.crt", &cert),
            server_key: write("server.key", &key),
            client_ca: write("client-ca.crt", &client_ca.pem()),
            admin: client_ca.leaf("operator", &[], ExtendedKeyUsagePurpose::ClientAuth),
            rogue: rogue_ca.leaf("operator", &[], ExtendedKeyUsagePurpose::ClientAuth),
            _dir: dir,
        }
    }

    fn server_tls(&self, client_ca: bool) -> ServerTls {
        ServerTls::load(
            &self.server_cert,
            &self.server_key,
            client_ca.then_some((CLIENT_CA_FLAG, self.client_ca.as_path())),
        )
        .expect("load server tls")
    }

    fn path(&self, name: &str) -> PathBuf {
        self._dir.path().join(name)
    }
}

/// A TLS channel trusting the test server CA, with a client identity if given.
async fn tls_channel(addr: SocketAddr, pki: &Pki, identity: Option<&(String, String)>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.server_ca)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .map_err(|e| format!("{e:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn plain_channel(addr: SocketAddr) -> Result<Channel, String> {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn health(ch: Channel) -> Result<ServingStatus, tonic::Status> {
    let r = HealthClient::new(ch).check(HealthCheckRequest { service: String::new() }).await?;
    Ok(r.into_inner().status())
}

/// A server task stopped on drop.
struct Running {
    addr: SocketAddr,
    /// The plaintext health-only listener.
    health_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn listeners(tls: ServerTls) -> (SocketAddr, TcpListener, SocketAddr, ServeOptions) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let health = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let (addr, health_addr) = (listener.local_addr().unwrap(), health.local_addr().unwrap());
    let opts =
        ServeOptions { tls: Some(tls), health_listener: Some(health), ..ServeOptions::new(Duration::from_secs(1)) };
    (addr, listener, health_addr, opts)
}

/// authd over TLS on `redis`; returns it and a valid operator key.
async fn authd_tls(redis: &RedisServer, tls: ServerTls) -> (Running, String) {
    let (secret, _) = OperatorSecret::generate();
    let (id, operator) = secret.issue();
    let operators = OperatorAuth::new(secret, Allowlist::of([id]));
    let authority = Authority::new(redis.store().await);
    let (addr, listener, health_addr, opts) = listeners(tls).await;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        authd::server::run(listener, authority, operators, opts, shutdown).await.expect("authd serves");
    });
    (Running { addr, health_addr, stop: Some(stop) }, operator)
}

async fn introspect_tls(redis_url: &str, tls: ServerTls) -> Running {
    let store = cred_core::store::RedisStore::connect(redis_url, Default::default()).await.expect("connect redis");
    let verifier = Verifier::new(store, VerifyOptions::default());
    let (addr, listener, health_addr, opts) = listeners(tls).await;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        introspect::server::run(listener, verifier, opts, shutdown).await.expect("introspect serves");
    });
    Running { addr, health_addr, stop: Some(stop) }
}

/// Asserts a plaintext client gets nothing from a TLS listener.
async fn plaintext_refused(addr: SocketAddr) {
    if let Ok(ch) = plain_channel(addr).await {
        let r = health(ch).await;
        assert!(r.is_err(), "a plaintext client was answered by a TLS server: {r:?}");
    }
}

/// The health-only port answers plaintext health and nothing else.
async fn health_port_serves_only_health(addr: SocketAddr) {
    let ch = plain_channel(addr).await.expect("plaintext health port connects");
    assert_eventually!(
        matches!(health(ch.clone()).await, Ok(ServingStatus::Serving)),
        Duration::from_secs(5),
        "the health-only port never said SERVING"
    );
    let err = pb::admin_service_client::AdminServiceClient::new(ch)
        .get_tenant(pb::GetTenantRequest { tenant_id: uuid::Uuid::new_v4().to_string() })
        .await
        .expect_err("the health port serves an API");
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
}

#[tokio::test]
async fn authd_serves_tls_and_refuses_plaintext() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let (authd, operator) = authd_tls(&redis, pki.server_tls(false)).await;
    let ch = tls_channel(authd.addr, &pki, None).await.expect("TLS connect");
    assert_eventually!(
        matches!(health(ch.clone()).await, Ok(ServingStatus::Serving)),
        Duration::from_secs(5),
        "authd over TLS never said SERVING"
    );
    let t = pb::admin_service_client::AdminServiceClient::new(ch)
        .create_tenant(authed(&operator, pb::CreateTenantRequest { name: "acme".into(), ..Default::default() }))
        .await
        .expect("CreateTenant over TLS")
        .into_inner();
    assert!(!t.tenant.expect("tenant").tenant_id.is_empty());
    plaintext_refused(authd.addr).await;
    health_port_serves_only_health(authd.health_addr).await;
}

#[tokio::test]
async fn introspect_serves_tls_and_refuses_plaintext() {
    let pki = Pki::new();
    let authd = Authd::start().await; // plaintext, to mint a session
    let keys = authd.tenant(None).await;
    let created = authd
        .clients()
        .create_client(authed(&keys.test_key, pb::CreateClientRequest::default()))
        .await
        .expect("create client")
        .into_inner();
    let client_id = created.client.expect("client").client_id;

    let introspect = introspect_tls(&authd.redis.server().url(), pki.server_tls(false)).await;
    let ch = tls_channel(introspect.addr, &pki, None).await.expect("TLS connect");
    assert_eventually!(
        matches!(health(ch.clone()).await, Ok(ServingStatus::Serving)),
        Duration::from_secs(5),
        "introspect over TLS never said SERVING"
    );
    let v = ipb::introspect_service_client::IntrospectServiceClient::new(ch)
        .verify(ipb::VerifyRequest { token: created.token, ..Default::default() })
        .await
        .expect("Verify over TLS")
        .into_inner();
    assert_eq!(v.client_id, client_id);
    plaintext_refused(introspect.addr).await;
    health_port_serves_only_health(introspect.health_addr).await;
}

/// Caller mTLS on introspect (`--client-ca-file`): Verify needs a verified
/// client certificate; health does not (probes carry none).
#[tokio::test]
async fn introspect_with_a_client_ca_verifies_only_for_callers_with_a_certificate() {
    let pki = Pki::new();
    let authd = Authd::start().await;
    let keys = authd.tenant(None).await;
    let created = authd
        .clients()
        .create_client(authed(&keys.test_key, pb::CreateClientRequest::default()))
        .await
        .expect("create client")
        .into_inner();
    let tls = ServerTls::load(&pki.server_cert, &pki.server_key, Some(("--client-ca-file", pki.client_ca.as_path())))
        .expect("load server tls");
    let introspect = introspect_tls(&authd.redis.server().url(), tls).await;
    let verify = |ch: Channel| {
        let req = ipb::VerifyRequest { token: created.token.clone(), ..Default::default() };
        async move { ipb::introspect_service_client::IntrospectServiceClient::new(ch).verify(req).await }
    };
    let with_cert = tls_channel(introspect.addr, &pki, Some(&pki.admin)).await.expect("mTLS connect");
    verify(with_cert).await.expect("Verify with a client certificate");
    let no_cert = tls_channel(introspect.addr, &pki, None).await.expect("TLS without a client cert connects");
    let s = verify(no_cert.clone()).await.expect_err("Verify without a client certificate");
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("--client-ca-file"), "{s:?}");
    assert!(matches!(health(no_cert).await, Ok(ServingStatus::Serving)), "health needs no certificate");
}

#[tokio::test]
async fn admin_rpcs_need_a_client_certificate_and_the_operator_key() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let (authd, operator) = authd_tls(&redis, pki.server_tls(true)).await;
    let create = |token: &str| authed(token, pb::CreateTenantRequest { name: "acme".into(), ..Default::default() });

    // Certificate and key: accepted.
    let with_cert = tls_channel(authd.addr, &pki, Some(&pki.admin)).await.expect("mTLS connect");
    let mut admin = pb::admin_service_client::AdminServiceClient::new(with_cert.clone());
    let tenant_id =
        admin.create_tenant(create(&operator)).await.expect("cert + key").into_inner().tenant.unwrap().tenant_id;

    // Certificate without the key: still refused by the key check.
    let s = admin.create_tenant(create("not-an-operator-key")).await.expect_err("cert without key");
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");

    // Key without a certificate: refused, naming the mTLS requirement.
    let no_cert = tls_channel(authd.addr, &pki, None).await.expect("TLS without a client cert connects");
    let s = pb::admin_service_client::AdminServiceClient::new(no_cert.clone())
        .create_tenant(create(&operator))
        .await
        .expect_err("key without cert");
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("client certificate"), "{s:?}");

    // A certificate from another CA: the handshake (or the call) fails.
    let rogue = match tls_channel(authd.addr, &pki, Some(&pki.rogue)).await {
        Err(e) => Err(e),
        Ok(ch) => pb::admin_service_client::AdminServiceClient::new(ch)
            .create_tenant(create(&operator))
            .await
            .map(|_| ())
            .map_err(|s| format!("{s:?}")),
    };
    let err = rogue.expect_err("a client certificate from another CA was accepted");
    // The server's TLS alert, not a gRPC status from the service.
    assert!(err.contains("alert"), "{err}");

    // Other services need no client certificate with mTLS on.
    let req = pb::CreateApiKeyRequest {
        tenant_id,
        environment: pb::Environment::Test.into(),
        name: "backend".into(),
        ..Default::default()
    };
    let key = admin.create_api_key(authed(&operator, req)).await.expect("api key").into_inner().secret;
    let c = pb::client_service_client::ClientServiceClient::new(no_cert)
        .create_client(authed(&key, pb::CreateClientRequest::default()))
        .await
        .expect("ClientService without a client certificate");
    assert!(!c.into_inner().token.is_empty());
}

fn err_of(r: Result<Option<ServerTls>, cred_serve::tls::TlsError>) -> String {
    r.expect_err("a bad TLS setting was accepted").to_string()
}

#[test]
fn bad_tls_settings_fail_naming_the_flag() {
    let pki = Pki::new();
    let (cert, key, ca) = (pki.server_cert.as_path(), pki.server_key.as_path(), pki.client_ca.as_path());
    let write = |name: &str, text: &str| -> PathBuf {
        let p = pki.path(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let garbage = write("garbage.pem", "not a certificate\n");
    let (_, other_key) = Ca::new("x").leaf("localhost", &["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let other_key = write("other.key", &other_key);
    let missing = Path::new("/nonexistent/credd/tls.crt");
    let f = ServerTls::from_flags;

    assert!(err_of(f(None, None, Some((CLIENT_CA_FLAG, ca)))).contains("--admin-client-ca-file needs server TLS"));
    assert!(err_of(f(Some(cert), None, None)).contains("--tls-key-file"));
    assert!(err_of(f(None, Some(key), None)).contains("--tls-cert-file"));
    let e = err_of(f(Some(missing), Some(key), None));
    assert!(e.starts_with("--tls-cert-file /nonexistent/credd/tls.crt"), "{e}");
    assert!(err_of(f(Some(&garbage), Some(key), None)).starts_with("--tls-cert-file"));
    assert!(err_of(f(Some(cert), Some(&garbage), None)).starts_with("--tls-key-file"));
    assert!(err_of(f(Some(cert), Some(cert), None)).starts_with("--tls-key-file"), "a certificate as the key");
    let e = err_of(f(Some(cert), Some(&other_key), None));
    assert!(e.starts_with("--tls-cert-file / --tls-key-file"), "{e}");
    assert!(err_of(f(Some(cert), Some(key), Some((CLIENT_CA_FLAG, &garbage)))).starts_with("--admin-client-ca-file"));
    assert!(f(None, None, None).expect("TLS off").is_none());
    assert!(
        f(Some(cert), Some(key), Some((CLIENT_CA_FLAG, ca))).expect("good files").expect("TLS on").verifies_clients()
    );
}
