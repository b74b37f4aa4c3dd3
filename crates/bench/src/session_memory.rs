//! cred-bench's figure B, "memory per live session": Redis `used_memory`
//! before and after 100,000 sessions written through `RedisStore`, in two
//! layouts (1,000 clients × 100 sessions; 100,000 clients × 1 session), with
//! the types, encodings and sizes of sample keys. Clients are written as
//! CreateClient writes them (`create_client_audited`: the client, its first
//! session, its entry in the tenant's client index and the count); the audit
//! stream it appends to is deleted before each reading (capped at 10,000
//! events, it is a per-tenant constant, not a per-session cost).

use std::fmt::Write as _;
use std::sync::Arc;

use cred_core::clock::now_ms;
use cred_core::model::{AuditEvent, Client, Environment, Session, Tenant, limits};
use cred_core::rng;
use cred_core::store::redis::RedisOptions;
use cred_core::store::{CreateSession, RedisStore, Store};
use cred_core::token::short_id;
use redis::aio::MultiplexedConnection;

use crate::drive::drive;
use crate::mint::{SETUP_LIMIT, TASKS};
use crate::records::{client, session};
use crate::redis_info::{dbsize, flush, memory_stats, used_memory};

/// Sessions in each layout.
const MEMORY_SESSIONS: usize = 100_000;
/// The first layout: this many clients, each with this many sessions.
const MEMORY_CLIENTS: usize = 1_000;

pub struct Layout {
    name: &'static str,
    sessions: usize,
    /// `used_memory` delta of the whole layout.
    total: i64,
    /// Part of `total` that is not session records and indexes (client
    /// hashes), measured separately.
    clients: i64,
    keys: u64,
    samples: Vec<String>,
    stats: String,
}

impl Layout {
    fn per_session_all(&self) -> f64 {
        self.total as f64 / self.sessions as f64
    }
    fn per_session_only(&self) -> f64 {
        (self.total - self.clients) as f64 / self.sessions as f64
    }
}

