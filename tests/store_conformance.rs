//! One suite of store semantics, run against every store: the in-memory
//! store, Redis (a real redis-server on a free loopback port) and a Redis
//! Cluster (3 real masters, shared by the tests of this binary).

use std::time::Duration;

use cred_core::model::{ApiKey, AuditEvent, Client, Environment, Quotas, Scopes, Session, Tenant, limits};

use cred_core::clock::{Millis, now_ms};
use cred_core::model::SecretHash;
use cred_core::rng;
use cred_core::store::{
    After, CreateSession, Gone, Invalidation, MemoryStore, Page, Pushed, RollApiKey, Store, api_key_order,
    client_order, session_order, tenant_order,
};
use futures::StreamExt;
use tokio::time::sleep;
use uuid::Uuid;

fn tenant() -> Tenant {
    Tenant {
        id: rng::uuid(),
        name: "acme".into(),
        idle_timeout_ms: 2_000,
        max_lifetime_ms: 5_000,
        created_at: now_ms(),
        revoked_before: None,
        quotas: Default::default(),
    }
}

fn hash(b: u8) -> SecretHash {
    SecretHash([b; 16])
}

fn api_key(tenant: Uuid, expires_at: Option<Millis>) -> ApiKey {
    ApiKey {
        id: rng::uuid(),
        tenant_id: tenant,
        env: Environment::Test,
        name: "backend".into(),
        scopes: Scopes::parse(["clients.read"]).unwrap(),
        created_at: now_ms(),
        expires_at,
        successor: None,
        hash: hash(7),
    }
}

fn client(tenant: Uuid) -> Client {
    Client {
        id: rng::uuid(),
        tenant_id: tenant,
        env: Environment::Production,
        labels: [("plan".to_string(), "pro".to_string())].into(),
        created_at: now_ms(),
    }
}

/// A session of `client` that idles out after `idle` ms and is capped at
/// `max` ms from now (`None`: a test client key).
fn session(client: Uuid, idle_max: Option<(Millis, Millis)>) -> Session {
    let now = now_ms();
    Session {
        id: rng::uuid(),
        client_id: client,
        created_at: now,
        last_used: now,
        expires_at: idle_max.map(|(i, m)| (now + i).min(now + m)),
        max_expires_at: idle_max.map(|(_, m)| now + m),
        hash: hash(9),
    }
}

async fn tenants<S: Store>(s: S) {
    let t = tenant();
    assert_eq!(s.get_tenant(t.id).await.unwrap(), None);
    s.put_tenant(&t).await.unwrap();
    assert_eq!(s.get_tenant(t.id).await.unwrap(), Some(t.clone()));
    let now = now_ms();
    let r = s.revoke_tenant_before(t.id, 1_000, now).await.unwrap().unwrap();
    assert_eq!(r.revoked_before, Some(1_000));
    // Only ever moves forward.
    let r = s.revoke_tenant_before(t.id, 500, now).await.unwrap().unwrap();
    assert_eq!(r.revoked_before, Some(1_000));
    assert_eq!(s.get_tenant(t.id).await.unwrap().unwrap().revoked_before, Some(1_000));
    assert_eq!(s.revoke_tenant_before(rng::uuid(), 1, now).await.unwrap(), None);
    // Within the clock skew ahead of now: kept, never lowered.
    let ahead = now + limits::CLOCK_SKEW_MS;
    let r = s.revoke_tenant_before(t.id, ahead, now).await.unwrap().unwrap();
    assert_eq!(r.revoked_before, Some(ahead));
    assert_eq!(s.revoke_tenant_before(t.id, now - 10, now).await.unwrap().unwrap().revoked_before, Some(ahead));
    // A cut-off stored far in the future (before cut-offs were bounded)
    // comes down to now + 1 on the next call: the tenant can issue again,
    // and nothing issued before now comes back.
    let bricked = Tenant { id: rng::uuid(), revoked_before: Some(now + 3_600_000), ..tenant() };
    s.put_tenant(&bricked).await.unwrap();
    let r = s.revoke_tenant_before(bricked.id, now - 10, now).await.unwrap().unwrap();
    assert_eq!(r.revoked_before, Some(now + 1));
    assert_eq!(s.get_tenant(bricked.id).await.unwrap().unwrap().revoked_before, Some(now + 1));
}

async fn api_keys<S: Store>(s: S) {
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let a = api_key(t.id, None);
    let b = api_key(t.id, Some(now_ms() + 60_000));
    s.put_api_key(&a, u64::MAX).await.unwrap();
    s.put_api_key(&b, u64::MAX).await.unwrap();
    let l = s.get_api_key(t.id, a.id).await.unwrap();
    assert_eq!(l.key, Some(a.clone()));
    assert_eq!(l.tenant, Some(t.clone()));
    assert_eq!(l.gone, None);
    let listed = s.list_api_keys(t.id, None, 1000).await.map(|p| p.items).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&a) && listed.contains(&b));
    // Another tenant sees nothing.
    assert!(s.list_api_keys(rng::uuid(), None, 1000).await.map(|p| p.items).unwrap().is_empty());
    assert_eq!(s.get_api_key(rng::uuid(), a.id).await.unwrap().key, None);
    assert_eq!(s.revoke_api_key(t.id, a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.revoke_api_key(t.id, a.id).await.unwrap(), None);
    assert_eq!(s.get_api_key(t.id, a.id).await.unwrap().key, None);
    assert_eq!(s.list_api_keys(t.id, None, 1000).await.map(|p| p.items).unwrap(), vec![b]);
}

async fn api_key_expiry<S: Store>(s: S) {
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let k = api_key(t.id, Some(now_ms() + 300));
    s.put_api_key(&k, u64::MAX).await.unwrap();
    assert!(s.get_api_key(t.id, k.id).await.unwrap().key.is_some());
    sleep(Duration::from_millis(450)).await;
    let l = s.get_api_key(t.id, k.id).await.unwrap();
    assert_eq!((l.key, l.gone), (None, Some(Gone::ExpiredMax)), "an expired key is remembered as expired");
    assert!(
        s.list_api_keys(t.id, None, 1000).await.map(|p| p.items).unwrap().is_empty(),
        "expired keys are pruned from the list"
    );
    // Not found for a revoke or a roll, and still remembered as expired.
    assert_eq!(s.revoke_api_key(t.id, k.id).await.unwrap(), None);
    let succ = ApiKey { id: rng::uuid(), expires_at: None, ..k.clone() };
    assert_eq!(s.roll_api_key(k.id, &succ, now_ms() + 1000).await.unwrap(), RollApiKey::NotFound);
    assert_eq!(s.get_api_key(t.id, succ.id).await.unwrap().key, None, "a refused roll writes nothing");
    assert_eq!(s.get_api_key(t.id, k.id).await.unwrap().gone, Some(Gone::ExpiredMax));
}

async fn roll<S: Store>(s: S) {
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let old = api_key(t.id, Some(now_ms() + 60_000));
    s.put_api_key(&old, u64::MAX).await.unwrap();
    let new = ApiKey { id: rng::uuid(), hash: hash(8), ..old.clone() };
    let grace_end = now_ms() + 400;
    assert_eq!(s.roll_api_key(old.id, &new, grace_end).await.unwrap(), RollApiKey::Rolled);
    let o = s.get_api_key(t.id, old.id).await.unwrap().key.unwrap();
    assert_eq!(o.successor, Some(new.id));
    assert_eq!(o.expires_at, Some(grace_end));
    assert_eq!(s.get_api_key(t.id, new.id).await.unwrap().key, Some(new.clone()));
    assert_eq!(s.list_api_keys(t.id, None, 1000).await.map(|p| p.items).unwrap().len(), 2);
    let again = ApiKey { id: rng::uuid(), ..new.clone() };
    assert_eq!(s.roll_api_key(old.id, &again, grace_end).await.unwrap(), RollApiKey::AlreadyRolled);
    assert_eq!(s.get_api_key(t.id, again.id).await.unwrap().key, None, "a refused roll writes nothing");
    assert_eq!(s.roll_api_key(rng::uuid(), &again, grace_end).await.unwrap(), RollApiKey::NotFound);
    sleep(Duration::from_millis(550)).await;
    let l = s.get_api_key(t.id, old.id).await.unwrap();
    assert_eq!((l.key, l.gone), (None, Some(Gone::Revoked)), "old key dies after the grace period: replaced");
    assert_eq!(s.list_api_keys(t.id, None, 1000).await.map(|p| p.items).unwrap(), vec![new]);

    // A grace period never extends a key's own expiry.
    let short = api_key(t.id, Some(now_ms() + 5_000));
    s.put_api_key(&short, u64::MAX).await.unwrap();
    let succ = ApiKey { id: rng::uuid(), ..short.clone() };
    s.roll_api_key(short.id, &succ, now_ms() + 3_600_000).await.unwrap();
    let o = s.get_api_key(t.id, short.id).await.unwrap().key;
    assert_eq!(o.unwrap().expires_at, short.expires_at);
}

