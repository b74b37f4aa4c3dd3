//! cred-bench: the benchmark figures of authd, measured end to end on
//! loopback against a private `redis-server` that the run starts and stops.
//!
//! Figure A, "session mint": `authd.v1.ClientService/CreateClient` and
//! `CreateSession` over real gRPC, authd in-process on its own runtime, set up
//! as the authd binary sets itself up (API key cache on, push listener
//! running, `TCP_NODELAY` on accepted sockets). CreateClient is driven twice:
//! by `h2load` (a separate C process, 4 HTTP/2 connections × 16 streams, the
//! primary figure) and by an in-process tonic client (4 connections × 16
//! calls in flight, for comparison; it shares this process's CPU). Beside
//! them, the raw rate of the same Redis work with no gRPC and no auth, from 64
//! tasks on one multiplexed connection as authd has:
//! `RedisStore::create_client_audited` (MULTI/EXEC + XADD in one round trip,
//! what CreateClient does), `RedisStore::create_client` (the MULTI alone) and
//! `RedisStore::create_session` (the Lua script). It prints rates, latency
//! percentiles, the ratios gRPC / raw, CPU per call by process, and the Redis
//! commands one call costs (`INFO commandstats` deltas divided by calls).
//! h2load counts a gRPC error (HTTP 200, `grpc-status` ≠ 0 in trailers) as a
//! success, so its successes are checked against the clients that appeared in
//! Redis.
//!
//! Figure B, "memory per live session": Redis `used_memory` before and after
//! 100,000 sessions, in two layouts (1,000 clients × 100 sessions; 100,000
//! clients × 1 session), with the types, encodings and sizes of sample keys.
//!
//! Every phase is bounded in time and count; the run exits by itself. Run it
//! with `cargo run --release -p cred-bench` (needs `redis-server`, `h2load`
//! from nghttp2-client, and optionally `redis-benchmark`).
#![forbid(unsafe_code)]

mod h2load;
mod redis_server;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use authd::auth::OperatorAuth;
use cred_core::Authority;
use cred_core::authority::NewApiKey;
use cred_core::cache::CacheOptions;
use cred_core::clock::now_ms;
use cred_core::model::{AuditEvent, Client, Environment, Scopes, Session, Tenant, limits, sliding_expiry};
use cred_core::operator::{Allowlist, OperatorSecret};
use cred_core::rng;
use cred_core::store::redis::RedisOptions;
use cred_core::store::{CreateSession, RedisStore, Store};
use cred_core::token::{Token, TokenKind, short_id};
use cred_proto::authd::v1 as pb;
use cred_proto::authd::v1::client_service_client::ClientServiceClient;
use prost::Message as _;
use redis::aio::MultiplexedConnection;
use tokio::task::JoinSet;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::h2load::Load;
use crate::redis_server::RedisServer;

/// HTTP/2 connections to authd.
const CONNECTIONS: usize = 4;
/// Calls in flight on each connection.
const IN_FLIGHT_PER_CONNECTION: usize = 16;
/// Concurrent tasks, for gRPC and for the raw store alike.
const TASKS: usize = CONNECTIONS * IN_FLIGHT_PER_CONNECTION;
/// A measured phase stops at this duration or call count, whichever first.
const PHASE_TIME: Duration = Duration::from_secs(5);
const PHASE_CALLS: usize = 50_000;
/// Unmeasured calls before each phase (connections, script cache, JIT-free
/// but allocator and branch-predictor warm).
const WARM_UP_CALLS: usize = 2_000;
/// Clients that CreateSession load is spread over (each may hold
/// `limits::SESSIONS_PER_CLIENT` live sessions).
const SESSION_CLIENTS: usize = 2_000;
/// Sessions in each layout of figure B.
const MEMORY_SESSIONS: usize = 100_000;
/// Figure B's first layout: this many clients, each with this many sessions.
const MEMORY_CLIENTS: usize = 1_000;
/// No setup step may take longer than this.
const SETUP_LIMIT: Duration = Duration::from_secs(60);

type BoxError = String;

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Thread name of the load generator's runtime (gRPC client, raw store
/// calls, setup); authd runs on its own runtime, [`AUTHD_THREADS`], so that
/// CPU time can be told apart per thread.
const LOAD_THREADS: &str = "load-rt";
const AUTHD_THREADS: &str = "authd-rt";

fn main() {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread().thread_name(LOAD_THREADS).enable_all().build();
    let code = match rt.map_err(|e| format!("tokio runtime: {e}")).and_then(|rt| rt.block_on(run())) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cred-bench: {e}");
            1
        }
    };
    eprintln!("cred-bench: done in {:.1} s", started.elapsed().as_secs_f64());
    std::process::exit(code);
}

