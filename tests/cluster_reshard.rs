//! Slot migration under load, on a real 3-master Redis Cluster: the slots of
//! four clients and of their tenant are moved to another master key by key
//! (as `redis-cli --cluster reshard` does, but slowly, and with the index
//! keys first: the order in which a script that derives keys from an index
//! meets a moved index and unmoved sessions) while each client runs a
//! sequential mix of create, read, list, revoke and revoke-all, and the
//! tenant lists and revokes API keys and lists its clients. Every answer is checked against what
//! the caller already knows: a wrong one fails the test; during a move a
//! call may only fail UNAVAILABLE; once the moves are done, every call
//! succeeds and the state is exactly what was acknowledged.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cred_core::clock::now_ms;
use cred_core::error::StoreError;
use cred_core::model::{ApiKey, AuditEvent, Client, Environment, Scopes, SecretHash, Session, Tenant};
use cred_core::rng;
use cred_core::store::{CreateSession, RedisStore, Store};
use cred_core::token::short_id;
use cred_tests::redis_cluster::RedisCluster;
use uuid::Uuid;

/// Live sessions a client may hold here (low, so the prune path runs).
const MAX_LIVE: usize = 4;
/// Pause after each migrated key: long enough for several calls to meet the
/// slot half moved.
const PAUSE: Duration = Duration::from_millis(120);

fn session(client: Uuid) -> Session {
    let now = now_ms();
    Session {
        id: rng::uuid(),
        client_id: client,
        created_at: now,
        last_used: now,
        // Some sessions idle out within the run, so pruning has work to do.
        expires_at: Some(now + if rng::uuid().as_bytes()[0].is_multiple_of(3) { 300 } else { 600_000 }),
        max_expires_at: Some(now + 600_000),
        hash: SecretHash([9; 16]),
    }
}

fn api_key(tenant: Uuid) -> ApiKey {
    ApiKey {
        id: rng::uuid(),
        tenant_id: tenant,
        env: Environment::Production,
        name: "backend".into(),
        scopes: Scopes::parse(["clients.read"]).unwrap(),
        created_at: now_ms(),
        expires_at: None,
        successor: None,
        hash: SecretHash([7; 16]),
    }
}

/// What one worker saw.
#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    unavailable: usize,
    wrong: Vec<String>,
}

impl Tally {
    /// Counts `r`; an error other than UNAVAILABLE, or any error once `strict`
    /// (the moves are done), is a wrong answer.
    fn check<T>(&mut self, what: &str, r: Result<T, StoreError>, strict: bool) -> Option<T> {
        match r {
            Ok(v) => {
                self.ok += 1;
                Some(v)
            }
            Err(StoreError::Unavailable(_)) if !strict => {
                self.unavailable += 1;
                None
            }
            Err(e) => {
                self.wrong.push(format!("{what}: {e}"));
                None
            }
        }
    }

    fn wrong(&mut self, what: String) {
        self.wrong.push(what);
    }
}

/// One client's model: sessions acknowledged live (not known to have idled
/// out), acknowledged revoked, and those whose create or revoke failed
/// (either way is right for them).
#[derive(Default)]
struct Model {
    live: Vec<Session>,
    revoked: Vec<Uuid>,
    unknown: HashSet<Uuid>,
}

impl Model {
    /// Live sessions that cannot have idled out by now (a margin for clocks).
    fn surely_live(&self) -> Vec<Uuid> {
        let soon = now_ms() + 2_000;
        self.live.iter().filter(|s| s.expires_at.is_some_and(|x| x > soon)).map(|s| s.id).collect()
    }
}