async fn clients_and_sessions<S: Store>(s: S) {
    let t = tenant();
    let c = client(t.id);
    let first = session(c.id, Some((60_000, 120_000)));
    s.create_client(&c, Some(&first)).await.unwrap();
    assert_eq!(s.get_client(c.id).await.unwrap(), Some(c.clone()));
    let l = s.get_session(c.id, first.id).await.unwrap();
    assert_eq!(l.client, Some(c.clone()));
    assert_eq!(l.session, Some(first.clone()));
    assert_eq!(l.gone, None);
    let mut second = session(c.id, Some((60_000, 120_000)));
    // Listing is by cap (the oldest first, for one tenant policy).
    second.created_at += 1;
    second.max_expires_at = first.max_expires_at.map(|m| m + 1);
    assert_eq!(s.create_session(&second, 100).await.unwrap(), CreateSession::Created);
    let listed = s.list_sessions(c.id, None, 1000).await.map(|p| p.items).unwrap();
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), vec![first.id, second.id]);
    assert_eq!(listed[1], second);
    // A session of another client is not reachable through this one.
    assert_eq!(s.get_session(rng::uuid(), first.id).await.unwrap().session, None);
    assert!(!s.revoke_session(rng::uuid(), first.id).await.unwrap());

    assert!(s.revoke_session(c.id, first.id).await.unwrap());
    assert!(!s.revoke_session(c.id, first.id).await.unwrap());
    assert_eq!(s.get_session(c.id, first.id).await.unwrap().session, None);
    assert_eq!(s.list_sessions(c.id, None, 1000).await.map(|p| p.items).unwrap().len(), 1);

    s.create_session(&session(c.id, Some((60_000, 120_000))), 100).await.unwrap();
    assert_eq!(s.revoke_all_sessions(c.id).await.unwrap(), 2);
    assert!(s.list_sessions(c.id, None, 1000).await.map(|p| p.items).unwrap().is_empty());
    assert_eq!(s.get_session(c.id, second.id).await.unwrap().session, None);
    assert_eq!(s.get_client(c.id).await.unwrap(), Some(c.clone()), "log out everywhere keeps the client");

    let third = session(c.id, None);
    s.create_session(&third, 100).await.unwrap();
    assert!(s.delete_client(c.id).await.unwrap());
    assert!(!s.delete_client(c.id).await.unwrap());
    assert_eq!(s.get_client(c.id).await.unwrap(), None);
    assert_eq!(s.get_session(c.id, third.id).await.unwrap().session, None);
    assert_eq!(
        s.create_session(&session(c.id, Some((1_000, 2_000))), 100).await.unwrap(),
        CreateSession::NoClient,
        "a deleted client gets no new session"
    );
    assert!(s.list_sessions(c.id, None, 1000).await.map(|p| p.items).unwrap().is_empty());
}

async fn session_limit<S: Store>(s: S) {
    let c = client(rng::uuid());
    s.create_client(&c, None).await.unwrap();
    let dying = session(c.id, Some((200, 10_000)));
    assert_eq!(s.create_session(&dying, 2).await.unwrap(), CreateSession::Created);
    assert_eq!(s.create_session(&session(c.id, Some((60_000, 60_000))), 2).await.unwrap(), CreateSession::Created);
    assert_eq!(s.create_session(&session(c.id, Some((60_000, 60_000))), 2).await.unwrap(), CreateSession::Full);
    sleep(Duration::from_millis(300)).await;
    // The idle-expired session no longer counts.
    assert_eq!(s.create_session(&session(c.id, Some((60_000, 60_000))), 2).await.unwrap(), CreateSession::Created);
    assert_eq!(s.list_sessions(c.id, None, 1000).await.map(|p| p.items).unwrap().len(), 2);
}

async fn sliding_expiry<S: Store>(s: S) {
    let c = client(rng::uuid());
    let idle = 1_000;
    let sess = session(c.id, Some((idle, 2_500)));
    let cap = sess.max_expires_at.unwrap();
    s.create_client(&c, Some(&sess)).await.unwrap();
    // Used every 300 ms, it lives past its first idle deadline...
    for _ in 0..5 {
        sleep(Duration::from_millis(300)).await;
        let now = now_ms();
        let e = s.touch_session(c.id, sess.id, now, idle).await.unwrap().expect("alive");
        assert_eq!(e, (now + idle).min(cap));
        let got = s.get_session(c.id, sess.id).await.unwrap().session.unwrap();
        assert_eq!(got.expires_at, Some(e));
        assert_eq!(got.last_used, now);
    }
    // ...but never past its cap.
    sleep(Duration::from_millis(300)).await;
    let e = s.touch_session(c.id, sess.id, now_ms(), idle).await.unwrap().expect("alive before cap");
    assert_eq!(e, cap, "expiry is capped");
    let wait = (cap - now_ms()).max(0) as u64 + 100;
    sleep(Duration::from_millis(wait)).await;
    assert_eq!(s.get_session(c.id, sess.id).await.unwrap().session, None, "dead at the cap");
    assert_eq!(s.touch_session(c.id, sess.id, now_ms(), idle).await.unwrap(), None, "a touch never revives");
    assert_eq!(s.get_session(c.id, sess.id).await.unwrap().session, None);

    // Unused, it dies after the idle timeout.
    let lazy = session(c.id, Some((idle, 10_000)));
    s.create_session(&lazy, 100).await.unwrap();
    sleep(Duration::from_millis(idle as u64 + 100)).await;
    assert_eq!(s.get_session(c.id, lazy.id).await.unwrap().session, None);
    assert!(s.list_sessions(c.id, None, 1000).await.map(|p| p.items).unwrap().is_empty());

    // A revoked session is not revived by a late touch.
    let r = session(c.id, Some((60_000, 60_000)));
    s.create_session(&r, 100).await.unwrap();
    s.revoke_session(c.id, r.id).await.unwrap();
    assert_eq!(s.touch_session(c.id, r.id, now_ms(), idle).await.unwrap(), None);
    assert_eq!(s.get_session(c.id, r.id).await.unwrap().session, None);
}

async fn test_keys<S: Store>(s: S) {
    let c = client(rng::uuid());
    let k = session(c.id, None);
    s.create_client(&c, Some(&k)).await.unwrap();
    let got = s.get_session(c.id, k.id).await.unwrap().session.unwrap();
    assert!(got.is_test_key() && got.expires_at.is_none());
    assert_eq!(s.touch_session(c.id, k.id, now_ms(), 10).await.unwrap(), Some(Millis::MAX));
    let got = s.get_session(c.id, k.id).await.unwrap().session.unwrap();
    assert_eq!(got.expires_at, None, "a touch gives a test key no expiry");
    // A short-lived session beside it does not give the index an expiry
    // that would drop the test key.
    s.create_session(&session(c.id, Some((100, 100))), 100).await.unwrap();
    sleep(Duration::from_millis(200)).await;
    assert_eq!(s.list_sessions(c.id, None, 1000).await.map(|p| p.items).unwrap().len(), 1);
}