async fn run() -> Result<(), BoxError> {
    if let Some(a) = std::env::args().nth(1) {
        return Err(format!("unknown argument {a:?}; cred-bench takes no arguments"));
    }
    let redis = RedisServer::start().await?;
    let url = redis.url();
    println!(
        "cred-bench: redis-server {} on 127.0.0.1:{} (no persistence, log {}), {}, {} CPU(s)",
        redis_version(&url).await.unwrap_or_else(|_| "?".into()),
        redis.port(),
        redis.log_path().display(),
        h2load::version().await,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let result = figures(&redis).await;
    // Redis is killed when `redis` drops, after the figures are done.
    drop(redis);
    result
}

async fn figures(redis: &RedisServer) -> Result<(), BoxError> {
    let url = redis.url();
    let mut admin = admin_connection(&url).await?;
    let a = figure_a(&url, &mut admin, redis.port()).await?;
    let b = figure_b(&url, &mut admin).await?;
    println!("\n{}", summary(&a, &b));
    Ok(())
}

// ---------------------------------------------------------------- figure A

struct FigureA {
    rows: Vec<Measured>,
    /// What the h2load phase checked: the body through a tonic client, and
    /// h2load's successes against the clients that appeared in Redis.
    h2load_notes: Vec<String>,
    redis_benchmark: Vec<String>,
}

/// Row names, also used to find the rows the ratios divide.
const CC_H2LOAD: &str = "CreateClient gRPC, h2load";
const CC_TONIC: &str = "CreateClient gRPC, tonic client in-proc";
const RAW_AUDITED: &str = "raw create_client_audited (MULTI+XADD)";
const RAW_MULTI: &str = "raw create_client (MULTI/EXEC only)";
const CS_TONIC: &str = "CreateSession gRPC, tonic client in-proc";
const RAW_SESSION: &str = "raw create_session (Lua script)";
/// Width of the row-name column.
const NAME_WIDTH: usize = 40;

/// The h2load load shape: the same 64 calls in flight as the other phases.
const H2LOAD_LOAD: Load = Load { connections: CONNECTIONS, streams: IN_FLIGHT_PER_CONNECTION, requests: PHASE_CALLS };
const H2LOAD_WARM_UP: Load =
    Load { connections: CONNECTIONS, streams: IN_FLIGHT_PER_CONNECTION, requests: WARM_UP_CALLS };
/// The gRPC path h2load POSTs to.
const CREATE_CLIENT_PATH: &str = "/authd.v1.ClientService/CreateClient";

/// The API key cache as the authd binary configures it by default
/// (`--api-key-cache-capacity 100000`, `--api-key-cache-max-age-ms 30000`).
fn authd_cache_options() -> CacheOptions {
    CacheOptions { capacity: 100_000, max_age: Duration::from_secs(30), ..CacheOptions::default() }
}

/// One measured phase.
struct Measured {
    name: &'static str,
    run: Run,
    /// `INFO commandstats` calls delta over the measured part.
    commands: BTreeMap<String, u64>,
    /// CPU time spent over the measured part.
    cpu: CpuUse,
}

/// CPU time by whom, nanoseconds.
#[derive(Default)]
struct CpuUse {
    authd: u64,
    /// h2load, a child process (its CPU time once reaped).
    h2load: u64,
    /// This process's load generator: the tonic client or the raw store
    /// caller (idle while h2load drives).
    load: u64,
    /// Other threads of this process.
    other: u64,
    redis: u64,
    /// The whole machine's busy time (`/proc/stat`), ours included.
    machine: u64,
}

impl CpuUse {
    fn ours(&self) -> u64 {
        self.authd + self.h2load + self.load + self.other + self.redis
    }
    /// Busy time of everything else on the machine (other users' builds).
    fn others(&self) -> u64 {
        self.machine.saturating_sub(self.ours())
    }
}

/// Per-thread CPU time of this process (`/proc/self/task/*/schedstat`),
/// its reaped children's (`/proc/self/stat` cutime + cstime: h2load), and
/// redis-server's (`INFO cpu`), and the machine's (`/proc/stat`).
struct CpuSample {
    threads: BTreeMap<String, (String, u64)>,
    children_ns: u64,
    redis_ns: u64,
    machine_ns: u64,
}

impl CpuSample {
    async fn take(admin: &mut MultiplexedConnection) -> Result<CpuSample, BoxError> {
        let info: String = redis::cmd("INFO").arg("cpu").query_async(admin).await.map_err(err("INFO cpu"))?;
        let secs = |f: &str| info_field(&info, f).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let redis_ns = ((secs("used_cpu_sys") + secs("used_cpu_user")) * 1e9) as u64;
        let mut threads = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for t in dir.flatten() {
                let p = t.path();
                let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default().trim().to_string();
                let ns = std::fs::read_to_string(p.join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
                threads.insert(t.file_name().to_string_lossy().into_owned(), (name, ns));
            }
        }
        let children_ns = u64::try_from(h2load::children_cpu().as_nanos()).unwrap_or(u64::MAX);
        // cpu  user nice system idle iowait irq softirq steal guest guest_nice
        let machine_ns = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let f: Vec<u64> =
                    s.lines().next()?.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
                let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
                Some((busy as f64 / h2load::clk_tck() * 1e9) as u64)
            })
            .unwrap_or(0);
        Ok(CpuSample { threads, children_ns, redis_ns, machine_ns })
    }

    fn since(&self, before: &CpuSample) -> CpuUse {
        let mut u = CpuUse {
            redis: self.redis_ns.saturating_sub(before.redis_ns),
            h2load: self.children_ns.saturating_sub(before.children_ns),
            machine: self.machine_ns.saturating_sub(before.machine_ns),
            ..CpuUse::default()
        };
        for (tid, (name, ns)) in &self.threads {
            let d = ns.saturating_sub(before.threads.get(tid).map_or(0, |t| t.1));
            if name.starts_with(AUTHD_THREADS) {
                u.authd += d;
            } else if name.starts_with(LOAD_THREADS) {
                u.load += d;
            } else {
                u.other += d;
            }
        }
        u
    }
}

