//! cred-bench's figure A, "session mint": `authd.v1.ClientService/CreateClient`
//! and `CreateSession` over real gRPC, authd in process on its own runtime
//! (`authd_in_process`, set up as the authd binary sets itself up: API key
//! cache on, push listener running, `TCP_NODELAY` on accepted sockets).
//! CreateClient is driven twice: by `h2load` (a separate C process, 4 HTTP/2
//! connections × 16 streams, the primary figure) and by an in-process tonic
//! client (4 connections × 16 calls in flight, for comparison; it shares this
//! process's CPU). CreateSession, whose body names a client so h2load
//! cannot send it, is driven by the tonic client and by the lean h2 client
//! (`h2_grpc`: pre-encoded requests, a load as cheap as h2load's; the
//! primary figure). Beside them, the raw rate of the same Redis work with no
//! gRPC and no auth, from 64 tasks on one multiplexed connection as authd
//! has: `RedisStore::create_client_audited` (MULTI/EXEC + XADD in one round
//! trip, what CreateClient does), `RedisStore::create_client` (the MULTI
//! alone), `RedisStore::create_session` (the Lua script) and
//! `RedisStore::create_session_audited` (MULTI/EXEC of XADD + the script,
//! what CreateSession does: the figure it is held to). It reports
//! rates, latency percentiles, the ratios gRPC / raw, CPU per call by process
//! and thread, and the Redis commands one call costs (`INFO commandstats`
//! deltas divided by calls). h2load counts a gRPC error as a success, so its
//! successes are checked against the clients that appeared in Redis.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cred_core::Authority;
use cred_core::authority::NewApiKey;
use cred_core::cache::CacheOptions;
use cred_core::model::{AuditEvent, Client, Environment, Scopes, Session, Tenant, limits};
use cred_core::operator::OperatorSecret;
use cred_core::store::redis::RedisOptions;
use cred_core::store::{CreateSession, RedisStore, Store};
use cred_proto::authd::v1 as pb;
use cred_proto::authd::v1::client_service_client::ClientServiceClient;
use prost::Message as _;
use redis::aio::MultiplexedConnection;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::api::{grpc_frame, status_text};
use crate::authd_in_process::{AUTHD_THREADS, AuthdOptions, InProcessAuthd};
use crate::drive::{Run, drive};
use crate::h2_grpc::H2Grpc;
use crate::h2load::{self, Load, Target};
use crate::proc_stats;
use crate::records::{client, session};
use crate::redis_info::{command_delta, commandstats, count_keys, dbsize};
use crate::redis_server::RedisServer;

/// Thread name of the load generator's runtime (gRPC client, raw store
/// calls, setup); authd runs on its own runtime, [`AUTHD_THREADS`], so that
/// CPU time can be told apart per thread. The binary names its runtime so.
pub const LOAD_THREADS: &str = "load-rt";

/// HTTP/2 connections to authd.
pub const CONNECTIONS: usize = 4;
/// Calls in flight on each connection.
pub const IN_FLIGHT_PER_CONNECTION: usize = 16;
/// Concurrent tasks, for gRPC and for the raw store alike.
pub const TASKS: usize = CONNECTIONS * IN_FLIGHT_PER_CONNECTION;
/// A measured phase stops at this duration or call count, whichever first.
const PHASE_TIME: Duration = Duration::from_secs(5);
const PHASE_CALLS: usize = 50_000;
/// Unmeasured calls before each phase (connections, script cache, JIT-free
/// but allocator and branch-predictor warm).
const WARM_UP_CALLS: usize = 2_000;
/// Clients that CreateSession load is spread over (each may hold
/// `limits::SESSIONS_PER_CLIENT` live sessions).
const SESSION_CLIENTS: usize = 2_000;
/// No setup step may take longer than this.
pub const SETUP_LIMIT: Duration = Duration::from_secs(60);

