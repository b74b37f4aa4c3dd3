//! introspect end to end: authd and two introspect replicas over real gRPC,
//! one real redis-server behind them, and (`on_every_backend!`) a real Redis
//! Cluster.

use std::time::{Duration, Instant};

use cred_proto::authd::v1 as apb;
use cred_proto::introspect::v1 as pb;
use cred_tests::authd::{TenantKeys, authed};
use cred_tests::introspect::cause;
use cred_tests::{Authd, Backend, Replica, assert_eventually, on_every_backend};
use introspect::VerifyOptions;
use tokio::time::sleep;
use tonic::Code;

struct Stack {
    authd: Authd,
    a: Replica,
    b: Replica,
}

async fn stack_with(backend: Backend, opts: VerifyOptions) -> Stack {
    let authd = Authd::start_on(backend).await;
    let target = authd.redis.target();
    let a = Replica::start(&target, opts.clone()).await;
    let b = Replica::start(&target, opts).await;
    Stack { authd, a, b }
}

async fn stack(backend: Backend) -> Stack {
    stack_with(backend, VerifyOptions::default()).await
}

async fn new_client(s: &Stack, key: &str) -> apb::CreateClientResponse {
    let req = apb::CreateClientRequest { labels: [("plan".to_string(), "pro".to_string())].into() };
    s.authd.clients().create_client(authed(key, req)).await.expect("create client").into_inner()
}

fn ids(c: &apb::CreateClientResponse) -> (String, String) {
    (c.client.as_ref().unwrap().client_id.clone(), c.session.as_ref().unwrap().session_id.clone())
}