async fn figure_a(url: &str, admin: &mut MultiplexedConnection, port: u16) -> Result<FigureA, BoxError> {
    println!(
        "\n== Figure A: session mint, {TASKS} concurrent calls \
         ({CONNECTIONS} HTTP/2 connections × {IN_FLIGHT_PER_CONNECTION} in flight; \
         raw store: the same {TASKS} tasks on one multiplexed Redis connection, as authd has); \
         h2load: {} after {} warm-up requests; other phases: {} s or {PHASE_CALLS} calls after \
         {WARM_UP_CALLS} warm-up calls",
        H2LOAD_LOAD.describe(),
        H2LOAD_WARM_UP.requests,
        PHASE_TIME.as_secs()
    );
    println!("authd: {}", authd_note());
    let store =
        RedisStore::connect(url, RedisOptions::default()).await.map_err(|e| format!("connecting the store: {e}"))?;
    let authority = Authority::new(store.clone());

    // Operator key, tenant and API key, as dev mode makes them.
    let (secret, _) = OperatorSecret::generate();
    let (operator_id, _operator_token) = secret.issue();
    let actor = format!("operator:{operator_id}");
    let tenant =
        authority.create_tenant(&actor, "bench".into(), None, None).await.map_err(|e| format!("create_tenant: {e}"))?;
    let env = Environment::Production;
    let key = authority
        .create_api_key(
            &actor,
            NewApiKey { tenant_id: tenant.id, env, name: "bench".into(), scopes: Scopes::default(), expires_at: None },
        )
        .await
        .map_err(|e| format!("create_api_key: {e}"))?;

    // authd, in-process on its own runtime (as a separate process would
    // have its own threads), with its own store, on a free loopback port,
    // built as the authd binary builds it: the API key cache on, and
    // `authd::server::run` starting the push listener and setting
    // TCP_NODELAY on accepted connections.
    let server_rt = BackgroundRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .thread_name(AUTHD_THREADS)
            .enable_all()
            .build()
            .map_err(|e| format!("authd runtime: {e}"))?,
    ));
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let authd_url = url.to_string();
    let server = server_rt.handle().spawn(async move {
        let store = RedisStore::connect(&authd_url, RedisOptions::default())
            .await
            .map_err(|e| format!("connecting authd's store: {e}"))?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| format!("binding authd: {e}"))?;
        let _ = addr_tx.send(listener.local_addr().map_err(|e| format!("authd address: {e}"))?);
        let operators = OperatorAuth::new(secret, Allowlist::of([operator_id]));
        let authority = Authority::new(store).with_api_key_cache(authd_cache_options());
        authd::server::run(listener, authority, operators, cred_serve::serve::ServeOptions::default(), async move {
            let _ = stopped.await;
        })
        .await
        .map_err(|e| format!("authd stopped with an error: {e}"))
    });
    let Ok(addr) = addr_rx.await else {
        return Err(match server.await {
            Ok(Err(e)) => e,
            _ => "authd did not start".into(),
        });
    };

    let mut channels = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        // One Endpoint::connect is one HTTP/2 connection.
        let ch = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("connecting to authd at {addr}: {e}"))?;
        channels.push(ClientServiceClient::new(ch));
    }
    let channels = Arc::new(channels);
    let auth: MetadataValue<Ascii> =
        format!("Bearer {}", key.token).parse().map_err(|_| "API key is not ASCII".to_string())?;

    let mut rows = Vec::new();

    // --- CreateClient over gRPC, driven by h2load (the primary figure).
    let (m, h2load_notes) = h2load_create_client(addr, &key.token, &channels[0], &auth, admin).await?;
    rows.push(m);

    // --- The same store work, raw: MULTI{HSET client, SET+PEXPIREAT
    // session, ZADD+PEXPIREAT index} EXEC, then XADD of the audit event, in
    // one round trip: what authd's CreateClient writes.
    let api_key_actor = format!("api_key:{}", key.record.id);
    let records: Arc<Vec<(Client, Session, AuditEvent)>> = Arc::new(
        (0..WARM_UP_CALLS + PHASE_CALLS)
            .map(|_| {
                let c = client(&tenant, env);
                let s = session(&tenant, env, c.id);
                let e = audit_event(&api_key_actor, &c, &s);
                (c, s, e)
            })
            .collect(),
    );
    let op = {
        let (store, records) = (store.clone(), records.clone());
        Arc::new(move |_task: usize, i: usize| {
            let (store, records) = (store.clone(), records.clone());
            async move {
                let (c, s, e) = &records[i];
                store.create_client_audited(c, Some(s), e).await.map_err(|e| e.to_string())
            }
        })
    };
    rows.push(phase(RAW_AUDITED, admin, op).await?);
    drop(records);

    // --- CreateClient over gRPC, driven by the in-process tonic client.
    let op = {
        let (channels, auth) = (channels.clone(), auth.clone());
        Arc::new(move |task: usize, _i: usize| {
            let mut c = channels[task % CONNECTIONS].clone();
            let auth = auth.clone();
            async move {
                let mut req = Request::new(pb::CreateClientRequest::default());
                req.metadata_mut().insert("authorization", auth);
                c.create_client(req).await.map(drop).map_err(status_text)
            }
        })
    };
    rows.push(phase(CC_TONIC, admin, op).await?);

    // --- The MULTI alone, without the audit XADD (the earlier baseline).
    let records: Arc<Vec<(Client, Session)>> = Arc::new(
        (0..WARM_UP_CALLS + PHASE_CALLS)
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
                store.create_client(c, Some(s)).await.map_err(|e| e.to_string())
            }
        })
    };
    rows.push(phase(RAW_MULTI, admin, op).await?);
    drop(records);

    // --- CreateSession over gRPC, spread over pre-created clients.
    let pool = client_pool(&store, &tenant, env).await?;
    let ids: Arc<Vec<String>> = Arc::new(pool.iter().map(|c| c.id.to_string()).collect());
    let op = {
        let (channels, auth) = (channels.clone(), auth.clone());
        Arc::new(move |task: usize, i: usize| {
            let mut c = channels[task % CONNECTIONS].clone();
            let auth = auth.clone();
            let client_id = ids[i % ids.len()].clone();
            async move {
                let mut req = Request::new(pb::CreateSessionRequest { client_id });
                req.metadata_mut().insert("authorization", auth);
                c.create_session(req).await.map(drop).map_err(status_text)
            }
        })
    };
    rows.push(phase(CS_TONIC, admin, op).await?);

    // --- The script alone, raw: the create-session Lua script, on a fresh
    // pool of clients with the same spread.
    let pool = client_pool(&store, &tenant, env).await?;
    let sessions: Arc<Vec<Session>> =
        Arc::new((0..WARM_UP_CALLS + PHASE_CALLS).map(|i| session(&tenant, env, pool[i % pool.len()].id)).collect());
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
    rows.push(phase(RAW_SESSION, admin, op).await?);
    drop(sessions);

    // Stop authd: drop the connections, then ask it to drain.
    drop(channels);
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e),
        Ok(Err(e)) => return Err(format!("authd task failed: {e}")),
        Err(_) => eprintln!("cred-bench: authd did not drain within 10 s; going on"),
    }

    let redis_benchmark = redis_benchmark(port).await;
    Ok(FigureA { rows, h2load_notes, redis_benchmark })
}

