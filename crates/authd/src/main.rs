//! The authd binary: parses flags and hands over to `authd::server::run`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use authd::auth::OperatorAuth;
use clap::{ArgGroup, Args, Parser, Subcommand};
use cred_core::Authority;
use cred_core::cache::CacheOptions;
use cred_core::guard::GuardOptions;
use cred_core::operator::{Allowlist, OperatorSecret};
use cred_core::store::redis::{RedisOptions, WaitReplicas};
use cred_core::store::{Instrumented, MemoryStore, RedisStore, RedisTarget, Store};
use cred_proto::limits::Limits;
use cred_proto::serve::ServeOptions;
use cred_telemetry::LogFormat;
use tokio::net::TcpListener;

/// authd: issue, rotate, list and revoke credentials over gRPC.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the gRPC API against Redis.
    Serve(Box<ServeArgs>),
    /// Zero-setup dev mode: in-memory store (or --redis-url), loopback, a
    /// ready operator key, tenant and API keys, and pasteable commands.
    Dev(DevArgs),
    /// Operator keys, made offline from the server's operator secret.
    #[command(subcommand)]
    OperatorKey(OperatorKeyCmd),
}

#[derive(Args)]
// Exactly one store setting: both or neither fails at start, naming them.
#[command(group(ArgGroup::new("redis").required(true).args(["redis_url", "redis_cluster_nodes"])))]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "AUTHD_LISTEN", default_value = "0.0.0.0:50051")]
    listen: SocketAddr,
    /// Redis URL, e.g. redis://127.0.0.1:6379/0. Exactly one of this and
    /// --redis-cluster-nodes.
    #[arg(long, env = "AUTHD_REDIS_URL")]
    redis_url: Option<String>,
    /// Redis Cluster seed nodes, comma-separated, e.g.
    /// redis://10.0.0.1:6379,redis://10.0.0.2:6379 (the rest of the cluster
    /// is discovered from them). Exactly one of this and --redis-url.
    #[arg(long, env = "AUTHD_REDIS_CLUSTER_NODES", value_delimiter = ',')]
    redis_cluster_nodes: Option<Vec<String>>,
    #[command(flatten)]
    secret: SecretArgs,
    /// File of allowed operator key ids, one per line (`#` comments).
    /// Re-read on SIGHUP.
    #[arg(long, env = "AUTHD_OPERATOR_ALLOWLIST_FILE")]
    operator_allowlist_file: PathBuf,
    /// Longest wait for one Redis answer, in milliseconds; past it the call
    /// fails UNAVAILABLE.
    #[arg(long, env = "AUTHD_REDIS_TIMEOUT_MS", default_value_t = 500)]
    redis_timeout_ms: u64,
    /// After every write, wait (Redis `WAIT`) until this many replicas
    /// acknowledged it; fewer within --redis-wait-timeout-ms fails the call
    /// UNAVAILABLE ("not replicated"). 0: do not wait.
    #[arg(long, env = "AUTHD_REDIS_WAIT_REPLICAS", default_value_t = 0)]
    redis_wait_replicas: u32,
    /// Longest wait for the replicas of --redis-wait-replicas, in
    /// milliseconds (at least 1).
    #[arg(long, env = "AUTHD_REDIS_WAIT_TIMEOUT_MS", default_value_t = 100)]
    redis_wait_timeout_ms: u64,
    #[command(flatten)]
    cache: CacheArgs,
    /// After SIGTERM: health goes NOT_SERVING, new connections are refused,
    /// and calls in flight get this many milliseconds to finish.
    #[arg(long, env = "AUTHD_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    drain_timeout_ms: u64,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct TlsArgs {
    /// PEM certificate chain: serve TLS (needs --tls-key-file).
    #[arg(long, env = "AUTHD_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "AUTHD_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// PEM CA for admin mTLS (needs TLS): AdminService calls also need a
    /// client certificate it issued, besides the operator key (else
    /// UNAUTHENTICATED). Client certificates stay optional for the other
    /// services.
    #[arg(long, env = "AUTHD_ADMIN_CLIENT_CA_FILE")]
    admin_client_ca_file: Option<PathBuf>,
    /// Also serve grpc.health.v1 alone, in plaintext, on this address: for
    /// Kubernetes gRPC probes, which cannot speak TLS.
    #[arg(long, env = "AUTHD_HEALTH_LISTEN")]
    health_listen: Option<SocketAddr>,
}

