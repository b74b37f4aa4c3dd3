//! The real `authd` and `introspect` binaries on a Redis Cluster, configured
//! only by their `*_REDIS_CLUSTER_NODES` variables: a flow through both
//! services, a revocation that reaches introspect's cache by push alone, and
//! a clean SIGTERM. (The in-process suites cover the cluster store itself.)

use std::process::Command;
use std::time::Duration;

use cred_proto::authd::v1 as pb;
use cred_proto::introspect::v1 as ipb;
use cred_tests::authd::authed;
use cred_tests::binaries::{Proc, bin, operator};
use cred_tests::introspect::cause;
use cred_tests::{RedisCluster, assert_eventually};
use tonic::transport::Channel;

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binaries_serve_on_a_cluster() {
    let cluster = RedisCluster::shared();
    let nodes = cluster.nodes().join(",");
    let op = operator();
    let mut a = Command::new(bin("authd"));
    a.env_clear()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("AUTHD_REDIS_CLUSTER_NODES", &nodes)
        .env("AUTHD_OPERATOR_SECRET_FILE", op.dir.path().join("secret"))
        .env("AUTHD_OPERATOR_ALLOWLIST_FILE", op.dir.path().join("allowlist"));
    let mut i = Command::new(bin("introspect"));
    // Touches far apart: only the pushed invalidation can drop the cached answer.
    i.env_clear()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("INTROSPECT_REDIS_CLUSTER_NODES", &nodes)
        .env("INTROSPECT_TOUCH_GRANULARITY_MS", "60000");
    let (mut authd, mut introspect) = (Proc::spawn(a), Proc::spawn(i));
    let (authd_addr, introspect_addr) = (authd.wait_serving(), introspect.wait_serving());
    let ch = channel(&authd_addr).await;
    let (mut admin, mut clients) = (
        pb::admin_service_client::AdminServiceClient::new(ch.clone()),
        pb::client_service_client::ClientServiceClient::new(ch),
    );
    let mut verify = ipb::introspect_service_client::IntrospectServiceClient::new(channel(&introspect_addr).await);

    let req = pb::CreateTenantRequest { name: "on-cluster".into(), ..Default::default() };
    let tenant = admin.create_tenant(authed(&op.token, req)).await.expect("create tenant").into_inner();
    let tenant_id = tenant.tenant.expect("tenant").tenant_id;
    let req = pb::CreateApiKeyRequest {
        tenant_id,
        environment: pb::Environment::Production.into(),
        name: "backend".into(),
        ..Default::default()
    };
    let key = admin.create_api_key(authed(&op.token, req)).await.expect("create api key").into_inner().secret;
    let created = clients
        .create_client(authed(&key, pb::CreateClientRequest::default()))
        .await
        .expect("create client")
        .into_inner();
    let (client_id, session_id) =
        (created.client.expect("client").client_id, created.session.expect("session").session_id);

    let v = verify
        .verify(ipb::VerifyRequest { token: created.token.clone(), ..Default::default() })
        .await
        .expect("verify on the cluster")
        .into_inner();
    assert_eq!(v.client_id, client_id);

    let req = pb::RevokeSessionRequest { client_id, session_id };
    clients.revoke_session(authed(&key, req)).await.expect("revoke session");
    let token = created.token.clone();
    assert_eventually!(
        match verify.verify(ipb::VerifyRequest { token: token.clone(), ..Default::default() }).await {
            Ok(_) => false,
            Err(s) => cause(&s) == "REVOKED",
        },
        Duration::from_secs(5),
        "introspect on the cluster kept accepting a revoked session"
    );

    assert_eq!(authd.terminate(), Some(0), "authd's exit:\n{}", authd.lines().join("\n"));
    assert_eq!(introspect.terminate(), Some(0), "introspect's exit:\n{}", introspect.lines().join("\n"));
}