/// CreateClient under h2load. The body is checked first through a tonic
/// client (grpc-status 0); an unmeasured warm-up run follows, then the
/// measured run, whose HTTP successes are checked against the clients that
/// appeared in Redis (h2load counts a gRPC error answer as a success).
async fn h2load_create_client(
    addr: SocketAddr,
    api_key: &str,
    client: &ClientServiceClient<Channel>,
    auth: &MetadataValue<Ascii>,
    admin: &mut MultiplexedConnection,
) -> Result<(Measured, Vec<String>), BoxError> {
    let dir = tempfile::tempdir().map_err(err("temp dir"))?;
    let body_path = dir.path().join("create-client.grpc");
    let log = dir.path().join("h2load.log");
    // 5-byte gRPC prefix (not compressed, length big-endian) + the encoded
    // CreateClientRequest{} (empty: no labels).
    let msg = pb::CreateClientRequest::default().encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(msg.len()).map_err(err("message length"))?.to_be_bytes());
    body.extend_from_slice(&msg);
    std::fs::write(&body_path, &body).map_err(err("writing the h2load body"))?;
    let mut notes = Vec::new();

    // The same bytes, decoded, through a tonic client with the same header.
    let decoded = pb::CreateClientRequest::decode(&body[5..]).map_err(err("the h2load body does not decode"))?;
    let mut req = Request::new(decoded);
    req.metadata_mut().insert("authorization", auth.clone());
    let answer = client
        .clone()
        .create_client(req)
        .await
        .map_err(|s| format!("the h2load body, sent by a tonic client, was refused: {}", status_text(s)))?
        .into_inner();
    if answer.client.is_none() || answer.session.is_none() || answer.token.is_empty() {
        return Err("the h2load body, sent by a tonic client, got an answer without client, session or token".into());
    }
    notes.push(format!(
        "pre-check: the h2load body ({} bytes: {}) sent by a tonic client with the same authorization header: \
         grpc-status 0 (OK), a client, a session and a {}-character token back",
        body.len(),
        body.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "),
        answer.token.len()
    ));

    let headers = [format!("authorization: Bearer {api_key}")];
    let limit = Duration::from_secs(180);

    let c0 = client_keys(admin).await?;
    let warm = h2load::run(addr, CREATE_CLIENT_PATH, &headers, &body_path, H2LOAD_WARM_UP, &log, limit).await?;
    let c1 = client_keys(admin).await?;
    if c1 <= c0 {
        return Err(format!(
            "h2load warm-up: {} HTTP successes but no client appeared in Redis: authd answered with gRPC errors",
            warm.succeeded
        ));
    }

    let keys0 = dbsize(admin).await?;
    let before = commandstats(admin).await?;
    let cpu_before = CpuSample::take(admin).await?;
    let r = h2load::run(addr, CREATE_CLIENT_PATH, &headers, &body_path, H2LOAD_LOAD, &log, limit).await?;
    let cpu = CpuSample::take(admin).await?.since(&cpu_before);
    let commands = command_delta(&before, &commandstats(admin).await?);
    let c2 = client_keys(admin).await?;
    let keys = dbsize(admin).await?.saturating_sub(keys0);
    let created = c2.saturating_sub(c1);

    let ok = created.min(r.succeeded);
    let mut first_error = None;
    if r.succeeded > created {
        first_error = Some(format!("{} HTTP-level successes created no client (gRPC errors)", r.succeeded - created));
    } else if r.failed > 0 {
        first_error = Some(format!("h2load: {} requests failed", r.failed));
    }
    let run = Run {
        lat_ns: r.lat_us.iter().map(|us| us * 1000).collect(),
        calls: usize::try_from(r.done).unwrap_or(usize::MAX),
        errors: usize::try_from(r.done - ok).unwrap_or(usize::MAX),
        first_error,
        elapsed: r.duration,
    };
    notes.push(format!(
        "warm-up: {} requests, {} HTTP successes, +{} clients in Redis",
        warm.done,
        warm.succeeded,
        c1 - c0
    ));
    notes.push(format!(
        "check: h2load {} done, {} succeeded (HTTP level; gRPC errors count as success), {} failed, {} log lines \
         not HTTP 200; Redis +{created} clients (c:{{*}} keys, SCAN), EXEC +{}, keys +{keys} ({:.2} per client: \
         c, s, si); {:.0} DATA bytes per answer (an error answer has none): {}",
        r.done,
        r.succeeded,
        r.failed,
        r.non_200,
        commands.get("exec").copied().unwrap_or(0),
        keys as f64 / created.max(1) as f64,
        r.data_bytes as f64 / r.succeeded.max(1) as f64,
        if created == r.succeeded && r.failed == 0 {
            "every success created a client".to_string()
        } else {
            format!("MISMATCH: {created} clients for {} successes", r.succeeded)
        },
    ));
    notes.push(format!(
        "h2load: {:.2} s by its own clock, {:.2} s of CPU ({:.0} µs per request)",
        r.duration.as_secs_f64(),
        r.cpu.as_secs_f64(),
        r.cpu.as_secs_f64() * 1e6 / r.done.max(1) as f64
    ));
    let m = Measured { name: CC_H2LOAD, run, commands, cpu };
    println!("{}", row(&m));
    for n in &notes {
        println!("  {n}");
    }
    Ok((m, notes))
}

