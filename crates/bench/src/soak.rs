//! Soak: a fixed-rate mixed load (mint, verify, refresh, revoke) against real
//! `redis-server`, `authd` and `introspect` processes on loopback, for a
//! bounded time. Reports every error (target 0) and the RSS of each process,
//! sampled every `--sample-secs` (target: flat).
//!
//! Each cycle of ten operations: CreateClient (a new client and its first
//! session), CreateSession (a further login of a pooled client), five
//! introspect Verify (activity), one GetCurrentSession on authd (activity:
//! slides the idle expiry, i.e. a refresh), one RevokeSession, one
//! DeleteClient; while fewer sessions (clients) than at the start are live,
//! the RevokeSession (DeleteClient) gives way to a CreateSession
//! (CreateClient), so both stay near their initial number and the memory of
//! every process should stay flat, but for Redis' records of recent
//! revocations (kept a day past each session's cap, by design). A
//! revoked or deleted token is checked refused by authd at once and by
//! introspect two seconds later (push propagation); an acceptance counts
//! as an error ("wrong answer").
//!
//! Usage (the `soak` binary): `soak [--duration-secs 600] [--rate 200]
//! [--sample-secs 60]`; needs the release `authd` and `introspect` next to it
//! (run `crates/bench/soak.sh`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cred_core::operator::OperatorSecret;
use cred_proto::authd::v1 as pb;
use cred_proto::introspect::v1 as ipb;
use ipb::introspect_service_client::IntrospectServiceClient;
use pb::client_service_client::ClientServiceClient;
use pb::session_service_client::SessionServiceClient;
use tokio::process::Command;
use tonic::Code;
use tonic::transport::Channel;

use crate::api::{authed, new_tenant};
use crate::proc_stats::rss_bytes;
use crate::process::{Proc, free_port, sibling, spawn};
use crate::redis_info::{self, admin_connection, count_keys};
use crate::redis_server::RedisServer;

/// `bin serve --listen 127.0.0.1:<free> <args>` at the shipped log level
/// (`RUST_LOG` unset), its log in `logs`.
fn start(bin: &Path, args: &[String], logs: &Path, name: &str) -> Result<Proc, String> {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let mut cmd = Command::new(bin);
    cmd.arg("serve").args(["--listen", &format!("{addr}")]).args(args).env_remove("RUST_LOG");
    spawn(cmd, name, addr, &logs.join(format!("{name}.log")))
}

/// Calls in flight at most; a tick that finds them all busy is counted as
/// shed (the servers fell behind the fixed rate).
const MAX_IN_FLIGHT: usize = 256;
/// Clients created before the load starts, so verifies have a pool.
const PREFILL: usize = 200;

struct Config {
    duration: Duration,
    rate: u32,
    sample: Duration,
}

