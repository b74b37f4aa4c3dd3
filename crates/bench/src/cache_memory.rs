//! introspect-bench's figure e: memory per cached credential: a million
//! sessions written through the store, a fresh replica M verifying each once,
//! its RSS before and after; and the probe (`--cache-probe`) that splits the
//! figure, run in a fresh process: the entries alone, then the cache's own
//! cost per slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cred_core::cache::{Cache, CacheOptions, CachedSession, Entry, Record};
use cred_core::clock::{mono_ms, now_ms};
use cred_core::model::{Client, Environment, Session, Tenant, limits};
use cred_core::rng;
use cred_core::store::redis::RedisOptions;
use cred_core::store::{RedisStore, Store};
use tokio::task::JoinSet;

use crate::api::verify_ok;
use crate::proc_stats::{Cpu, Sample, hwm_bytes, rss_bytes};
use crate::process;
use crate::records::{self, client, session_and_token};
use crate::redis_info::{commandstats, dbsize, field, section};
use crate::stats::thousands;
use crate::summary::{Summary, verdict_max};
use crate::verify_env::Env;

/// Figure e.
pub const MEMORY_CREDENTIALS: usize = 1_000_000;
pub const MEMORY_CACHE_CAPACITY: usize = 1_100_000;
const FILL_TASKS: usize = 128;
const FILL_CONNECTIONS: usize = 4;
const VERIFY_TASKS: usize = 128;
const VERIFY_CONNECTIONS: usize = 4;
const FILL_LIMIT: Duration = Duration::from_secs(150);
const VERIFY_LIMIT: Duration = Duration::from_secs(180);
const SAMPLE: usize = 20_000;