/// Client records in Redis: the `c:{*}` keys, counted by SCAN (deduplicated:
/// SCAN may return a key twice while the table rehashes).
async fn client_keys(admin: &mut MultiplexedConnection) -> Result<u64, BoxError> {
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("c:{*")
            .arg("COUNT")
            .arg(10_000)
            .query_async(admin)
            .await
            .map_err(err("SCAN"))?;
        seen.extend(keys);
        if next == 0 {
            return Ok(seen.len() as u64);
        }
        cursor = next;
    }
}

/// The audit event authd's CreateClient appends.
fn audit_event(actor: &str, c: &Client, s: &Session) -> AuditEvent {
    AuditEvent {
        id: String::new(),
        time: c.created_at,
        actor: actor.to_string(),
        action: "client.create".into(),
        tenant_id: c.tenant_id,
        subjects: vec![format!("client:{}", c.id), format!("session:{}", s.id)],
    }
}

/// A runtime that may be dropped from async code (it shuts down in the
/// background instead of blocking).
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl BackgroundRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        self.0.as_ref().map(|rt| rt.handle().clone()).unwrap_or_else(tokio::runtime::Handle::current)
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn authd_note() -> String {
    let c = authd_cache_options();
    format!(
        "in-process on its own runtime ({AUTHD_THREADS} threads), as the authd binary runs it: API key cache on \
         (capacity {}, max age {} s; push listener started by authd::server::run), TCP_NODELAY on accepted \
         connections (cred_serve::serve::incoming)",
        c.capacity,
        c.max_age.as_secs()
    )
}

/// Warms up, then measures one phase with `INFO commandstats` around it.
async fn phase<F, Fut>(name: &'static str, admin: &mut MultiplexedConnection, op: Arc<F>) -> Result<Measured, BoxError>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let warm = drive(TASKS, 0, WARM_UP_CALLS, SETUP_LIMIT, op.clone()).await;
    if warm.errors == warm.calls() {
        return Err(format!("{name}: every warm-up call failed, e.g. {}", warm.first_error.unwrap_or_default()));
    }
    let before = commandstats(admin).await?;
    let cpu_before = CpuSample::take(admin).await?;
    let run = drive(TASKS, WARM_UP_CALLS, PHASE_CALLS, PHASE_TIME, op).await;
    let cpu = CpuSample::take(admin).await?.since(&cpu_before);
    let commands = command_delta(&before, &commandstats(admin).await?);
    let m = Measured { name, run, commands, cpu };
    println!("{}", row(&m));
    Ok(m)
}

/// Calls per command between two `INFO commandstats` (the INFO the
/// measurement itself sends left out).
fn command_delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(cmd, _)| cmd.as_str() != "info")
        .filter_map(|(cmd, n)| {
            let d = n.saturating_sub(before.get(cmd).copied().unwrap_or(0));
            (d > 0).then(|| (cmd.clone(), d))
        })
        .collect()
}

/// Pre-creates the clients that CreateSession load is spread over.
async fn client_pool(store: &RedisStore, tenant: &Tenant, env: Environment) -> Result<Arc<Vec<Client>>, BoxError> {
    let pool: Arc<Vec<Client>> = Arc::new((0..SESSION_CLIENTS).map(|_| client(tenant, env)).collect());
    let op = {
        let (store, pool) = (store.clone(), pool.clone());
        Arc::new(move |_task: usize, i: usize| {
            let (store, pool) = (store.clone(), pool.clone());
            async move { store.create_client(&pool[i], None).await.map_err(|e| e.to_string()) }
        })
    };
    let r = drive(TASKS, 0, SESSION_CLIENTS, SETUP_LIMIT, op).await;
    r.require_all(SESSION_CLIENTS, "creating the client pool")?;
    Ok(pool)
}

/// `redis-benchmark` single-command floors on the same server (optional).
async fn redis_benchmark(port: u16) -> Vec<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-c", &TASKS.to_string(), "-n", "50000", "-t", "set,hset"])
            .arg("--csv")
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let out = match out {
        Ok(Ok(o)) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(Ok(o)) => return vec![format!("redis-benchmark failed: {}", o.status)],
        Ok(Err(e)) => return vec![format!("redis-benchmark not run: {e}")],
        Err(_) => return vec!["redis-benchmark timed out".into()],
    };
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(|s| s.trim_matches('"')).collect();
            (f.len() >= 7).then(|| {
                format!(
                    "redis-benchmark -c {TASKS} -t {:<5} {:>9} calls/s   p50 {:>4.0} µs   p99 {:>4.0} µs",
                    f[0].to_lowercase(),
                    f[1],
                    f[4].parse::<f64>().unwrap_or(f64::NAN) * 1000.0,
                    f[6].parse::<f64>().unwrap_or(f64::NAN) * 1000.0,
                )
            })
        })
        .collect()
}