fn parse_args() -> Result<Config, String> {
    let mut c = Config { duration: Duration::from_secs(600), rate: 200, sample: Duration::from_secs(60) };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| format!("{name}: `{v}` is not a positive integer"))
        };
        match a.as_str() {
            "--duration-secs" => c.duration = Duration::from_secs(num("--duration-secs")?),
            "--rate" => c.rate = u32::try_from(num("--rate")?).map_err(|_| "--rate: too large".to_string())?,
            "--sample-secs" => c.sample = Duration::from_secs(num("--sample-secs")?),
            "-h" | "--help" => {
                println!("soak [--duration-secs 600] [--rate 200 (operations/s)] [--sample-secs 60]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    Ok(c)
}

/// The soak binary's `main`: exits 0 without errors, 1 with, 2 if it
/// could not run.
pub fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().thread_name("soak").enable_all().build();
    let code = match rt.map_err(|e| format!("tokio runtime: {e}")).and_then(|rt| rt.block_on(run())) {
        Ok(0) => 0,
        Ok(errors) => {
            eprintln!("soak: {errors} errors");
            1
        }
        Err(e) => {
            eprintln!("soak: {e}");
            2
        }
    };
    std::process::exit(code);
}

// ----------------------------------------------------------------- load

/// A live session the load may use.
#[derive(Clone)]
struct Live {
    client_id: String,
    session_id: String,
    token: String,
}

/// The clients and sessions the load may use.
#[derive(Default)]
struct Pool {
    live: Vec<Live>,
    /// Clients not deleted (with or without live sessions).
    clients: Vec<String>,
    /// Clients deleted (or being deleted): a session minted for one of them
    /// by a racing CreateSession never joins `live`.
    deleted: HashSet<String>,
}

/// Shared state of the load.
struct Load {
    authd: Channel,
    introspect: Channel,
    api_key: String,
    pool: Mutex<Pool>,
    ops: AtomicU64,
    errors: AtomicU64,
    shed: AtomicU64,
    /// Errors by operation and message, first few kept.
    seen: Mutex<BTreeMap<String, u64>>,
    rng: AtomicU64,
}

impl Load {
    fn pick(&self) -> Option<Live> {
        let pool = self.pool.lock().ok()?;
        if pool.live.is_empty() {
            return None;
        }
        Some(pool.live[self.random() % pool.live.len()].clone())
    }

    fn random(&self) -> usize {
        // xorshift on a shared word: quality does not matter, spread does.
        let mut x = self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize
    }

    fn error(&self, op: &str, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut seen) = self.seen.lock() {
            *seen.entry(format!("{op}: {what}")).or_default() += 1;
        }
    }

    fn live(&self) -> usize {
        self.pool.lock().map_or(0, |p| p.live.len())
    }

    fn clients(&self) -> usize {
        self.pool.lock().map_or(0, |p| p.clients.len())
    }

    fn pick_client(&self) -> Option<String> {
        let pool = self.pool.lock().ok()?;
        if pool.clients.is_empty() {
            return None;
        }
        Some(pool.clients[self.random() % pool.clients.len()].clone())
    }

    fn add(&self, l: Live) {
        if let Ok(mut pool) = self.pool.lock()
            && !pool.deleted.contains(&l.client_id)
        {
            pool.live.push(l);
        }
    }

    /// Whether `l` is still meant to be usable.
    fn usable(&self, l: &Live) -> bool {
        self.pool.lock().is_ok_and(|p| !p.deleted.contains(&l.client_id) && p.live.iter().any(|x| x.token == l.token))
    }

    async fn create_client(&self) {
        let mut c = ClientServiceClient::new(self.authd.clone());
        match c.create_client(authed(&self.api_key, pb::CreateClientRequest::default())).await {
            Ok(r) => {
                let r = r.into_inner();
                let (Some(client), Some(s)) = (r.client, r.session) else {
                    return self.error("CreateClient", "no client or session in the answer".into());
                };
                if let Ok(mut pool) = self.pool.lock() {
                    pool.clients.push(client.client_id.clone());
                }
                self.add(Live { client_id: client.client_id, session_id: s.session_id, token: r.token });
            }
            Err(s) => self.error("CreateClient", format!("{:?}", s.code())),
        }
    }

    async fn create_session(&self) {
        let Some(client_id) = self.pick_client() else { return self.create_client().await };
        let mut c = ClientServiceClient::new(self.authd.clone());
        let req = pb::CreateSessionRequest { client_id: client_id.clone() };
        match c.create_session(authed(&self.api_key, req)).await {
            Ok(r) => {
                let r = r.into_inner();
                let Some(s) = r.session else { return self.error("CreateSession", "no session".into()) };
                self.add(Live { client_id, session_id: s.session_id, token: r.token });
            }
            // The client was deleted meanwhile by another task: not an error.
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => self.error("CreateSession", format!("{:?}", s.code())),
        }
    }

    /// Verify (introspect) or GetCurrentSession (authd) of a live token.
    async fn use_token(&self, via_authd: bool) {
        let Some(l) = self.pick() else { return };
        let r = if via_authd {
            let mut c = SessionServiceClient::new(self.authd.clone());
            c.get_current_session(authed(&l.token, pb::GetCurrentSessionRequest {})).await.map(|_| ())
        } else {
            let mut c = IntrospectServiceClient::new(self.introspect.clone());
            c.verify(ipb::VerifyRequest { token: l.token.clone(), ..Default::default() }).await.map(|_| ())
        };
        let op = if via_authd { "GetCurrentSession" } else { "Verify" };
        match r {
            Ok(()) => {}
            // Removals leave the pool before they are sent, so a refusal of
            // a token still in the pool is a wrong answer.
            Err(s) if s.code() == Code::Unauthenticated => {
                if self.usable(&l) {
                    self.error(op, "a live token was refused".into());
                }
            }
            Err(s) => self.error(op, format!("{:?}", s.code())),
        }
    }

    async fn revoke_session(self: &Arc<Self>) {
        let Some(l) = self.pick() else { return };
        if let Ok(mut pool) = self.pool.lock() {
            pool.live.retain(|x| x.token != l.token);
        }
        let mut c = ClientServiceClient::new(self.authd.clone());
        let req = pb::RevokeSessionRequest { client_id: l.client_id.clone(), session_id: l.session_id.clone() };
        match c.revoke_session(authed(&self.api_key, req)).await {
            Ok(_) => self.check_refused(l.token, "RevokeSession").await,
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => self.error("RevokeSession", format!("{:?}", s.code())),
        }
    }

    async fn delete_client(self: &Arc<Self>) {
        let Some(client_id) = self.pick_client() else { return };
        // One of its live sessions, if it has any, to check afterwards.
        let mut token = None;
        if let Ok(mut pool) = self.pool.lock() {
            pool.deleted.insert(client_id.clone());
            pool.clients.retain(|c| *c != client_id);
            token = pool.live.iter().find(|x| x.client_id == client_id).map(|x| x.token.clone());
            pool.live.retain(|x| x.client_id != client_id);
        }
        let mut c = ClientServiceClient::new(self.authd.clone());
        match c.delete_client(authed(&self.api_key, pb::DeleteClientRequest { client_id })).await {
            Ok(_) => {
                if let Some(t) = token {
                    self.check_refused(t, "DeleteClient").await;
                }
            }
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => self.error("DeleteClient", format!("{:?}", s.code())),
        }
    }

    /// A removed token must be refused by authd now, and by introspect once
    /// the invalidation had time to arrive.
    async fn check_refused(self: &Arc<Self>, token: String, after: &'static str) {
        let mut s = SessionServiceClient::new(self.authd.clone());
        match s.get_current_session(authed(&token, pb::GetCurrentSessionRequest {})).await {
            Err(e) if e.code() == Code::Unauthenticated => {}
            Ok(_) => self.error(after, "authd accepted a removed token".into()),
            Err(e) => self.error(after, format!("authd check: {:?}", e.code())),
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let mut c = IntrospectServiceClient::new(me.introspect.clone());
            match c.verify(ipb::VerifyRequest { token, ..Default::default() }).await {
                Err(e) if e.code() == Code::Unauthenticated => {}
                Ok(_) => me.error(after, "introspect accepted a removed token 2 s later".into()),
                Err(e) => me.error(after, format!("introspect check: {:?}", e.code())),
            }
        });
    }

    async fn op(self: Arc<Self>, slot: u64) {
        // A deleted client takes all its sessions: while the live set is
        // below its initial size, the removals give way to mints.
        match slot % 10 {
            0 => self.create_client().await,
            1 => self.create_session().await,
            2..=6 => self.use_token(false).await,
            7 => self.use_token(true).await,
            8 if self.live() < PREFILL => self.create_session().await,
            8 => self.revoke_session().await,
            _ if self.clients() < PREFILL => self.create_client().await,
            _ => self.delete_client().await,
        }
        self.ops.fetch_add(1, Ordering::Relaxed);
    }
}