/// Figure e.
pub async fn figure_e(env: &mut Env, sum: &mut Summary) -> Result<(), String> {
    println!(
        "\n== e. Memory per cached credential at {} cached: {} valid sessions written through \
         RedisStore::create_client ({FILL_TASKS} tasks over {FILL_CONNECTIONS} connections), a fresh replica M \
         with --cache-capacity {MEMORY_CACHE_CAPACITY} --cache-max-age-ms 600000 (so nothing ages out during the \
         fill), VmRSS before and after verifying every token once (passive, {VERIFY_TASKS} in flight over \
         {VERIFY_CONNECTIONS} connections)",
        thousands(env.credentials as u64),
        thousands(env.credentials as u64)
    );
    let t = Instant::now();
    let cpu0 = Sample::take(0, env.redis_pid);
    let tokens = fill(&env.url, &env.tenant, env.credentials).await?;
    let fill_time = t.elapsed();
    let fill_cpu = Sample::take(0, env.redis_pid).since(&cpu0);
    let dbsize = dbsize(&mut env.admin).await?;
    let info = section(&mut env.admin, "memory").await?;
    println!(
        "  wrote {} clients + sessions in {:.1} s ({:.0}/s); Redis now {} keys, used_memory {}",
        thousands(tokens.len() as u64),
        fill_time.as_secs_f64(),
        tokens.len() as f64 / fill_time.as_secs_f64(),
        thousands(dbsize),
        field(&info, "used_memory_human").unwrap_or("?")
    );
    println!("  {}", cpu_split(&fill_cpu, tokens.len(), fill_time, "-"));

    let extra: Vec<String> = ["--cache-capacity", &MEMORY_CACHE_CAPACITY.to_string(), "--cache-max-age-ms", "600000"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let m = process::start_introspect(
        &env.introspect_bin,
        "introspect-M",
        &env.url,
        &extra,
        env.rust_log.as_deref(),
        &env.dir,
    )
    .await?
    .proc;
    let mut clients = Vec::new();
    for _ in 0..VERIFY_CONNECTIONS {
        let mut c = m.client().await?;
        verify_ok(&mut c, &tokens[0], true).await?;
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = rss_bytes(m.pid).ok_or("no VmRSS")?;
    let tokens = Arc::new(tokens);
    let cpu0 = Sample::take(m.pid, env.redis_pid);
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for i in 0..VERIFY_TASKS {
        let (mut c, tokens, next) = (clients[i % VERIFY_CONNECTIONS].clone(), tokens.clone(), next.clone());
        set.spawn(async move {
            let (mut ok, mut err, mut first) = (0usize, 0usize, None);
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= tokens.len() || t.elapsed() > VERIFY_LIMIT {
                    break;
                }
                match verify_ok(&mut c, &tokens[k], true).await {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        err += 1;
                        first.get_or_insert(e);
                    }
                }
            }
            (ok, err, first)
        });
    }
    let (mut ok, mut err, mut first) = (0, 0, None);
    while let Some(r) = set.join_next().await {
        let (o, e, f) = r.map_err(|e| e.to_string())?;
        ok += o;
        err += e;
        if first.is_none() {
            first = f;
        }
    }
    let verify_time = t.elapsed();
    let verify_cpu = Sample::take(m.pid, env.redis_pid).since(&cpu0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = rss_bytes(m.pid).ok_or("no VmRSS")?;
    let hwm = hwm_bytes(m.pid).unwrap_or(0);
    println!(
        "  verified {} tokens ({} failed{}) in {:.1} s ({:.0}/s)",
        thousands(ok as u64),
        err,
        first.map_or(String::new(), |e| format!(", first: {e}")),
        verify_time.as_secs_f64(),
        ok as f64 / verify_time.as_secs_f64()
    );
    println!("  {}", cpu_split(&verify_cpu, ok, verify_time, "replica M"));

    // Are they all still cached? Re-verify a random sample; each miss is one
    // get_session pipeline, which is the only sender of PEXPIRETIME as a
    // top-level command (passive verifies write no touch).
    let before = commandstats(&mut env.admin).await?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut c = clients[0].clone();
    for _ in 0..SAMPLE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = (x % tokens.len() as u64) as usize;
        verify_ok(&mut c, &tokens[k], true).await?;
    }
    let after = commandstats(&mut env.admin).await?;
    let misses = after.get("pexpiretime").copied().unwrap_or(0) - before.get("pexpiretime").copied().unwrap_or(0);

    let delta = rss1 as f64 - rss0 as f64;
    let per = delta / ok.max(1) as f64;
    println!(
        "  VmRSS of M: {:.1} MiB before, {:.1} MiB after ({:.1} MiB peak); delta {:.1} MiB / {} = {per:.0} B per \
         cached credential; re-verifying {SAMPLE} random tokens took {misses} store reads ({:.2}% not cached)",
        rss0 as f64 / 1048576.0,
        rss1 as f64 / 1048576.0,
        hwm as f64 / 1048576.0,
        delta / 1048576.0,
        thousands(ok as u64),
        misses as f64 * 100.0 / SAMPLE as f64
    );
    let (cs, ss, ts) = (size_of::<Client>(), size_of::<Session>(), size_of::<Tenant>());
    println!(
        "  for scale: size_of Client {cs} B + Session {ss} B = {} B of records in every entry (the tenant, {ts} B, \
         is shared), before the entry's atomics, Arc header and allocator rounding, and the cache's per-slot \
         key (2 × 16 B UUIDs) + pointer + bookkeeping",
        cs + ss
    );
    // The same entries built in a fresh process, to split the figure.
    let probe = cache_probe(ok).await;
    match &probe {
        Ok(p) => println!(
            "  in-process probe (fresh process, the replica's own cache code, {} session entries): \
             size_of Entry {} B; each Arc<Entry> allocation costs {:.0} B of RSS (ArcInner = {} B + malloc \
             header and rounding); the cache's slot, hash index and bookkeeping {:.0} B more; together {:.0} B, \
             the rest of the replica's {per:.0} B is its request path (buffers, allocator arenas)",
            thousands(p.n as u64),
            p.entry_size,
            p.arc_rss,
            p.entry_size + 16.0,
            p.cache_rss,
            p.arc_rss + p.cache_rss
        ),
        Err(e) => println!("  in-process probe failed: {e}"),
    }
    sum.row(
        &format!("e. memory per cached credential ({})", thousands(ok as u64)),
        format!("{per:.0} B (VmRSS +{:.0} MiB for {} entries)", delta / 1048576.0, thousands(ok as u64)),
        "<= 256 B",
        if ok < env.credentials {
            format!("INCOMPLETE ({ok}); {}", verdict_max(per, 256.0, " B"))
        } else {
            verdict_max(per, 256.0, " B")
        },
    );
    if per > 256.0 {
        let split = probe.as_ref().map_or(String::new(), |p| {
            format!(
                ": the Arc<Entry> allocation {:.0} B (Entry is {} B, of which the copied Client {cs} B + Session \
                 {ss} B records) + the cache slot {:.0} B, measured apart in a fresh process",
                p.arc_rss, p.entry_size, p.cache_rss
            )
        });
        sum.limits.push(format!(
            "e: {per:.0} B per cached credential{split}. The records duplicate the key's ids (client and session \
             ids twice, the tenant id beside the shared tenant) and carry fields a verify never reads again \
             (client created_at, last_used, the Option expiry that the atomic expires_at replaces); a slim \
             entry (hash, env, created, cap, labels behind a shared pointer, the atomics) stored without its own \
             Arc allocation would fit the target"
        ));
    }
    println!("  (fill {:.1} s + verify {:.1} s)", fill_time.as_secs_f64(), verify_time.as_secs_f64());
    m.stop().await;
    let _: () = redis::cmd("FLUSHALL").arg("ASYNC").query_async(&mut env.admin).await.map_err(|e| e.to_string())?;
    Ok(())
}