async fn audit<S: Store>(s: S) {
    let t = rng::uuid();
    let mut ids = vec![];
    for i in 0..3 {
        let e = AuditEvent {
            id: String::new(),
            time: now_ms(),
            actor: "operator:x".into(),
            action: format!("act.{i}"),
            tenant_id: t,
            subjects: vec![format!("client:{i}"), "session:y".into()],
        };
        ids.push(s.append_audit(&e).await.unwrap());
    }
    let all = s.list_audit(t, None, 100, false).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!(all[1].action, "act.1");
    assert_eq!(all[1].subjects, vec!["client:1".to_string(), "session:y".into()]);
    // A client written with its audit event in one go.
    let c = Client { tenant_id: t, ..client(t) };
    let first = session(c.id, Some((60_000, 60_000)));
    let e = AuditEvent { action: "client.create".into(), ..all[0].clone() };
    s.create_client_audited(&c, Some(&first), &e, u64::MAX).await.unwrap();
    assert_eq!(s.get_session(c.id, first.id).await.unwrap().session, Some(first));
    let after = s.list_audit(t, Some(&ids[2]), 100, false).await.unwrap();
    assert_eq!(after.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["client.create"]);
    let rest = s.list_audit(t, Some(&ids[0]), 100, false).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["act.1", "act.2", "client.create"]);
    assert_eq!(s.list_audit(t, None, 1, false).await.unwrap().len(), 1);
    assert!(s.list_audit(rng::uuid(), None, 10, false).await.unwrap().is_empty());
    // Newest first, paged towards older events from the last one seen.
    let actions = |v: Vec<AuditEvent>| v.into_iter().map(|e| e.action).collect::<Vec<_>>();
    let newest = s.list_audit(t, None, 2, true).await.unwrap();
    assert_eq!(actions(newest.clone()), ["client.create", "act.2"]);
    let older = s.list_audit(t, Some(&newest[1].id), 2, true).await.unwrap();
    assert_eq!(actions(older.clone()), ["act.1", "act.0"]);
    assert!(s.list_audit(t, Some(&older[1].id), 2, true).await.unwrap().is_empty(), "nothing before the oldest");
    assert!(s.list_audit(rng::uuid(), None, 10, true).await.unwrap().is_empty());
}

async fn why_gone<S: Store>(s: S) {
    let c = client(rng::uuid());
    let idle = session(c.id, Some((150, 60_000)));
    let capped = session(c.id, Some((150, 200)));
    let revoked = session(c.id, Some((60_000, 60_000)));
    let test_key = session(c.id, None);
    s.create_client(&c, Some(&idle)).await.unwrap();
    for x in [&capped, &revoked, &test_key] {
        s.create_session(x, 100).await.unwrap();
    }
    assert_eq!(s.get_session(c.id, rng::uuid()).await.unwrap().gone, None, "never existed: unknown");
    s.revoke_session(c.id, revoked.id).await.unwrap();
    sleep(Duration::from_millis(350)).await;
    let why = |id| {
        let s = s.clone();
        async move { s.get_session(c.id, id).await.unwrap() }
    };
    let l = why(idle.id).await;
    assert_eq!((l.session, l.gone), (None, Some(Gone::ExpiredIdle)));
    assert_eq!(why(capped.id).await.gone, Some(Gone::ExpiredMax));
    assert_eq!(why(revoked.id).await.gone, Some(Gone::Revoked));
    // Listing and new sessions do not forget why.
    assert_eq!(s.list_sessions(c.id, None, 1000).await.map(|p| p.items).unwrap().len(), 1);
    s.create_session(&session(c.id, Some((60_000, 60_000))), 100).await.unwrap();
    assert_eq!(why(idle.id).await.gone, Some(Gone::ExpiredIdle));
    assert_eq!(why(capped.id).await.gone, Some(Gone::ExpiredMax));
    // Log out everywhere and delete remember every live session as revoked.
    s.revoke_all_sessions(c.id).await.unwrap();
    assert_eq!(why(test_key.id).await.gone, Some(Gone::Revoked));
    let c2 = client(rng::uuid());
    let s2 = session(c2.id, Some((60_000, 60_000)));
    s.create_client(&c2, Some(&s2)).await.unwrap();
    s.delete_client(c2.id).await.unwrap();
    assert_eq!(s.get_session(c2.id, s2.id).await.unwrap().gone, Some(Gone::Revoked));

    // API keys: revoked is remembered; never-existing is not.
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let k = api_key(t.id, None);
    s.put_api_key(&k, u64::MAX).await.unwrap();
    s.revoke_api_key(t.id, k.id).await.unwrap();
    let l = s.get_api_key(t.id, k.id).await.unwrap();
    assert!(l.key.is_none() && l.gone == Some(Gone::Revoked) && l.tenant.is_some());
    assert_eq!(s.get_api_key(t.id, rng::uuid()).await.unwrap().gone, None);
}