impl TlsArgs {
    /// The TLS setting and the health listener, or the setting at fault.
    async fn load(&self, drain: Duration, limits: Limits) -> Result<ServeOptions, String> {
        let tls = cred_proto::tls::ServerTls::from_flags(
            self.tls_cert_file.as_deref(),
            self.tls_key_file.as_deref(),
            self.admin_client_ca_file.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        let health_listener = match self.health_listen {
            Some(a) => Some(TcpListener::bind(a).await.map_err(|e| format!("--health-listen {a}: {e}"))?),
            None => None,
        };
        Ok(ServeOptions { drain, tls, health_listener, limits })
    }
}

/// Request limits and failed-authentication budgets (README "Limits").
#[derive(Args)]
struct LimitArgs {
    /// Largest request message, in bytes; a larger one is refused
    /// RESOURCE_EXHAUSTED before it is read (at most 4194304).
    #[arg(long, env = "AUTHD_MAX_REQUEST_BYTES", default_value_t = 65_536)]
    max_request_bytes: usize,
    /// Largest header list (all metadata) of a call, in bytes; a larger one
    /// is answered HTTP 431 (far larger: the connection is closed).
    #[arg(long, env = "AUTHD_MAX_HEADER_LIST_BYTES", default_value_t = 16_384)]
    max_header_list_bytes: u32,
    /// Most calls in flight on one connection (HTTP/2 max concurrent streams).
    #[arg(long, env = "AUTHD_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    max_concurrent_streams: u32,
    /// Longest a call may run, in milliseconds; past it the call ends
    /// CANCELLED.
    #[arg(long, env = "AUTHD_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    request_timeout_ms: u64,
    /// Failed authentications allowed per credential id per minute (and in
    /// a burst); past it the id's attempts get RESOURCE_EXHAUSTED with no
    /// store command. 0: no limit.
    #[arg(long, env = "AUTHD_FAILED_AUTH_PER_CREDENTIAL", default_value_t = 10)]
    failed_auth_per_credential: u32,
    /// Failed authentications allowed per peer IP address per minute (and
    /// in a burst); past it the peer's attempts get RESOURCE_EXHAUSTED.
    /// 0: no limit.
    #[arg(long, env = "AUTHD_FAILED_AUTH_PER_PEER", default_value_t = 100)]
    failed_auth_per_peer: u32,
    /// Credential ids, and peers, whose failures are remembered (bounds the
    /// memory of the budgets).
    #[arg(long, env = "AUTHD_FAILED_AUTH_TRACKED", default_value_t = 100_000)]
    failed_auth_tracked: usize,
}

impl LimitArgs {
    /// The request limits; checks every limit flag.
    fn limits(&self) -> Result<Limits, String> {
        if self.failed_auth_tracked == 0 {
            return Err("--failed-auth-tracked: must be positive".into());
        }
        let l = Limits {
            max_request_bytes: self.max_request_bytes,
            max_header_list_bytes: self.max_header_list_bytes,
            max_concurrent_streams: self.max_concurrent_streams,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
        };
        l.validate().map_err(|e| e.to_string())?;
        Ok(l)
    }

