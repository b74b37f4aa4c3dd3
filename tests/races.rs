//! Races on one client and on one API key: authd and two introspect
//! replicas over real gRPC and one real redis-server, with a touch
//! granularity of 10 ms so that touches constantly race the revocations.
//!
//! Every check records when it started and ended. The invariants:
//! - authd never accepts a credential in a check that started after its
//!   revocation returned;
//! - a replica never does either once the revocation had `PROPAGATION` to
//!   reach it (the product promises a bounded delay, not zero), and never
//!   accepts a credential again after it has refused it once since then;
//! - at the end, authd, both replicas, ListSessions and the keys in Redis
//!   agree, and no revoked session exists again in Redis (a late touch did
//!   not revive it).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cred_proto::authd::v1 as apb;
use cred_tests::authd::{assert_invalid_api_key, authed};
use cred_tests::introspect::cause;
use cred_tests::{Authd, Replica};
use introspect::VerifyOptions;
use tonic::Code;

/// The longest a revocation may take to reach a replica in this test. The
/// measured p99 is a few milliseconds; this only bounds it generously.
const PROPAGATION: Duration = Duration::from_secs(1);

struct Stack {
    authd: Authd,
    replicas: [Replica; 2],
}

async fn stack() -> Stack {
    let authd = Authd::start().await;
    let opts = VerifyOptions { touch_granularity: Duration::from_millis(10), ..VerifyOptions::default() };
    let target = authd.redis.target();
    let replicas = [Replica::start(&target, opts.clone()).await, Replica::start(&target, opts).await];
    Stack { authd, replicas }
}

/// Where a check ran: authd (0) or a replica (1, 2).
type Checker = usize;

#[derive(Debug, Clone, Copy)]
struct Check {
    cred: usize,
    by: Checker,
    start: Instant,
    end: Instant,
    accepted: bool,
}

/// The shared record of one race.
#[derive(Default)]
struct Record {
    /// Session tokens (or API keys), by index, with their session ids.
    creds: Vec<(String, String)>,
    /// When each credential's creation returned.
    created: Vec<Instant>,
    /// When a revocation covering the credential returned (the earliest).
    revoked: HashMap<usize, Instant>,
    checks: Vec<Check>,
}

impl Record {
    fn revoke(&mut self, cred: usize, at: Instant) {
        let e = self.revoked.entry(cred).or_insert(at);
        *e = (*e).min(at);
    }

    fn add(&mut self, token: String, session_id: String, started: Instant) -> usize {
        self.creds.push((token, session_id));
        self.created.push(started);
        self.creds.len() - 1
    }
}

/// Fails on every check that accepted a revoked credential.
fn assert_never_accepted_after_revocation(r: &Record) {
    let mut violations = Vec::new();
    for c in &r.checks {
        let Some(&revoked) = r.revoked.get(&c.cred) else { continue };
        let bound = if c.by == 0 { revoked } else { revoked + PROPAGATION };
        if c.accepted && c.start > bound {
            violations.push(*c);
        }
    }
    // Once a replica refused a revoked credential, it never accepts it again.
    for c in r.checks.iter().filter(|c| c.by != 0 && !c.accepted && r.revoked.contains_key(&c.cred)) {
        if c.start < r.revoked[&c.cred] {
            continue;
        }
        violations.extend(
            r.checks.iter().filter(|l| l.cred == c.cred && l.by == c.by && l.accepted && l.start > c.end).copied(),
        );
    }
    assert!(violations.is_empty(), "revoked credentials accepted: {violations:#?}");
}

/// Whether `checker` accepts session token `token`; panics on any answer but
/// OK or INVALID_API_KEY.
async fn session_accepted(s: &Stack, by: Checker, token: &str) -> bool {
    if by == 0 {
        return s.authd.session_ok(token).await;
    }
    match s.replicas[by - 1].verify(token).await {
        Ok(_) => true,
        Err(e) => {
            cause(&e);
            false
        }
    }
}

