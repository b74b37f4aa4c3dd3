//! authd end to end: real gRPC on loopback, a real redis-server behind it,
//! and again with a real Redis Cluster behind it (`on_every_backend!`).

use std::time::{Duration, Instant};

use cred_proto::authd::v1 as pb;
use cred_tests::authd::{assert_invalid_api_key, authed};
use cred_tests::{Authd, Backend, assert_eventually, on_every_backend};
use prost::Message;
use tokio::time::sleep;
use tonic::Code;
use tonic_types::StatusExt;

fn labels(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn client_id(c: &Option<pb::Client>) -> String {
    c.as_ref().expect("client").client_id.clone()
}

/// The Portal flow: create a client with its first token, use it, log in
/// again, list, revoke one, revoke all, delete.
async fn session_token_lifecycle(backend: Backend) {
    let a = Authd::start_on(backend).await;
    let keys = a.tenant(None).await;
    let mut clients = a.clients();

    let created = clients
        .create_client(authed(&keys.live_key, pb::CreateClientRequest { labels: labels(&[("plan", "pro")]) }))
        .await
        .unwrap()
        .into_inner();
    let cid = client_id(&created.client);
    assert!(created.token.starts_with("cst_live_"));
    let s1 = created.session.unwrap();
    assert!(s1.expire_time.is_some() && s1.max_expire_time.is_some() && !s1.test_key);
    assert!(a.session_ok(&created.token).await);

    // Subsequent login.
    let second = clients
        .create_session(authed(&keys.live_key, pb::CreateSessionRequest { client_id: cid.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(second.token, created.token);
    assert!(a.session_ok(&second.token).await);

    let me = a.sessions().get_current_session(authed(&second.token, pb::GetCurrentSessionRequest {})).await.unwrap();
    let me = me.into_inner();
    assert_eq!(client_id(&me.client), cid);
    assert_eq!(me.client.unwrap().labels, labels(&[("plan", "pro")]));

    let list = clients
        .list_sessions(authed(&keys.live_key, pb::ListSessionsRequest { client_id: cid.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.sessions.len(), 2);

    clients
        .revoke_session(authed(
            &keys.live_key,
            pb::RevokeSessionRequest { client_id: cid.clone(), session_id: s1.session_id.clone() },
        ))
        .await
        .unwrap();
    assert!(!a.session_ok(&created.token).await, "revoked session refused");
    assert!(a.session_ok(&second.token).await, "the other session lives on");
    let again = clients
        .revoke_session(authed(
            &keys.live_key,
            pb::RevokeSessionRequest { client_id: cid.clone(), session_id: s1.session_id },
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);

    let third = clients
        .create_session(authed(&keys.live_key, pb::CreateSessionRequest { client_id: cid.clone() }))
        .await
        .unwrap()
        .into_inner();
    let n = clients
        .revoke_all_sessions(authed(&keys.live_key, pb::RevokeAllSessionsRequest { client_id: cid.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.revoked_count, 2);
    assert!(!a.session_ok(&second.token).await && !a.session_ok(&third.token).await);

    // Log in again after "log out everywhere", then delete the client.
    let fourth = clients
        .create_session(authed(&keys.live_key, pb::CreateSessionRequest { client_id: cid.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert!(a.session_ok(&fourth.token).await);
    clients.delete_client(authed(&keys.live_key, pb::DeleteClientRequest { client_id: cid.clone() })).await.unwrap();
    assert!(!a.session_ok(&fourth.token).await, "deleting a client kills its sessions");
    let gone = clients.get_client(authed(&keys.live_key, pb::GetClientRequest { client_id: cid.clone() })).await;
    assert_eq!(gone.unwrap_err().code(), Code::NotFound);
    let no_login = clients.create_session(authed(&keys.live_key, pb::CreateSessionRequest { client_id: cid })).await;
    assert_eq!(no_login.unwrap_err().code(), Code::NotFound);
}

/// API keys: create, list (no secret), use, revoke; scopes.
async fn api_key_lifecycle_and_scopes(backend: Backend) {
    let a = Authd::start_on(backend).await;
    let keys = a.tenant(None).await;
    let mut admin = a.admin();
    assert!(a.api_key_ok(&keys.test_key).await && a.api_key_ok(&keys.live_key).await);

    let list = admin
        .list_api_keys(authed(
            &a.operator,
            pb::ListApiKeysRequest { tenant_id: keys.tenant_id.clone(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.api_keys.len(), 2);
    let envs: Vec<i32> = list.api_keys.iter().map(|k| k.environment).collect();
    assert!(envs.contains(&(pb::Environment::Test as i32)) && envs.contains(&(pb::Environment::Production as i32)));

    let read_only = a.api_key(&keys.tenant_id, pb::Environment::Test, &["clients.read"]).await;
    let denied = a.clients().create_client(authed(&read_only, pb::CreateClientRequest::default())).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("clients.create"));
    assert!(a.api_key_ok(&read_only).await, "clients.read allows GetClient");

    let test_key_id =
        list.api_keys.iter().find(|k| k.environment == pb::Environment::Test as i32).unwrap().key_id.clone();
    let r = admin
        .revoke_api_key(authed(
            &a.operator,
            pb::RevokeApiKeyRequest {
                tenant_id: keys.tenant_id.clone(),
                key_id: test_key_id.clone(),
                include_successor: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.revoked_key_ids, vec![test_key_id.clone()]);
    assert!(!a.api_key_ok(&keys.test_key).await);
    let again = admin
        .revoke_api_key(authed(
            &a.operator,
            pb::RevokeApiKeyRequest {
                tenant_id: keys.tenant_id.clone(),
                key_id: test_key_id,
                include_successor: false,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);

    // An API key with an expiry dies then.
    let exp = std::time::SystemTime::now() + Duration::from_millis(1500);
    let req = pb::CreateApiKeyRequest {
        tenant_id: keys.tenant_id.clone(),
        environment: pb::Environment::Test.into(),
        name: "short".into(),
        scopes: vec![],
        expire_time: Some(exp.into()),
    };
    let short = admin.create_api_key(authed(&a.operator, req)).await.unwrap().into_inner();
    assert!(short.api_key.unwrap().expire_time.is_some());
    assert!(a.api_key_ok(&short.secret).await);
    assert_eventually!(!a.api_key_ok(&short.secret).await, Duration::from_secs(5), "expired API key still accepted");
}

/// Sliding expiry with idle 2 s and max 5 s.
async fn sliding_expiry(backend: Backend) {
    let a = Authd::start_on(backend).await;
    let keys = a.tenant(Some((2, 5))).await;
    let mut clients = a.clients();
    // Before creation: the cap is then at least 5 s after `start`.
    let start = Instant::now();
    let busy =
        clients.create_client(authed(&keys.test_key, pb::CreateClientRequest::default())).await.unwrap().into_inner();
    let idle = clients
        .create_session(authed(&keys.test_key, pb::CreateSessionRequest { client_id: client_id(&busy.client) }))
        .await
        .unwrap()
        .into_inner();
    let cap = busy.session.as_ref().unwrap().max_expire_time.unwrap();

    // Used every second, the busy token outlives its idle timeout...
    for i in 1..=4 {
        sleep(Duration::from_secs(1).saturating_sub(start.elapsed() - Duration::from_secs(i - 1))).await;
        let me = a.sessions().get_current_session(authed(&busy.token, pb::GetCurrentSessionRequest {})).await;
        let s = me.unwrap_or_else(|e| panic!("busy token refused after {:?}: {e:?}", start.elapsed())).into_inner();
        let exp = s.session.unwrap().expire_time.unwrap();
        assert!((exp.seconds, exp.nanos) <= (cap.seconds, cap.nanos), "expiry never exceeds the cap");
    }
    // ...the unused one died after 2 s of idleness...
    assert!(!a.session_ok(&idle.token).await, "idle token still accepted after {:?}", start.elapsed());
    // ...and the busy one dies at its cap (5 s) however much it is used.
    assert_eventually!(!a.session_ok(&busy.token).await, Duration::from_secs(3), "busy token outlived its cap");
    assert!(start.elapsed() >= Duration::from_millis(4900), "busy token died early: {:?}", start.elapsed());
    // Dead stays dead: using it again does not revive it.
    assert!(!a.session_ok(&busy.token).await);
    sleep(Duration::from_millis(200)).await;
    assert!(!a.session_ok(&busy.token).await && !a.session_ok(&idle.token).await);
}

/// Test client keys: never expire; refused in production.
async fn test_client_keys(backend: Backend) {
    let a = Authd::start_on(backend).await;
    let keys = a.tenant(Some((1, 2))).await;
    let mut clients = a.clients();
    let t = clients
        .create_test_client(authed(&keys.test_key, pb::CreateTestClientRequest { labels: labels(&[("dev", "alice")]) }))
        .await
        .unwrap()
        .into_inner();
    assert!(t.token.starts_with("tck_test_"));
    let s = t.session.unwrap();
    assert!(s.test_key && s.expire_time.is_none() && s.max_expire_time.is_none());
    assert!(a.session_ok(&t.token).await);
    // Past both the idle timeout and the max lifetime of the tenant.
    sleep(Duration::from_millis(2500)).await;
    assert!(a.session_ok(&t.token).await, "test client key expired");

    let refused =
        clients.create_test_client(authed(&keys.live_key, pb::CreateTestClientRequest::default())).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // Revocable like any session.
    clients
        .revoke_all_sessions(authed(&keys.test_key, pb::RevokeAllSessionsRequest { client_id: client_id(&t.client) }))
        .await
        .unwrap();
    assert!(!a.session_ok(&t.token).await);
}

/// Roll with grace: both keys work during the grace period, then only the
/// new one; revoke with the successor.
async fn roll_with_grace(backend: Backend) {
    let a = Authd::start_on(backend).await;
    let keys = a.tenant(None).await;
    let mut admin = a.admin();
    let list = admin
        .list_api_keys(authed(
            &a.operator,
            pb::ListApiKeysRequest { tenant_id: keys.tenant_id.clone(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner();
    let live = list.api_keys.iter().find(|k| k.environment == pb::Environment::Production as i32).unwrap();
    let rolled = admin
        .roll_api_key(authed(
            &a.operator,
            pb::RollApiKeyRequest {
                tenant_id: keys.tenant_id.clone(),
                key_id: live.key_id.clone(),
                grace_period: Some(prost_types::Duration { seconds: 2, nanos: 0 }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let new = rolled.api_key.clone().unwrap();
    assert_ne!(new.key_id, live.key_id);
    assert_eq!((new.name.as_str(), new.environment), (live.name.as_str(), live.environment));
    assert!(a.api_key_ok(&keys.live_key).await && a.api_key_ok(&rolled.secret).await, "both work during grace");

    let again = admin
        .roll_api_key(authed(
            &a.operator,
            pb::RollApiKeyRequest {
                tenant_id: keys.tenant_id.clone(),
                key_id: live.key_id.clone(),
                grace_period: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    assert_eventually!(!a.api_key_ok(&keys.live_key).await, Duration::from_secs(5), "old key outlived its grace");
    assert!(a.api_key_ok(&rolled.secret).await);

    // Roll again with no grace, then revoke the old one with its successor.
    let second = admin
        .roll_api_key(authed(
            &a.operator,
            pb::RollApiKeyRequest {
                tenant_id: keys.tenant_id.clone(),
                key_id: new.key_id.clone(),
                grace_period: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let r = admin
        .revoke_api_key(authed(
            &a.operator,
            pb::RevokeApiKeyRequest {
                tenant_id: keys.tenant_id.clone(),
                key_id: new.key_id.clone(),
                include_successor: true,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.revoked_key_ids.len(), 2);
    assert!(!a.api_key_ok(&rolled.secret).await && !a.api_key_ok(&second.secret).await);
}

/// Incident response: everything issued before the cut-off is refused;
/// what is issued after works.
async fn tenant_revoke_before(backend: Backend) {
    let a = Authd::start_on(backend).await;
    let keys = a.tenant(None).await;
    let other = a.tenant(None).await;
    let mut clients = a.clients();
    let c =
        clients.create_client(authed(&keys.test_key, pb::CreateClientRequest::default())).await.unwrap().into_inner();
    let tck = clients
        .create_test_client(authed(&keys.test_key, pb::CreateTestClientRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let oc =
        clients.create_client(authed(&other.test_key, pb::CreateClientRequest::default())).await.unwrap().into_inner();

    let r = a
        .admin()
        .revoke_tenant_credentials(authed(
            &a.operator,
            pb::RevokeTenantCredentialsRequest { tenant_id: keys.tenant_id.clone(), issued_before: None },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(r.tenant.unwrap().revoked_before.is_some());
    for (what, ok) in [
        ("test key", a.api_key_ok(&keys.test_key).await),
        ("live key", a.api_key_ok(&keys.live_key).await),
        ("session", a.session_ok(&c.token).await),
        ("test client key", a.session_ok(&tck.token).await),
    ] {
        assert!(!ok, "{what} issued before the cut-off still accepted");
    }
    // Other tenants are untouched.
    assert!(a.api_key_ok(&other.test_key).await && a.session_ok(&oc.token).await);
    // New credentials work.
    sleep(Duration::from_millis(5)).await;
    let fresh = a.api_key(&keys.tenant_id, pb::Environment::Test, &[]).await;
    assert!(a.api_key_ok(&fresh).await);
    let relogin = clients
        .create_session(authed(&fresh, pb::CreateSessionRequest { client_id: client_id(&c.client) }))
        .await
        .unwrap()
        .into_inner();
    assert!(a.session_ok(&relogin.token).await);

    // A cut-off in the future would refuse everything issued until then:
    // INVALID_ARGUMENT naming the field, and nothing changes.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    for ahead in [Duration::from_secs(3600), Duration::from_secs(1000 * 365 * 24 * 3600)] {
        let at = now + ahead;
        let ts = prost_types::Timestamp { seconds: at.as_secs() as i64, nanos: 0 };
        let req = pb::RevokeTenantCredentialsRequest { tenant_id: keys.tenant_id.clone(), issued_before: Some(ts) };
        let e = a.admin().revoke_tenant_credentials(authed(&a.operator, req)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{ahead:?} ahead: {e:?}");
        assert!(e.message().starts_with("issued_before"), "{}", e.message());
        let br = e.get_details_bad_request().expect("BadRequest detail");
        assert_eq!(br.field_violations[0].field, "issued_before");
    }
    let after = clients
        .create_session(authed(&fresh, pb::CreateSessionRequest { client_id: client_id(&c.client) }))
        .await
        .unwrap()
        .into_inner();
    assert!(a.session_ok(&after.token).await, "a refused future cut-off changed nothing");
    // Within the clock skew: accepted as now, so what is issued next works.
    let soon = now + Duration::from_secs(2);
    let ts = prost_types::Timestamp { seconds: soon.as_secs() as i64, nanos: 0 };
    let req = pb::RevokeTenantCredentialsRequest { tenant_id: keys.tenant_id.clone(), issued_before: Some(ts) };
    a.admin().revoke_tenant_credentials(authed(&a.operator, req)).await.unwrap();
    assert!(!a.session_ok(&after.token).await, "issued before the call: cut off");
    sleep(Duration::from_millis(5)).await;
    let next = a.api_key(&keys.tenant_id, pb::Environment::Test, &[]).await;
    assert!(a.api_key_ok(&next).await, "issued after a near-future cut-off: accepted");
}

/// Another tenant's or environment's client is NOT_FOUND for every RPC.
async fn cross_tenant_and_environment_matrix(backend: Backend) {
    let a = Authd::start_on(backend).await;
    let t1 = a.tenant(None).await;
    let t2 = a.tenant(None).await;
    let mut clients = a.clients();
    let owned =
        clients.create_client(authed(&t1.test_key, pb::CreateClientRequest::default())).await.unwrap().into_inner();
    let cid = client_id(&owned.client);
    let sid = owned.session.unwrap().session_id;
    let mine2 =
        clients.create_client(authed(&t1.test_key, pb::CreateClientRequest::default())).await.unwrap().into_inner();

    for (who, key) in [
        ("same tenant, production", &t1.live_key),
        ("other tenant, test", &t2.test_key),
        ("other tenant, production", &t2.live_key),
    ] {
        let c = cid.clone();
        let codes = [
            clients.get_client(authed(key, pb::GetClientRequest { client_id: c.clone() })).await.err(),
            clients.create_session(authed(key, pb::CreateSessionRequest { client_id: c.clone() })).await.err(),
            clients
                .list_sessions(authed(key, pb::ListSessionsRequest { client_id: c.clone(), ..Default::default() }))
                .await
                .err(),
            clients
                .revoke_session(authed(key, pb::RevokeSessionRequest { client_id: c.clone(), session_id: sid.clone() }))
                .await
                .err(),
            clients.revoke_all_sessions(authed(key, pb::RevokeAllSessionsRequest { client_id: c.clone() })).await.err(),
            clients.delete_client(authed(key, pb::DeleteClientRequest { client_id: c.clone() })).await.err(),
        ];
        for (i, e) in codes.into_iter().enumerate() {
            let e = e.unwrap_or_else(|| panic!("{who}: call {i} succeeded on another's client"));
            assert_eq!(e.code(), Code::NotFound, "{who}: call {i}: {e:?}");
        }
    }
    // A session id of one client is not reachable through another client.
    let e = clients
        .revoke_session(authed(
            &t1.test_key,
            pb::RevokeSessionRequest { client_id: client_id(&mine2.client), session_id: sid },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Nothing was changed by the attempts.
    assert!(a.session_ok(&owned.token).await);
    // Admin calls on another tenant's key are NOT_FOUND too.
    let list = a
        .admin()
        .list_api_keys(authed(
            &a.operator,
            pb::ListApiKeysRequest { tenant_id: t1.tenant_id.clone(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner();
    let e = a
        .admin()
        .revoke_api_key(authed(
            &a.operator,
            pb::RevokeApiKeyRequest {
                tenant_id: t2.tenant_id.clone(),
                key_id: list.api_keys[0].key_id.clone(),
                include_successor: false,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(a.api_key_ok(&t1.test_key).await);
}

/// Every unusable credential gives UNAUTHENTICATED with reason INVALID_API_KEY.
async fn every_unusable_credential_is_invalid_api_key(backend: Backend) {
    let a = Authd::start_on(backend).await;
    let keys = a.tenant(None).await;
    let c = a
        .clients()
        .create_client(authed(&keys.test_key, pb::CreateClientRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let mut flipped = keys.test_key.clone().into_bytes();
    flipped[20] = if flipped[20] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    let (_, other_secret_op) = cred_core::operator::OperatorSecret::generate().0.issue();
    let (_, unlisted_op) = a.secret.issue();

    // Client RPCs with bad API keys.
    for (what, token) in [
        ("garbage", "hello"),
        ("empty", ""),
        ("bad checksum", flipped.as_str()),
        ("session token as API key", c.token.as_str()),
        ("operator key as API key", a.operator.as_str()),
        (
            "well-formed unknown key",
            &cred_core::token::Token::mint(
                cred_core::token::TokenKind::ApiKey,
                cred_core::model::Environment::Test,
                uuid::Uuid::parse_str(&keys.tenant_id).unwrap(),
                uuid::Uuid::new_v4(),
            )
            .expose(),
        ),
    ] {
        let e = a.clients().create_client(authed(token, pb::CreateClientRequest::default())).await.unwrap_err();
        assert_invalid_api_key(&e, what);
    }
    let no_header = a.clients().create_client(pb::CreateClientRequest::default()).await.unwrap_err();
    assert_invalid_api_key(&no_header, "no authorization header");

    // Session RPCs with bad tokens.
    for (what, token) in [("API key as session", keys.test_key.as_str()), ("garbage", "cst_test_x")] {
        let e = a.sessions().get_current_session(authed(token, pb::GetCurrentSessionRequest {})).await.unwrap_err();
        assert_invalid_api_key(&e, what);
    }

    // Admin RPCs with bad operator keys.
    for (what, token) in [
        ("API key as operator key", keys.test_key.as_str()),
        ("operator key of another secret", other_secret_op.as_str()),
        ("operator key not in the allowlist", unlisted_op.as_str()),
        ("garbage", "opk_AAAA"),
    ] {
        let e = a
            .admin()
            .get_tenant(authed(token, pb::GetTenantRequest { tenant_id: keys.tenant_id.clone() }))
            .await
            .unwrap_err();
        assert_invalid_api_key(&e, what);
    }

    // Removing an operator key from the allowlist revokes it (what SIGHUP does).
    let get = |token: String| {
        let mut admin = a.admin();
        let tenant_id = keys.tenant_id.clone();
        async move { admin.get_tenant(authed(&token, pb::GetTenantRequest { tenant_id })).await }
    };
    assert!(get(a.operator.clone()).await.is_ok());
    a.operators.reload(cred_core::operator::Allowlist::default());
    assert_invalid_api_key(&get(a.operator.clone()).await.unwrap_err(), "operator key removed from the allowlist");
}

/// Bad input gets INVALID_ARGUMENT naming the field, never a panic.
async fn bad_input_table(backend: Backend) {
    let a = Authd::start_on(backend).await;
    let keys = a.tenant(None).await;
    let op = a.operator.clone();
    let k = keys.test_key.clone();
    let t = keys.tenant_id.clone();
    let (mut admin, mut clients) = (a.admin(), a.clients());
    let secs = |s: i64| Some(prost_types::Duration { seconds: s, nanos: 0 });
    let big_labels: std::collections::HashMap<String, String> =
        (0..17).map(|i| (format!("k{i}"), "v".to_string())).collect();
    let past = Some(prost_types::Timestamp { seconds: 1, nanos: 0 });
    // A valid CreateApiKeyRequest with one thing changed.
    let key = |change: &dyn Fn(&mut pb::CreateApiKeyRequest)| {
        let mut r =
            pb::CreateApiKeyRequest { tenant_id: t.clone(), environment: 2, name: "n".into(), ..Default::default() };
        change(&mut r);
        r
    };

    let cases: Vec<(&str, &str, Result<(), tonic::Status>)> = vec![
        (
            "empty tenant name",
            "name",
            admin
                .create_tenant(authed(&op, pb::CreateTenantRequest { name: String::new(), ..Default::default() }))
                .await
                .map(drop),
        ),
        (
            "oversized tenant name",
            "name",
            admin
                .create_tenant(authed(&op, pb::CreateTenantRequest { name: "x".repeat(65), ..Default::default() }))
                .await
                .map(drop),
        ),
        (
            "tenant name with a right-to-left override",
            "name",
            admin
                .create_tenant(authed(
                    &op,
                    pb::CreateTenantRequest { name: "acme\u{202E}gpj.exe".into(), ..Default::default() },
                ))
                .await
                .map(drop),
        ),
        (
            "tenant name with a newline",
            "name",
            admin
                .create_tenant(authed(
                    &op,
                    pb::CreateTenantRequest { name: "acme\nINFO forged".into(), ..Default::default() },
                ))
                .await
                .map(drop),
        ),
        (
            "idle above max",
            "idle_timeout",
            admin
                .create_tenant(authed(
                    &op,
                    pb::CreateTenantRequest {
                        name: "a".into(),
                        idle_timeout: secs(10),
                        max_lifetime: secs(5),
                        quotas: None,
                    },
                ))
                .await
                .map(drop),
        ),
        (
            "negative duration",
            "max_lifetime",
            admin
                .create_tenant(authed(
                    &op,
                    pb::CreateTenantRequest {
                        name: "a".into(),
                        idle_timeout: None,
                        max_lifetime: secs(-5),
                        quotas: None,
                    },
                ))
                .await
                .map(drop),
        ),
        (
            "invalid tenant uuid",
            "tenant_id",
            admin.get_tenant(authed(&op, pb::GetTenantRequest { tenant_id: "not-a-uuid".into() })).await.map(drop),
        ),
        (
            "empty tenant id",
            "tenant_id",
            admin
                .list_api_keys(authed(&op, pb::ListApiKeysRequest { tenant_id: String::new(), ..Default::default() }))
                .await
                .map(drop),
        ),
        (
            "unspecified environment",
            "environment",
            admin.create_api_key(authed(&op, key(&|r| r.environment = 0))).await.map(drop),
        ),
        (
            "unknown enum value",
            "environment",
            admin.create_api_key(authed(&op, key(&|r| r.environment = 7))).await.map(drop),
        ),
        (
            "unknown scope",
            "scopes",
            admin.create_api_key(authed(&op, key(&|r| r.scopes = vec!["root".into()]))).await.map(drop),
        ),
        (
            "expiry in the past",
            "expire_time",
            admin.create_api_key(authed(&op, key(&|r| r.expire_time = past))).await.map(drop),
        ),
        ("empty key name", "name", admin.create_api_key(authed(&op, key(&|r| r.name = String::new()))).await.map(drop)),
        (
            "invalid key uuid",
            "key_id",
            admin
                .revoke_api_key(authed(
                    &op,
                    pb::RevokeApiKeyRequest { tenant_id: t.clone(), key_id: "zz".into(), include_successor: false },
                ))
                .await
                .map(drop),
        ),
        (
            "grace over 30 days",
            "grace_period",
            admin
                .roll_api_key(authed(
                    &op,
                    pb::RollApiKeyRequest {
                        tenant_id: t.clone(),
                        key_id: uuid::Uuid::new_v4().to_string(),
                        grace_period: secs(31 * 86400),
                    },
                ))
                .await
                .map(drop),
        ),
        (
            "bad audit cursor",
            "after_event_id",
            admin
                .list_audit_events(authed(
                    &op,
                    pb::ListAuditEventsRequest {
                        tenant_id: t.clone(),
                        after_event_id: "yesterday".into(),
                        page_size: 0,
                        newest_first: false,
                    },
                ))
                .await
                .map(drop),
        ),
        (
            "oversized audit page",
            "page_size",
            admin
                .list_audit_events(authed(
                    &op,
                    pb::ListAuditEventsRequest {
                        tenant_id: t.clone(),
                        after_event_id: String::new(),
                        page_size: 5000,
                        newest_first: false,
                    },
                ))
                .await
                .map(drop),
        ),
        (
            "too many labels",
            "labels",
            clients.create_client(authed(&k, pb::CreateClientRequest { labels: big_labels })).await.map(drop),
        ),
        (
            "label value with an escape sequence",
            "labels",
            clients
                .create_client(authed(&k, pb::CreateClientRequest { labels: labels(&[("plan", "\u{1b}[31mred")]) }))
                .await
                .map(drop),
        ),
        (
            "label value with a NUL",
            "labels",
            clients
                .create_client(authed(&k, pb::CreateClientRequest { labels: labels(&[("plan", "a\0b")]) }))
                .await
                .map(drop),
        ),
        (
            "bad label key",
            "labels",
            clients
                .create_client(authed(&k, pb::CreateClientRequest { labels: labels(&[("Plan Name", "x")]) }))
                .await
                .map(drop),
        ),
        (
            "oversized label value",
            "labels",
            clients
                .create_test_client(authed(
                    &k,
                    pb::CreateTestClientRequest { labels: labels(&[("plan", &"x".repeat(257))]) },
                ))
                .await
                .map(drop),
        ),
        (
            "empty client id",
            "client_id",
            clients.get_client(authed(&k, pb::GetClientRequest { client_id: String::new() })).await.map(drop),
        ),
        (
            "invalid client uuid",
            "client_id",
            clients.create_session(authed(&k, pb::CreateSessionRequest { client_id: "123".into() })).await.map(drop),
        ),
        (
            "invalid session uuid",
            "session_id",
            clients
                .revoke_session(authed(
                    &k,
                    pb::RevokeSessionRequest { client_id: uuid::Uuid::new_v4().to_string(), session_id: "x".into() },
                ))
                .await
                .map(drop),
        ),
    ];
    for (what, field, r) in cases {
        let e = r.expect_err(what);
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert!(e.message().starts_with(field), "{what}: message {:?} does not name {field}", e.message());
        let br = e.get_details_bad_request().unwrap_or_else(|| panic!("{what}: no BadRequest detail"));
        assert_eq!(br.field_violations[0].field, field, "{what}");
    }

    // Non-UTF-8 in a string field: the wire message does not decode.
    #[derive(Clone, PartialEq, prost::Message)]
    struct RawGetClient {
        #[prost(bytes = "vec", tag = "1")]
        client_id: Vec<u8>,
    }
    let mut grpc = tonic::client::Grpc::new(a.channel.clone());
    grpc.ready().await.unwrap();
    let codec: tonic_prost::ProstCodec<RawGetClient, pb::GetClientResponse> = tonic_prost::ProstCodec::default();
    let e = grpc
        .unary(
            authed(&k, RawGetClient { client_id: vec![0xff, 0xfe, 0x41] }),
            tonic::codegen::http::uri::PathAndQuery::from_static("/authd.v1.ClientService/GetClient"),
            codec,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "non-UTF-8: {e:?}");
    // The service is still up and nothing was lost.
    assert!(a.api_key_ok(&k).await);
    assert_eq!(RawGetClient { client_id: vec![1] }.encode_to_vec(), vec![10, 1, 1]);
}

/// No RPC returns a secret twice, and no secret reaches Redis: after every
/// flow, read RPCs and a dump of every key and value contain none of the
/// issued tokens, nor their raw secret bytes.
#[tokio::test]
async fn secrets_are_shown_once_and_never_stored() {
    // Standalone only: it dumps the one server's keyspace (KEYS *, every value).
    let a = Authd::start().await;
    let keys = a.tenant(None).await;
    let mut clients = a.clients();
    let mut admin = a.admin();
    let mut tokens = vec![keys.test_key.clone(), keys.live_key.clone(), a.operator.clone()];
    let c =
        clients.create_client(authed(&keys.test_key, pb::CreateClientRequest::default())).await.unwrap().into_inner();
    let cid = client_id(&c.client);
    tokens.push(c.token.clone());
    let s = clients
        .create_session(authed(&keys.test_key, pb::CreateSessionRequest { client_id: cid.clone() }))
        .await
        .unwrap()
        .into_inner();
    tokens.push(s.token.clone());
    let t = clients
        .create_test_client(authed(&keys.test_key, pb::CreateTestClientRequest::default()))
        .await
        .unwrap()
        .into_inner();
    tokens.push(t.token.clone());
    let key_id = admin
        .list_api_keys(authed(
            &a.operator,
            pb::ListApiKeysRequest { tenant_id: keys.tenant_id.clone(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .api_keys
        .into_iter()
        .find(|k| k.environment == pb::Environment::Production as i32)
        .unwrap()
        .key_id;
    let rolled = admin
        .roll_api_key(authed(
            &a.operator,
            pb::RollApiKeyRequest { tenant_id: keys.tenant_id.clone(), key_id, grace_period: None },
        ))
        .await
        .unwrap()
        .into_inner();
    tokens.push(rolled.secret.clone());
    assert!(a.session_ok(&c.token).await && a.session_ok(&t.token).await);

    // Every read RPC, encoded.
    let mut seen: Vec<u8> = vec![];
    let tid = keys.tenant_id.clone();
    seen.extend(
        admin
            .get_tenant(authed(&a.operator, pb::GetTenantRequest { tenant_id: tid.clone() }))
            .await
            .unwrap()
            .into_inner()
            .encode_to_vec(),
    );
    seen.extend(
        admin
            .list_api_keys(authed(&a.operator, pb::ListApiKeysRequest { tenant_id: tid.clone(), ..Default::default() }))
            .await
            .unwrap()
            .into_inner()
            .encode_to_vec(),
    );
    let audit = admin
        .list_audit_events(authed(
            &a.operator,
            pb::ListAuditEventsRequest {
                tenant_id: tid.clone(),
                after_event_id: String::new(),
                page_size: 0,
                newest_first: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    seen.extend(audit.encode_to_vec());
    // The same trail newest first, over gRPC: the reverse order.
    let newest = admin
        .list_audit_events(authed(
            &a.operator,
            pb::ListAuditEventsRequest { tenant_id: tid.clone(), newest_first: true, ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner();
    let ids = |events: &[pb::AuditEvent]| events.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>();
    let mut reversed = ids(&audit.events);
    reversed.reverse();
    assert!(reversed.len() > 2, "a trail to page: {reversed:?}");
    assert_eq!(ids(&newest.events), reversed, "newest first is the trail reversed");
    seen.extend(
        clients
            .get_client(authed(&keys.live_key, pb::GetClientRequest { client_id: cid.clone() }))
            .await
            .err()
            .map(|e| e.message().as_bytes().to_vec())
            .unwrap_or_default(),
    );
    seen.extend(
        clients
            .get_client(authed(&keys.test_key, pb::GetClientRequest { client_id: cid.clone() }))
            .await
            .unwrap()
            .into_inner()
            .encode_to_vec(),
    );
    seen.extend(
        clients
            .list_sessions(authed(
                &keys.test_key,
                pb::ListSessionsRequest { client_id: cid.clone(), ..Default::default() },
            ))
            .await
            .unwrap()
            .into_inner()
            .encode_to_vec(),
    );
    seen.extend(
        a.sessions()
            .get_current_session(authed(&s.token, pb::GetCurrentSessionRequest {}))
            .await
            .unwrap()
            .into_inner()
            .encode_to_vec(),
    );

    // The audit trail records every issue with its actor.
    let actions: Vec<&str> = audit.events.iter().map(|e| e.action.as_str()).collect();
    for want in
        ["tenant.create", "api_key.create", "client.create", "session.create", "test_client.create", "api_key.roll"]
    {
        assert!(actions.contains(&want), "audit lacks {want}: {actions:?}");
    }
    assert!(audit.events.iter().all(|e| e.actor.starts_with("operator:") || e.actor.starts_with("api_key:")));

    // Every key and value in Redis.
    let mut conn = a.redis.server().conn().await;
    let all_keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    assert!(all_keys.len() >= 8, "expected records in Redis, found {all_keys:?}");
    let mut dump: Vec<u8> = vec![];
    for k in &all_keys {
        dump.extend(k.as_bytes());
        let ty: String = redis::cmd("TYPE").arg(k).query_async(&mut conn).await.unwrap();
        let v: redis::Value = match ty.as_str() {
            "hash" => redis::cmd("HGETALL").arg(k).query_async(&mut conn).await.unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(k).query_async(&mut conn).await.unwrap(),
            "zset" => redis::cmd("ZRANGE").arg(k).arg(0).arg(-1).query_async(&mut conn).await.unwrap(),
            "stream" => redis::cmd("XRANGE").arg(k).arg("-").arg("+").query_async(&mut conn).await.unwrap(),
            "string" => redis::cmd("GET").arg(k).query_async(&mut conn).await.unwrap(),
            other => panic!("unexpected key type {other} for {k}"),
        };
        dump.extend(format!("{v:?}").as_bytes());
        flatten(&v, &mut dump);
    }
    for token in &tokens {
        for (place, hay) in [("a read RPC", &seen), ("Redis", &dump)] {
            assert!(!contains(hay, token.as_bytes()), "{place} holds a token");
            for secret in secret_forms(token) {
                assert!(!contains(hay, &secret), "{place} holds a token's secret");
            }
        }
    }
}

fn flatten(v: &redis::Value, out: &mut Vec<u8>) {
    match v {
        redis::Value::BulkString(b) => out.extend(b),
        redis::Value::Array(a) | redis::Value::Set(a) => a.iter().for_each(|x| flatten(x, out)),
        redis::Value::SimpleString(s) => out.extend(s.as_bytes()),
        redis::Value::Map(m) => m.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        _ => {}
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The secret parts of a token in the forms they could leak: its text, and
/// for a store token the 32 raw secret bytes.
fn secret_forms(token: &str) -> Vec<Vec<u8>> {
    if let Some(sealed) = token.strip_prefix("opk_") {
        return vec![sealed.as_bytes().to_vec()];
    }
    let body = &token[token.len() - 94..token.len() - 6];
    let secret_text = &body[44..];
    let mut raw = vec![];
    for part in [&secret_text[..22], &secret_text[22..]] {
        raw.extend(base62::decode(part).unwrap().to_be_bytes());
    }
    vec![secret_text.as_bytes().to_vec(), raw]
}

/// grpc.health.v1 and server reflection (v1 and v1alpha) answer.
async fn health_and_reflection(backend: Backend) {
    use tokio_stream::StreamExt;
    let a = Authd::start_on(backend).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(a.channel.clone());
    for service in ["", "authd.v1.AdminService", "authd.v1.ClientService", "authd.v1.SessionService"] {
        let r =
            health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service}");
    }

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut refl = ServerReflectionClient::new(a.channel.clone());
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("no service list") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in ["authd.v1.AdminService", "authd.v1.ClientService", "authd.v1.SessionService", "grpc.health.v1.Health"]
    {
        assert!(names.contains(&want.to_string()), "reflection lacks {want}: {names:?}");
    }
    assert!(names.iter().all(|n| !n.starts_with("introspect.")), "authd offers introspect's service: {names:?}");

    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    let mut alpha = AlphaClient::new(a.channel.clone());
    let req = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol("authd.v1.ClientService".into())),
    };
    let mut stream = alpha.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    assert!(resp.message_response.is_some());
}

/// authd caches API key checks; a revocation made elsewhere (another authd
/// replica, here the store directly) reaches the cache by push.
async fn api_key_cache_hears_revocations_made_elsewhere(backend: Backend) {
    use cred_core::store::Store;
    let a = Authd::start_on(backend).await;
    let keys = a.tenant(None).await;
    assert!(a.api_key_ok(&keys.test_key).await, "warm the cache");
    let t = cred_core::token::Token::parse(&keys.test_key).unwrap();
    let store = a.redis.store().await;
    assert!(store.revoke_api_key(t.route, t.id).await.unwrap().is_some());
    assert_eventually!(
        !a.api_key_ok(&keys.test_key).await,
        Duration::from_secs(2),
        "cached API key outlived its revocation"
    );
}

/// ListApiKeys and ListSessions page: every item once, in order, with a
/// next_page_token until the last; a bad page_size or page_token is
/// INVALID_ARGUMENT naming the field.
async fn lists_are_paged(backend: Backend) {
    let a = Authd::start_on(backend).await;
    let keys = a.tenant(None).await;
    for _ in 0..3 {
        a.api_key(&keys.tenant_id, pb::Environment::Test, &[]).await;
    }
    // Two keys from `tenant()`, three more: five, in pages of two.
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let req = pb::ListApiKeysRequest { tenant_id: keys.tenant_id.clone(), page_size: 2, page_token: token };
        let r = a.admin().list_api_keys(authed(&a.operator, req)).await.expect("a page").into_inner();
        assert!(r.api_keys.len() <= 2);
        seen.extend(r.api_keys.into_iter().map(|k| k.key_id));
        token = r.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let all = pb::ListApiKeysRequest { tenant_id: keys.tenant_id.clone(), ..Default::default() };
    let whole: Vec<String> = a
        .admin()
        .list_api_keys(authed(&a.operator, all))
        .await
        .unwrap()
        .into_inner()
        .api_keys
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(whole.len(), 5);
    assert_eq!(seen, whole, "pages of two give the whole list, in order, each key once");

    let c = a
        .clients()
        .create_client(authed(&keys.test_key, pb::CreateClientRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let first_client = c.client.unwrap();
    let cid = first_client.client_id.clone();
    for _ in 0..2 {
        let req = pb::CreateSessionRequest { client_id: cid.clone() };
        a.clients().create_session(authed(&keys.test_key, req)).await.unwrap();
    }
    let req = pb::ListSessionsRequest { client_id: cid.clone(), page_size: 2, ..Default::default() };
    let first = a.clients().list_sessions(authed(&keys.test_key, req)).await.unwrap().into_inner();
    assert_eq!(first.sessions.len(), 2);
    let req = pb::ListSessionsRequest { client_id: cid.clone(), page_size: 2, page_token: first.next_page_token };
    let second = a.clients().list_sessions(authed(&keys.test_key, req)).await.unwrap().into_inner();
    assert_eq!(second.sessions.len(), 1);
    assert!(second.next_page_token.is_empty());

    // ListClients (operator): every client of the tenant in pages of two,
    // oldest first, each as GetClient gives it; filtered by environment.
    let mut made = vec![first_client];
    for key in [&keys.live_key, &keys.test_key] {
        let r = a.clients().create_client(authed(key, pb::CreateClientRequest::default())).await.unwrap();
        made.push(r.into_inner().client.unwrap());
    }
    let list = |environment: pb::Environment, page_size: u32, page_token: String| pb::ListClientsRequest {
        tenant_id: keys.tenant_id.clone(),
        environment: environment.into(),
        page_size,
        page_token,
    };
    let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let req = list(pb::Environment::Unspecified, 2, token);
        let r = a.admin().list_clients(authed(&a.operator, req)).await.expect("a page").into_inner();
        assert!(r.clients.len() <= 2);
        seen.extend(r.clients);
        pages += 1;
        token = r.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 2);
    assert!(seen.windows(2).all(|w| w[0].create_time.unwrap().seconds <= w[1].create_time.unwrap().seconds));
    let by_id = |v: &mut Vec<pb::Client>| v.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    by_id(&mut seen);
    by_id(&mut made);
    assert_eq!(seen, made, "each client once, as it was made");
    let got = a.clients().get_client(authed(&keys.test_key, pb::GetClientRequest { client_id: cid.clone() })).await;
    assert!(seen.contains(&got.unwrap().into_inner().client.unwrap()), "the message GetClient returns");
    for (env, n) in [(pb::Environment::Production, 1), (pb::Environment::Test, 2)] {
        let r = a.admin().list_clients(authed(&a.operator, list(env, 0, String::new()))).await.unwrap().into_inner();
        assert_eq!(r.clients.len(), n, "{env:?}");
        assert!(r.clients.iter().all(|c| c.environment == i32::from(env)) && r.next_page_token.is_empty());
    }
    let other = a.tenant(None).await;
    let req = pb::ListClientsRequest { tenant_id: other.tenant_id.clone(), ..Default::default() };
    let r = a.admin().list_clients(authed(&a.operator, req)).await.unwrap().into_inner();
    assert!(r.clients.is_empty(), "another tenant's clients are its own");
    let req = pb::ListClientsRequest { tenant_id: uuid::Uuid::new_v4().to_string(), ..Default::default() };
    let e = a.admin().list_clients(authed(&a.operator, req)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = a.admin().list_clients(authed(&keys.test_key, list(pb::Environment::Test, 0, String::new()))).await;
    assert_eq!(e.unwrap_err().code(), Code::Unauthenticated, "an API key is no operator key");
    let req = pb::ListClientsRequest { environment: 9, ..list(pb::Environment::Unspecified, 0, String::new()) };
    let e = a.admin().list_clients(authed(&a.operator, req)).await.unwrap_err();
    assert_eq!(e.get_details_bad_request().expect("BadRequest").field_violations[0].field, "environment");

    for (size, token, field) in [(1001, "", "page_size"), (0, "garbage", "page_token"), (0, "12.x", "page_token")] {
        let req = list(pb::Environment::Unspecified, size, token.into());
        let e = a.admin().list_clients(authed(&a.operator, req)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert_eq!(e.get_details_bad_request().expect("BadRequest").field_violations[0].field, field, "{e:?}");
        let req = pb::ListSessionsRequest { client_id: cid.clone(), page_size: size, page_token: token.into() };
        let e = a.clients().list_sessions(authed(&keys.test_key, req)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        let bad = e.get_details_bad_request().expect("BadRequest");
        assert_eq!(bad.field_violations[0].field, field, "{e:?}");
        let req =
            pb::ListApiKeysRequest { tenant_id: keys.tenant_id.clone(), page_size: size, page_token: token.into() };
        let e = a.admin().list_api_keys(authed(&a.operator, req)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }
}

/// Quotas set by an operator: past one, creating is RESOURCE_EXHAUSTED
/// naming it, nothing is kept, and the audit trail says so; a bad quota is
/// INVALID_ARGUMENT naming the field.
async fn quotas_refuse_past_the_limit(backend: Backend) {
    let a = Authd::start_on(backend).await;
    let keys = a.tenant(None).await; // two API keys
    let set = |q: pb::Quotas| pb::SetTenantQuotasRequest { tenant_id: keys.tenant_id.clone(), quotas: Some(q) };
    let q = pb::Quotas { api_keys: 2, clients: 1, sessions_per_client: 2 };
    let t = a.admin().set_tenant_quotas(authed(&a.operator, set(q))).await.expect("set quotas").into_inner();
    assert_eq!(t.tenant.unwrap().quotas, Some(q));
    let bad = pb::Quotas { clients: cred_core::model::limits::QUOTA_MAX + 1, ..q };
    let e = a.admin().set_tenant_quotas(authed(&a.operator, set(bad))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.get_details_bad_request().unwrap().field_violations[0].field, "quotas.clients");

    let req = pb::CreateApiKeyRequest {
        tenant_id: keys.tenant_id.clone(),
        environment: pb::Environment::Test.into(),
        name: "third".into(),
        ..Default::default()
    };
    let e = a.admin().create_api_key(authed(&a.operator, req)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("quotas.api_keys"), "{e:?}");

    let mut clients = a.clients();
    let c =
        clients.create_client(authed(&keys.test_key, pb::CreateClientRequest::default())).await.unwrap().into_inner();
    let e = clients.create_client(authed(&keys.test_key, pb::CreateClientRequest::default())).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("quotas.clients"), "{e:?}");
    let cid = c.client.unwrap().client_id;
    let req = || pb::CreateSessionRequest { client_id: cid.clone() };
    clients.create_session(authed(&keys.test_key, req())).await.expect("a second session");
    let e = clients.create_session(authed(&keys.test_key, req())).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("quotas.sessions_per_client"), "{e:?}");
    // Deleting the client makes room for another.
    clients.delete_client(authed(&keys.test_key, pb::DeleteClientRequest { client_id: cid })).await.unwrap();
    clients.create_client(authed(&keys.test_key, pb::CreateClientRequest::default())).await.expect("room again");

    let audit = pb::ListAuditEventsRequest { tenant_id: keys.tenant_id.clone(), ..Default::default() };
    let events = a.admin().list_audit_events(authed(&a.operator, audit)).await.unwrap().into_inner().events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for want in ["tenant.set_quotas", "api_key.create.rejected", "client.create.rejected", "session.create.rejected"] {
        assert!(actions.contains(&want), "audit lacks {want}: {actions:?}");
    }
}

// Every test above but `secrets_are_shown_once_and_never_stored`, against a
// standalone Redis and against a Redis Cluster.
on_every_backend!(
    quotas_refuse_past_the_limit,
    lists_are_paged,
    session_token_lifecycle,
    api_key_lifecycle_and_scopes,
    sliding_expiry,
    test_client_keys,
    roll_with_grace,
    tenant_revoke_before,
    cross_tenant_and_environment_matrix,
    every_unusable_credential_is_invalid_api_key,
    bad_input_table,
    health_and_reflection,
    api_key_cache_hears_revocations_made_elsewhere,
);
