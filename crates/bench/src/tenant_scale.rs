//! Figure C: the largest single Redis command while one tenant holds 20,000
//! API keys and 100,000 clients (target <= 10 ms), read from Redis' SLOWLOG
//! (every command over 100 µs, as Redis timed it: no network, no client).
//!
//! The tenant's records are written through the store as `Authority` writes
//! them (8 writers at a time), then every operation whose work could grow
//! with a tenant runs at that size through `Authority`: every page of
//! ListApiKeys and of ListClients (1,000 a page), the move of a pre-sorted-set API key index of
//! 20,000 members, API key revokes and rolls, and on 1,000 clients a session
//! mint, ListSessions, RevokeAllSessions and DeleteClient; then the tenant's
//! revoke-before. Bounded in count; the run ends by itself.

use std::time::Instant;

use cred_core::Authority;
use cred_core::authority::{NewApiKey, PageRequest};
use cred_core::model::{AuditEvent, Environment, Quotas, Scopes};
use cred_core::store::redis::RedisOptions;
use cred_core::store::{RedisStore, Store};
use cred_core::token::short_id;
use futures::StreamExt;
use redis::aio::MultiplexedConnection;

use crate::records;

/// API keys and clients of the one tenant.
pub const API_KEYS: usize = 20_000;
pub const CLIENTS: usize = 100_000;
/// The target for the largest single command, in µs.
pub const TARGET_US: u64 = 10_000;

/// What the figure found.
pub struct TenantScale {
    /// The slowest command: microseconds and its name with its first key.
    pub slowest_us: u64,
    pub slowest: String,
    /// Commands over 100 µs, of how many run.
    pub over_100us: usize,
    pub commands: u64,
}

impl TenantScale {
    /// Appends this figure's lines to the summary.
    pub fn summary(&self, out: &mut String) {
        let verdict = if self.slowest_us <= TARGET_US { "met" } else { "NOT met" };
        out.push_str(&format!(
            "C. largest single Redis command, 20,000 API keys + 100,000 clients in one tenant: {} µs ({}); \
             target <= {} µs: {verdict} ({} of {} commands over 100 µs)\n",
            self.slowest_us, self.slowest, TARGET_US, self.over_100us, self.commands
        ));
    }
}

async fn cmd(admin: &mut MultiplexedConnection, args: &[&str]) -> Result<redis::Value, String> {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(admin).await.map_err(|e| format!("{args:?}: {e}"))
}

