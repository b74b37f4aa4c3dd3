//! The authd binary: parses flags and hands over to `authd::server::run`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use authd::auth::OperatorAuth;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use cred_core::Authority;
use cred_core::cache::CacheOptions;
use cred_core::guard::GuardOptions;
use cred_core::operator::{Allowlist, OperatorSecret};
use cred_core::store::redis::{RedisOptions, WaitReplicas};
use cred_core::store::{Instrumented, MemoryStore, RedisStore, Store};
use cred_serve::args::{HealthArgs, LimitArgs, PeerArgs, RedisArgs, RedisAuthArgs, TlsArgs, env_prefix, serve_options};
use cred_serve::limits::Limits;
use cred_serve::serve::ServeOptions;
use cred_serve::tls::CLIENT_CA_FLAG;
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
    /// Ask a server's grpc.health.v1 for a health name; exit 0 only on
    /// SERVING (the chart's `helm test`: the image has no shell).
    HealthCheck(cred_serve::check::HealthCheckArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "AUTHD_LISTEN", default_value = "0.0.0.0:50051")]
    listen: SocketAddr,
    /// Also serve every RPC as HTTP/JSON on this address (HTTP/1.1 and h2c,
    /// plaintext: put TLS in front of it), at the paths of the proto's
    /// google.api.http options (README "HTTP/JSON"). Off unless set.
    #[arg(long, env = "AUTHD_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// Serve the operator console (a browser UI for the admin API) at
    /// /console/ on the --http-listen address. Off by default.
    #[arg(long, env = "AUTHD_CONSOLE", requires = "http_listen")]
    console: bool,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    redis_auth: RedisAuthArgs,
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
    /// PEM CA for admin mTLS (needs TLS): AdminService calls also need a
    /// client certificate it issued, besides the operator key (else
    /// UNAUTHENTICATED). Client certificates stay optional for the other
    /// services.
    #[arg(long, env = "AUTHD_ADMIN_CLIENT_CA_FILE")]
    admin_client_ca_file: Option<PathBuf>,
    #[command(flatten)]
    health: HealthArgs,
    #[command(flatten)]
    peers: PeerArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    budgets: BudgetArgs,
}

/// Failed-authentication budgets (README "Limits").
#[derive(Args)]
struct BudgetArgs {
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

impl BudgetArgs {
    /// The request limits of `limits`; checks every limit flag.
    fn limits(&self, limits: &LimitArgs) -> Result<Limits, String> {
        if self.failed_auth_tracked == 0 {
            return Err("--failed-auth-tracked: must be positive".into());
        }
        limits.limits()
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
    /// Where introspect's IntrospectService (and ext_authz) is served, over
    /// the same store: its own port, as in production (introspect's default
    /// port), so clients configured for dev need no change later.
    #[arg(long, default_value = "127.0.0.1:50052")]
    introspect_listen: SocketAddr,
    /// Also serve every RPC as HTTP/JSON on this address (HTTP/1.1 and h2c,
    /// plaintext: put TLS in front of it), at the paths of the proto's
    /// google.api.http options (README "HTTP/JSON"). Off unless set.
    #[arg(long, env = "AUTHD_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// Serve the operator console (a browser UI for the admin API) at
    /// /console/ on the --http-listen address. Off by default.
    #[arg(long, env = "AUTHD_CONSOLE", requires = "http_listen")]
    console: bool,
    /// Use this Redis instead of the in-memory store.
    #[arg(long, env = "AUTHD_REDIS_URL")]
    redis_url: Option<String>,
    #[command(flatten)]
    cache: CacheArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    budgets: BudgetArgs,
}

#[derive(Subcommand)]
enum OperatorKeyCmd {
    /// Print a new random operator secret (base64) for the server.
    Secret,
    /// Print a new operator key id and token; add the id to the allowlist.
    New(SecretArgs),
}

/// mimalloc, not glibc's malloc: with glibc, malloc and free were about 15%
/// of authd's CPU per CreateSession (perf, cred-bench A), and with mimalloc
/// authd's CPU per call fell by a fifth to a third. introspect keeps the system
/// allocator: its figures (throughput, memory per cached credential) were
/// measured with it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    // The shared flags get authd's env var names (AUTHD_MAX_REQUEST_BYTES, ...).
    let cmd = Cli::command()
        .mut_subcommand("serve", |c| env_prefix(c, "AUTHD"))
        .mut_subcommand("dev", |c| env_prefix(c, "AUTHD"));
    let cli = Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit());
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
        Cmd::HealthCheck(a) => cred_serve::check::health_check(&a).await.map(|ok| println!("{ok}")),
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
    let telemetry = cred_telemetry::init_with("authd", LogFormat::Json, a.health.metrics_listen.is_some())?;
    let result = serve_with(a, telemetry.scrape()).await;
    // The last calls' spans and a final metric collection go out before exit.
    telemetry.shutdown().await;
    result
}