/// Runs figure B on Redis at `url` (flushed before and after each layout).
pub async fn figure_b(url: &str, admin: &mut MultiplexedConnection) -> Result<Vec<Layout>, String> {
    println!(
        "\n== Figure B: Redis memory per live session ({MEMORY_SESSIONS} sessions, written \
         through RedisStore as authd writes them, client index included; the audit stream deleted \
         before each reading)"
    );
    let store =
        RedisStore::connect(url, RedisOptions::default()).await.map_err(|e| format!("connecting the store: {e}"))?;
    let tenant = Tenant {
        id: rng::uuid(),
        name: "bench-memory".into(),
        idle_timeout_ms: limits::DEFAULT_IDLE_MS,
        max_lifetime_ms: limits::DEFAULT_MAX_MS,
        created_at: now_ms(),
        revoked_before: None,
        quotas: Default::default(),
    };
    let env = Environment::Production;
    let mut layouts = Vec::new();

    // Layout 1: MEMORY_CLIENTS clients × (MEMORY_SESSIONS / MEMORY_CLIENTS)
    // sessions, the sessions added with the create-session script.
    fresh(admin, &store, &tenant).await?;
    let m0 = used_memory(admin).await?;
    let clients: Arc<Vec<Client>> = Arc::new((0..MEMORY_CLIENTS).map(|_| client(&tenant, env)).collect());
    create_clients(&store, clients.clone()).await?;
    drop_audit(admin, &tenant).await?;
    let m1 = used_memory(admin).await?;
    let sessions: Arc<Vec<Session>> =
        Arc::new((0..MEMORY_SESSIONS).map(|i| session(&tenant, env, clients[i % MEMORY_CLIENTS].id)).collect());
    let op = {
        let (store, sessions) = (store.clone(), sessions.clone());
        Arc::new(move |_task: usize, i: usize| {
            let (store, sessions) = (store.clone(), sessions.clone());
            async move {
                match store.create_session(&sessions[i], limits::SESSIONS_PER_CLIENT).await {
                    Ok(CreateSession::Created) => Ok(()),
                    Ok(other) => Err(format!("{other:?}")),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
    };
    drive(TASKS, 0, MEMORY_SESSIONS, SETUP_LIMIT, op).await.require_all(MEMORY_SESSIONS, "creating sessions")?;
    let m2 = used_memory(admin).await?;
    let l = Layout {
        name: "1,000 clients × 100 sessions",
        sessions: MEMORY_SESSIONS,
        total: m2 - m0,
        clients: m1 - m0,
        keys: dbsize(admin).await?,
        samples: samples(admin, tenant.id, clients[0].id).await?,
        stats: memory_stats(admin).await?,
    };
    print_layout(&l);
    layouts.push(l);
    drop(sessions);

    // Layout 2: MEMORY_SESSIONS clients × 1 session, written by
    // create_client with its first session (one MULTI each). The client
    // hashes alone are measured in a separate fill of clients only.
    fresh(admin, &store, &tenant).await?;
    let c0 = used_memory(admin).await?;
    let clients: Arc<Vec<Client>> = Arc::new((0..MEMORY_SESSIONS).map(|_| client(&tenant, env)).collect());
    create_clients(&store, clients).await?;
    drop_audit(admin, &tenant).await?;
    let c1 = used_memory(admin).await?;

    fresh(admin, &store, &tenant).await?;
    let m0 = used_memory(admin).await?;
    let records: Arc<Vec<(Client, Session)>> = Arc::new(
        (0..MEMORY_SESSIONS)
            .map(|_| {
                let c = client(&tenant, env);
                let s = session(&tenant, env, c.id);
                (c, s)
            })
            .collect(),
    );
    let op = {
        let (store, records) = (store.clone(), records.clone());
        Arc::new(move |_task: usize, i: usize| {
            let (store, records) = (store.clone(), records.clone());
            async move {
                let (c, s) = &records[i];
                let c = stamped(c);
                created(store.create_client_audited(&c, Some(s), &event(&c), u64::MAX).await)
            }
        })
    };
    drive(TASKS, 0, MEMORY_SESSIONS, SETUP_LIMIT, op)
        .await
        .require_all(MEMORY_SESSIONS, "creating clients with sessions")?;
    drop_audit(admin, &tenant).await?;
    let m1 = used_memory(admin).await?;
    let l = Layout {
        name: "100,000 clients × 1 session",
        sessions: MEMORY_SESSIONS,
        total: m1 - m0,
        clients: c1 - c0,
        keys: dbsize(admin).await?,
        samples: samples(admin, tenant.id, records[0].0.id).await?,
        stats: memory_stats(admin).await?,
    };
    print_layout(&l);
    layouts.push(l);
    flush(admin).await?;
    Ok(layouts)
}

/// An empty Redis but for the tenant's record (the client count lives on it).
async fn fresh(admin: &mut MultiplexedConnection, store: &RedisStore, tenant: &Tenant) -> Result<(), String> {
    flush(admin).await?;
    store.put_tenant(tenant).await.map_err(|e| format!("put_tenant: {e}"))
}

/// Deletes the tenant's audit stream (a capped per-tenant constant).
async fn drop_audit(admin: &mut MultiplexedConnection, tenant: &Tenant) -> Result<(), String> {
    let _: i64 = redis::cmd("DEL")
        .arg(format!("a:{{{}}}", short_id(tenant.id)))
        .query_async(admin)
        .await
        .map_err(|e| format!("DEL audit stream: {e}"))?;
    Ok(())
}

/// The audit event CreateClient writes with `c`.
fn event(c: &Client) -> AuditEvent {
    AuditEvent {
        id: String::new(),
        time: c.created_at,
        actor: "api_key:bench".into(),
        action: "client.create".into(),
        tenant_id: c.tenant_id,
        subjects: vec![format!("client:{}", c.id)],
    }
}

fn created(r: Result<bool, cred_core::error::StoreError>) -> Result<(), String> {
    match r {
        Ok(true) => Ok(()),
        Ok(false) => Err("over the client quota".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes client records (no sessions) as CreateClient does, from `TASKS`
/// concurrent tasks.
async fn create_clients(store: &RedisStore, clients: Arc<Vec<Client>>) -> Result<(), String> {
    let n = clients.len();
    let op = {
        let store = store.clone();
        Arc::new(move |_task: usize, i: usize| {
            let (store, clients) = (store.clone(), clients.clone());
            async move {
                let c = stamped(&clients[i]);
                created(store.create_client_audited(&c, None, &event(&c), u64::MAX).await)
            }
        })
    };
    drive(TASKS, 0, n, SETUP_LIMIT, op).await.require_all(n, "creating clients")
}

/// `c` created now, as authd stamps a client when it creates it (records
/// built ahead would share a few milliseconds between 100,000 clients, a
/// load no mint makes).
fn stamped(c: &Client) -> Client {
    Client { created_at: now_ms(), ..c.clone() }
}

fn print_layout(l: &Layout) {
    println!(
        "{}: {} keys; used_memory +{} B in all = {:.0} B per session; \
         client hashes alone +{} B ({:.1} B per session), so session record + index = {:.0} B per session",
        l.name,
        l.keys,
        l.total,
        l.per_session_all(),
        l.clients,
        l.clients as f64 / l.sessions as f64,
        l.per_session_only(),
    );
    for s in &l.samples {
        println!("  {s}");
    }
    println!("  {}", l.stats);
}

/// Type, size, `OBJECT ENCODING`, `MEMORY USAGE` and TTL of one client's
/// hash (its sessions are fields of it) and of the tenant's client index:
/// its directory and its first bucket.
async fn samples(
    admin: &mut MultiplexedConnection,
    tenant: uuid::Uuid,
    client: uuid::Uuid,
) -> Result<Vec<String>, String> {
    let (c, t) = (short_id(client), short_id(tenant));
    let dir = format!("cd:{{{t}}}:p");
    let first: Vec<String> = redis::cmd("ZRANGE")
        .arg(&dir)
        .arg(0)
        .arg(0)
        .query_async(admin)
        .await
        .map_err(|e| format!("ZRANGE {dir}: {e}"))?;
    // A directory member is the bucket's low id (22 characters), then its name.
    let bucket = format!("cx:{{{t}}}:p:{}", first.first().and_then(|m| m.get(22..)).unwrap_or(""));
    let keys = [format!("c:{{{c}}}"), dir, bucket];
    let mut out = Vec::new();
    for k in keys {
        let usage: Option<i64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&k)
            .arg("SAMPLES")
            .arg(0)
            .query_async(admin)
            .await
            .map_err(|e| format!("MEMORY USAGE {k}: {e}"))?;
        let enc: Option<String> = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(&k)
            .query_async(admin)
            .await
            .map_err(|e| format!("OBJECT ENCODING {k}: {e}"))?;
        let ty: String = redis::cmd("TYPE").arg(&k).query_async(admin).await.map_err(|e| format!("TYPE {k}: {e}"))?;
        // A client is a hash, a session one fixed-width string, the index's
        // directory and buckets sorted sets.
        let (len_cmd, unit) = match ty.as_str() {
            "hash" => (Some("HLEN"), "fields"),
            "zset" => (Some("ZCARD"), "members"),
            "string" => (Some("STRLEN"), "bytes"),
            _ => (None, ""),
        };
        let size = match len_cmd {
            Some(c) => {
                let n: i64 = redis::cmd(c).arg(&k).query_async(admin).await.map_err(|e| format!("{c} {k}: {e}"))?;
                format!("{n} {unit}")
            }
            None => "-".into(),
        };
        let ttl: i64 = redis::cmd("PTTL").arg(&k).query_async(admin).await.map_err(|e| format!("PTTL {k}: {e}"))?;
        out.push(format!(
            "{k:<52} {ty:<6} {size:>11}  encoding {:<9}  MEMORY USAGE {:>5} B  {}",
            enc.unwrap_or_else(|| "-".into()),
            usage.map_or_else(|| "-".into(), |u| u.to_string()),
            if ttl >= 0 { "TTL set" } else { "no TTL" },
        ));
    }
    Ok(out)
}

/// The figure's part of the summary.
pub fn summary(b: &[Layout], o: &mut String) {
    let _ = writeln!(
        o,
        "\nFigure B: Redis memory per live session (used_memory delta / {MEMORY_SESSIONS}; \
         records as authd writes them, client index included, audit stream deleted; target <= 256 B)"
    );
    let _ = writeln!(
        o,
        "{:<30} {:>8} {:>14} {:>17} {:>26}",
        "layout", "keys", "used_memory +", "B / session, all", "B / session excl. clients"
    );
    for l in b {
        let _ = writeln!(
            o,
            "{:<30} {:>8} {:>14} {:>17.0} {:>26.0}   ({})",
            l.name,
            l.keys,
            l.total,
            l.per_session_all(),
            l.per_session_only(),
            if l.per_session_all() <= 256.0 { "<= 256: met" } else { "> 256: NOT met" }
        );
    }
}