async fn invalidations<S: Store>(s: S) {
    let sub = s.subscribe().await.unwrap();
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let k = api_key(t.id, None);
    s.put_api_key(&k, u64::MAX).await.unwrap();
    let c = client(t.id);
    let s1 = session(c.id, Some((60_000, 60_000)));
    s.create_client(&c, Some(&s1)).await.unwrap();
    s.create_session(&session(c.id, Some((60_000, 60_000))), 100).await.unwrap();

    // Nothing is published for what revokes nothing.
    assert!(!s.revoke_session(c.id, rng::uuid()).await.unwrap());
    s.revoke_session(c.id, s1.id).await.unwrap();
    s.revoke_all_sessions(c.id).await.unwrap();
    s.delete_client(c.id).await.unwrap();
    let new = ApiKey { id: rng::uuid(), ..k.clone() };
    s.roll_api_key(k.id, &new, now_ms() + 1000).await.unwrap();
    s.revoke_api_key(t.id, new.id).await.unwrap();
    s.revoke_tenant_before(t.id, now_ms(), now_ms()).await.unwrap();

    let want = [
        Invalidation::Session { client: c.id, session: s1.id },
        Invalidation::Client(c.id),
        Invalidation::Client(c.id),
        Invalidation::ApiKey { tenant: t.id, key: k.id },
        Invalidation::ApiKey { tenant: t.id, key: new.id },
        Invalidation::Tenant(t.id),
    ];
    // A shared cluster carries other tests' invalidations too: keep ours.
    let ours = |i: &Invalidation| match *i {
        Invalidation::Session { client, .. } | Invalidation::Client(client) => client == c.id,
        Invalidation::ApiKey { tenant, .. } | Invalidation::Tenant(tenant) => tenant == t.id,
    };
    let mut sub = sub.filter_map(|p| {
        std::future::ready(match p {
            Pushed::Invalidation(i) if ours(&i) => Some(i),
            _ => None,
        })
    });
    let mut got = Vec::new();
    for _ in 0..want.len() {
        let i = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.expect("invalidation in time");
        got.push(format!("{:?}", i.expect("subscription open")));
    }
    // As a multiset: on a cluster, messages published on different nodes
    // (the client's slot, the tenant's) reach the subscriber's node in any
    // order. Dropping cache entries is idempotent, so order does not matter.
    let mut want: Vec<String> = want.iter().map(|w| format!("{w:?}")).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn invalidation_wire_form() {
    for i in [
        Invalidation::Session { client: rng::uuid(), session: rng::uuid() },
        Invalidation::Client(rng::uuid()),
        Invalidation::ApiKey { tenant: rng::uuid(), key: rng::uuid() },
        Invalidation::Tenant(rng::uuid()),
    ] {
        assert_eq!(Invalidation::decode(&i.encode()), Some(i));
    }
    for bad in ["", "x", "s:abc", "c:1:2:3", "q:0000000000000000000000"] {
        assert_eq!(Invalidation::decode(bad), None, "{bad}");
    }
}

/// Walks every page of a listing of `limit` items each.
async fn every_page<T, F, Fut>(limit: usize, mut page: F) -> Vec<Vec<T>>
where
    F: FnMut(Option<After>, usize) -> Fut,
    Fut: std::future::Future<Output = Page<T>>,
{
    let (mut pages, mut after) = (Vec::new(), None);
    loop {
        let p = page(after, limit).await;
        assert!(p.items.len() <= limit, "a page larger than asked for");
        pages.push(p.items);
        match p.next {
            Some(a) => after = Some(a),
            None => return pages,
        }
        assert!(pages.len() < 100, "the listing never ends");
    }
}

/// ListTenants: every tenant once, in (creation, id) order, across pages.
async fn tenant_listing<S: Store>(s: S) {
    // Other tests add tenants to the same store (the shared cluster): these
    // are made "in the future" so they sort after every other test's, and
    // the walk starts just before them.
    let base = now_ms() + 10_000_000_000;
    let mut ours = Vec::new();
    for i in 0..7 {
        // Two share a creation time: ties go by id.
        let t = Tenant { created_at: base + if i < 2 { 0 } else { i }, ..tenant() };
        s.put_tenant(&t).await.unwrap();
        ours.push(t);
    }
    ours.sort_by_cached_key(|t| tenant_order(t).key());
    let (mut listed, mut after, mut pages) = (Vec::new(), Some(After { score: base - 1, id: Uuid::nil() }), 0);
    loop {
        let p = s.list_tenants(after, 3).await.unwrap();
        assert!(p.items.len() <= 3, "a page larger than asked for");
        listed.extend(p.items.into_iter().filter(|t| ours.iter().any(|o| o.id == t.id)));
        pages += 1;
        assert!(pages < 100, "the listing never ends");
        match p.next {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    assert_eq!(listed, ours, "pages in (creation, id) order, each tenant once");
    let rest = s.list_tenants(Some(tenant_order(&ours[2])), 100).await.unwrap();
    assert_eq!(rest.items, ours[3..], "from a cursor: what follows it");
    assert!(s.list_tenants(None, 1).await.unwrap().items.len() <= 1);
}

async fn paging<S: Store>(s: S) {
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let mut keys = Vec::new();
    for i in 0..7 {
        // Two share a creation time: ties go by id.
        let k = ApiKey { created_at: t.created_at + if i < 2 { 0 } else { i }, ..api_key(t.id, None) };
        s.put_api_key(&k, u64::MAX).await.unwrap();
        keys.push(k);
    }
    keys.sort_by_cached_key(|k| api_key_order(k).key());
    let pages = every_page(3, |a, n| {
        let s = &s;
        async move { s.list_api_keys(t.id, a, n).await.unwrap() }
    })
    .await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), keys, "pages in (creation, id) order, each key once");
    // A key revoked between pages is not listed by a later one.
    let first = s.list_api_keys(t.id, None, 3).await.unwrap();
    s.revoke_api_key(t.id, keys[4].id).await.unwrap();
    let rest = s.list_api_keys(t.id, first.next, 10).await.unwrap();
    assert_eq!(rest.items, [&keys[3..4], &keys[5..]].concat());
    assert_eq!(rest.next, None);

    // Sessions: by cap, test client keys last.
    let c = client(t.id);
    s.create_client(&c, None).await.unwrap();
    let mut sessions = Vec::new();
    for i in 0..7 {
        let x = if i % 3 == 2 { session(c.id, None) } else { session(c.id, Some((60_000, 60_000 + i))) };
        assert_eq!(s.create_session(&x, 100).await.unwrap(), CreateSession::Created);
        sessions.push(x);
    }
    sessions.sort_by_cached_key(|x| session_order(x).key());
    let pages = every_page(2, |a, n| {
        let s = &s;
        async move { s.list_sessions(c.id, a, n).await.unwrap() }
    })
    .await;
    assert_eq!(pages.concat(), sessions);
    assert!(pages.concat().iter().rev().take(2).all(Session::is_test_key), "test client keys come last");
}

/// The audit event of a client's creation.
fn created(c: &Client) -> AuditEvent {
    AuditEvent {
        id: String::new(),
        time: now_ms(),
        actor: "t".into(),
        action: "client.create".into(),
        tenant_id: c.tenant_id,
        subjects: vec![format!("client:{}", c.id)],
    }
}

/// ListClients: a tenant's clients (made by the audited create), once each
/// in (creation, id) order across pages, by environment, never another
/// tenant's, and not once deleted.
async fn list_clients<S: Store>(s: S) {
    let (t, other) = (tenant(), tenant());
    s.put_tenant(&t).await.unwrap();
    s.put_tenant(&other).await.unwrap();
    let mut ours = Vec::new();
    for i in 0..7 {
        // Three share a creation time (ties go by id), in both environments.
        let env = if i % 3 == 1 { Environment::Test } else { Environment::Production };
        let c = Client { created_at: t.created_at + if i < 3 { 0 } else { i }, env, ..client(t.id) };
        assert!(s.create_client_audited(&c, None, &created(&c), u64::MAX).await.unwrap());
        // Another tenant's, at the same times: never listed with ours.
        let o = Client { created_at: c.created_at, ..client(other.id) };
        assert!(s.create_client_audited(&o, None, &created(&o), u64::MAX).await.unwrap());
        ours.push(c);
    }
    // Written without the audited create: neither counted nor listed.
    s.create_client(&client(t.id), None).await.unwrap();
    ours.sort_by_cached_key(|c| client_order(c).key());
    let pages = every_page(3, |a, n| {
        let s = &s;
        async move { s.list_clients(t.id, None, a, n).await.unwrap() }
    })
    .await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), ours, "pages in (creation, id) order, each client once");
    for env in [Environment::Production, Environment::Test] {
        let want: Vec<Client> = ours.iter().filter(|c| c.env == env).cloned().collect();
        let pages = every_page(2, |a, n| {
            let s = &s;
            async move { s.list_clients(t.id, Some(env), a, n).await.unwrap() }
        })
        .await;
        assert_eq!(pages.concat(), want, "{env:?} only, in order");
        assert!(pages.iter().all(|p| !p.is_empty()), "a filter never makes empty pages");
    }
    let theirs = s.list_clients(other.id, None, None, 1000).await.unwrap();
    assert_eq!(theirs.items.len(), 7);
    assert!(theirs.items.iter().all(|c| c.tenant_id == other.id));
    assert!(s.list_clients(rng::uuid(), None, None, 1000).await.unwrap().items.is_empty());

    // Page size bounds: one, and 1000 holding all.
    let one = s.list_clients(t.id, None, None, 1).await.unwrap();
    assert_eq!((one.items.as_slice(), one.next), (&ours[..1], Some(client_order(&ours[0]))));
    let all = s.list_clients(t.id, None, None, 1000).await.unwrap();
    assert_eq!((all.items, all.next), (ours.clone(), None));

    // Deleted between pages, counted down as `Authority` does: not listed
    // by a later page; deleted with its count-down lost: skipped.
    let first = s.list_clients(t.id, None, None, 3).await.unwrap();
    assert_eq!(first.items, ours[..3]);
    assert!(s.delete_client(ours[4].id).await.unwrap());
    s.uncount_client(&ours[4]).await.unwrap();
    assert!(s.delete_client(ours[5].id).await.unwrap());
    let rest = s.list_clients(t.id, None, first.next, 10).await.unwrap();
    assert_eq!(rest.items, [&ours[3..4], &ours[6..]].concat());
    assert_eq!(rest.next, None);
    // Counted down without a delete (a creation taken back): unlisted.
    s.uncount_client(&ours[6]).await.unwrap();
    let left = s.list_clients(t.id, None, None, 10).await.unwrap().items;
    assert_eq!(left, [&ours[..4]].concat());
}

/// ListClients at scale in one tenant (the Redis index is bucketed: see
/// `cd:{T}:E` in the key layout): 1,200 clients created from 16 tasks at
/// once, runs of them sharing a creation time, every one listed once in
/// (creation, id) order across pages of several sizes; a page from a cursor
/// whose client was deleted since; deletes that empty whole runs of the
/// index; everything deleted, then created again.
async fn clients_at_scale<S: Store>(s: S) {
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let base = t.created_at;
    // Runs of 1 to 12 clients share a creation time; every seventh is a test one.
    let all: Vec<Client> = (0..1200i64)
        .map(|i| {
            let env = if i % 7 == 3 { Environment::Test } else { Environment::Production };
            Client { created_at: base + (i * i) / 1000 + i / 12, env, ..client(t.id) }
        })
        .collect();
    let tasks = all.chunks(75).map(|chunk| {
        let (s, chunk) = (s.clone(), chunk.to_vec());
        tokio::spawn(async move {
            for c in chunk {
                assert!(s.create_client_audited(&c, None, &created(&c), u64::MAX).await.unwrap());
            }
        })
    });
    for r in futures::future::join_all(tasks).await {
        r.unwrap();
    }
    let mut ours = all.clone();
    ours.sort_by_cached_key(|c| client_order(c).key());
    let list = |env: Option<Environment>, size: usize| {
        let s = s.clone();
        async move {
            every_page(size, |a, n| {
                let s = &s;
                async move { s.list_clients(t.id, env, a, n).await.unwrap() }
            })
            .await
        }
    };
    for size in [1000, 97, 13] {
        assert_eq!(list(None, size).await.concat(), ours, "pages of {size}: each client once, in order");
    }
    let tests: Vec<Client> = ours.iter().filter(|c| c.env == Environment::Test).cloned().collect();
    assert_eq!(list(Some(Environment::Test), 50).await.concat(), tests);

    // A cursor whose client is deleted before the next page: the page goes
    // on after it.
    let first = s.list_clients(t.id, None, None, 500).await.unwrap();
    assert_eq!(first.next, Some(client_order(&ours[499])));
    let gone = &ours[499];
    assert!(s.delete_client(gone.id).await.unwrap());
    s.uncount_client(gone).await.unwrap();
    let next = s.list_clients(t.id, None, first.next, 100).await.unwrap();
    assert_eq!(next.items, ours[500..600]);

    // Deletes of whole runs (emptying what held them), the first ones too.
    let dropped = |i: usize| i < 20 || (100..=450).contains(&i);
    let pick = |drop: bool| -> Vec<Client> {
        let at = ours.iter().enumerate().filter(|(i, _)| *i != 499 && dropped(*i) == drop);
        at.map(|(_, c)| c.clone()).collect()
    };
    let (kept, drops) = (pick(false), pick(true));
    let tasks = drops.chunks(50).map(|chunk| {
        let (s, chunk) = (s.clone(), chunk.to_vec());
        tokio::spawn(async move {
            for c in chunk {
                assert!(s.delete_client(c.id).await.unwrap());
                s.uncount_client(&c).await.unwrap();
            }
        })
    });
    for r in futures::future::join_all(tasks).await {
        r.unwrap();
    }
    assert_eq!(list(None, 97).await.concat(), kept, "what is left, in order");
    // From a cursor inside the emptied run.
    let inside = s.list_clients(t.id, None, Some(client_order(&ours[300])), 10).await.unwrap();
    assert_eq!(inside.items, kept[80..90]);

    // All deleted: an empty listing; created again: listed again.
    for c in &kept {
        assert!(s.delete_client(c.id).await.unwrap());
        s.uncount_client(c).await.unwrap();
    }
    let empty = s.list_clients(t.id, None, None, 10).await.unwrap();
    assert_eq!((empty.items, empty.next), (vec![], None));
    let again = Client { created_at: base, ..client(t.id) };
    assert!(s.create_client_audited(&again, None, &created(&again), u64::MAX).await.unwrap());
    assert_eq!(s.list_clients(t.id, None, None, 10).await.unwrap().items, vec![again]);
}