/// The sessions stored in Redis (this Redis holds one client only). The
/// races run on a standalone server, whose whole keyspace one KEYS can see.
async fn session_keys(s: &Stack) -> Vec<uuid::Uuid> {
    let mut conn = s.authd.redis.server().conn().await;
    cred_tests::session_layout::stored_sessions(&mut conn).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_revoke_delete_and_verify_race_on_one_client() {
    let s = Arc::new(stack().await);
    let key = s.authd.tenant(None).await.test_key;
    let start = Instant::now();
    let created = s
        .authd
        .clients()
        .create_client(authed(&key, apb::CreateClientRequest::default()))
        .await
        .expect("create client")
        .into_inner();
    let client_id = created.client.expect("client").client_id;
    let rec = Arc::new(Mutex::new(Record::default()));
    rec.lock().unwrap().add(created.token, created.session.expect("session").session_id, start);

    // Phase 1: 100 tasks on the client: 25 refresh, 25 revoke one session,
    // 50 verify through authd or a replica; one RevokeAllSessions mid-way.
    let mut tasks = Vec::new();
    for t in 0..100usize {
        let (s, rec, key, client_id) = (s.clone(), rec.clone(), key.clone(), client_id.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..8usize {
                let pick = (t * 31 + i * 17) % 1000;
                match t % 4 {
                    0 => {
                        let req = apb::CreateSessionRequest { client_id: client_id.clone() };
                        match s.authd.clients().create_session(authed(&key, req)).await {
                            Ok(r) => {
                                let r = r.into_inner();
                                let sid = r.session.expect("session").session_id;
                                rec.lock().unwrap().add(r.token, sid, Instant::now());
                            }
                            // The 100-live-sessions limit may be reached; that is a clean refusal.
                            Err(e) if e.code() == Code::ResourceExhausted => {}
                            Err(e) => panic!("refresh: {e:?}"),
                        }
                    }
                    1 => {
                        let (idx, sid) = {
                            let r = rec.lock().unwrap();
                            let idx = pick % r.creds.len();
                            (idx, r.creds[idx].1.clone())
                        };
                        let req = apb::RevokeSessionRequest { client_id: client_id.clone(), session_id: sid };
                        match s.authd.clients().revoke_session(authed(&key, req)).await {
                            Ok(_) => rec.lock().unwrap().revoke(idx, Instant::now()),
                            Err(e) if e.code() == Code::NotFound => {}
                            Err(e) => panic!("revoke: {e:?}"),
                        }
                    }
                    _ => {
                        let (idx, token) = {
                            let r = rec.lock().unwrap();
                            let idx = pick % r.creds.len();
                            (idx, r.creds[idx].0.clone())
                        };
                        let by = (t + i) % 3;
                        let start = Instant::now();
                        let accepted = session_accepted(&s, by, &token).await;
                        rec.lock().unwrap().checks.push(Check { cred: idx, by, start, end: Instant::now(), accepted });
                    }
                }
            }
        }));
    }
    {
        let (s, rec, key, client_id) = (s.clone(), rec.clone(), key.clone(), client_id.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let before = Instant::now();
            let req = apb::RevokeAllSessionsRequest { client_id };
            s.authd.clients().revoke_all_sessions(authed(&key, req)).await.expect("revoke all");
            let after = Instant::now();
            let mut r = rec.lock().unwrap();
            // Sessions whose creation returned before: covered. Those made
            // concurrently may or may not be; they are left out.
            let covered: Vec<usize> = (0..r.creds.len()).filter(|&i| r.created[i] < before).collect();
            for i in covered {
                r.revoke(i, after);
            }
        }));
    }
    for t in tasks {
        t.await.expect("race task");
    }

    // Settle: touches in flight land, invalidations arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = std::mem::take(&mut *rec.lock().unwrap());
    assert_never_accepted_after_revocation(&r);
    let req = apb::ListSessionsRequest { client_id: client_id.clone(), ..Default::default() };
    let listed: HashSet<String> = s
        .authd
        .clients()
        .list_sessions(authed(&key, req))
        .await
        .expect("list sessions")
        .into_inner()
        .sessions
        .into_iter()
        .map(|x| x.session_id)
        .collect();
    let mut live = HashSet::new();
    for (idx, (token, sid)) in r.creds.iter().enumerate() {
        let verdicts = [
            session_accepted(&s, 0, token).await,
            session_accepted(&s, 1, token).await,
            session_accepted(&s, 2, token).await,
        ];
        assert!(
            verdicts.iter().all(|v| *v == verdicts[0]),
            "authd and replicas disagree on session {idx}: {verdicts:?}"
        );
        if r.revoked.contains_key(&idx) {
            assert!(!verdicts[0], "revoked session {idx} is accepted");
        }
        assert_eq!(verdicts[0], listed.contains(sid), "ListSessions and authd disagree on session {idx}");
        if verdicts[0] {
            live.insert(sid.clone());
        }
    }
    assert_eq!(session_keys(&s).await.len(), live.len(), "session keys in Redis ≠ live sessions");
    let revoked = r.revoked.len();
    assert!(
        revoked > 10 && !live.is_empty(),
        "the race did not exercise both sides: {revoked} revoked, {} live",
        live.len()
    );
    eprintln!(
        "phase 1: {} sessions, {revoked} known revoked, {} live, {} checks",
        r.creds.len(),
        live.len(),
        r.checks.len()
    );

    // Phase 2: DeleteClient while 60 tasks refresh and verify.
    let rec = Arc::new(Mutex::new(r));
    let deleted = Arc::new(Mutex::new(None::<(Instant, Instant)>));
    let mut tasks = Vec::new();
    for t in 0..60usize {
        let (s, rec, key, client_id, deleted) =
            (s.clone(), rec.clone(), key.clone(), client_id.clone(), deleted.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..8usize {
                if t % 3 == 0 {
                    let started = Instant::now();
                    let req = apb::CreateSessionRequest { client_id: client_id.clone() };
                    match s.authd.clients().create_session(authed(&key, req)).await {
                        Ok(r) => {
                            let after_delete = deleted.lock().unwrap().is_some_and(|(_, end)| started > end);
                            assert!(!after_delete, "a session was created for a deleted client");
                            let r = r.into_inner();
                            rec.lock().unwrap().add(r.token, r.session.expect("session").session_id, started);
                        }
                        Err(e) if matches!(e.code(), Code::NotFound | Code::ResourceExhausted) => {}
                        Err(e) => panic!("refresh: {e:?}"),
                    }
                } else {
                    let (idx, token) = {
                        let r = rec.lock().unwrap();
                        let idx = (t * 13 + i * 7) % r.creds.len();
                        (idx, r.creds[idx].0.clone())
                    };
                    let by = (t + i) % 3;
                    let start = Instant::now();
                    let accepted = session_accepted(&s, by, &token).await;
                    rec.lock().unwrap().checks.push(Check { cred: idx, by, start, end: Instant::now(), accepted });
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = Instant::now();
    let req = apb::DeleteClientRequest { client_id: client_id.clone() };
    s.authd.clients().delete_client(authed(&key, req)).await.expect("delete client");
    let after = Instant::now();
    *deleted.lock().unwrap() = Some((before, after));
    for t in tasks {
        t.await.expect("race task");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut r = std::mem::take(&mut *rec.lock().unwrap());
    // Deletion covers every session, whenever it was made: none may outlive it.
    for i in 0..r.creds.len() {
        r.revoke(i, after);
    }
    assert_never_accepted_after_revocation(&r);
    for (idx, (token, _)) in r.creds.iter().enumerate() {
        for by in 0..3 {
            assert!(!session_accepted(&s, by, token).await, "session {idx} of a deleted client accepted by {by}");
        }
    }
    let req = apb::GetClientRequest { client_id: client_id.clone() };
    let e = s.authd.clients().get_client(authed(&key, req)).await.expect_err("deleted client found");
    assert_eq!(e.code(), Code::NotFound);
    let keys = session_keys(&s).await;
    assert!(keys.is_empty(), "sessions revived after DeleteClient: {keys:?}");
    eprintln!("phase 2: {} sessions, {} checks", r.creds.len(), r.checks.len());
}

/// Whether `checker` accepts API key `key`.
async fn api_key_accepted(s: &Stack, by: Checker, key: &str) -> bool {
    if by == 0 {
        return s.authd.api_key_ok(key).await;
    }
    match s.replicas[by - 1].verify(key).await {
        Ok(_) => true,
        Err(e) => {
            cause(&e);
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_and_revoking_an_api_key_in_use() {
    let s = Arc::new(stack().await);
    let tenant = s.authd.tenant(None).await.tenant_id;
    let req = apb::CreateApiKeyRequest {
        tenant_id: tenant.clone(),
        environment: apb::Environment::Test.into(),
        name: "rolled".into(),
        scopes: vec![],
        expire_time: None,
    };
    let created =
        s.authd.admin().create_api_key(authed(&s.authd.operator, req)).await.expect("create key").into_inner();
    let old_id = created.api_key.expect("api key").key_id;
    let rec = Arc::new(Mutex::new(Record::default()));
    rec.lock().unwrap().add(created.secret, old_id.clone(), Instant::now());

    // 60 tasks use whichever keys exist, through authd and both replicas,
    // while the key is rolled with no grace and its successor then revoked.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..60usize {
        let (s, rec, stop) = (s.clone(), rec.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            // Bounded: at most 400 checks per task, ending with the roll and revoke.
            while i < 400 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (idx, key) = {
                    let r = rec.lock().unwrap();
                    let idx = (t + i) % r.creds.len();
                    (idx, r.creds[idx].0.clone())
                };
                let by = (t + i) % 3;
                let start = Instant::now();
                let accepted = api_key_accepted(&s, by, &key).await;
                rec.lock().unwrap().checks.push(Check { cred: idx, by, start, end: Instant::now(), accepted });
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let req = apb::RollApiKeyRequest {
        tenant_id: tenant.clone(),
        key_id: old_id.clone(),
        grace_period: Some(prost_types::Duration { seconds: 0, nanos: 0 }),
    };
    let started = Instant::now();
    let rolled = s.authd.admin().roll_api_key(authed(&s.authd.operator, req)).await.expect("roll").into_inner();
    let rolled_at = Instant::now();
    let new_id = rolled.api_key.expect("api key").key_id;
    {
        let mut r = rec.lock().unwrap();
        r.revoke(0, rolled_at);
        r.add(rolled.secret.clone(), new_id.clone(), started);
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let req = apb::RevokeApiKeyRequest { tenant_id: tenant, key_id: new_id, include_successor: false };
    let revoking = Instant::now();
    s.authd.admin().revoke_api_key(authed(&s.authd.operator, req)).await.expect("revoke successor");
    rec.lock().unwrap().revoke(1, Instant::now());
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.expect("key task");
    }

    let r = std::mem::take(&mut *rec.lock().unwrap());
    assert_never_accepted_after_revocation(&r);
    // The successor worked between the roll and its revocation, everywhere.
    let refused_new: Vec<&Check> = r
        .checks
        .iter()
        .filter(|c| c.cred == 1 && c.start > rolled_at && c.end < revoking)
        .filter(|c| !c.accepted)
        .collect();
    assert!(refused_new.is_empty(), "the new key was refused before its revocation: {refused_new:#?}");
    for (token, _) in &r.creds {
        for by in 0..3 {
            assert!(!api_key_accepted(&s, by, token).await, "a revoked API key is accepted by {by}");
        }
    }
    let e = s.authd.clients().get_client(authed(&r.creds[0].0, apb::GetClientRequest::default())).await.unwrap_err();
    assert_invalid_api_key(&e, "rolled key");
    let used_new = r.checks.iter().filter(|c| c.cred == 1 && c.accepted).count();
    assert!(used_new > 0, "the successor was never used during the race");
    eprintln!("api key race: {} checks, successor accepted {used_new} times", r.checks.len());
}