/// One round of a client's mix; `strict` once the moves are done.
async fn round(store: &RedisStore, c: Uuid, m: &mut Model, t: &mut Tally, i: usize, strict: bool) {
    let s = session(c);
    match t.check("create_session", store.create_session(&s, MAX_LIVE).await, strict) {
        Some(CreateSession::Created) => m.live.push(s),
        Some(CreateSession::Full) => {
            // At most the acknowledged (some idled out) and the unknown exist.
            let most = m.live.len() + m.unknown.len();
            if most < MAX_LIVE {
                t.wrong(format!("create_session: Full, but at most {most} sessions can be live"));
            }
        }
        Some(CreateSession::NoClient) => t.wrong("create_session: no client".into()),
        None => {
            m.unknown.insert(s.id);
        }
    }
    // Every session known live reads as live; every revoked one as gone.
    for id in m.surely_live() {
        if let Some(l) = t.check("get_session", store.get_session(c, id).await, strict)
            && l.session.is_none()
        {
            t.wrong(format!("get_session: live session {id} read as {:?}", l.gone));
        }
    }
    for &id in m.revoked.iter().rev().take(4) {
        if let Some(l) = t.check("get_session", store.get_session(c, id).await, strict)
            && l.session.is_some()
        {
            t.wrong(format!("get_session: revoked session {id} read as live"));
        }
    }
    if let Some(list) = t.check("list_sessions", store.list_sessions(c, None, 1000).await.map(|p| p.items), strict) {
        let listed: HashSet<Uuid> = list.iter().map(|s| s.id).collect();
        for id in m.surely_live() {
            if !listed.contains(&id) {
                t.wrong(format!("list_sessions: live session {id} missing"));
            }
        }
        for id in &m.revoked {
            if listed.contains(id) {
                t.wrong(format!("list_sessions: revoked session {id} listed"));
            }
        }
    }
    if i % 10 == 9 {
        // Revoke everything: afterwards nothing created before reads as live.
        if let Some(n) = t.check("revoke_all_sessions", store.revoke_all_sessions(c).await, strict) {
            let known = m.surely_live().len();
            if (n as usize) < known {
                t.wrong(format!("revoke_all_sessions: {n} revoked, {known} were known live"));
            }
            m.revoked.extend(m.live.drain(..).map(|s| s.id));
            m.revoked.extend(m.unknown.drain());
        }
    } else if i.is_multiple_of(2)
        && let Some(id) = m.surely_live().first().copied()
    {
        match t.check("revoke_session", store.revoke_session(c, id).await, strict) {
            Some(true) => {
                m.live.retain(|s| s.id != id);
                m.revoked.push(id);
            }
            Some(false) => t.wrong(format!("revoke_session: live session {id} not found")),
            None => {
                m.live.retain(|s| s.id != id);
                m.unknown.insert(id);
            }
        }
    }
}