/// 300 clients created in the same millisecond (more than a Redis index
/// bucket splits at: equal times cannot be split apart), between others:
/// listed once each, ordered by id, across pages; deletes among them.
async fn clients_same_millisecond<S: Store>(s: S) {
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let at = t.created_at;
    let mut ours: Vec<Client> =
        (0..400i64).map(|i| Client { created_at: if i < 300 { at } else { at - 200 + i }, ..client(t.id) }).collect();
    for c in &ours {
        assert!(s.create_client_audited(c, None, &created(c), u64::MAX).await.unwrap());
    }
    ours.sort_by_cached_key(|c| client_order(c).key());
    for size in [1000, 7] {
        let pages = every_page(size, |a, n| {
            let s = &s;
            async move { s.list_clients(t.id, None, a, n).await.unwrap() }
        })
        .await;
        assert_eq!(pages.concat(), ours, "pages of {size}");
    }
    for c in ours.iter().skip(120).step_by(3) {
        assert!(s.delete_client(c.id).await.unwrap());
        s.uncount_client(c).await.unwrap();
    }
    let left: Vec<Client> =
        ours.iter().enumerate().filter(|(i, _)| *i < 120 || (i - 120) % 3 != 0).map(|(_, c)| c.clone()).collect();
    let from = s.list_clients(t.id, None, Some(client_order(&ours[150])), 1000).await.unwrap();
    assert_eq!(
        from.items,
        left.iter().filter(|c| client_order(c).key() > client_order(&ours[150]).key()).cloned().collect::<Vec<_>>()
    );
    assert_eq!(s.list_clients(t.id, None, None, 1000).await.unwrap().items, left);
}

async fn quotas<S: Store>(s: S) {
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    assert_eq!(s.get_tenant(t.id).await.unwrap().unwrap().quotas, Quotas::default());
    let q = Quotas { api_keys: 2, clients: 1, sessions_per_client: 3 };
    assert_eq!(s.set_quotas(t.id, q).await.unwrap().map(|t| t.quotas), Some(q));
    assert_eq!(s.get_tenant(t.id).await.unwrap().unwrap().quotas, q);
    assert_eq!(s.set_quotas(rng::uuid(), q).await.unwrap(), None, "no tenant is made");

    // API keys: the third of two is refused, and not kept.
    let (a, b, c) = (api_key(t.id, None), api_key(t.id, None), api_key(t.id, None));
    assert!(s.put_api_key(&a, 2).await.unwrap());
    assert!(s.put_api_key(&b, 2).await.unwrap());
    assert!(!s.put_api_key(&c, 2).await.unwrap());
    assert_eq!(s.get_api_key(t.id, c.id).await.unwrap().key, None);
    assert_eq!(s.list_api_keys(t.id, None, 10).await.unwrap().items.len(), 2);
    // A revoked key frees its place.
    s.revoke_api_key(t.id, a.id).await.unwrap();
    assert!(s.put_api_key(&c, 2).await.unwrap());

    // Clients: the second of one is refused, with nothing of it kept.
    let event = |c: &Client| AuditEvent {
        id: String::new(),
        time: now_ms(),
        actor: "t".into(),
        action: "client.create".into(),
        tenant_id: t.id,
        subjects: vec![format!("client:{}", c.id)],
    };
    let (c1, c2) = (client(t.id), client(t.id));
    let (s1, s2) = (session(c1.id, Some((60_000, 60_000))), session(c2.id, Some((60_000, 60_000))));
    assert!(s.create_client_audited(&c1, Some(&s1), &event(&c1), 1).await.unwrap());
    assert!(!s.create_client_audited(&c2, Some(&s2), &event(&c2), 1).await.unwrap());
    assert_eq!(s.get_client(c2.id).await.unwrap(), None);
    assert_eq!(s.get_session(c2.id, s2.id).await.unwrap().session, None);
    // Deleted and counted down: room again.
    assert!(s.delete_client(c1.id).await.unwrap());
    s.uncount_client(&c1).await.unwrap();
    assert!(s.create_client_audited(&c2, Some(&s2), &event(&c2), 1).await.unwrap());
    assert!(s.get_session(c2.id, s2.id).await.unwrap().session.is_some());

    // Racers: 16 creations at once, on 16 threads lined up by a barrier,
    // with 3 places left get exactly 3.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
    let handle = tokio::runtime::Handle::current();
    let racers = (0..16).map(|_| {
        let (s, c, barrier, handle) = (s.clone(), client(t.id), barrier.clone(), handle.clone());
        let e = event(&c);
        tokio::task::spawn_blocking(move || {
            barrier.wait();
            handle.block_on(s.create_client_audited(&c, None, &e, 4)).unwrap()
        })
    });
    let won = futures::future::join_all(racers).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(won, 3, "concurrent creations passed the client quota");
}

/// Runs every test above against every store.
/// CreateSession's store call: the event is written first, then the
/// session, for the owner's client only (another tenant's or environment's
/// is `NoClient`, as a missing one), within the quota; every call leaves
/// its event.
async fn sessions_audited<S: Store>(s: S) {
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let c = client(t.id);
    s.create_client(&c, None).await.unwrap();
    let owner = (t.id, Environment::Production);
    let event = |x: &Session| AuditEvent {
        id: String::new(),
        time: now_ms(),
        actor: "api_key:x".into(),
        action: "session.create".into(),
        tenant_id: t.id,
        subjects: vec![format!("client:{}", x.client_id), format!("session:{}", x.id)],
    };
    let create =
        async |x: &Session, owner: (Uuid, Environment)| s.create_session_audited(x, owner, &event(x), 2).await.unwrap();
    let first = session(c.id, Some((60_000, 60_000)));
    assert_eq!(create(&first, owner).await, CreateSession::Created);
    assert_eq!(s.get_session(c.id, first.id).await.unwrap().session, Some(first.clone()));
    // Another tenant's key, the other environment's, a missing client: no session.
    let theirs = session(c.id, Some((60_000, 60_000)));
    assert_eq!(create(&theirs, (rng::uuid(), Environment::Production)).await, CreateSession::NoClient);
    assert_eq!(create(&theirs, (t.id, Environment::Test)).await, CreateSession::NoClient);
    assert_eq!(create(&session(rng::uuid(), Some((60_000, 60_000))), owner).await, CreateSession::NoClient);
    assert_eq!(s.get_session(c.id, theirs.id).await.unwrap().session, None);
    // The quota.
    assert_eq!(create(&session(c.id, Some((60_000, 60_000))), owner).await, CreateSession::Created);
    assert_eq!(create(&session(c.id, Some((60_000, 60_000))), owner).await, CreateSession::Full);
    assert_eq!(s.list_sessions(c.id, None, 10).await.unwrap().items.len(), 2);
    let events = s.list_audit(t.id, None, 100, false).await.unwrap();
    assert_eq!(events.len(), 6, "one event per call, refused ones included: {events:?}");
    assert!(events.iter().all(|e| e.action == "session.create"));
    assert_eq!(events[0].subjects, vec![format!("client:{}", c.id), format!("session:{}", first.id)]);
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(cred_core::store::MemoryStore::new()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let server = cred_tests::RedisServer::start();
                    super::$name(server.store().await).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(cred_tests::RedisCluster::shared().store().await).await;
                }
            )*
        }
    };
}