// ---------------------------------------------------------------- figure B

struct Layout {
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

async fn figure_b(url: &str, admin: &mut MultiplexedConnection) -> Result<Vec<Layout>, BoxError> {
    println!(
        "\n== Figure B: Redis memory per live session ({MEMORY_SESSIONS} sessions, written \
         through RedisStore; no audit events: the store calls do not append any)"
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
    };
    let env = Environment::Production;
    let mut layouts = Vec::new();

    // Layout 1: MEMORY_CLIENTS clients × (MEMORY_SESSIONS / MEMORY_CLIENTS)
    // sessions, the sessions added with the create-session script.
    flush(admin).await?;
    let m0 = used_memory(admin).await?;
    let clients: Arc<Vec<Client>> = Arc::new((0..MEMORY_CLIENTS).map(|_| client(&tenant, env)).collect());
    create_clients(&store, clients.clone()).await?;
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
        samples: samples(admin, clients[0].id, sessions[0].id).await?,
        stats: memory_stats(admin).await?,
    };
    print_layout(&l);
    layouts.push(l);
    drop(sessions);

    // Layout 2: MEMORY_SESSIONS clients × 1 session, written by
    // create_client with its first session (one MULTI each). The client
    // hashes alone are measured in a separate fill of clients only.
    flush(admin).await?;
    let c0 = used_memory(admin).await?;
    let clients: Arc<Vec<Client>> = Arc::new((0..MEMORY_SESSIONS).map(|_| client(&tenant, env)).collect());
    create_clients(&store, clients).await?;
    let c1 = used_memory(admin).await?;

    flush(admin).await?;
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
                store.create_client(c, Some(s)).await.map_err(|e| e.to_string())
            }
        })
    };
    drive(TASKS, 0, MEMORY_SESSIONS, SETUP_LIMIT, op)
        .await
        .require_all(MEMORY_SESSIONS, "creating clients with sessions")?;
    let m1 = used_memory(admin).await?;
    let l = Layout {
        name: "100,000 clients × 1 session",
        sessions: MEMORY_SESSIONS,
        total: m1 - m0,
        clients: c1 - c0,
        keys: dbsize(admin).await?,
        samples: samples(admin, records[0].0.id, records[0].1.id).await?,
        stats: memory_stats(admin).await?,
    };
    print_layout(&l);
    layouts.push(l);
    flush(admin).await?;
    Ok(layouts)
}

