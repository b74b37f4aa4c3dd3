//! Revocation when the push channel fails silently: a loopback proxy between
//! an introspect replica and Redis keeps the replica's pub/sub connection up
//! but (a) drops everything Redis sends on it, (b) drops exactly the one
//! message of each revocation, or (c) stalls it both ways. Every revocation
//! kind must still be refused by that replica within the documented bound
//! (5 s), a hot token (used every 100 ms, so its entry is touched all along)
//! included, while Redis answers the replica's commands throughout.

use std::time::{Duration, Instant};

use cred_core::store::RedisTarget;
use cred_proto::authd::v1 as pb;
use cred_tests::authd::authed;
use cred_tests::proxy::Proxy;
use cred_tests::{Authd, Replica};
use introspect::VerifyOptions;

/// The documented bound for a silently dead channel.
const BOUND: Duration = Duration::from_secs(5);

/// Polls `token` on `replica` every 100 ms from `revoked` until refused;
/// the delay. Fails past twice the bound.
async fn refused_after(replica: &Replica, token: &str, revoked: Instant, what: &str) -> Duration {
    loop {
        if replica.verify(token).await.is_err() {
            return revoked.elapsed();
        }
        assert!(revoked.elapsed() < BOUND * 2, "{what}: still accepted {:?} after the revocation", revoked.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the proxy does to the replica's subscription.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    BlackHole,
    DropEach,
    Stall,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_revocation_kind_is_refused_within_the_bound_when_the_subscription_is_black_holed() {
    every_kind_within_the_bound(Fault::BlackHole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_revocation_kind_is_refused_within_the_bound_when_its_one_message_is_lost() {
    every_kind_within_the_bound(Fault::DropEach).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_revocation_kind_is_refused_within_the_bound_when_the_subscription_stalls() {
    every_kind_within_the_bound(Fault::Stall).await;
}

async fn every_kind_within_the_bound(fault: Fault) {
    let a = Authd::start().await;
    let upstream = a.redis.server().url().trim_start_matches("redis://").trim_end_matches("/0").parse().unwrap();
    let proxy = Proxy::start(upstream).await;
    let replica = Replica::start(&RedisTarget::Standalone(proxy.url()), VerifyOptions::default()).await;

    let keys = a.tenant(None).await;
    let mut clients = a.clients();
    let mut new_client = async || {
        clients.create_client(authed(&keys.test_key, pb::CreateClientRequest::default())).await.unwrap().into_inner()
    };
    let (c1, c2, c3) = (new_client().await, new_client().await, new_client().await);
    let tck = a
        .clients()
        .create_test_client(authed(&keys.test_key, pb::CreateTestClientRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let new_key = |name: &str| pb::CreateApiKeyRequest {
        tenant_id: keys.tenant_id.clone(),
        environment: pb::Environment::Test.into(),
        name: name.into(),
        ..Default::default()
    };
    let doomed = a.admin().create_api_key(authed(&a.operator, new_key("doomed"))).await.unwrap().into_inner();
    let (doomed_key, doomed_id) = (doomed.secret, doomed.api_key.unwrap().key_id);
    let rolled = a.admin().create_api_key(authed(&a.operator, new_key("rolled"))).await.unwrap().into_inner();
    let (rolled_key, rolled_id) = (rolled.secret, rolled.api_key.unwrap().key_id);
    let hot = new_client().await;
    for t in [&c1.token, &c2.token, &c3.token, &tck.token, &doomed_key, &rolled_key, &hot.token] {
        replica.verify(t).await.expect("valid before");
    }
    // A hot token, used every 100 ms all along.
    let hot_token = hot.token.clone();
    let hot_replica = replica.client();
    let hot_use = tokio::spawn(async move {
        let mut c = hot_replica;
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            let req = cred_proto::introspect::v1::VerifyRequest { token: hot_token.clone(), ..Default::default() };
            if c.verify(req).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    match fault {
        Fault::BlackHole => proxy.black_hole_subscriptions(true),
        Fault::Stall => proxy.stall_subscriptions(true),
        Fault::DropEach => {}
    }
    // Dropping one message each time: armed before each revocation, and
    // checked to have dropped it (the replica saw nothing of it).
    let mut armed = 0;
    let mut arm = || {
        if fault == Fault::DropEach {
            proxy.drop_next_invalidation();
            armed += 1;
        }
        armed
    };
    let id = |c: &pb::CreateClientResponse| c.client.as_ref().unwrap().client_id.clone();
    let sid = |c: &pb::CreateClientResponse| c.session.as_ref().unwrap().session_id.clone();
    let mut delays = Vec::new();

    arm();
    let t = Instant::now();
    a.clients()
        .revoke_session(authed(&keys.test_key, pb::RevokeSessionRequest { client_id: id(&c1), session_id: sid(&c1) }))
        .await
        .unwrap();
    delays.push(("RevokeSession", refused_after(&replica, &c1.token, t, "session").await));

    arm();
    let t = Instant::now();
    a.clients()
        .revoke_all_sessions(authed(&keys.test_key, pb::RevokeAllSessionsRequest { client_id: id(&c2) }))
        .await
        .unwrap();
    delays.push(("RevokeAllSessions", refused_after(&replica, &c2.token, t, "all sessions").await));

    arm();
    let t = Instant::now();
    a.clients().delete_client(authed(&keys.test_key, pb::DeleteClientRequest { client_id: id(&c3) })).await.unwrap();
    delays.push(("DeleteClient", refused_after(&replica, &c3.token, t, "client delete").await));

    arm();
    let t = Instant::now();
    let req =
        pb::RevokeApiKeyRequest { tenant_id: keys.tenant_id.clone(), key_id: doomed_id, include_successor: false };
    a.admin().revoke_api_key(authed(&a.operator, req)).await.unwrap();
    delays.push(("RevokeApiKey", refused_after(&replica, &doomed_key, t, "api key").await));

    arm();
    let t = Instant::now();
    let req = pb::RollApiKeyRequest { tenant_id: keys.tenant_id.clone(), key_id: rolled_id, grace_period: None };
    let successor = a.admin().roll_api_key(authed(&a.operator, req)).await.unwrap().into_inner().secret;
    delays.push(("RollApiKey (no grace)", refused_after(&replica, &rolled_key, t, "rolled key").await));
    replica.verify(&successor).await.expect("the successor works");

    arm();
    let t = Instant::now();
    a.admin()
        .revoke_tenant_credentials(authed(
            &a.operator,
            pb::RevokeTenantCredentialsRequest { tenant_id: keys.tenant_id.clone(), issued_before: None },
        ))
        .await
        .unwrap();
    delays.push((
        "RevokeTenantCredentials: test client key",
        refused_after(&replica, &tck.token, t, "test client key").await,
    ));
    delays.push(("RevokeTenantCredentials: API key", refused_after(&replica, &successor, t, "api key").await));
    delays.push(("RevokeTenantCredentials: hot token", refused_after(&replica, &hot.token, t, "hot token").await));
    hot_use.abort();

    if fault == Fault::DropEach {
        assert_eq!(proxy.dropped(), armed, "the proxy dropped each revocation's message");
    }
    if fault == Fault::Stall {
        // Held messages delivered late when the stall ends revive nothing.
        proxy.stall_subscriptions(false);
        tokio::time::sleep(Duration::from_secs(2)).await;
        for t in [&c1.token, &c2.token, &tck.token, &hot.token] {
            assert!(replica.verify(t).await.is_err(), "still refused after the stall");
        }
    }
    for (what, d) in &delays {
        println!("{fault:?}: {what} refused by the replica after {} ms", d.as_millis());
        assert!(*d <= BOUND, "{fault:?}: {what}: {d:?} > {BOUND:?}");
    }
}