conformance!(
    tenants,
    api_keys,
    api_key_expiry,
    roll,
    clients_and_sessions,
    session_limit,
    sessions_audited,
    sliding_expiry,
    test_keys,
    audit,
    why_gone,
    invalidations,
    paging,
    tenant_listing,
    list_clients,
    clients_at_scale,
    clients_same_millisecond,
    quotas
);

#[test]
fn memory_store_is_a_store() {
    fn is_store<S: Store>(_: &S) {}
    is_store(&MemoryStore::new());
}

/// A client's revoked-session set has a bound (`REMEMBER_MAX`): revoking
/// more sessions than that keeps the newest, and every one stays refused.
#[tokio::test]
async fn redis_revoked_sets_are_capped() {
    use cred_core::store::REMEMBER_MAX;
    let server = cred_tests::RedisServer::start();
    let s = server.store().await;
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let c = client(t.id);
    s.create_client(&c, None).await.unwrap();
    let n = REMEMBER_MAX + 10;
    let mut conn = server.conn().await;
    let mut p = ::redis::pipe();
    let now = now_ms();
    let mut ids = Vec::with_capacity(n);
    // Written directly (as create_session does), for speed.
    for _ in 0..n {
        let x = session(c.id, Some((600_000, 600_000)));
        let key = format!("s:{{{}}}:{}", cred_core::token::short_id(c.id), cred_core::token::short_id(x.id));
        p.cmd("SET").arg(&key).arg(vec![0u8; 40]).arg("PXAT").arg(now + 600_000).ignore();
        p.cmd("ZADD")
            .arg(format!("si:{{{}}}", cred_core::token::short_id(c.id)))
            .arg(now + 600_000)
            .arg(cred_core::token::short_id(x.id))
            .ignore();
        ids.push(x.id);
    }
    let () = p.query_async(&mut conn).await.unwrap();
    assert_eq!(s.revoke_all_sessions(c.id).await.unwrap() as usize, n);
    let kept: usize = ::redis::cmd("ZCARD")
        .arg(format!("sr:{{{}}}", cred_core::token::short_id(c.id)))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, REMEMBER_MAX);
    for id in ids.iter().step_by(997) {
        let l = s.get_session(c.id, *id).await.unwrap();
        assert!(l.session.is_none(), "a revoked session past the cap is still refused");
    }
}

/// API key indexes written as sets (before sorted sets) are moved into the
/// sorted index by the next listing, and listed meanwhile.
#[tokio::test]
async fn redis_legacy_api_key_index_is_moved_on_list() {
    let server = cred_tests::RedisServer::start();
    let s = server.store().await;
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let (a, b) = (api_key(t.id, None), api_key(t.id, None));
    s.put_api_key(&a, u64::MAX).await.unwrap();
    s.put_api_key(&b, u64::MAX).await.unwrap();
    let mut conn = server.conn().await;
    let tag = cred_core::token::short_id(t.id);
    let (sorted, legacy) = (format!("kx:{{{tag}}}"), format!("ki:{{{tag}}}"));
    // As an older authd left it: every id in the set, none sorted.
    let () = ::redis::cmd("DEL").arg(&sorted).query_async(&mut conn).await.unwrap();
    for k in [&a, &b] {
        let _: i64 = ::redis::cmd("SADD")
            .arg(&legacy)
            .arg(cred_core::token::short_id(k.id))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let listed = s.list_api_keys(t.id, None, 10).await.unwrap();
    assert_eq!(listed.items.len(), 2);
    let left: i64 = ::redis::cmd("EXISTS").arg(&legacy).query_async(&mut conn).await.unwrap();
    assert_eq!(left, 0, "the set was not emptied");
    let moved: i64 = ::redis::cmd("ZCARD").arg(&sorted).query_async(&mut conn).await.unwrap();
    assert_eq!(moved, 2);
    // A revoke also clears a member still in the old set.
    let _: i64 =
        ::redis::cmd("SADD").arg(&legacy).arg(cred_core::token::short_id(a.id)).query_async(&mut conn).await.unwrap();
    s.revoke_api_key(t.id, a.id).await.unwrap();
    assert_eq!(s.list_api_keys(t.id, None, 10).await.unwrap().items, vec![b]);
}

/// A client index entry with no client (a delete whose count-down failed, a
/// creation that never wrote its client) is skipped; it is dropped once older
/// than the grace a cluster creation may take, never before.
#[tokio::test]
async fn redis_dangling_client_entries_are_skipped_and_pruned_when_old() {
    use cred_core::store::CLIENT_INDEX_GRACE_MS;
    use cred_core::token::short_id;
    let server = cred_tests::RedisServer::start();
    let s = server.store().await;
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let c = client(t.id);
    assert!(s.create_client_audited(&c, None, &created(&c), u64::MAX).await.unwrap());
    let mut conn = server.conn().await;
    // The index's one bucket (see `cd:{T}:E` in the key layout).
    let dir = format!("cd:{{{}}}:p", short_id(t.id));
    let buckets: Vec<String> = ::redis::cmd("ZRANGE").arg(&dir).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
    assert_eq!(buckets.len(), 1);
    // A directory member is the bucket's low id (22 characters), then its name.
    let index = format!("cx:{{{}}}:p:{}", short_id(t.id), &buckets[0][22..]);
    let (old, young) = (short_id(rng::uuid()), short_id(rng::uuid()));
    let now = now_ms();
    let _: i64 = ::redis::cmd("ZADD")
        .arg(&index)
        .arg(now - CLIENT_INDEX_GRACE_MS - 1_000)
        .arg(&old)
        .arg(now)
        .arg(&young)
        .query_async(&mut conn)
        .await
        .unwrap();
    let page = s.list_clients(t.id, None, None, 10).await.unwrap();
    assert_eq!((page.items, page.next), (vec![c], None));
    let left: Vec<String> = ::redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
    assert!(!left.contains(&old), "an old dangling entry is pruned");
    assert!(left.contains(&young), "a young one may be a creation under way: kept");
}

/// Sessions written by the layout before sessions were client hash fields
/// (a 40-byte string with 8-byte times and a TTL, indexed by cap in
/// `si:{C}`; the client's tenant in base62; revoked ids in base62) keep
/// working where they are: verified, touched, listed, counted in the quota,
/// revoked one by one or all at once.
#[tokio::test]
async fn redis_sessions_written_before_fields_keep_working() {
    use cred_core::store::Gone;
    use cred_core::token::short_id;
    let server = cred_tests::RedisServer::start();
    let s = server.store().await;
    let mut conn = server.conn().await;
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let c = client(t.id);
    let cid = short_id(c.id);
    // The client as the old layout wrote it: the tenant in base62.
    let labels = serde_json::to_string(&c.labels).unwrap();
    let () = ::redis::cmd("HSET")
        .arg(format!("c:{{{cid}}}"))
        .arg("t")
        .arg(short_id(t.id))
        .arg("e")
        .arg("p")
        .arg("c")
        .arg(c.created_at)
        .arg("l")
        .arg(&labels)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(s.get_client(c.id).await.unwrap(), Some(c.clone()));
    let old = |x: &Session| {
        let mut v = x.hash.0.to_vec();
        v.extend_from_slice(&x.created_at.to_be_bytes());
        v.extend_from_slice(&x.max_expires_at.unwrap_or(0).to_be_bytes());
        v.extend_from_slice(&x.last_used.to_be_bytes());
        v
    };
    let write_old = |x: Session| {
        let mut conn = conn.clone();
        let (key, index) = (format!("s:{{{cid}}}:{}", short_id(x.id)), format!("si:{{{cid}}}"));
        let value = old(&x);
        async move {
            let mut p = ::redis::pipe();
            let set = p.cmd("SET").arg(&key).arg(value);
            if let Some(e) = x.expires_at {
                set.arg("PXAT").arg(e);
            }
            set.ignore();
            let score = x.max_expires_at.map_or("+inf".to_string(), |m| m.to_string());
            p.cmd("ZADD").arg(&index).arg(score).arg(short_id(x.id)).ignore();
            let () = p.query_async(&mut conn).await.unwrap();
        }
    };
    let (a, b, d, k) = (
        session(c.id, Some((600_000, 900_000))),
        session(c.id, Some((600_000, 900_000))),
        session(c.id, Some((600_000, 900_000))),
        session(c.id, None),
    );
    for x in [&a, &b, &d, &k] {
        write_old(x.clone()).await;
    }

    // Read and listed as before.
    let got = s.get_session(c.id, a.id).await.unwrap();
    assert_eq!((got.client, got.session, got.gone), (Some(c.clone()), Some(a.clone()), None));
    assert_eq!(s.get_session(c.id, k.id).await.unwrap().session, Some(k.clone()));
    let mut listed = s.list_sessions(c.id, None, 10).await.unwrap().items;
    listed.sort_by_key(|x| x.id);
    let mut want = vec![a.clone(), b.clone(), d.clone(), k.clone()];
    want.sort_by_key(|x| x.id);
    assert_eq!(listed, want);

    // Counted in the quota: 4 old + 1 new fills 5. CreateSession's call:
    // the owner check reads the tenant in base62, and the full client's
    // second pass (pruning the old index) writes no second event.
    let audited = async |x: &Session| {
        let e = AuditEvent {
            id: String::new(),
            time: now_ms(),
            actor: "api_key:x".into(),
            action: "session.create".into(),
            tenant_id: t.id,
            subjects: vec![format!("session:{}", x.id)],
        };
        s.create_session_audited(x, (t.id, Environment::Production), &e, 5).await.unwrap()
    };
    assert_eq!(audited(&session(c.id, Some((600_000, 900_000)))).await, CreateSession::Created);
    assert_eq!(audited(&session(c.id, Some((600_000, 900_000)))).await, CreateSession::Full);
    assert_eq!(s.list_audit(t.id, None, 10, false).await.unwrap().len(), 2, "one event per call");
    assert_eq!(s.list_sessions(c.id, None, 10).await.unwrap().items.len(), 5);

    // A use touches it where it is (an older authd may still revoke it
    // there during a rollout): its expiry slides, it stays a string.
    let now = now_ms();
    let exp = s.touch_session(c.id, a.id, now, 700_000).await.unwrap();
    assert_eq!(exp, Some(now + 700_000));
    let ttl: i64 = ::redis::cmd("PEXPIRETIME")
        .arg(format!("s:{{{cid}}}:{}", short_id(a.id)))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ttl, now + 700_000);
    assert!(!cred_tests::session_layout::session_stored(&mut conn, c.id, a.id).await);
    let used = s.get_session(c.id, a.id).await.unwrap().session.expect("live after a touch");
    assert_eq!((used.hash, used.created_at, used.max_expires_at), (a.hash, a.created_at, a.max_expires_at));
    assert_eq!((used.last_used, used.expires_at), (now, Some(now + 700_000)));
    // A test key too: no expiry, ever.
    assert_eq!(s.touch_session(c.id, k.id, now, 700_000).await.unwrap(), Some(Millis::MAX));
    let k2 = s.get_session(c.id, k.id).await.unwrap().session.expect("test key live after a touch");
    assert_eq!((k2.expires_at, k2.max_expires_at, k2.last_used), (None, None, now));

    // Revoked one by one, and all at once: refused as revoked.
    assert!(s.revoke_session(c.id, b.id).await.unwrap());
    let gone = s.get_session(c.id, b.id).await.unwrap();
    assert_eq!((gone.session, gone.gone), (None, Some(Gone::Revoked)));
    assert_eq!(s.revoke_all_sessions(c.id).await.unwrap(), 4);
    for x in [&a, &d, &k] {
        let l = s.get_session(c.id, x.id).await.unwrap();
        assert_eq!((l.session, l.gone), (None, Some(Gone::Revoked)), "{x:?}");
    }
    assert!(s.list_sessions(c.id, None, 10).await.unwrap().items.is_empty());
    let strings: Vec<String> = ::redis::cmd("KEYS").arg(format!("s:{{{cid}}}:*")).query_async(&mut conn).await.unwrap();
    assert!(strings.is_empty(), "{strings:?}");

    // A revocation remembered in base62 (the old revoked set) still tells.
    let e = session(c.id, Some((600_000, 900_000)));
    let () = ::redis::cmd("ZADD")
        .arg(format!("sr:{{{cid}}}"))
        .arg(now + 900_000)
        .arg(short_id(e.id))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(s.get_session(c.id, e.id).await.unwrap().gone, Some(Gone::Revoked));
}