/// Figure C against the Redis at `url`.
pub async fn figure_c(url: &str, admin: &mut MultiplexedConnection) -> Result<TenantScale, String> {
    println!("\n== C. one tenant with {API_KEYS} API keys and {CLIENTS} clients: the largest single Redis command");
    let store = RedisStore::connect(url, RedisOptions::default()).await.map_err(|e| e.to_string())?;
    let authority = Authority::new(store.clone());
    let quotas = Quotas { api_keys: API_KEYS as u64 + 10, clients: CLIENTS as u64 + 10, ..Quotas::default() };
    let tenant =
        authority.create_tenant("bench", "scale".into(), None, None, quotas).await.map_err(|e| e.to_string())?;
    let env = Environment::Production;

    // Fill: API keys through Authority (hashes and index as it writes them),
    // clients through the store's audited create (the mint's one write).
    let t0 = Instant::now();
    let made: Vec<Result<uuid::Uuid, String>> = futures::stream::iter(0..API_KEYS)
        .map(|i| {
            let authority = authority.clone();
            async move {
                let req = NewApiKey {
                    tenant_id: tenant.id,
                    env,
                    name: format!("k{i}"),
                    scopes: Scopes::default(),
                    expires_at: None,
                };
                authority.create_api_key("bench", req).await.map(|k| k.record.id).map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let keys: Vec<uuid::Uuid> = made.into_iter().collect::<Result<_, _>>()?;
    let made: Vec<Result<uuid::Uuid, String>> = futures::stream::iter(0..CLIENTS)
        .map(|_| {
            let (store, tenant) = (store.clone(), tenant.clone());
            async move {
                let c = records::client(&tenant, env);
                let s = records::session(&tenant, env, c.id);
                let e = AuditEvent {
                    id: String::new(),
                    time: c.created_at,
                    actor: "bench".into(),
                    action: "client.create".into(),
                    tenant_id: tenant.id,
                    subjects: vec![format!("client:{}", c.id)],
                };
                match store.create_client_audited(&c, Some(&s), &e, tenant.quotas.clients).await {
                    Ok(true) => Ok(c.id),
                    Ok(false) => Err("over the client quota".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let clients: Vec<uuid::Uuid> = made.into_iter().collect::<Result<_, _>>()?;
    println!(
        "  written in {:.1} s: {} API keys, {} clients with a session each",
        t0.elapsed().as_secs_f64(),
        keys.len(),
        clients.len()
    );

    // As an older authd left it: the same 20,000 ids in the set index too.
    let tag = short_id(tenant.id);
    for chunk in keys.chunks(1000) {
        let mut c = redis::cmd("SADD");
        c.arg(format!("ki:{{{tag}}}"));
        for k in chunk {
            c.arg(short_id(*k));
        }
        let _: i64 = c.query_async(admin).await.map_err(|e| format!("SADD: {e}"))?;
    }

    cmd(admin, &["CONFIG", "SET", "slowlog-log-slower-than", "100"]).await?;
    cmd(admin, &["CONFIG", "SET", "slowlog-max-len", "100000"]).await?;
    cmd(admin, &["SLOWLOG", "RESET"]).await?;
    cmd(admin, &["CONFIG", "RESETSTAT"]).await?;
    let t1 = Instant::now();

    // Every page of ListApiKeys (the first also moves the set index).
    let (mut token, mut listed, mut pages) = (String::new(), 0, 0);
    loop {
        let page = PageRequest { token: &token, size: 1000 };
        let l = authority.list_api_keys(tenant.id, page).await.map_err(|e| e.to_string())?;
        listed += l.items.len();
        pages += 1;
        token = l.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    // Every page of ListClients (both environments: two indexes merged).
    let (mut token, mut listed_clients, mut client_pages) = (String::new(), 0, 0);
    loop {
        let page = PageRequest { token: &token, size: 1000 };
        let l = authority.list_clients(tenant.id, None, page).await.map_err(|e| e.to_string())?;
        listed_clients += l.items.len();
        client_pages += 1;
        token = l.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    if listed_clients != clients.len() {
        return Err(format!("ListClients listed {listed_clients} of {} clients", clients.len()));
    }
    for k in keys.iter().take(100) {
        authority.revoke_api_key("bench", tenant.id, *k, false).await.map_err(|e| e.to_string())?;
    }
    for k in keys.iter().skip(100).take(10) {
        authority.roll_api_key("bench", tenant.id, *k, 0).await.map_err(|e| e.to_string())?;
    }
    for c in clients.iter().take(1000) {
        let s = records::session(&tenant, env, *c);
        store.create_session(&s, 100).await.map_err(|e| e.to_string())?;
        store.list_sessions(*c, None, 1000).await.map_err(|e| e.to_string())?;
        store.revoke_all_sessions(*c).await.map_err(|e| e.to_string())?;
        let client = store.get_client(*c).await.map_err(|e| e.to_string())?.ok_or("client gone")?;
        store.delete_client(*c).await.map_err(|e| e.to_string())?;
        store.uncount_client(&client).await.map_err(|e| e.to_string())?;
    }
    authority.revoke_tenant_before("bench", tenant.id, None).await.map_err(|e| e.to_string())?;
    println!(
        "  {pages} pages of ListApiKeys ({listed} keys), {client_pages} of ListClients ({listed_clients} clients), 100 revokes, 10 rolls, 1,000 clients minted/listed/revoked/deleted, one revoke-before, in {:.1} s",
        t1.elapsed().as_secs_f64()
    );

    let log: Vec<(i64, i64, i64, Vec<String>)> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(100_000)
        .query_async::<Vec<redis::Value>>(admin)
        .await
        .map_err(|e| format!("SLOWLOG GET: {e}"))?
        .into_iter()
        .filter_map(|entry| {
            let redis::Value::Array(f) = entry else { return None };
            let int = |v: &redis::Value| if let redis::Value::Int(n) = v { Some(*n) } else { None };
            let args = match f.get(3)? {
                redis::Value::Array(a) => a
                    .iter()
                    .take(3)
                    .map(|v| match v {
                        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                        other => format!("{other:?}"),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Some((int(f.first()?)?, int(f.get(1)?)?, int(f.get(2)?)?, args))
        })
        .collect();
    let commands = crate::redis_info::commandstats(admin).await?.values().sum();
    let slowest = log.iter().max_by_key(|e| e.2);
    let (slowest_us, slowest) = slowest.map_or((0, "none over 100 µs".to_string()), |e| (e.2 as u64, e.3.join(" ")));
    println!("  SLOWLOG: {} commands over 100 µs of {commands}; the slowest {slowest_us} µs: {slowest}", log.len());
    let mut by: Vec<&(i64, i64, i64, Vec<String>)> = log.iter().collect();
    by.sort_by_key(|e| -e.2);
    for e in by.iter().take(5) {
        println!("    {:>6} µs  {}", e.2, e.3.join(" "));
    }
    // The slowest of each command name, so that a listing's own commands
    // (ZRANGE, HGETALL, ZREM of ListClients) show beside the scripts.
    let mut named = std::collections::BTreeMap::new();
    for e in &log {
        let name = e.3.first().map_or("?", String::as_str).to_ascii_uppercase();
        let worst = named.entry(name).or_insert((0, 0));
        *worst = (worst.0.max(e.2), worst.1 + 1);
    }
    let named: Vec<String> = named.iter().map(|(n, (us, k))| format!("{n} {us} µs ({k} over 100 µs)")).collect();
    println!("  slowest by command: {}", named.join(", "));
    cmd(admin, &["CONFIG", "SET", "slowlog-log-slower-than", "10000"]).await?;
    Ok(TenantScale { slowest_us, slowest, over_100us: log.len(), commands })
}