async fn every_credential_kind_is_verified(backend: Backend) {
    let s = stack(backend).await;
    let keys = s.authd.tenant(None).await;
    let c = new_client(&s, &keys.live_key).await;
    let (cid, sid) = ids(&c);

    let v = s.a.verify(&c.token).await.unwrap();
    assert_eq!(v.kind, pb::CredentialKind::Session as i32);
    assert_eq!(
        (v.tenant_id.as_str(), v.client_id.as_str(), v.session_id.as_str()),
        (keys.tenant_id.as_str(), cid.as_str(), sid.as_str())
    );
    assert_eq!(v.environment, pb::Environment::Production as i32);
    assert_eq!(v.labels.get("plan").map(String::as_str), Some("pro"));
    assert!(v.create_time.is_some() && v.expire_time.is_some() && v.max_expire_time.is_some());
    // Served from the cache the second time, same answer.
    assert_eq!(s.a.verify(&c.token).await.unwrap().client_id, cid);

    let t = s
        .authd
        .clients()
        .create_test_client(authed(&keys.test_key, apb::CreateTestClientRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let v = s.b.verify(&t.token).await.unwrap();
    assert_eq!(v.kind, pb::CredentialKind::TestClientKey as i32);
    assert_eq!(v.environment, pb::Environment::Test as i32);
    assert!(v.expire_time.is_none() && v.max_expire_time.is_none());

    let scoped = s.authd.api_key(&keys.tenant_id, apb::Environment::Test, &["clients.read", "sessions.read"]).await;
    let v = s.a.verify(&scoped).await.unwrap();
    assert_eq!(v.kind, pb::CredentialKind::ApiKey as i32);
    assert_eq!(v.scopes, vec!["clients.read".to_string(), "sessions.read".to_string()]);
    assert!(!v.key_id.is_empty() && v.client_id.is_empty());

    // Requirements: environment and scopes.
    let req = |token: &str, env: pb::Environment, scopes: &[&str]| pb::VerifyRequest {
        token: token.into(),
        required_environment: env as i32,
        required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
        passive: false,
    };
    assert!(s.a.verify_with(req(&scoped, pb::Environment::Test, &["clients.read"])).await.is_ok());
    let e = s.a.verify_with(req(&scoped, pb::Environment::Unspecified, &["clients.delete"])).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = s.a.verify_with(req(&c.token, pb::Environment::Unspecified, &["clients.read"])).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "sessions hold no scopes");
    let e = s.a.verify_with(req(&scoped, pb::Environment::Unspecified, &["root"])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("required_scopes"));
    let e =
        s.a.verify_with(pb::VerifyRequest { token: scoped.clone(), required_environment: 9, ..Default::default() })
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

async fn every_failure_reason(backend: Backend) {
    let s = stack(backend).await;
    let keys = s.authd.tenant(Some((1, 3))).await;
    let capped = s.authd.tenant(Some((1, 1))).await;
    let c = new_client(&s, &keys.test_key).await;

    assert_eq!(s.a.cause("not a token").await.as_deref(), Some("MALFORMED"));
    let mut typo = c.token.clone().into_bytes();
    typo[30] = if typo[30] == b'x' { b'y' } else { b'x' };
    assert_eq!(s.a.cause(std::str::from_utf8(&typo).unwrap()).await.as_deref(), Some("MALFORMED"));

    let e =
        s.a.verify_with(pb::VerifyRequest {
            token: c.token.clone(),
            required_environment: pb::Environment::Production as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(cause(&e), "ENV_MISMATCH");

    let unknown = cred_core::token::Token::mint(
        cred_core::token::TokenKind::Session,
        cred_core::model::Environment::Test,
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    )
    .expose();
    assert_eq!(s.a.cause(&unknown).await.as_deref(), Some("UNKNOWN"));

    let (cid, sid) = ids(&c);
    s.authd
        .clients()
        .revoke_session(authed(&keys.test_key, apb::RevokeSessionRequest { client_id: cid, session_id: sid }))
        .await
        .unwrap();
    assert_eq!(s.b.cause(&c.token).await.as_deref(), Some("REVOKED"));

    // An API key past its own expiry, and a rolled one past its grace: the
    // precise cause (not UNKNOWN, which is what a forged id gets).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let soon = prost_types::Timestamp { seconds: now.as_secs() as i64 + 1, nanos: now.subsec_nanos() as i32 };
    let mut admin = s.authd.admin();
    let short = apb::CreateApiKeyRequest {
        tenant_id: keys.tenant_id.clone(),
        environment: apb::Environment::Test.into(),
        name: "short".into(),
        expire_time: Some(soon),
        ..Default::default()
    };
    let short = admin.create_api_key(authed(&s.authd.operator, short)).await.unwrap().into_inner();
    let to_roll = apb::CreateApiKeyRequest {
        tenant_id: keys.tenant_id.clone(),
        environment: apb::Environment::Test.into(),
        name: "rolled".into(),
        ..Default::default()
    };
    let to_roll = admin.create_api_key(authed(&s.authd.operator, to_roll)).await.unwrap().into_inner();
    s.a.verify(&short.secret).await.expect("valid before its expiry");
    s.a.verify(&to_roll.secret).await.expect("valid before the roll");
    let roll = apb::RollApiKeyRequest {
        tenant_id: keys.tenant_id.clone(),
        key_id: to_roll.api_key.unwrap().key_id,
        grace_period: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
    };
    admin.roll_api_key(authed(&s.authd.operator, roll)).await.unwrap();

    let idle = new_client(&s, &keys.test_key).await;
    let max = new_client(&s, &capped.test_key).await;
    sleep(Duration::from_millis(1300)).await;
    assert_eq!(s.a.cause(&idle.token).await.as_deref(), Some("EXPIRED_IDLE"));
    assert_eq!(s.a.cause(&max.token).await.as_deref(), Some("EXPIRED_MAX"));
    for r in [&s.a, &s.b] {
        assert_eq!(r.cause(&short.secret).await.as_deref(), Some("EXPIRED_MAX"), "expired API key");
        assert_eq!(r.cause(&to_roll.secret).await.as_deref(), Some("REVOKED"), "rolled key past its grace");
    }
}

/// Sliding expiry through introspect, and the coalescing bound: at most one
/// touch write per granularity interval per replica, and the stored expiry
/// never lags the exact rule by more than that interval nor exceeds the cap.
#[tokio::test]
async fn sliding_expiry_and_coalescing() {
    // Standalone only: INFO commandstats.
    let g = Duration::from_millis(500);
    let s = stack_with(Backend::Standalone, VerifyOptions { touch_granularity: g, ..Default::default() }).await;
    let keys = s.authd.tenant(Some((2, 5))).await;
    let c = new_client(&s, &keys.test_key).await;
    let lazy = new_client(&s, &keys.test_key).await;
    let (cid, sid) = ids(&c);
    let store = s.authd.redis.store().await;
    use cred_core::store::Store;
    let cap_ms = {
        let l = store.get_session(cid.parse().unwrap(), sid.parse().unwrap()).await.unwrap();
        l.session.unwrap().max_expires_at.unwrap()
    };
    let start = Instant::now();
    let touches_before = s.authd.redis.server().command_stats().get("evalsha").copied().unwrap_or(0);
    let mut verifies = 0u64;
    // 40 verifies in about 2 s, spread over both replicas.
    while start.elapsed() < Duration::from_millis(2000) {
        let r = if verifies.is_multiple_of(2) { &s.a } else { &s.b };
        let v = r.verify(&c.token).await.unwrap_or_else(|e| panic!("refused after {:?}: {e:?}", start.elapsed()));
        verifies += 1;
        let now = cred_core::clock::now_ms();
        let exp = v.expire_time.unwrap();
        let exp_ms = exp.seconds * 1000 + i64::from(exp.nanos) / 1_000_000;
        assert!(exp_ms <= cap_ms, "expiry beyond the cap");
        // The store's expiry lags the exact rule by at most g (plus the
        // in-flight write's own latency).
        let l = store.get_session(cid.parse().unwrap(), sid.parse().unwrap()).await.unwrap();
        let stored = l.session.expect("alive in the store").expires_at.unwrap();
        let exact = (now + 2000).min(cap_ms);
        assert!(stored <= cap_ms && stored >= exact - g.as_millis() as i64 - 500, "stored {stored} vs exact {exact}");
        sleep(Duration::from_millis(50)).await;
    }
    // Touch writes are EVALSHA calls (the commands inside a script count
    // separately in commandstats). Two replicas × (2 s / 0.5 s + 1) at most.
    let touches = s.authd.redis.server().command_stats().get("evalsha").copied().unwrap_or(0) - touches_before;
    assert!(touches <= 2 * 5, "{touches} touch writes for {verifies} verifies");
    assert!(touches >= 2, "no touch was written");
    assert!(verifies >= 20);

    // Passive checks do not slide.
    let (lcid, lsid) = ids(&lazy);
    let stored = |store: cred_core::store::RedisStore| {
        let (c, s) = (lcid.parse().unwrap(), lsid.parse().unwrap());
        async move { store.get_session(c, s).await.unwrap().session.and_then(|s| s.expires_at) }
    };
    let passive = pb::VerifyRequest { token: lazy.token.clone(), passive: true, ..Default::default() };
    let e0 = stored(store.clone()).await;
    assert!(e0.is_none(), "the lazy session idled out after 2 s");
    let fresh = new_client(&s, &keys.test_key).await;
    let (fc, fs) = ids(&fresh);
    let expiry = || {
        let store = store.clone();
        let (c, s) = (fc.parse().unwrap(), fs.parse().unwrap());
        async move { store.get_session(c, s).await.unwrap().session.unwrap().expires_at.unwrap() }
    };
    let first = expiry().await;
    sleep(Duration::from_millis(600)).await;
    s.a.verify_with(pb::VerifyRequest { token: fresh.token.clone(), passive: true, ..Default::default() })
        .await
        .unwrap();
    sleep(Duration::from_millis(100)).await;
    assert_eq!(expiry().await, first, "a passive verify wrote a touch");
    s.a.verify(&fresh.token).await.unwrap();
    assert_eventually!(expiry().await > first, Duration::from_secs(2), "an active verify did not slide the expiry");
    drop(passive);

    // At the cap the busy token dies on both replicas, and stays dead.
    assert_eventually!(
        s.a.cause(&c.token).await.is_some() && s.b.cause(&c.token).await.is_some(),
        Duration::from_secs(5),
        "busy token outlived its cap"
    );
    assert!(start.elapsed() >= Duration::from_millis(2900));
    assert_eq!(s.a.cause(&c.token).await.as_deref(), Some("EXPIRED_MAX"));
}

async fn warm(s: &Stack, token: &str) {
    s.a.verify(token).await.expect("valid on replica a");
    s.b.verify(token).await.expect("valid on replica b");
}

async fn refused_by_both(s: &Stack, token: &str, what: &str) {
    assert_eventually!(
        s.a.cause(token).await.is_some() && s.b.cause(token).await.is_some(),
        Duration::from_secs(2),
        "{what}: a replica still accepts it"
    );
}

/// Revocations in authd reach both replicas' caches at once.
async fn revocations_reach_both_replicas(backend: Backend) {
    let s = stack(backend).await;
    let keys: TenantKeys = s.authd.tenant(None).await;
    let mut clients = s.authd.clients();

    let one = new_client(&s, &keys.test_key).await;
    let (cid, sid) = ids(&one);
    let other = clients
        .create_session(authed(&keys.test_key, apb::CreateSessionRequest { client_id: cid.clone() }))
        .await
        .unwrap()
        .into_inner();
    warm(&s, &one.token).await;
    warm(&s, &other.token).await;
    clients
        .revoke_session(authed(&keys.test_key, apb::RevokeSessionRequest { client_id: cid.clone(), session_id: sid }))
        .await
        .unwrap();
    refused_by_both(&s, &one.token, "revoked session").await;
    assert!(s.a.verify(&other.token).await.is_ok(), "the other session lives on");

    clients
        .revoke_all_sessions(authed(&keys.test_key, apb::RevokeAllSessionsRequest { client_id: cid.clone() }))
        .await
        .unwrap();
    refused_by_both(&s, &other.token, "log out everywhere").await;

    let del = new_client(&s, &keys.test_key).await;
    warm(&s, &del.token).await;
    clients.delete_client(authed(&keys.test_key, apb::DeleteClientRequest { client_id: ids(&del).0 })).await.unwrap();
    refused_by_both(&s, &del.token, "deleted client").await;

    // API keys: roll with no grace, then revoke the successor.
    let mut admin = s.authd.admin();
    let key = s.authd.api_key(&keys.tenant_id, apb::Environment::Test, &[]).await;
    warm(&s, &key).await;
    let listed = admin
        .list_api_keys(authed(
            &s.authd.operator,
            apb::ListApiKeysRequest { tenant_id: keys.tenant_id.clone(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner();
    let key_id = listed
        .api_keys
        .iter()
        .max_by_key(|k| k.create_time.unwrap().seconds * 1_000_000_000 + i64::from(k.create_time.unwrap().nanos))
        .unwrap()
        .key_id
        .clone();
    let rolled = admin
        .roll_api_key(authed(
            &s.authd.operator,
            apb::RollApiKeyRequest { tenant_id: keys.tenant_id.clone(), key_id, grace_period: None },
        ))
        .await
        .unwrap()
        .into_inner();
    refused_by_both(&s, &key, "rolled key").await;
    warm(&s, &rolled.secret).await;
    let new_id = rolled.api_key.unwrap().key_id;
    admin
        .revoke_api_key(authed(
            &s.authd.operator,
            apb::RevokeApiKeyRequest { tenant_id: keys.tenant_id.clone(), key_id: new_id, include_successor: false },
        ))
        .await
        .unwrap();
    refused_by_both(&s, &rolled.secret, "revoked key").await;
    assert_eq!(s.a.cause(&rolled.secret).await.as_deref(), Some("REVOKED"));

    // Tenant-wide revoke-before.
    let last = new_client(&s, &keys.live_key).await;
    warm(&s, &last.token).await;
    warm(&s, &keys.live_key).await;
    admin
        .revoke_tenant_credentials(authed(
            &s.authd.operator,
            apb::RevokeTenantCredentialsRequest { tenant_id: keys.tenant_id.clone(), issued_before: None },
        ))
        .await
        .unwrap();
    refused_by_both(&s, &last.token, "revoke-before session").await;
    refused_by_both(&s, &keys.live_key, "revoke-before key").await;
    assert_eq!(s.b.cause(&last.token).await.as_deref(), Some("REVOKED"));
}

/// Store outage: UNAVAILABLE within the deadline (never valid), and served
/// again once Redis is back, with no restart.
#[tokio::test]
async fn store_outage_fails_closed_and_recovers() {
    // Standalone only: SIGSTOP, SHUTDOWN and restart of the server.
    let mut s = stack(Backend::Standalone).await;
    let keys = s.authd.tenant(None).await;
    let cached = new_client(&s, &keys.test_key).await;
    let uncached = new_client(&s, &keys.test_key).await;
    s.a.verify(&cached.token).await.unwrap();

    // Frozen Redis: connections open, nothing answers.
    s.authd.redis.server().pause();
    let t = Instant::now();
    let e = s.a.verify(&uncached.token).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "UNAVAILABLE took {:?}", t.elapsed());
    // A credential cached within its max age is still answered.
    assert!(s.a.verify(&cached.token).await.is_ok());
    // The store's health name and the API services' follow the store, for
    // both services; the process ("credd.live", liveness) and the server as
    // a whole ("", readiness) do not: a replica that still answers from its
    // cache stays in its Service, and nothing restarts.
    assert_eventually!(
        health(&s.a.channel, "introspect.v1.IntrospectService").await == NOT_SERVING
            && health(&s.a.channel, "credd.store").await == NOT_SERVING
            && health(&s.authd.channel, "authd.v1.ClientService").await == NOT_SERVING
            && health(&s.authd.channel, "credd.store").await == NOT_SERVING,
        Duration::from_secs(5),
        "the store's health still SERVING with the store frozen"
    );
    for ch in [&s.a.channel, &s.authd.channel] {
        assert_eq!(health(ch, "").await, SERVING, "readiness followed the store");
        assert_eq!(health(ch, "credd.live").await, SERVING, "liveness followed the store");
    }
    assert!(s.a.verify(&cached.token).await.is_ok(), "cached answers while the store is frozen");
    s.authd.redis.server().resume();
    assert_eventually!(s.a.verify(&uncached.token).await.is_ok(), Duration::from_secs(5), "not served after resume");
    assert_eventually!(
        health(&s.a.channel, "credd.store").await == SERVING
            && health(&s.authd.channel, "authd.v1.AdminService").await == SERVING,
        Duration::from_secs(5),
        "health not SERVING after the store came back"
    );

    // Stopped Redis (data saved), then started again on the same port.
    s.authd.redis.server_mut().shutdown();
    let fresh = cred_core::token::Token::mint(
        cred_core::token::TokenKind::Session,
        cred_core::model::Environment::Test,
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    )
    .expose();
    let e = s.b.verify(&fresh).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    s.authd.redis.server_mut().restart();
    assert_eventually!(s.b.verify(&uncached.token).await.is_ok(), Duration::from_secs(5), "not served after restart");
    // And the push channel comes back, so revocations propagate again.
    assert_eventually!(s.b.verifier.cache().push_connected(), Duration::from_secs(5), "push channel did not come back");
    let (cid, sid) = ids(&uncached);
    // authd's first call after the restart may meet the dead connection
    // (UNAVAILABLE) while it reconnects; it never answers wrongly.
    let revoke = || {
        let mut clients = s.authd.clients();
        let req = apb::RevokeSessionRequest { client_id: cid.clone(), session_id: sid.clone() };
        let key = keys.test_key.clone();
        async move { clients.revoke_session(authed(&key, req)).await }
    };
    assert_eventually!(
        match revoke().await {
            Ok(_) => true,
            Err(e) if e.code() == Code::Unavailable => false,
            Err(e) => panic!("{e:?}"),
        },
        Duration::from_secs(2),
        "authd did not recover"
    );
    assert_eventually!(
        s.b.cause(&uncached.token).await.is_some(),
        Duration::from_secs(2),
        "revocation lost after restart"
    );
}

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

async fn health(ch: &tonic::transport::Channel, service: &str) -> i32 {
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    h.check(tonic_health::pb::HealthCheckRequest { service: service.into() })
        .await
        .expect("health check")
        .into_inner()
        .status
}

/// Garbage and mistyped tokens cost zero store commands.
#[tokio::test]
async fn garbage_costs_no_store_command() {
    // Standalone only: INFO commandstats.
    let s = stack(Backend::Standalone).await;
    let keys = s.authd.tenant(None).await;
    let c = new_client(&s, &keys.test_key).await;
    let before = s.authd.redis.server().command_stats();
    let mut refused = 0;
    for i in 0..500usize {
        let token = match i % 3 {
            0 => format!("garbage-{i}"),
            1 => {
                let mut b = c.token.clone().into_bytes();
                let p = 9 + i % (b.len() - 9);
                b[p] = if b[p] == b'Z' { b'Y' } else { b'Z' };
                String::from_utf8(b).unwrap()
            }
            _ => format!("{}{}", &keys.test_key[..keys.test_key.len() - 1], "!"),
        };
        let r = if i.is_multiple_of(2) { &s.a } else { &s.b };
        assert_eq!(r.cause(&token).await.as_deref(), Some("MALFORMED"), "{token}");
        refused += 1;
    }
    assert_eq!(refused, 500);
    let after = s.authd.redis.server().command_stats();
    let reached: u64 = after
        .iter()
        .filter(|(c, _)| !["info", "ping"].contains(&c.as_str()))
        .map(|(c, n)| n - before.get(c).copied().unwrap_or(0))
        .sum();
    assert_eq!(reached, 0, "garbage tokens reached the store (health PINGs aside): {after:?}");
}

/// Health and reflection, like authd.
async fn health_and_reflection(backend: Backend) {
    let s = stack(backend).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.a.channel.clone());
    let r = health
        .check(tonic_health::pb::HealthCheckRequest { service: "introspect.v1.IntrospectService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut refl = ServerReflectionClient::new(s.a.channel.clone());
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = stream.next().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"introspect.v1.IntrospectService"), "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with("authd.")), "introspect offers authd's services: {names:?}");
}

// The tests above that do not poke the server process itself, against a
// standalone Redis and against a Redis Cluster.
on_every_backend!(
    every_credential_kind_is_verified,
    every_failure_reason,
    revocations_reach_both_replicas,
    health_and_reflection,
);