/// One client hash holds the client and its sessions: with one session it
/// stays one small listpack (the memory figure B rests on), and a session
/// gone a day past its cap is pruned by the next session write.
#[tokio::test]
async fn redis_a_client_and_its_sessions_are_one_small_hash() {
    let server = cred_tests::RedisServer::start();
    let s = server.store().await;
    let mut conn = server.conn().await;
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let mut c = client(t.id);
    c.labels.clear();
    let first = session(c.id, Some((600_000, 900_000)));
    assert!(s.create_client_audited(&c, Some(&first), &created(&c), u64::MAX).await.unwrap());
    let key = cred_tests::session_layout::client_key(c.id);
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    assert!(!keys.iter().any(|k| k.starts_with("s:") || k.starts_with("si:")), "{keys:?}");
    let enc: String = ::redis::cmd("OBJECT").arg("ENCODING").arg(&key).query_async(&mut conn).await.unwrap();
    assert_eq!(enc, "listpack");
    let usage: i64 = ::redis::cmd("MEMORY").arg("USAGE").arg(&key).query_async(&mut conn).await.unwrap();
    assert!(usage <= 184, "a client with one session takes {usage} B (one 112-byte listpack: 184 B)");
    // A session a day past its cap: read as unknown, then pruned by the
    // next create.
    let mut dead = session(c.id, Some((1, 2)));
    dead.max_expires_at = Some(now_ms() - cred_core::store::REMEMBER_MS - 1);
    dead.expires_at = dead.max_expires_at;
    assert_eq!(s.create_session(&dead, 10).await.unwrap(), CreateSession::Created);
    let l = s.get_session(c.id, dead.id).await.unwrap();
    assert_eq!((l.session, l.gone), (None, None));
    assert!(cred_tests::session_layout::session_stored(&mut conn, c.id, dead.id).await);
    assert_eq!(s.create_session(&session(c.id, Some((600_000, 900_000))), 10).await.unwrap(), CreateSession::Created);
    assert!(!cred_tests::session_layout::session_stored(&mut conn, c.id, dead.id).await, "not pruned");
    assert!(cred_tests::session_layout::session_stored(&mut conn, c.id, first.id).await);
}

/// The buckets of T's client index of production (`cd:{T}:p`), first to
/// last: name, `ZCARD`, `OBJECT ENCODING`. A directory member is the
/// bucket's low id (22 characters), then its name, the key's suffix.
async fn client_buckets(conn: &mut ::redis::aio::MultiplexedConnection, t: Uuid) -> Vec<(String, usize, String)> {
    let tag = cred_core::token::short_id(t);
    let names: Vec<String> =
        ::redis::cmd("ZRANGE").arg(format!("cd:{{{tag}}}:p")).arg(0).arg(-1).query_async(conn).await.unwrap();
    let mut out = Vec::new();
    for n in names {
        let key = format!("cx:{{{tag}}}:p:{}", &n[22..]);
        let card: usize = ::redis::cmd("ZCARD").arg(&key).query_async(conn).await.unwrap();
        let enc: String = ::redis::cmd("OBJECT").arg("ENCODING").arg(&key).query_async(conn).await.unwrap();
        out.push((n, card, enc));
    }
    out
}