/// Writes client records (no sessions) from `TASKS` concurrent tasks.
async fn create_clients(store: &RedisStore, clients: Arc<Vec<Client>>) -> Result<(), BoxError> {
    let n = clients.len();
    let op = {
        let store = store.clone();
        Arc::new(move |_task: usize, i: usize| {
            let (store, clients) = (store.clone(), clients.clone());
            async move { store.create_client(&clients[i], None).await.map_err(|e| e.to_string()) }
        })
    };
    drive(TASKS, 0, n, SETUP_LIMIT, op).await.require_all(n, "creating clients")
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

/// Type, size, `OBJECT ENCODING`, `MEMORY USAGE` and TTL of one client's keys: its
/// hash, one session's string (40 bytes) and its session index.
async fn samples(
    admin: &mut MultiplexedConnection,
    client: uuid::Uuid,
    session: uuid::Uuid,
) -> Result<Vec<String>, BoxError> {
    let c = short_id(client);
    let keys = [format!("c:{{{c}}}"), format!("s:{{{c}}}:{}", short_id(session)), format!("si:{{{c}}}")];
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
        // A client is a hash, a session one fixed-width string, the index a
        // sorted set.
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

/// The parts of `MEMORY STATS` that explain the per-key overhead.
async fn memory_stats(admin: &mut MultiplexedConnection) -> Result<String, BoxError> {
    let v: redis::Value =
        redis::cmd("MEMORY").arg("STATS").query_async(admin).await.map_err(|e| format!("MEMORY STATS: {e}"))?;
    let mut flat = BTreeMap::new();
    flatten("", &v, &mut flat);
    let get = |k: &str| flat.get(k).cloned().unwrap_or_else(|| "?".into());
    Ok(format!(
        "MEMORY STATS: keys.count {}, keys.bytes-per-key {}, dataset.bytes {}, \
         overhead.hashtable.main {}, overhead.hashtable.expires {}",
        get("keys.count"),
        get("keys.bytes-per-key"),
        get("dataset.bytes"),
        get("db.0.overhead.hashtable.main"),
        get("db.0.overhead.hashtable.expires"),
    ))
}

fn flatten(prefix: &str, v: &redis::Value, out: &mut BTreeMap<String, String>) {
    let text = |v: &redis::Value| -> Option<String> {
        match v {
            redis::Value::Int(i) => Some(i.to_string()),
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            redis::Value::SimpleString(s) => Some(s.clone()),
            redis::Value::Double(d) => Some(format!("{d:.3}")),
            _ => None,
        }
    };
    let pairs: Vec<(&redis::Value, &redis::Value)> = match v {
        redis::Value::Array(items) => items.chunks(2).filter_map(|c| Some((c.first()?, c.get(1)?))).collect(),
        redis::Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        _ => return,
    };
    for (k, v) in pairs {
        let Some(k) = text(k) else { continue };
        let name = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
        match text(v) {
            Some(t) => {
                out.insert(name, t);
            }
            None => flatten(&name, v, out),
        }
    }
}

// ---------------------------------------------------------------- summary

fn summary(a: &FigureA, b: &[Layout]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "================================ SUMMARY ================================");
    let _ = writeln!(
        o,
        "Figure A: session mint ({TASKS} concurrent: {CONNECTIONS} HTTP/2 connections × \
         {IN_FLIGHT_PER_CONNECTION}; raw rows: {TASKS} tasks on one multiplexed Redis connection; loopback; \
         authd, h2load, this process and redis-server share this machine)"
    );
    let _ = writeln!(o, "authd: {}", authd_note());
    let _ = writeln!(o, "{}", header());
    for m in &a.rows {
        let _ = writeln!(o, "{}", row(m));
    }
    for n in &a.h2load_notes {
        let _ = writeln!(o, "  {CC_H2LOAD}: {n}");
    }
    for s in &a.redis_benchmark {
        let _ = writeln!(o, "{s}");
    }
    let rate = |n: &str| a.rows.iter().find(|m| m.name == n).map(|m| m.run.rate());
    let ratio = |g: &str, r: &str| -> Option<f64> { Some(rate(g)? / rate(r)?) };
    let _ = writeln!(o, "\nRatios gRPC / raw store (successful calls per second, this run):");
    if let Some(x) = ratio(CC_H2LOAD, RAW_AUDITED) {
        let _ = writeln!(
            o,
            "  PRIMARY  CreateClient, h2load / raw create_client_audited (the same Redis work: MULTI/EXEC + XADD, \
             one round trip): {x:.2}  (target >= 0.5: {})",
            if x >= 0.5 { "met" } else { "NOT met" }
        );
    }
    for (what, g, r) in [
        (
            "CreateClient, tonic client in-proc / raw create_client_audited (the client shares authd's process \
             and cores)",
            CC_TONIC,
            RAW_AUDITED,
        ),
        ("CreateClient, h2load / raw create_client (MULTI/EXEC only, no audit XADD; reference)", CC_H2LOAD, RAW_MULTI),
        (
            "CreateSession, tonic client in-proc / raw create_session (the script only; authd also reads the \
             client and appends the audit event)",
            CS_TONIC,
            RAW_SESSION,
        ),
    ] {
        if let Some(x) = ratio(g, r) {
            let _ = writeln!(o, "           {what}: {x:.2}");
        }
    }
    let _ = writeln!(
        o,
        "\nCPU per successful call, µs (authd: its runtime's threads; h2load: the child process, CPU time once \
         reaped; load: this process's tonic client or raw store caller; redis: INFO cpu), and cores busy over \
         the phase: ours (the columns' total), and everything else on the machine (/proc/stat minus ours: other \
         users' builds); {} cores here:",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        o,
        "  {:<NAME_WIDTH$} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>10} {:>13}",
        "phase", "authd", "h2load", "load", "other", "redis", "total", "ours cores", "others' cores"
    );
    for m in &a.rows {
        let ok = m.run.ok().max(1) as f64;
        let c = &m.cpu;
        let us = |ns: u64| ns as f64 / 1000.0 / ok;
        let total = c.ours();
        let secs = m.run.elapsed.as_secs_f64();
        let _ = writeln!(
            o,
            "  {:<NAME_WIDTH$} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>10.2} {:>13.2}",
            m.name,
            us(c.authd),
            us(c.h2load),
            us(c.load),
            us(c.other),
            us(c.redis),
            us(total),
            total as f64 / 1e9 / secs,
            c.others() as f64 / 1e9 / secs,
        );
    }
    let _ = writeln!(
        o,
        "\nRedis commands per call (INFO commandstats delta / successful calls; commands run \
         inside MULTI and Lua count on their own):"
    );
    for m in &a.rows {
        let ok = m.run.ok().max(1) as f64;
        let total: u64 = m.commands.values().sum();
        let list: Vec<String> = m.commands.iter().map(|(c, n)| format!("{c} {:.2}", *n as f64 / ok)).collect();
        let _ = writeln!(o, "  {:<NAME_WIDTH$} {:>5.2} in all: {}", m.name, total as f64 / ok, list.join(", "));
    }
    let _ = writeln!(
        o,
        "  (a gRPC row minus its raw row is authd's own Redis work around the same store write: for CreateClient \
         nothing when the API key check is served from authd's cache, compare create_client_audited; for \
         CreateSession the client read (HGETALL) and the separate audit XADD)"
    );

    let _ = writeln!(
        o,
        "\nFigure B: Redis memory per live session (used_memory delta / {MEMORY_SESSIONS}; \
         records only: the store calls append no audit events; target <= 256 B)"
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
    o
}

fn header() -> String {
    format!(
        "{:<NAME_WIDTH$} {:>7} {:>6} {:>9} {:>8} {:>8} {:>8}",
        "phase", "calls", "errors", "calls/s", "p50 µs", "p99 µs", "max µs"
    )
}

fn row(m: &Measured) -> String {
    let r = &m.run;
    let mut s = format!(
        "{:<NAME_WIDTH$} {:>7} {:>6} {:>9.0} {:>8.0} {:>8.0} {:>8.0}",
        m.name,
        r.calls(),
        r.errors,
        r.rate(),
        r.percentile_us(50.0),
        r.percentile_us(99.0),
        r.percentile_us(100.0),
    );
    if let Some(e) = &r.first_error {
        let _ = write!(s, "   first error: {e}");
    }
    s
}

// ---------------------------------------------------------------- load

/// What one bounded load run did.
struct Run {
    /// Per-call latency, nanoseconds, sorted (h2load: HTTP 200 answers).
    lat_ns: Vec<u64>,
    /// Calls finished, successful or not.
    calls: usize,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
}

impl Run {
    fn calls(&self) -> usize {
        self.calls
    }
    fn ok(&self) -> usize {
        self.calls().saturating_sub(self.errors)
    }
    /// Successful calls per second.
    fn rate(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64()
    }
    /// Nearest-rank percentile, microseconds.
    fn percentile_us(&self, p: f64) -> f64 {
        if self.lat_ns.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.lat_ns.len() as f64).ceil() as usize;
        self.lat_ns[rank.clamp(1, self.lat_ns.len()) - 1] as f64 / 1000.0
    }
    fn require_all(&self, n: usize, what: &str) -> Result<(), BoxError> {
        if self.ok() == n {
            Ok(())
        } else {
            Err(format!(
                "{what}: {} of {n} done, {} failed (e.g. {})",
                self.ok(),
                self.errors,
                self.first_error.as_deref().unwrap_or("time limit")
            ))
        }
    }
}

/// Runs `op(task, index)` from `tasks` concurrent tasks until `max_calls`
/// calls were started or `limit` passed. Indexes run from `first`.
async fn drive<F, Fut>(tasks: usize, first: usize, max_calls: usize, limit: Duration, op: Arc<F>) -> Run
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for t in 0..tasks {
        let (op, next) = (op.clone(), next.clone());
        set.spawn(async move {
            let mut lat = Vec::with_capacity(max_calls / tasks + 1);
            let mut errors = 0;
            let mut first_error = None;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= max_calls || start.elapsed() >= limit {
                    break;
                }
                let t0 = Instant::now();
                let r = op(t, first + k).await;
                lat.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
                if let Err(e) = r {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            (lat, errors, first_error)
        });
    }
    let mut run =
        Run { lat_ns: Vec::with_capacity(max_calls), calls: 0, errors: 0, first_error: None, elapsed: Duration::ZERO };
    while let Some(r) = set.join_next().await {
        match r {
            Ok((lat, errors, first_error)) => {
                run.lat_ns.extend(lat);
                run.errors += errors;
                if run.first_error.is_none() {
                    run.first_error = first_error;
                }
            }
            Err(e) => {
                run.errors += 1;
                run.first_error.get_or_insert(format!("load task failed: {e}"));
            }
        }
    }
    run.elapsed = start.elapsed();
    run.calls = run.lat_ns.len();
    run.lat_ns.sort_unstable();
    run
}

// ---------------------------------------------------------------- records

/// A client record as `Authority::create_client` builds it.
fn client(tenant: &Tenant, env: Environment) -> Client {
    Client { id: rng::uuid(), tenant_id: tenant.id, env, labels: BTreeMap::new(), created_at: now_ms() }
}

/// A session record as `Authority` builds it (fresh token, default policy).
fn session(tenant: &Tenant, env: Environment, client_id: uuid::Uuid) -> Session {
    let now = now_ms();
    let token = Token::mint(TokenKind::Session, env, client_id, rng::uuid());
    let cap = now + tenant.max_lifetime_ms;
    Session {
        id: token.id,
        client_id,
        created_at: now,
        last_used: now,
        expires_at: Some(sliding_expiry(now, tenant.idle_timeout_ms, cap)),
        max_expires_at: Some(cap),
        hash: token.hash(),
    }
}

// ---------------------------------------------------------------- redis

/// The connection for setup, INFO, SCAN and FLUSHALL. Its response timeout
/// is long: a `FLUSHALL SYNC` of figure A's half a million keys takes longer
/// than the client's default 500 ms on a busy machine.
async fn admin_connection(url: &str) -> Result<MultiplexedConnection, BoxError> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    redis::Client::open(url)
        .map_err(|e| e.to_string())?
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("admin connection to Redis: {e}"))
}