/// The tenant's mix: create a key, list (every acknowledged key there, no
/// revoked one), revoke the oldest; list the clients (exactly `clients`).
async fn tenant_round(
    store: &RedisStore,
    tenant: Uuid,
    clients: &HashSet<Uuid>,
    keys: &mut Vec<Uuid>,
    gone: &mut Vec<Uuid>,
    t: &mut Tally,
    strict: bool,
) {
    let k = api_key(tenant);
    if t.check("put_api_key", store.put_api_key(&k, u64::MAX).await, strict).is_some() {
        keys.push(k.id);
    }
    if let Some(list) = t.check("list_api_keys", store.list_api_keys(tenant, None, 1000).await.map(|p| p.items), strict)
    {
        let listed: HashSet<Uuid> = list.iter().map(|k| k.id).collect();
        for id in keys.iter() {
            if !listed.contains(id) {
                t.wrong(format!("list_api_keys: key {id} missing"));
            }
        }
        for id in gone.iter() {
            if listed.contains(id) {
                t.wrong(format!("list_api_keys: revoked key {id} listed"));
            }
        }
    }
    let listed = store.list_clients(tenant, None, None, 1000).await.map(|p| p.items);
    if let Some(list) = t.check("list_clients", listed, strict) {
        let listed: HashSet<Uuid> = list.iter().map(|c| c.id).collect();
        if &listed != clients {
            t.wrong(format!("list_clients: {listed:?}, not the tenant's clients {clients:?}"));
        }
    }
    if keys.len() > 3 {
        let id = keys.remove(0);
        match t.check("revoke_api_key", store.revoke_api_key(tenant, id).await, strict) {
            Some(Some(_)) => gone.push(id),
            Some(None) => t.wrong(format!("revoke_api_key: key {id} not found")),
            None => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_migrations_under_load_give_no_wrong_answer_and_all_green_after() {
    let cluster = Arc::new(RedisCluster::start(3, 0, 5_000));
    let store = cluster.store().await;
    let t = Tenant {
        id: rng::uuid(),
        name: "acme".into(),
        idle_timeout_ms: 600_000,
        max_lifetime_ms: 600_000,
        created_at: now_ms(),
        revoked_before: None,
        quotas: Default::default(),
    };
    store.put_tenant(&t).await.unwrap();
    let clients: Vec<Client> = (0..4)
        .map(|_| Client {
            id: rng::uuid(),
            tenant_id: t.id,
            env: Environment::Production,
            labels: Default::default(),
            created_at: now_ms(),
        })
        .collect();
    for c in &clients {
        let e = AuditEvent {
            id: String::new(),
            time: c.created_at,
            actor: "t".into(),
            action: "client.create".into(),
            tenant_id: t.id,
            subjects: vec![format!("client:{}", c.id)],
        };
        assert!(store.create_client_audited(c, None, &e, u64::MAX).await.unwrap());
    }

    let moving = Arc::new(AtomicBool::new(true));
    let mut workers = Vec::new();
    for c in clients.iter().map(|c| c.id) {
        let (store, moving) = (store.clone(), moving.clone());
        workers.push(tokio::spawn(async move {
            let (mut m, mut tally, mut i) = (Model::default(), Tally::default(), 0);
            while moving.load(Ordering::Acquire) {
                round(&store, c, &mut m, &mut tally, i, false).await;
                i += 1;
            }
            // All green after: every call succeeds and agrees with the model.
            for j in 0..8 {
                round(&store, c, &mut m, &mut tally, i + j, true).await;
            }
            (tally, i)
        }));
    }
    let tenant_worker = {
        let (store, moving, tenant) = (store.clone(), moving.clone(), t.id);
        let ours: HashSet<Uuid> = clients.iter().map(|c| c.id).collect();
        tokio::spawn(async move {
            let (mut keys, mut gone, mut tally, mut i) = (Vec::new(), Vec::new(), Tally::default(), 0);
            while moving.load(Ordering::Acquire) {
                tenant_round(&store, tenant, &ours, &mut keys, &mut gone, &mut tally, false).await;
                i += 1;
            }
            for _ in 0..8 {
                tenant_round(&store, tenant, &ours, &mut keys, &mut gone, &mut tally, true).await;
            }
            (tally, i)
        })
    };

    // Let the workers fill their slots, then move each slot to the next
    // master: index and revoked-set keys first, then the records.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let started = Instant::now();
    let tags: Vec<String> = std::iter::once(t.id).chain(clients.iter().map(|c| c.id)).map(short_id).collect();
    for tag in &tags {
        let tag_key = format!("{{{tag}}}");
        let (slot, from) = (cluster.slot_of(&tag_key), cluster.master_of(&tag_key));
        let masters: Vec<u16> = cluster.ports.clone();
        let to = masters[(masters.iter().position(|&p| p == from).unwrap() + 1) % masters.len()];
        let first = |k: &str| match k.split(':').next() {
            Some("si" | "ki" | "cd" | "cx") => 0,
            Some("sr" | "kr") => 1,
            Some("c" | "t") => 2,
            _ => 3,
        };
        cluster.move_slot(slot, from, to, PAUSE, first).await;
        assert_eq!(cluster.master_of(&tag_key), to, "slot {slot} did not move");
        eprintln!("slot {slot} ({tag}) moved {from} -> {to}");
    }
    eprintln!("{} slots moved in {:?}", tags.len(), started.elapsed());
    moving.store(false, Ordering::Release);

    let mut wrong = Vec::new();
    for w in workers.into_iter().chain(std::iter::once(tenant_worker)) {
        let (tally, rounds) = w.await.unwrap();
        eprintln!("worker: {rounds} rounds during the moves, {} calls ok, {} unavailable", tally.ok, tally.unavailable);
        assert!(rounds >= 5, "a worker ran only {rounds} rounds during the moves");
        wrong.extend(tally.wrong);
    }
    assert!(wrong.is_empty(), "{} wrong answers:\n{}", wrong.len(), wrong.join("\n"));
}
