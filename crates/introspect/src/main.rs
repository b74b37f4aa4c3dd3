//! The introspect binary: parses flags and hands over to
//! `introspect::server::run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use cred_core::store::redis::RedisOptions;
use cred_core::store::{RedisStore, RedisTarget};
use cred_proto::serve::ServeOptions;
use cred_proto::tls::ServerTls;
use introspect::cache::CacheOptions;
use introspect::{Verifier, VerifyOptions};
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
    async fn load(&self, drain: Duration) -> Result<ServeOptions, String> {
        let tls = ServerTls::from_flags(self.tls_cert_file.as_deref(), self.tls_key_file.as_deref(), None)
            .map_err(|e| e.to_string())?;
        let health_listener = match self.health_listen {
            Some(a) => Some(TcpListener::bind(a).await.map_err(|e| format!("--health-listen {a}: {e}"))?),
            None => None,
        };
        Ok(ServeOptions { drain, tls, health_listener })
    }
}

#[tokio::main]
async fn main() {
    let Cmd::Serve(a) = Cli::parse().cmd;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).json().init();
    if let Err(e) = serve(a).await {
        eprintln!("introspect: {e}");
        std::process::exit(2);
    }
}

async fn serve(a: ServeArgs) -> Result<(), String> {
    let deadline = Duration::from_millis(a.redis_timeout_ms);
    if a.cache_capacity == 0 || a.touch_granularity_ms == 0 {
        return Err("--cache-capacity and --touch-granularity-ms must be positive".into());
    }
    let serve_opts = a.tls.load(Duration::from_millis(a.drain_timeout_ms)).await?;
    let (target, flag) = redis_target(a.redis_url, a.redis_cluster_nodes)?;
    let store = RedisStore::open(&target, RedisOptions { response_timeout: deadline, connection_timeout: deadline })
        .await
        .map_err(|e| format!("{flag}: {e}"))?;
    let opts = VerifyOptions {
        deadline,
        touch_granularity: Duration::from_millis(a.touch_granularity_ms),
        cache: CacheOptions {
            capacity: a.cache_capacity,
            negative_capacity: a.negative_cache_capacity.max(1),
            max_age: Duration::from_millis(a.cache_max_age_ms),
            negative_ttl: Duration::from_millis(a.negative_ttl_ms),
        },
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