pub struct FigureA {
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
const CS_H2: &str = "CreateSession gRPC, lean h2 client";
const RAW_SESSION: &str = "raw create_session (Lua script)";
const RAW_SESSION_AUDITED: &str = "raw create_session_audited (MULTI)";
/// Width of the row-name column.
const NAME_WIDTH: usize = 40;

/// The h2load load shape: the same 64 calls in flight as the other phases.
const H2LOAD_LOAD: Load =
    Load { connections: CONNECTIONS, streams: IN_FLIGHT_PER_CONNECTION, requests: PHASE_CALLS, rps: None };
const H2LOAD_WARM_UP: Load =
    Load { connections: CONNECTIONS, streams: IN_FLIGHT_PER_CONNECTION, requests: WARM_UP_CALLS, rps: None };
/// The gRPC path h2load POSTs to.
const CREATE_CLIENT_PATH: &str = "/authd.v1.ClientService/CreateClient";
const CREATE_SESSION_PATH: &str = "/authd.v1.ClientService/CreateSession";

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
    /// The whole machine's busy time, ours included.
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

/// Per-thread CPU time of this process, its reaped children's (h2load),
/// redis-server's and the machine's.
struct CpuSample {
    threads: BTreeMap<i32, (String, u64)>,
    children_ns: u64,
    redis_ns: u64,
    machine_ns: u64,
}

impl CpuSample {
    fn take(redis_pid: u32) -> CpuSample {
        let ns = |s: f64| (s * 1e9) as u64;
        CpuSample {
            threads: proc_stats::threads_ns(),
            children_ns: ns(proc_stats::children_cpu_s()),
            redis_ns: ns(proc_stats::cpu_s(redis_pid)),
            machine_ns: ns(proc_stats::machine_busy_s()),
        }
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

/// Runs figure A against `redis`.
pub async fn figure_a(redis: &RedisServer, admin: &mut MultiplexedConnection) -> Result<FigureA, String> {
    let (url, port, redis_pid) = (redis.url(), redis.port(), redis.pid());
    let url = url.as_str();
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
    let tenant = authority
        .create_tenant(&actor, "bench".into(), None, None, Default::default())
        .await
        .map_err(|e| format!("create_tenant: {e}"))?;
    let env = Environment::Production;
    let key = authority
        .create_api_key(
            &actor,
            NewApiKey { tenant_id: tenant.id, env, name: "bench".into(), scopes: Scopes::default(), expires_at: None },
        )
        .await
        .map_err(|e| format!("create_api_key: {e}"))?;

    // authd in process, with the API key cache on as the binary has it.
    let authd = InProcessAuthd::start(
        url,
        secret,
        operator_id,
        AuthdOptions { worker_threads: None, api_key_cache: Some(authd_cache_options()) },
    )
    .await?;
    let addr = authd.addr;

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
    let (m, h2load_notes) = h2load_create_client(addr, &key.token, &channels[0], &auth, admin, redis_pid).await?;
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
                // The quota as authd applies it: the default.
                match store.create_client_audited(c, Some(s), e, limits::CLIENTS_PER_TENANT).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("over the client quota".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
    };
    rows.push(phase(RAW_AUDITED, admin, redis_pid, op).await?);
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
    rows.push(phase(CC_TONIC, admin, redis_pid, op).await?);

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
    rows.push(phase(RAW_MULTI, admin, redis_pid, op).await?);
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
    rows.push(phase(CS_TONIC, admin, redis_pid, op).await?);

    // --- CreateSession over gRPC from the lean h2 client (pre-encoded
    // requests, one per client of a fresh pool; h2load cannot vary the
    // body): the primary CreateSession figure, its load costing about
    // what h2load's does.
    let pool = client_pool(&store, &tenant, env).await?;
    let frames: Arc<Vec<bytes::Bytes>> = Arc::new(
        pool.iter()
            .map(|c| grpc_frame(&pb::CreateSessionRequest { client_id: c.id.to_string() }.encode_to_vec()).into())
            .collect(),
    );
    let lean = H2Grpc::connect(addr, CONNECTIONS).await?;
    let bearer: http::HeaderValue =
        format!("Bearer {}", key.token).parse().map_err(|_| "API key is not a header value".to_string())?;
    let op = {
        let (lean, frames, bearer) = (lean.clone(), frames.clone(), bearer.clone());
        Arc::new(move |task: usize, i: usize| {
            let (lean, frame, bearer) = (lean.clone(), frames[i % frames.len()].clone(), bearer.clone());
            async move { lean.call(task, CREATE_SESSION_PATH, &bearer, frame).await }
        })
    };
    rows.push(phase(CS_H2, admin, redis_pid, op).await?);
    drop(lean);

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
    rows.push(phase(RAW_SESSION, admin, redis_pid, op).await?);
    drop(sessions);

    // --- The same Redis work CreateSession does, raw: MULTI{XADD of the
    // audit event, the script (owner check, room, the session field)} EXEC,
    // in one round trip.
    let pool = client_pool(&store, &tenant, env).await?;
    let records: Arc<Vec<(Session, AuditEvent)>> = Arc::new(
        (0..WARM_UP_CALLS + PHASE_CALLS)
            .map(|i| {
                let c = &pool[i % pool.len()];
                let s = session(&tenant, env, c.id);
                let e = AuditEvent {
                    action: "session.create".into(),
                    time: s.created_at,
                    ..audit_event(&api_key_actor, c, &s)
                };
                (s, e)
            })
            .collect(),
    );
    let tenant_id = tenant.id;
    let op = {
        let (store, records) = (store.clone(), records.clone());
        Arc::new(move |_task: usize, i: usize| {
            let (store, records) = (store.clone(), records.clone());
            async move {
                let (s, e) = &records[i];
                match store.create_session_audited(s, (tenant_id, env), e, limits::SESSIONS_PER_CLIENT).await {
                    Ok(CreateSession::Created) => Ok(()),
                    Ok(other) => Err(format!("{other:?}")),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
    };
    rows.push(phase(RAW_SESSION_AUDITED, admin, redis_pid, op).await?);
    drop(records);

    // Stop authd: drop the connections, then ask it to drain.
    drop(channels);
    if !authd.stop(Duration::from_secs(10)).await? {
        eprintln!("cred-bench: authd did not drain within 10 s; going on");
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
    redis_pid: u32,
) -> Result<(Measured, Vec<String>), String> {
    let dir = tempfile::tempdir().map_err(err("temp dir"))?;
    let body_path = dir.path().join("create-client.grpc");
    let log = dir.path().join("h2load.log");
    // The encoded CreateClientRequest{} (empty: no labels), framed.
    let msg = pb::CreateClientRequest::default().encode_to_vec();
    let body = grpc_frame(&msg);
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

    let c0 = count_keys(admin, "c:{*").await?;
    let target = Target { addr, path: CREATE_CLIENT_PATH, headers: &headers, h1: false };
    let warm = h2load::run(&target, &body_path, H2LOAD_WARM_UP, &log, limit).await?;
    let c1 = count_keys(admin, "c:{*").await?;
    if c1 <= c0 {
        return Err(format!(
            "h2load warm-up: {} HTTP successes but no client appeared in Redis: authd answered with gRPC errors",
            warm.succeeded
        ));
    }

    let keys0 = dbsize(admin).await?;
    let before = commandstats(admin).await?;
    let cpu_before = CpuSample::take(redis_pid);
    let r = h2load::run(&target, &body_path, H2LOAD_LOAD, &log, limit).await?;
    let cpu = CpuSample::take(redis_pid).since(&cpu_before);
    let commands = command_delta(&before, &commandstats(admin).await?, &["info"]);
    let c2 = count_keys(admin, "c:{*").await?;
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
         the client hash, its first session a field of it); {:.0} DATA bytes per answer (an error answer has none): {}",
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
async fn phase<F, Fut>(
    name: &'static str,
    admin: &mut MultiplexedConnection,
    redis_pid: u32,
    op: Arc<F>,
) -> Result<Measured, String>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let warm = drive(TASKS, 0, WARM_UP_CALLS, SETUP_LIMIT, op.clone()).await;
    if warm.errors == warm.calls() {
        return Err(format!("{name}: every warm-up call failed, e.g. {}", warm.first_error.unwrap_or_default()));
    }
    let before = commandstats(admin).await?;
    let cpu_before = CpuSample::take(redis_pid);
    let run = drive(TASKS, WARM_UP_CALLS, PHASE_CALLS, PHASE_TIME, op).await;
    let cpu = CpuSample::take(redis_pid).since(&cpu_before);
    let commands = command_delta(&before, &commandstats(admin).await?, &["info"]);
    let m = Measured { name, run, commands, cpu };
    println!("{}", row(&m));
    Ok(m)
}

/// Pre-creates the clients that CreateSession load is spread over.
async fn client_pool(store: &RedisStore, tenant: &Tenant, env: Environment) -> Result<Arc<Vec<Client>>, String> {
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

impl FigureA {
    /// The figure's part of the summary.
    pub fn summary(&self, o: &mut String) {
        let a = self;
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
        if let Some(x) = ratio(CS_H2, RAW_SESSION_AUDITED) {
            let _ = writeln!(
                o,
                "  PRIMARY  CreateSession, lean h2 client / raw create_session_audited (the same Redis work: \
             MULTI/EXEC of the audit XADD and the script, one round trip): {x:.2}  (target >= 0.5: {})",
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
            (
                "CreateClient, h2load / raw create_client (MULTI/EXEC only, no audit XADD; reference)",
                CC_H2LOAD,
                RAW_MULTI,
            ),
            (
                "CreateSession, tonic client in-proc / raw create_session_audited (the client's stack costs about \
             twice h2load's, on the same cores)",
                CS_TONIC,
                RAW_SESSION_AUDITED,
            ),
            (
                "CreateSession, tonic client in-proc / raw create_session (the script only; reference)",
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
         reaped; load: this process's tonic client or raw store caller; redis: its /proc CPU time), and cores busy over \
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
         CreateSession against the script alone, the audit XADD, against create_session_audited, nothing)"
        );
    }
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

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}
