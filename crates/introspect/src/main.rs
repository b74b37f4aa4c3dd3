//! The introspect binary: parses flags and hands over to
//! `introspect::server::run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use cred_core::guard::GuardOptions;
use cred_core::store::redis::RedisOptions;
use cred_core::store::{Instrumented, RedisStore, RedisTarget};
use cred_proto::limits::Limits;
use cred_proto::serve::ServeOptions;
use cred_proto::tls::ServerTls;
use cred_telemetry::LogFormat;
use introspect::cache::CacheOptions;
use introspect::{Verifier, VerifyOptions};
use std::num::NonZeroU32;
use tokio::net::TcpListener;

/// introspect: verify credentials on every request.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the verify API against Redis.
    Serve(ServeArgs),
}

#[derive(Args)]
// Exactly one store setting: both or neither fails at start, naming them.
#[command(group(ArgGroup::new("redis").required(true).args(["redis_url", "redis_cluster_nodes"])))]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "INTROSPECT_LISTEN", default_value = "0.0.0.0:50052")]
    listen: SocketAddr,
    /// Redis URL, e.g. redis://127.0.0.1:6379/0. Exactly one of this and
    /// --redis-cluster-nodes.
    #[arg(long, env = "INTROSPECT_REDIS_URL")]
    redis_url: Option<String>,
    /// Redis Cluster seed nodes, comma-separated, e.g.
    /// redis://10.0.0.1:6379,redis://10.0.0.2:6379 (the rest of the cluster
    /// is discovered from them). Exactly one of this and --redis-url.
    #[arg(long, env = "INTROSPECT_REDIS_CLUSTER_NODES", value_delimiter = ',')]
    redis_cluster_nodes: Option<Vec<String>>,
    /// Longest wait for the store, in milliseconds, before a verify fails
    /// UNAVAILABLE (never "valid").
    #[arg(long, env = "INTROSPECT_REDIS_TIMEOUT_MS", default_value_t = 250)]
    redis_timeout_ms: u64,
    /// At most one activity write per token per this many milliseconds (per
    /// replica); the stored expiry lags the exact rule by at most this.
    #[arg(long, env = "INTROSPECT_TOUCH_GRANULARITY_MS", default_value_t = 1000)]
    touch_granularity_ms: u64,
    /// Verified credentials cached (about 240 bytes each).
    #[arg(long, env = "INTROSPECT_CACHE_CAPACITY", default_value_t = 1_000_000)]
    cache_capacity: usize,
    /// Oldest a cached answer may be, in milliseconds: the safety net under
    /// push invalidation.
    #[arg(long, env = "INTROSPECT_CACHE_MAX_AGE_MS", default_value_t = 30_000)]
    cache_max_age_ms: u64,
    /// Refused tokens remembered.
    #[arg(long, env = "INTROSPECT_NEGATIVE_CACHE_CAPACITY", default_value_t = 100_000)]
    negative_cache_capacity: usize,
    /// How long a refused token is remembered, in milliseconds.
    #[arg(long, env = "INTROSPECT_NEGATIVE_TTL_MS", default_value_t = 5_000)]
    negative_ttl_ms: u64,
    /// After SIGTERM: health goes NOT_SERVING, new connections are refused,
    /// and calls in flight get this many milliseconds to finish.
    #[arg(long, env = "INTROSPECT_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    drain_timeout_ms: u64,
    /// Largest request message, in bytes; a larger one is refused
    /// RESOURCE_EXHAUSTED before it is read (at most 4194304).
    #[arg(long, env = "INTROSPECT_MAX_REQUEST_BYTES", default_value_t = 65_536)]
    max_request_bytes: usize,
    /// Largest header list (all metadata) of a call, in bytes; a larger one
    /// is answered HTTP 431 (far larger: the connection is closed).
    #[arg(long, env = "INTROSPECT_MAX_HEADER_LIST_BYTES", default_value_t = 16_384)]
    max_header_list_bytes: u32,
    /// Most calls in flight on one connection (HTTP/2 max concurrent streams).
    #[arg(long, env = "INTROSPECT_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    max_concurrent_streams: u32,
    /// Longest a call may run, in milliseconds; past it the call ends
    /// CANCELLED.
    #[arg(long, env = "INTROSPECT_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    request_timeout_ms: u64,
    /// Failed verifies allowed per token id per minute (and in a burst);
    /// past it, verifies of that id that need a store read get
    /// RESOURCE_EXHAUSTED with no store command. 0: no limit.
    #[arg(long, env = "INTROSPECT_FAILED_VERIFY_PER_CREDENTIAL", default_value_t = 10)]
    failed_verify_per_credential: u32,
    /// Failed verifies allowed per caller IP address per minute. Off (0) by
    /// default: callers are gateways speaking for many end users.
    #[arg(long, env = "INTROSPECT_FAILED_VERIFY_PER_PEER", default_value_t = 0)]
    failed_verify_per_peer: u32,
    /// Token ids, and callers, whose failures are remembered (bounds the
    /// memory of the budgets).
    #[arg(long, env = "INTROSPECT_FAILED_VERIFY_TRACKED", default_value_t = 100_000)]
    failed_verify_tracked: usize,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args)]