/// One row of the table.
struct Sample {
    at: Duration,
    ops: u64,
    errors: u64,
    shed: u64,
    live: usize,
    rss: [f64; 3],
    used_memory: f64,
    /// Redis keys: all, clients (`c:`), remembered revocations (`sr:`).
    keys: [u64; 3],
}

impl Sample {
    async fn take(at: Duration, load: &Load, pids: [u32; 3], url: &str) -> Sample {
        let (mut info, mut clients, mut revoked) = (BTreeMap::new(), 0, 0);
        if let Ok(mut c) = admin_connection(url).await {
            info = redis_info::all(&mut c).await.unwrap_or_default();
            clients = count_keys(&mut c, "c:*").await.unwrap_or(0);
            revoked = count_keys(&mut c, "sr:*").await.unwrap_or(0);
        }
        Sample {
            at,
            ops: load.ops.load(Ordering::Relaxed),
            errors: load.errors.load(Ordering::Relaxed),
            shed: load.shed.load(Ordering::Relaxed),
            live: load.live(),
            rss: pids.map(|p| rss_bytes(p).unwrap_or(0) as f64 / 1048576.0),
            used_memory: info.get("used_memory").and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1048576.0,
            keys: [
                info.get("db0")
                    .and_then(|v| v.split(',').next())
                    .and_then(|k| k.strip_prefix("keys="))
                    .and_then(|k| k.parse().ok())
                    .unwrap_or(0),
                clients,
                revoked,
            ],
        }
    }