    fn guard<S: Store>(&self, a: Authority<S>) -> Authority<S> {
        a.with_failure_guard(GuardOptions {
            per_credential: NonZeroU32::new(self.failed_auth_per_credential),
            per_peer: NonZeroU32::new(self.failed_auth_per_peer),
            capacity: self.failed_auth_tracked,
        })
    }
}

#[derive(Args)]
struct CacheArgs {
    /// Oldest a cached API key check may be, in milliseconds (revocations
    /// reach the cache at once by push; this is the safety net). 0 turns the
    /// cache off.
    #[arg(long, env = "AUTHD_API_KEY_CACHE_MAX_AGE_MS", default_value_t = 30_000)]
    api_key_cache_max_age_ms: u64,
    /// API keys cached.
    #[arg(long, env = "AUTHD_API_KEY_CACHE_CAPACITY", default_value_t = 100_000)]
    api_key_cache_capacity: usize,
}

impl CacheArgs {
    fn apply<S: Store>(&self, a: Authority<S>) -> Authority<S> {
        if self.api_key_cache_max_age_ms == 0 || self.api_key_cache_capacity == 0 {
            return a;
        }
        a.with_api_key_cache(CacheOptions {
            capacity: self.api_key_cache_capacity,
            max_age: Duration::from_millis(self.api_key_cache_max_age_ms),
            ..CacheOptions::default()
        })
    }
}

#[derive(Args)]
struct SecretArgs {
    /// Operator secret (base64 of 32 bytes). Prefer the file or env form:
    /// flags are visible in the process list.
    #[arg(long, env = "AUTHD_OPERATOR_SECRET", hide_env_values = true, conflicts_with = "operator_secret_file")]
    operator_secret: Option<String>,
    /// File holding the operator secret.
    #[arg(long, env = "AUTHD_OPERATOR_SECRET_FILE")]
    operator_secret_file: Option<PathBuf>,
}

impl SecretArgs {
    fn load(&self) -> Result<OperatorSecret, String> {
        let text = match (&self.operator_secret, &self.operator_secret_file) {
            (Some(s), _) => s.clone(),
            (None, Some(f)) => {
                std::fs::read_to_string(f).map_err(|e| format!("--operator-secret-file {}: {e}", f.display()))?
            }
            (None, None) => {
                return Err("an operator secret is required: --operator-secret-file or AUTHD_OPERATOR_SECRET".into());
            }
        };
        OperatorSecret::parse(&text).map_err(|e| format!("operator secret: {e}"))
    }
}

#[derive(Args)]
struct DevArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, env = "AUTHD_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Use this Redis instead of the in-memory store.
    #[arg(long, env = "AUTHD_REDIS_URL")]
    redis_url: Option<String>,
    #[command(flatten)]
    cache: CacheArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Subcommand)]
enum OperatorKeyCmd {
    /// Print a new random operator secret (base64) for the server.
    Secret,
    /// Print a new operator key id and token; add the id to the allowlist.
    New(SecretArgs),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve(a) => serve(*a).await,
        Cmd::Dev(a) => dev(a).await,
        Cmd::OperatorKey(OperatorKeyCmd::Secret) => {
            println!("{}", OperatorSecret::generate().1);
            Ok(())
        }
        Cmd::OperatorKey(OperatorKeyCmd::New(s)) => s.load().map(|secret| {
            let (id, token) = secret.issue();
            println!("key id: {id}\ntoken:  {token}");
            eprintln!(
                "Add the key id to the operator allowlist file and send authd SIGHUP. The token is shown only now."
            );
        }),
    };
    if let Err(e) = result {
        eprintln!("authd: {e}");
        std::process::exit(2);
    }
}

/// Every store call gets a span and a latency observation.
fn instrumented<S: Store>(store: S) -> Instrumented<S> {
    Instrumented::new(store, cred_telemetry::metrics::store_observer())
}

fn load_allowlist(path: &Path) -> Result<Allowlist, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--operator-allowlist-file {}: {e}", path.display()))?;
    Allowlist::parse(&text).map_err(|e| format!("--operator-allowlist-file {}: {e}", path.display()))
}

async fn serve(a: ServeArgs) -> Result<(), String> {
    let telemetry = cred_telemetry::init("authd", LogFormat::Json)?;
    let result = serve_with(a).await;
    // The last calls' spans and a final metric collection go out before exit.
    telemetry.shutdown().await;
    result
}

