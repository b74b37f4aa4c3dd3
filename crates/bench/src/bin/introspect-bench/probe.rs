//! `introspect-bench --cache-probe N`: run in a fresh child process, builds
//! N session entries exactly as a replica caches them (`cred_core::cache`)
//! and reports where the memory goes: the `Arc<Entry>` allocations alone,
//! then the cache's own per-slot cost once they are inserted.

use std::collections::BTreeMap;
use std::sync::Arc;

use cred_core::cache::{Cache, CacheOptions, CachedSession, Entry, Record};

use cred_core::clock::mono_ms;
use cred_core::clock::now_ms;
use cred_core::model::{Client, Environment, Session, Tenant, limits};
use cred_core::rng;
use cred_core::token::{Token, TokenKind};

use crate::sys;

/// Prints one line: `probe n=.. entry_size=.. arc_rss=.. cache_rss=..`
/// (RSS bytes per entry).
pub fn run(n: usize, capacity: usize) -> Result<(), String> {
    let pid = std::process::id();
    let rss = || sys::status_bytes(pid, "VmRSS").unwrap_or(0) as f64;
    let now = now_ms();
    let tenant = Arc::new(Tenant {
        id: rng::uuid(),
        name: "bench".into(),
        idle_timeout_ms: limits::DEFAULT_IDLE_MS,
        max_lifetime_ms: limits::DEFAULT_MAX_MS,
        created_at: now,
        revoked_before: None,
    });
    let cache = Cache::new(CacheOptions { capacity, ..CacheOptions::default() });
    // The key list is allocated up front so it is in both readings.
    let mut keys = Vec::with_capacity(n);
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        keys.push((rng::uuid(), rng::uuid()));
    }
    let r0 = rss();
    for &(client_id, session_id) in &keys {
        let token = Token::mint(TokenKind::Session, Environment::Test, client_id, session_id);
        let client = Client {
            id: client_id,
            tenant_id: tenant.id,
            env: Environment::Test,
            labels: BTreeMap::new(),
            created_at: now,
        };
        let session = Session {
            id: session_id,
            client_id,
            created_at: now,
            last_used: now,
            expires_at: Some(now + limits::DEFAULT_IDLE_MS),
            max_expires_at: Some(now + limits::DEFAULT_MAX_MS),
            hash: token.hash(),
        };
        let record = Record::Session(CachedSession::of(&client, &session));
        entries.push(Arc::new(Entry::new(record, tenant.clone(), mono_ms(), session.expires_at, session.last_used)));
    }
    let r1 = rss();
    for (k, e) in keys.iter().zip(entries.drain(..)) {
        cache.insert(*k, e);
    }
    drop(entries);
    let r2 = rss();
    println!(
        "probe n={n} entry_size={} cached={} arc_rss={:.1} cache_rss={:.1}",
        size_of::<Entry>(),
        cache.len(),
        (r1 - r0 - (n * size_of::<Arc<Entry>>()) as f64) / n as f64,
        (r2 - r1 + (n * size_of::<Arc<Entry>>()) as f64) / n as f64,
    );
    Ok(())
}