/// The client index's buckets split and stay listpack-encoded (under 128
/// entries) at 2,000 clients of one tenant, written by two stores at once
/// (two processes: each one's guess of the bucket goes stale when the other
/// splits it), half of them in random creation order (splits in the middle
/// of the index), and every client is listed once, in order.
#[tokio::test]
async fn redis_client_index_buckets_split_and_stay_listpack() {
    let server = cred_tests::RedisServer::start();
    let (a, b) = (server.store().await, server.store().await);
    let t = tenant();
    a.put_tenant(&t).await.unwrap();
    let base = t.created_at;
    let mut all = Vec::new();
    for i in 0..2000i64 {
        // Even ones in creation order (appends), odd ones anywhere before.
        let at = if i % 2 == 0 { base + i } else { base + (i * 7919) % 2000 };
        all.push(Client { created_at: at, ..client(t.id) });
    }
    let tasks = all.chunks(125).enumerate().map(|(i, chunk)| {
        let (s, chunk) = (if i % 2 == 0 { a.clone() } else { b.clone() }, chunk.to_vec());
        tokio::spawn(async move {
            for c in chunk {
                assert!(s.create_client_audited(&c, None, &created(&c), u64::MAX).await.unwrap());
            }
        })
    });
    for r in futures::future::join_all(tasks).await {
        r.unwrap();
    }
    let mut conn = server.conn().await;
    let buckets = client_buckets(&mut conn, t.id).await;
    assert!(buckets.len() >= 2000 / 96, "split: {} buckets", buckets.len());
    assert_eq!(buckets.iter().map(|b| b.1).sum::<usize>(), 2000);
    for (name, card, enc) in &buckets {
        assert!(*card > 0 && *card < 128, "bucket {name}: {card} entries");
        assert_eq!(enc, "listpack", "bucket {name}");
    }
    let mut ours = all;
    ours.sort_by_cached_key(|c| client_order(c).key());
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let p = b.list_clients(t.id, None, after, 250).await.unwrap();
        listed.extend(p.items);
        match p.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(listed, ours);
}

/// Clients indexed by an older authd in one sorted set per tenant
/// environment (`cx:{T}:E`) are moved into buckets, in chunks, by the first
/// listing, and by the first creation that finds the old set; a count-down
/// also drops a client still in it.
#[tokio::test]
async fn redis_legacy_client_index_is_moved() {
    let server = cred_tests::RedisServer::start();
    let s = server.store().await;
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let tag = cred_core::token::short_id(t.id);
    let legacy = format!("cx:{{{tag}}}:p");
    let mut conn = server.conn().await;
    let writer = conn.clone();
    // As an older authd wrote them: the client, and its entry in one set.
    let old_write = |c: Client| {
        let (s, mut conn, legacy) = (s.clone(), writer.clone(), legacy.clone());
        async move {
            s.create_client(&c, None).await.unwrap();
            let _: i64 = ::redis::cmd("ZADD")
                .arg(&legacy)
                .arg(c.created_at)
                .arg(cred_core::token::short_id(c.id))
                .query_async(&mut conn)
                .await
                .unwrap();
            c
        }
    };
    // One written by this release first, then 300 by the older one (some
    // at the same time), older and newer than it.
    let mine = client(t.id);
    assert!(s.create_client_audited(&mine, None, &created(&mine), u64::MAX).await.unwrap());
    let mut ours = vec![mine.clone()];
    for i in 0..300i64 {
        ours.push(old_write(Client { created_at: mine.created_at - 150 + i / 2, ..client(t.id) }).await);
    }
    ours.sort_by_cached_key(|c| client_order(c).key());
    let first = s.list_clients(t.id, None, None, 100).await.unwrap();
    assert_eq!(first.items, ours[..100]);
    let left: i64 = ::redis::cmd("EXISTS").arg(&legacy).query_async(&mut conn).await.unwrap();
    assert_eq!(left, 0, "the old set was moved");
    let buckets = client_buckets(&mut conn, t.id).await;
    assert_eq!(buckets.iter().map(|b| b.1).sum::<usize>(), 301);
    assert!(buckets.iter().all(|b| b.1 < 128 && b.2 == "listpack"), "{buckets:?}");
    let rest = s.list_clients(t.id, None, first.next, 1000).await.unwrap();
    assert_eq!(rest.items, ours[100..]);

    // The old authd still writing (a rolling upgrade): this release's next
    // creation moves what it wrote first.
    let late = old_write(client(t.id)).await;
    let next = Client { created_at: late.created_at + 1, ..client(t.id) };
    assert!(s.create_client_audited(&next, None, &created(&next), u64::MAX).await.unwrap());
    let left: i64 = ::redis::cmd("EXISTS").arg(&legacy).query_async(&mut conn).await.unwrap();
    assert_eq!(left, 0, "moved by the creation");
    ours.extend([late, next]);
    ours.sort_by_cached_key(|c| client_order(c).key());
    assert_eq!(s.list_clients(t.id, None, None, 1000).await.unwrap().items, ours);

    // A client still in the old set, counted down: gone from it too.
    let stale = old_write(client(t.id)).await;
    assert!(s.delete_client(stale.id).await.unwrap());
    s.uncount_client(&stale).await.unwrap();
    let left: i64 = ::redis::cmd("EXISTS").arg(&legacy).query_async(&mut conn).await.unwrap();
    assert_eq!(left, 0, "dropped from the old set");
    assert_eq!(s.list_clients(t.id, None, None, 1000).await.unwrap().items, ours);
}

/// A creation's index write is an `EVALSHA` inside its transaction, which
/// Redis does not load on `NOSCRIPT`: after the script cache is flushed (a
/// restart, `SCRIPT FLUSH`), creations still list their clients.
#[tokio::test]
async fn redis_client_index_survives_a_script_flush() {
    let server = cred_tests::RedisServer::start();
    let s = server.store().await;
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let mut conn = server.conn().await;
    let mut ours = Vec::new();
    for _ in 0..3 {
        let () = ::redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
        for _ in 0..2 {
            let c = client(t.id);
            assert!(s.create_client_audited(&c, None, &created(&c), u64::MAX).await.unwrap());
            ours.push(c);
        }
    }
    ours.sort_by_cached_key(|c| client_order(c).key());
    assert_eq!(s.list_clients(t.id, None, None, 10).await.unwrap().items, ours);
    let counted: u64 = ::redis::cmd("HGET")
        .arg(format!("t:{{{}}}", cred_core::token::short_id(t.id)))
        .arg("nc")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(counted, 6, "each counted once");
}

/// CreateSession's transaction on a server that lost its scripts: the
/// event (written in the transaction) once, and the session (the script run
/// again on its own).
#[tokio::test]
async fn redis_audited_session_survives_a_script_flush() {
    let server = cred_tests::RedisServer::start();
    let s = server.store().await;
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let c = client(t.id);
    s.create_client(&c, None).await.unwrap();
    let mut conn = server.conn().await;
    for i in 0..3 {
        let () = ::redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
        let x = session(c.id, Some((60_000, 60_000)));
        let e = AuditEvent { action: "session.create".into(), tenant_id: t.id, ..created(&c) };
        let r = s.create_session_audited(&x, (t.id, Environment::Production), &e, 10).await.unwrap();
        assert_eq!(r, CreateSession::Created);
        assert_eq!(s.get_session(c.id, x.id).await.unwrap().session, Some(x));
        assert_eq!(s.list_audit(t.id, None, 10, false).await.unwrap().len(), i + 1, "one event per call");
    }
}

/// Clients created in the same millisecond split into buckets like any
/// others (a bucket's low bound is a time and an id): 500 of them, and every
/// bucket stays listpack-encoded.
#[tokio::test]
async fn redis_client_index_splits_a_millisecond() {
    let server = cred_tests::RedisServer::start();
    let s = server.store().await;
    let t = tenant();
    s.put_tenant(&t).await.unwrap();
    let mut ours: Vec<Client> = (0..500).map(|_| Client { created_at: t.created_at, ..client(t.id) }).collect();
    for c in &ours {
        assert!(s.create_client_audited(c, None, &created(c), u64::MAX).await.unwrap());
    }
    let mut conn = server.conn().await;
    let buckets = client_buckets(&mut conn, t.id).await;
    assert!(buckets.len() >= 500 / 96, "split: {buckets:?}");
    assert!(buckets.iter().all(|b| b.1 > 0 && b.1 < 128 && b.2 == "listpack"), "{buckets:?}");
    ours.sort_by_cached_key(|c| client_order(c).key());
    let pages = every_page(33, |a, n| {
        let s = &s;
        async move { s.list_clients(t.id, None, a, n).await.unwrap() }
    })
    .await;
    assert_eq!(pages.concat(), ours);
}