async fn serve_with(a: ServeArgs, scrape: Option<cred_telemetry::Scrape>) -> Result<(), String> {
    let wait_replicas = match (a.redis_wait_replicas, a.redis_wait_timeout_ms) {
        (0, _) => None,
        (_, 0) => return Err("--redis-wait-timeout-ms (AUTHD_REDIS_WAIT_TIMEOUT_MS) must be at least 1".into()),
        (replicas, ms) => Some(WaitReplicas { replicas, timeout: Duration::from_millis(ms) }),
    };
    let limits = a.budgets.limits(&a.limits)?;
    let drain = Duration::from_millis(a.drain_timeout_ms);
    let opts = serve_options(
        &a.tls,
        a.admin_client_ca_file.as_deref().map(|p| (CLIENT_CA_FLAG, p)),
        &a.health,
        &a.peers,
        drain,
        limits,
        scrape,
    )
    .await?;
    let secret = a.secret.load()?;
    let operators = OperatorAuth::new(secret, load_allowlist(&a.operator_allowlist_file)?);
    let timeout = Duration::from_millis(a.redis_timeout_ms);
    let (target, flag) = a.redis.target()?;
    // A refused password names the flags it came from.
    let creds = a.redis_auth.used();
    let store = RedisStore::open(
        &target,
        RedisOptions {
            response_timeout: timeout,
            connection_timeout: timeout,
            wait_replicas,
            auth: a.redis_auth.auth()?,
            tls: a.redis_auth.tls(&target)?,
        },
    )
    .await
    .map_err(|e| format!("{flag}{creds}: {e}"))?;
    watch_allowlist(operators.clone(), a.operator_allowlist_file.clone());
    let listener = TcpListener::bind(a.listen).await.map_err(|e| format!("--listen {}: {e}", a.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, tls = opts.tls.is_some(), "authd serving");
    let http = bind_http(a.http_listen, a.console).await?;
    if http.is_some() && opts.tls.is_some() {
        tracing::warn!("--http-listen serves plaintext beside the TLS gRPC listener: terminate TLS in front of it");
    }
    let authority = a.budgets.guard(a.cache.apply(Authority::new(instrumented(store))));
    run(listener, http, authority, operators, opts).await
}

async fn dev(a: DevArgs) -> Result<(), String> {
    let telemetry = cred_telemetry::init("authd", LogFormat::Human)?;
    let result = dev_serve(a).await;
    telemetry.shutdown().await;
    result
}

async fn dev_serve(a: DevArgs) -> Result<(), String> {
    let listener = TcpListener::bind(a.listen).await.map_err(|e| format!("--listen {}: {e}", a.listen))?;
    let introspect = TcpListener::bind(a.introspect_listen)
        .await
        .map_err(|e| format!("--introspect-listen {}: {e}", a.introspect_listen))?;
    let http = bind_http(a.http_listen, a.console).await?;
    let (secret, _) = OperatorSecret::generate();
    let limits = a.budgets.limits(&a.limits)?;
    let listen = DevListen { authd: listener, introspect, http };
    match &a.redis_url {
        Some(url) => {
            let store =
                RedisStore::connect(url, RedisOptions::default()).await.map_err(|e| format!("--redis-url: {e}"))?;
            dev_with(listen, &a, instrumented(store), secret, url, limits).await
        }
        None => dev_with(listen, &a, instrumented(MemoryStore::new()), secret, "in-memory", limits).await,
    }
}

/// Dev mode's listeners: authd's gRPC, introspect's, and the optional HTTP/JSON.
struct DevListen {
    authd: TcpListener,
    introspect: TcpListener,
    http: Option<authd::http::Listen>,
}

/// authd and introspect over one `store` (introspect's verifies see authd's
/// writes and revocations at once), until a signal stops both.
async fn dev_with<S: Store>(
    listen: DevListen,
    a: &DevArgs,
    store: S,
    secret: OperatorSecret,
    store_name: &str,
    limits: Limits,
) -> Result<(), String> {
    let addr = listen.authd.local_addr().map_err(|e| e.to_string())?;
    let introspect_addr = listen.introspect.local_addr().map_err(|e| e.to_string())?;
    let authority = a.budgets.guard(a.cache.apply(Authority::new(store.clone())));
    let setup = authd::dev::bootstrap(&authority, &secret).await.map_err(|e| format!("dev setup: {e}"))?;
    let operators = OperatorAuth::new(secret, Allowlist::of([setup.operator_key_id]));
    println!("{}", authd::dev::banner(&setup, addr, introspect_addr, store_name));
    if let Some(h) = &listen.http {
        let local = h.listener.local_addr().map_err(|e| e.to_string())?;
        println!("{}", authd::dev::http_banner(&setup, local, h.console));
    }
    // One signal stops both servers.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        cred_serve::serve::shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    let on_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // introspect's defaults, but either environment: dev hands out test keys.
    let verifier = introspect::Verifier::new(store, introspect::VerifyOptions::default());
    let opts = || ServeOptions { limits, ..ServeOptions::default() };
    let authd =
        authd::server::run_with_http(listen.authd, listen.http, authority, operators, opts(), on_stop(stopped.clone()));
    let introspect = introspect::server::run(listen.introspect, verifier, opts(), on_stop(stopped));
    let (authd, introspect) = tokio::join!(authd, introspect);
    authd.map_err(|e| format!("authd: {e}"))?;
    introspect.map_err(|e| format!("introspect: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// The HTTP/JSON listener of `--http-listen`, if set.
async fn bind_http(addr: Option<SocketAddr>, console: bool) -> Result<Option<authd::http::Listen>, String> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("--http-listen {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(addr = %local, console, "authd serving HTTP/JSON");
    Ok(Some(authd::http::Listen { listener, console }))
}

async fn run<S: Store>(
    listener: TcpListener,
    http: Option<authd::http::Listen>,
    authority: Authority<S>,
    operators: OperatorAuth,
    opts: ServeOptions,
) -> Result<(), String> {
    let drain = opts.drain;
    let shutdown = async {
        cred_serve::serve::shutdown_signal().await;
        tracing::info!(?drain, "shutting down: NOT_SERVING, draining calls in flight");
    };
    authd::server::run_with_http(listener, http, authority, operators, opts, shutdown)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

/// The allowlist is re-read on SIGHUP and whenever its file changes
/// (`cred_serve::watch`: a watch on its directory sees a Kubernetes Secret's
/// symlink swap). A file with bad lines is not taken as is: its removals
/// apply at once (a key no longer on a good line stops working: never a
/// removed key left working because of a typo elsewhere), its additions wait
/// until it parses, and each bad line is logged at ERROR. An unreadable file
/// changes nothing (nothing to read removals from), also logged at ERROR.
fn watch_allowlist(operators: OperatorAuth, path: PathBuf) {
    // What was last applied: events on the directory's other files reload nothing.
    let mut last: Option<String> = None;
    cred_serve::watch::on_change("operator allowlist", vec![path.clone()], move || {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "allowlist unreadable; nothing changed");
                return;
            }
        };
        if last.as_deref() == Some(text.as_str()) {
            return;
        }
        match Allowlist::parse_lenient(&text) {
            (list, bad) if bad.is_empty() => {
                tracing::info!(keys = list.len(), "operator allowlist reloaded");
                operators.reload(list);
            }
            (good, bad) => {
                let kept = operators.remove_missing(&good);
                for b in &bad {
                    tracing::error!(file = %path.display(), error = %b, "bad allowlist line");
                }
                tracing::error!(
                    keys = kept,
                    bad_lines = bad.len(),
                    "allowlist has bad lines: removals applied, additions held until it parses"
                );
            }
        }
        last = Some(text);
    });
}
