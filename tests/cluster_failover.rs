//! Redis Cluster failover under load: 3 masters with a replica each
//! (`cluster-node-timeout` 1000 ms), authd and an introspect replica in
//! process. The master that owns the test client's slot, and that also
//! carries introspect's invalidation subscription, is killed with SIGKILL
//! during a bounded loop of CreateSession + Verify calls. Both services must
//! serve again without a restart, and revocations must reach introspect's
//! cache again (its subscriber moved to another node). The time until calls
//! succeed again is printed, not asserted (only a generous bound).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cred_proto::authd::v1 as apb;
use cred_tests::authd::authed;
use cred_tests::redis_cluster::RedisCluster;
use cred_tests::{Authd, Redis, Replica, assert_eventually};
use introspect::VerifyOptions;

/// Longest the test waits for the cluster and the services to recover.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

/// One CreateSession (authd, the client's slot) and one Verify of the new
/// token (introspect, a cache miss: a read on the client's slot).
async fn round(authd: &Authd, replica: &Replica, key: &str, client_id: &str) -> Result<(), String> {
    let req = apb::CreateSessionRequest { client_id: client_id.into() };
    let s = authd.clients().create_session(authed(key, req)).await.map_err(|e| format!("create: {e}"))?;
    replica.verify(&s.into_inner().token).await.map_err(|e| format!("verify: {e}"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_ride_out_a_master_failover() {
    let cluster = Arc::new(RedisCluster::start(3, 1, 1_000));
    // Touches far apart: a touch that finds a revoked record would drop the
    // cache entry too, and the final check wants push alone to do it.
    let opts = VerifyOptions { touch_granularity: Duration::from_secs(60), ..VerifyOptions::default() };

    // Start introspect before authd, so the cluster's pub/sub clients are
    // introspect subscribers only; start replicas until one's subscription
    // lands on a master (it picks any live node). Earlier replicas keep
    // running (their push tasks live as long as the runtime).
    let mut others = Vec::new();
    let (replica, sub_node) = loop {
        assert!(others.len() < 20, "no introspect subscriber landed on a master in 20 starts");
        let before: Vec<usize> = cluster.ports.iter().map(|&p| cluster.pubsub_clients(p)).collect();
        let r = Replica::start(&cluster.target(), opts.clone()).await;
        let on: Vec<u16> = (cluster.ports.iter().zip(&before))
            .filter(|&(&p, &n)| cluster.pubsub_clients(p) > n)
            .map(|(&p, _)| p)
            .collect();
        assert_eq!(on.len(), 1, "the new subscriber is on one node: {on:?}");
        if cluster.is_master(on[0]) {
            break (r, on[0]);
        }
        others.push(r);
    };
    let authd = Authd::start_with(Redis::Cluster(cluster.clone())).await;
    let keys = authd.tenant(None).await;

    // A client whose slot is served by the subscriber's master.
    let mut client = None;
    for _ in 0..100 {
        let req = apb::CreateClientRequest { labels: Default::default() };
        let c = authd.clients().create_client(authed(&keys.live_key, req)).await.expect("create client").into_inner();
        let id = c.client.as_ref().expect("client").client_id.clone();
        let uuid = uuid::Uuid::parse_str(&id).expect("client id is a uuid");
        if cluster.master_of(&format!("c:{{{}}}", cred_core::token::short_id(uuid))) == sub_node {
            client = Some((id, c.session.expect("session").session_id, c.token));
            break;
        }
    }
    let (client_id, first_session, first_token) =
        client.expect("no client landed on the subscriber's master in 100 tries");

    // Load, then the kill.
    for i in 0..10 {
        round(&authd, &replica, &keys.live_key, &client_id).await.unwrap_or_else(|e| panic!("warm-up {i}: {e}"));
    }
    replica.verify(&first_token).await.expect("first token is valid");
    let killed = Instant::now();
    cluster.kill(sub_node);
    eprintln!("killed master 127.0.0.1:{sub_node} (client slot + introspect's subscription)");

    let mut failures = 0u32;
    let mut last_error = String::new();
    let mut recovered: Option<Duration> = None;
    let mut streak = 0;
    while streak < 10 {
        assert!(
            killed.elapsed() < RECOVERY_BOUND,
            "services not serving {RECOVERY_BOUND:?} after the kill ({failures} failed rounds, last: {last_error})"
        );
        match round(&authd, &replica, &keys.live_key, &client_id).await {
            Ok(()) => {
                recovered.get_or_insert(killed.elapsed());
                streak += 1;
            }
            Err(e) => {
                failures += 1;
                last_error = e;
                recovered = None;
                streak = 0;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered = recovered.expect("recovered");
    eprintln!(
        "failover: CreateSession + Verify served again {recovered:?} after kill -9 \
         ({failures} failed rounds; last error: {last_error})"
    );
    assert!(failures > 0, "the killed master served the client's slot: some calls must have failed");

    // Push works again: a cached token's revocation reaches introspect long
    // before the cache's max age (30 s).
    assert_eventually!(replica.verifier.cache().push_connected(), RECOVERY_BOUND, "introspect never resubscribed");
    replica.verify(&first_token).await.expect("first token still valid (and now cached)");
    let req = apb::RevokeSessionRequest { client_id: client_id.clone(), session_id: first_session };
    authd.clients().revoke_session(authed(&keys.live_key, req)).await.expect("revoke after failover");
    assert_eventually!(
        replica.verify(&first_token).await.is_err(),
        Duration::from_secs(5),
        "a revocation after the failover did not reach introspect's cache"
    );
    eprintln!("revocation after failover reached introspect; total test time {:?}", killed.elapsed());
}