async fn redis_version(url: &str) -> Result<String, BoxError> {
    let mut c = admin_connection(url).await?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut c).await.map_err(|e| e.to_string())?;
    Ok(info_field(&info, "redis_version").unwrap_or("?").to_string())
}

fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

/// Calls per command from `INFO commandstats`.
async fn commandstats(admin: &mut MultiplexedConnection) -> Result<BTreeMap<String, u64>, BoxError> {
    let info: String =
        redis::cmd("INFO").arg("commandstats").query_async(admin).await.map_err(err("INFO commandstats"))?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (cmd, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((cmd.to_string(), calls))
        })
        .collect())
}

/// `used_memory`, read after Redis has had a moment to finish incremental
/// rehashing and to shrink client buffers.
async fn used_memory(admin: &mut MultiplexedConnection) -> Result<i64, BoxError> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let info: String = redis::cmd("INFO").arg("memory").query_async(admin).await.map_err(err("INFO memory"))?;
    info_field(&info, "used_memory")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "INFO memory has no used_memory".to_string())
}

async fn dbsize(admin: &mut MultiplexedConnection) -> Result<u64, BoxError> {
    redis::cmd("DBSIZE").query_async(admin).await.map_err(err("DBSIZE"))
}

async fn flush(admin: &mut MultiplexedConnection) -> Result<(), BoxError> {
    redis::cmd("FLUSHALL").arg("SYNC").query_async::<()>(admin).await.map_err(err("FLUSHALL"))
}

fn status_text(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}