    fn row(&self) -> String {
        format!(
            "{:>6} {:>9} {:>6} {:>5} {:>6} {:>10.1} {:>10.1} {:>10.1} {:>9.1} {:>7} {:>7} {:>7}",
            self.at.as_secs(),
            self.ops,
            self.errors,
            self.shed,
            self.live,
            self.rss[0],
            self.rss[1],
            self.rss[2],
            self.used_memory,
            self.keys[0],
            self.keys[1],
            self.keys[2]
        )
    }
}

async fn run() -> Result<u64, String> {
    let cfg = parse_args()?;
    let build = "`cargo build --release -p authd -p introspect -p cred-bench` (or run crates/bench/soak.sh)";
    let (authd_bin, introspect_bin) = (sibling("authd", build)?, sibling("introspect", build)?);
    let redis = RedisServer::start().await?;
    let url = redis.url();
    let redis_pid = redis.pid();
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let (secret, secret_text) = OperatorSecret::generate();
    let (op_id, operator) = secret.issue();
    let secret_file = dir.path().join("secret");
    let allow_file = dir.path().join("allowlist");
    std::fs::write(&secret_file, secret_text).map_err(|e| e.to_string())?;
    std::fs::write(&allow_file, format!("{op_id}\n")).map_err(|e| e.to_string())?;
    let s = |p: &Path| p.display().to_string();
    let authd = start(
        &authd_bin,
        &[
            "--redis-url".into(),
            url.clone(),
            "--operator-secret-file".into(),
            s(&secret_file),
            "--operator-allowlist-file".into(),
            s(&allow_file),
        ],
        dir.path(),
        "authd",
    )?;
    let introspect = start(&introspect_bin, &["--redis-url".into(), url.clone()], dir.path(), "introspect")?;
    let (authd_ch, introspect_ch) = (authd.channel_when_up().await?, introspect.channel_when_up().await?);

    // A tenant and an API key, retried until authd answers (it may still be
    // starting).
    let deadline = Instant::now() + Duration::from_secs(20);
    let api_key = loop {
        match new_tenant(&authd_ch, &operator, "soak", pb::Environment::Production).await {
            Ok((_, key)) => break key,
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let load = Arc::new(Load {
        authd: authd_ch,
        introspect: introspect_ch,
        api_key,
        pool: Mutex::new(Pool::default()),
        ops: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        shed: AtomicU64::new(0),
        seen: Mutex::new(BTreeMap::new()),
        rng: AtomicU64::new(0x2545_F491_4F6C_DD1D),
    });
    for _ in 0..PREFILL {
        load.create_client().await;
    }

    let pids = [redis_pid, authd.pid, introspect.pid];
    println!(
        "soak: {} s at {} ops/s ({} calls in flight at most), pool of {PREFILL} clients to start; \
         pids redis {} authd {} introspect {}; redis on port {} (log {})",
        cfg.duration.as_secs(),
        cfg.rate,
        MAX_IN_FLIGHT,
        pids[0],
        pids[1],
        pids[2],
        redis.port(),
        redis.log_path().display()
    );
    println!(
        "{:>6} {:>9} {:>6} {:>5} {:>6} {:>10} {:>10} {:>10} {:>9} {:>7} {:>7} {:>7}",
        "t (s)",
        "ops",
        "errors",
        "shed",
        "live",
        "redis MiB",
        "authd MiB",
        "intro MiB",
        "used MiB",
        "keys",
        "c:*",
        "sr:*"
    );
    let t0 = Instant::now();
    let mut samples = vec![Sample::take(Duration::ZERO, &load, pids, &url).await];
    println!("{}", samples[0].row());
    let sem = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / cfg.rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut next_sample = cfg.sample;
    let mut slot = 0u64;
    while t0.elapsed() < cfg.duration {
        tick.tick().await;
        match sem.clone().try_acquire_owned() {
            Ok(permit) => {
                let l = load.clone();
                tokio::spawn(async move {
                    l.op(slot).await;
                    drop(permit);
                });
            }
            Err(_) => {
                load.shed.fetch_add(1, Ordering::Relaxed);
            }
        }
        slot += 1;
        if t0.elapsed() >= next_sample {
            let s = Sample::take(t0.elapsed(), &load, pids, &url).await;
            println!("{}", s.row());
            samples.push(s);
            next_sample += cfg.sample;
        }
    }
    let loaded = t0.elapsed();
    // Let calls in flight and the delayed introspect checks finish.
    let _ = tokio::time::timeout(Duration::from_secs(10), sem.acquire_many(MAX_IN_FLIGHT as u32)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let last = Sample::take(t0.elapsed(), &load, pids, &url).await;
    println!("{}", last.row());

    let first = &samples[0];
    // The first sample after a minute of load is the baseline for "flat":
    // allocators and caches reach their working size in the first seconds.
    let warm = samples.iter().find(|s| s.at >= Duration::from_secs(60)).unwrap_or(first);
    let names = ["redis", "authd", "introspect"];
    println!(
        "\nsummary: {} ops in {:.0} s of load ({:.0}/s)",
        last.ops,
        loaded.as_secs_f64(),
        last.ops as f64 / loaded.as_secs_f64()
    );
    println!("  errors: {} (target 0); shed ticks: {}", last.errors, last.shed);
    for (i, n) in names.iter().enumerate() {
        println!(
            "  RSS {n:<10} start {:>6.1} MiB, at {:>3} s {:>6.1} MiB, end {:>6.1} MiB (end - {} s: {:+.1} MiB)",
            first.rss[i],
            warm.at.as_secs(),
            warm.rss[i],
            last.rss[i],
            warm.at.as_secs(),
            last.rss[i] - warm.rss[i]
        );
    }
    println!(
        "  redis used_memory start {:.1} MiB, end {:.1} MiB; keys {} -> {} (clients {} -> {}, remembered \
         revocations {} -> {}: kept a day past each session's cap, by design)",
        first.used_memory,
        last.used_memory,
        first.keys[0],
        last.keys[0],
        first.keys[1],
        last.keys[1],
        first.keys[2],
        last.keys[2]
    );
    if let Ok(seen) = load.seen.lock() {
        for (what, n) in seen.iter() {
            println!("  error x{n}: {what}");
        }
    }
    Ok(last.errors + last.shed)
}
