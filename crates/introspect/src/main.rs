//! The introspect binary: parses flags and hands over to
//! `introspect::server::run`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use cred_core::cache::CacheOptions;
use cred_core::guard::GuardOptions;
use cred_core::model::Environment;
use cred_core::store::redis::RedisOptions;
use cred_core::store::{Instrumented, RedisStore};
use cred_serve::args::{HealthArgs, LimitArgs, PeerArgs, RedisArgs, RedisAuthArgs, TlsArgs, env_prefix, serve_options};
use cred_telemetry::LogFormat;
use introspect::gateway::IdentityHeaders;
use introspect::oauth::Callers;
use introspect::server::GatewayOptions;
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
    Serve(Box<ServeArgs>),
    /// Ask a server's grpc.health.v1 for a health name; exit 0 only on
    /// SERVING (the chart's `helm test`: the image has no shell).
    HealthCheck(cred_serve::check::HealthCheckArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "INTROSPECT_LISTEN", default_value = "0.0.0.0:50052")]
    listen: SocketAddr,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    redis_auth: RedisAuthArgs,
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
    limits: LimitArgs,
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
    /// The environment a credential must be of when the caller does not
    /// say (`required_environment` unset): `production` refuses test API
    /// keys, test sessions and test client keys (cause ENV_MISMATCH) unless
    /// the caller asks for TEST; `any` accepts both.
    #[arg(long, env = "INTROSPECT_ENVIRONMENT", value_enum, default_value_t = EnvPolicy::Production)]
    environment: EnvPolicy,
    #[command(flatten)]
    tls: TlsArgs,
    /// PEM CA for caller mTLS (needs TLS): every Verify then needs a client
    /// certificate it issued (else UNAUTHENTICATED), so only the services
    /// given one can use this replica as a validity oracle. Off by default.
    #[arg(long, env = "INTROSPECT_CLIENT_CA_FILE")]
    client_ca_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    health: HealthArgs,
    #[command(flatten)]
    peers: PeerArgs,
    /// Also serve plain HTTP/1.1 here, for gateways without gRPC: forward-auth
    /// (`/forward-auth`: nginx auth_request, Traefik ForwardAuth) and RFC 7662
    /// (`POST /oauth2/introspect`). Plaintext; off by default.
    #[arg(long, env = "INTROSPECT_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// Prefix of the identity headers set for the upstream by ext_authz and
    /// forward-auth (`<prefix>tenant-id`, `<prefix>client-id`, ...).
    #[arg(long, env = "INTROSPECT_IDENTITY_HEADER_PREFIX", default_value = "x-credd-")]
    identity_header_prefix: String,
    /// File of `client_id:secret` lines: the callers of RFC 7662 introspection
    /// (HTTP Basic, RFC 7662 §2.1). Without it (or --introspection-open) every
    /// introspection call is refused `invalid_client`.
    #[arg(long, env = "INTROSPECT_INTROSPECTION_CLIENTS_FILE", conflicts_with = "introspection_open")]
    introspection_clients_file: Option<std::path::PathBuf>,
    /// Let anyone who reaches the HTTP listener call RFC 7662 introspection
    /// without authenticating (behind mTLS or a mesh policy only).
    #[arg(long, env = "INTROSPECT_INTROSPECTION_OPEN")]
    introspection_open: bool,
}

/// `--environment`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum EnvPolicy {
    Production,
    Test,
    Any,
}

impl EnvPolicy {
    fn required(self) -> Option<Environment> {
        match self {
            EnvPolicy::Production => Some(Environment::Production),
            EnvPolicy::Test => Some(Environment::Test),
            EnvPolicy::Any => None,
        }
    }
}

#[tokio::main]
async fn main() {
    // The shared flags get introspect's env var names (INTROSPECT_MAX_REQUEST_BYTES, ...).
    let cmd = Cli::command().mut_subcommand("serve", |c| env_prefix(c, "INTROSPECT"));
    let a = match Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit()).cmd {
        Cmd::Serve(a) => *a,
        Cmd::HealthCheck(a) => match cred_serve::check::health_check(&a).await {
            Ok(ok) => return println!("{ok}"),
            Err(e) => {
                eprintln!("introspect: {e}");
                std::process::exit(2);
            }
        },
    };
    let telemetry = match cred_telemetry::init_with("introspect", LogFormat::Json, a.health.metrics_listen.is_some()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("introspect: {e}");
            std::process::exit(2);
        }
    };
    let result = serve(a, telemetry.scrape()).await;
    // The last calls' spans and a final metric collection go out before exit.
    telemetry.shutdown().await;
    if let Err(e) = result {
        eprintln!("introspect: {e}");
        std::process::exit(2);
    }
}

async fn serve(a: ServeArgs, scrape: Option<cred_telemetry::Scrape>) -> Result<(), String> {
    let deadline = Duration::from_millis(a.redis_timeout_ms);
    if a.cache_capacity == 0 || a.touch_granularity_ms == 0 {
        return Err("--cache-capacity and --touch-granularity-ms must be positive".into());
    }
    if a.failed_verify_tracked == 0 {
        return Err("--failed-verify-tracked: must be positive".into());
    }
    let limits = a.limits.limits()?;
    let drain = Duration::from_millis(a.drain_timeout_ms);
    let serve_opts = serve_options(
        &a.tls,
        a.client_ca_file.as_deref().map(|p| ("--client-ca-file", p)),
        &a.health,
        &a.peers,
        drain,
        limits,
        scrape,
    )
    .await?;
    let (target, flag) = a.redis.target()?;
    // A refused password names the flags it came from.
    let creds = a.redis_auth.used();
    let store = RedisStore::open(
        &target,
        RedisOptions {
            response_timeout: deadline,
            connection_timeout: deadline,
            auth: a.redis_auth.auth()?,
            tls: a.redis_auth.tls(&target)?,
            ..RedisOptions::default()
        },
    )
    .await
    .map_err(|e| format!("{flag}{creds}: {e}"))?;
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
        environment: a.environment.required(),
    };
    let headers =
        IdentityHeaders::new(&a.identity_header_prefix).map_err(|e| format!("--identity-header-prefix: {e}"))?;
    let callers = match (&a.introspection_clients_file, a.introspection_open) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--introspection-clients-file {}: {e}", path.display()))?;
            Callers::parse(&text).map_err(|e| format!("--introspection-clients-file {}: {e}", path.display()))?
        }
        (None, true) => Callers::Open,
        (None, false) => Callers::Nobody,
    };
    let listener = TcpListener::bind(a.listen).await.map_err(|e| format!("--listen {}: {e}", a.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let http = match a.http_listen {
        Some(h) => Some(TcpListener::bind(h).await.map_err(|e| format!("--http-listen {h}: {e}"))?),
        None => None,
    };
    let http_addr = http.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.to_string());
    tracing::info!(%addr, http_addr, tls = serve_opts.tls.is_some(), "introspect serving");
    let shutdown = async {
        cred_serve::serve::shutdown_signal().await;
        tracing::info!("shutting down: NOT_SERVING, draining calls in flight");
    };
    let gateway = GatewayOptions { headers, http, callers };
    introspect::server::run_with(listener, Verifier::new(store, opts), serve_opts, gateway, shutdown)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}