struct TlsArgs {
    /// PEM certificate chain: serve TLS (needs --tls-key-file).
    #[arg(long, env = "INTROSPECT_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "INTROSPECT_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// Also serve grpc.health.v1 alone, in plaintext, on this address: for
    /// Kubernetes gRPC probes, which cannot speak TLS.
    #[arg(long, env = "INTROSPECT_HEALTH_LISTEN")]
    health_listen: Option<SocketAddr>,
}

impl TlsArgs {
    /// The TLS setting and the health listener, or the setting at fault.
    async fn load(&self, drain: Duration, limits: Limits) -> Result<ServeOptions, String> {
        let tls = ServerTls::from_flags(self.tls_cert_file.as_deref(), self.tls_key_file.as_deref(), None)
            .map_err(|e| e.to_string())?;
        let health_listener = match self.health_listen {
            Some(a) => Some(TcpListener::bind(a).await.map_err(|e| format!("--health-listen {a}: {e}"))?),
            None => None,
        };
        Ok(ServeOptions { drain, tls, health_listener, limits })
    }
}

#[tokio::main]
async fn main() {
    let Cmd::Serve(a) = Cli::parse().cmd;
    let telemetry = match cred_telemetry::init("introspect", LogFormat::Json) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("introspect: {e}");
            std::process::exit(2);
        }
    };
    let result = serve(a).await;
    // The last calls' spans and a final metric collection go out before exit.
    telemetry.shutdown().await;
    if let Err(e) = result {
        eprintln!("introspect: {e}");
        std::process::exit(2);
    }
}

async fn serve(a: ServeArgs) -> Result<(), String> {
    let deadline = Duration::from_millis(a.redis_timeout_ms);
    if a.cache_capacity == 0 || a.touch_granularity_ms == 0 {
        return Err("--cache-capacity and --touch-granularity-ms must be positive".into());
    }
    if a.failed_verify_tracked == 0 {
        return Err("--failed-verify-tracked: must be positive".into());
    }
    let limits = Limits {
        max_request_bytes: a.max_request_bytes,
        max_header_list_bytes: a.max_header_list_bytes,
        max_concurrent_streams: a.max_concurrent_streams,
        request_timeout: Duration::from_millis(a.request_timeout_ms),
    };
    limits.validate().map_err(|e| e.to_string())?;
    let serve_opts = a.tls.load(Duration::from_millis(a.drain_timeout_ms), limits).await?;
    let (target, flag) = redis_target(a.redis_url, a.redis_cluster_nodes)?;
    let store = RedisStore::open(
        &target,
        RedisOptions { response_timeout: deadline, connection_timeout: deadline, ..RedisOptions::default() },
    )
    .await
    .map_err(|e| format!("{flag}: {e}"))?;
    let store = Instrumented::new(store, cred_telemetry::metrics::store_observer());
    let opts = VerifyOptions {
        deadline,
        touch_granularity: Duration::from_millis(a.touch_granularity_ms),
        cache: CacheOptions {
            capacity: a.cache_capacity,
            negative_capacity: a.negative_cache_capacity.max(1),
            max_age: Duration::from_millis(a.cache_max_age_ms),
            negative_ttl: Duration::from_millis(a.negative_ttl_ms),
        },
        guard: Some(GuardOptions {
            per_credential: NonZeroU32::new(a.failed_verify_per_credential),
            per_peer: NonZeroU32::new(a.failed_verify_per_peer),
            capacity: a.failed_verify_tracked,
        }),
    };
    let listener = TcpListener::bind(a.listen).await.map_err(|e| format!("--listen {}: {e}", a.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, tls = serve_opts.tls.is_some(), "introspect serving");
    let shutdown = async {
        cred_proto::serve::shutdown_signal().await;
        tracing::info!("shutting down: NOT_SERVING, draining calls in flight");
    };
    introspect::server::run_with(listener, Verifier::new(store, opts), shutdown, serve_opts)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
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