async fn serve_with(a: ServeArgs) -> Result<(), String> {
    let wait_replicas = match (a.redis_wait_replicas, a.redis_wait_timeout_ms) {
        (0, _) => None,
        (_, 0) => return Err("--redis-wait-timeout-ms (AUTHD_REDIS_WAIT_TIMEOUT_MS) must be at least 1".into()),
        (replicas, ms) => Some(WaitReplicas { replicas, timeout: Duration::from_millis(ms) }),
    };
    let limits = a.limits.limits()?;
    let opts = a.tls.load(Duration::from_millis(a.drain_timeout_ms), limits).await?;
    let secret = a.secret.load()?;
    let operators = OperatorAuth::new(secret, load_allowlist(&a.operator_allowlist_file)?);
    let timeout = Duration::from_millis(a.redis_timeout_ms);
    let (target, flag) = redis_target(a.redis_url, a.redis_cluster_nodes)?;
    let store = RedisStore::open(
        &target,
        RedisOptions { response_timeout: timeout, connection_timeout: timeout, wait_replicas },
    )
    .await
    .map_err(|e| format!("{flag}: {e}"))?;
    spawn_allowlist_reloader(operators.clone(), a.operator_allowlist_file.clone());
    let listener = TcpListener::bind(a.listen).await.map_err(|e| format!("--listen {}: {e}", a.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, tls = opts.tls.is_some(), "authd serving");
    let authority = a.limits.guard(a.cache.apply(Authority::new(instrumented(store))));
    run(listener, authority, operators, opts).await
}

/// The store's target from the two exclusive settings (clap enforces
/// exactly one), with the flag to name in errors.
fn redis_target(url: Option<String>, nodes: Option<Vec<String>>) -> Result<(RedisTarget, &'static str), String> {
    match (url, nodes) {
        (Some(url), None) => Ok((RedisTarget::Standalone(url), "--redis-url")),
        (None, Some(nodes)) => Ok((RedisTarget::Cluster(nodes), "--redis-cluster-nodes")),
        _ => Err("exactly one of --redis-url and --redis-cluster-nodes is required".into()),
    }
}

async fn dev(a: DevArgs) -> Result<(), String> {
    let telemetry = cred_telemetry::init("authd", LogFormat::Human)?;
    let result = dev_serve(a).await;
    telemetry.shutdown().await;
    result
}

async fn dev_serve(a: DevArgs) -> Result<(), String> {
    let listener = TcpListener::bind(a.listen).await.map_err(|e| format!("--listen {}: {e}", a.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (secret, _) = OperatorSecret::generate();
    let limits = a.limits.limits()?;
    match a.redis_url {
        Some(url) => {
            let store =
                RedisStore::connect(&url, RedisOptions::default()).await.map_err(|e| format!("--redis-url: {e}"))?;
            let authority = a.limits.guard(a.cache.apply(Authority::new(instrumented(store))));
            dev_with(listener, addr, authority, secret, &url, limits).await
        }
        None => {
            let authority = a.limits.guard(a.cache.apply(Authority::new(instrumented(MemoryStore::new()))));
            dev_with(listener, addr, authority, secret, "in-memory", limits).await
        }
    }
}

async fn dev_with<S: Store>(
    listener: TcpListener,
    addr: SocketAddr,
    authority: Authority<S>,
    secret: OperatorSecret,
    store: &str,
    limits: Limits,
) -> Result<(), String> {
    let setup = authd::dev::bootstrap(&authority, &secret).await.map_err(|e| format!("dev setup: {e}"))?;
    let operators = OperatorAuth::new(secret, Allowlist::of([setup.operator_key_id]));
    println!("{}", authd::dev::banner(&setup, addr, store));
    let opts = ServeOptions { limits, ..ServeOptions::new(authd::server::DRAIN) };
    run(listener, authority, operators, opts).await
}

async fn run<S: Store>(
    listener: TcpListener,
    authority: Authority<S>,
    operators: OperatorAuth,
    opts: ServeOptions,
) -> Result<(), String> {
    let drain = opts.drain;
    let shutdown = async {
        cred_proto::serve::shutdown_signal().await;
        tracing::info!(?drain, "shutting down: NOT_SERVING, draining calls in flight");
    };
    authd::server::run_with(listener, authority, operators, shutdown, opts).await.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP re-reads the allowlist; a bad file keeps the old list.
fn spawn_allowlist_reloader(operators: OperatorAuth, path: PathBuf) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::error!("cannot listen for SIGHUP; the allowlist will not reload");
            return;
        };
        while hup.recv().await.is_some() {
            match load_allowlist(&path) {
                Ok(list) => {
                    tracing::info!(keys = list.len(), "operator allowlist reloaded");
                    operators.reload(list);
                }
                Err(e) => {
                    tracing::error!(error = %e, "allowlist reload failed; keeping the previous one")
                }
            }
        }
    });
}