struct Probe {
    n: usize,
    entry_size: f64,
    arc_rss: f64,
    cache_rss: f64,
}

/// Runs `introspect-bench --cache-probe n` in a child process (bounded).
async fn cache_probe(n: usize) -> Result<Probe, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(me).arg("--cache-probe").arg(n.to_string()).kill_on_drop(true).output(),
    )
    .await
    .map_err(|_| "probe took over 60 s")?
    .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("probe "))
        .ok_or_else(|| format!("probe printed nothing ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)))?;
    let get = |k: &str| -> f64 {
        line.split_whitespace().find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok()).unwrap_or(f64::NAN)
    };
    Ok(Probe { n, entry_size: get("entry_size"), arc_rss: get("arc_rss"), cache_rss: get("cache_rss") })
}

/// Writes `credentials` clients with one session each, as
/// `Authority::create_client` builds them, and returns the tokens.
async fn fill(url: &str, tenant: &Tenant, credentials: usize) -> Result<Vec<String>, String> {
    let mut stores = Vec::new();
    for _ in 0..FILL_CONNECTIONS {
        stores.push(RedisStore::connect(url, RedisOptions::default()).await.map_err(|e| e.to_string())?);
    }
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for i in 0..FILL_TASKS {
        let (store, tenant, next) = (stores[i % FILL_CONNECTIONS].clone(), tenant.clone(), next.clone());
        set.spawn(async move {
            let mut out = Vec::with_capacity(credentials / FILL_TASKS + 1);
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= credentials {
                    break;
                }
                if t.elapsed() > FILL_LIMIT {
                    return Err(format!("fill not done within {FILL_LIMIT:?}"));
                }
                let c = client(&tenant, Environment::Production);
                let (s, token) = session_and_token(&tenant, Environment::Production, c.id);
                store.create_client(&c, Some(&s)).await.map_err(|e| format!("create_client: {e}"))?;
                out.push(token.expose());
            }
            Ok::<_, String>(out)
        });
    }
    let mut tokens = Vec::with_capacity(credentials);
    while let Some(r) = set.join_next().await {
        tokens.extend(r.map_err(|e| e.to_string())??);
    }
    Ok(tokens)
}

/// CPU per item by process, and cores busy.
fn cpu_split(c: &Cpu, n: usize, wall: Duration, server: &str) -> String {
    let per = |s: f64| s * 1e6 / n.max(1) as f64;
    let w = wall.as_secs_f64();
    format!(
        "CPU µs per item: bench process (client side) {:.1}, {server} {:.1}, redis {:.1}; cores busy: ours {:.2}, \
         rest of the machine {:.2}",
        per(c.bench + c.h2load),
        per(c.server),
        per(c.redis),
        (c.bench + c.h2load + c.server + c.redis) / w,
        c.others / w
    )
}

/// `introspect-bench --cache-probe N`, in a fresh child process: builds N
/// session entries exactly as a replica caches them and prints one line:
/// `probe n=.. entry_size=.. arc_rss=.. cache_rss=..`
/// (RSS bytes per entry).
pub fn probe(n: usize, capacity: usize) -> Result<(), String> {
    let pid = std::process::id();
    let rss = || rss_bytes(pid).unwrap_or(0) as f64;
    let now = now_ms();
    let tenant = Arc::new(Tenant {
        id: rng::uuid(),
        name: "bench".into(),
        idle_timeout_ms: limits::DEFAULT_IDLE_MS,
        max_lifetime_ms: limits::DEFAULT_MAX_MS,
        created_at: now,
        revoked_before: None,
        quotas: Default::default(),
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
        let client = Client { id: client_id, ..records::client(&tenant, Environment::Test) };
        let (session, _) = records::session_and_token(&tenant, Environment::Test, client_id);
        let session = Session { id: session_id, ..session };
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
