//! The flags both binaries take, written once as clap `Args` to flatten
//! into each binary's own: request limits, the Redis target, server TLS and
//! the health-only listener. Their env vars carry the binary's prefix
//! (`AUTHD_MAX_REQUEST_BYTES`, `INTROSPECT_MAX_REQUEST_BYTES`): a derive
//! attribute cannot take a parameter, so [`env_prefix`] names them when
//! the command is built.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Command};
use cred_core::store::RedisTarget;
use cred_core::store::redis::{RedisAuth, RedisTls};
use tokio::net::TcpListener;

use crate::limits::Limits;
use crate::peer::TrustedProxies;
use crate::serve::ServeOptions;
use crate::tls::{ClientCa, ServerTls};

/// Gives every long flag of `cmd` without an env var the env var
/// `<PREFIX>_<FLAG>` (`--max-request-bytes` → `AUTHD_MAX_REQUEST_BYTES`).
/// Flags declared with their own `env` keep it.
pub fn env_prefix(cmd: Command, prefix: &str) -> Command {
    cmd.mut_args(|a| match a.get_long() {
        Some(long) if a.get_env().is_none() && !matches!(long, "help" | "version") => {
            let env = format!("{prefix}_{}", long.to_uppercase().replace('-', "_"));
            a.env(env)
        }
        _ => a,
    })
}

/// Request limits (README "Limits").
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Largest request message, in bytes; a larger one is refused
    /// RESOURCE_EXHAUSTED before it is read (at most 4194304).
    #[arg(long, default_value_t = 65_536)]
    pub max_request_bytes: usize,
    /// Largest header list (all metadata) of a call, in bytes; a larger one
    /// is answered HTTP 431 (far larger: the connection is closed).
    #[arg(long, default_value_t = 16_384)]
    pub max_header_list_bytes: u32,
    /// Most calls in flight on one connection (HTTP/2 max concurrent streams).
    #[arg(long, default_value_t = 256)]
    pub max_concurrent_streams: u32,
    /// Longest a call may run, in milliseconds; past it the call ends
    /// CANCELLED.
    #[arg(long, default_value_t = 10_000)]
    pub request_timeout_ms: u64,
}

impl LimitArgs {
    /// The request limits; an error names the flag at fault.
    pub fn limits(&self) -> Result<Limits, String> {
        let l = Limits {
            max_request_bytes: self.max_request_bytes,
            max_header_list_bytes: self.max_header_list_bytes,
            max_concurrent_streams: self.max_concurrent_streams,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
        };
        l.validate().map_err(|e| e.to_string())?;
        Ok(l)
    }
}

/// Where the store is: exactly one of the two (both or neither fails at
/// start, naming them).
#[derive(Args, Debug, Clone)]
#[group(id = "redis", required = true, multiple = false)]
pub struct RedisArgs {
    /// Redis URL, e.g. redis://127.0.0.1:6379/0, or behind Sentinel
    /// redis+sentinel://host1:26379,host2:26379/mymaster (the sentinels and
    /// the master's name). Exactly one of this and --redis-cluster-nodes.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Redis Cluster seed nodes, comma-separated, e.g.
    /// redis://10.0.0.1:6379,redis://10.0.0.2:6379 (the rest of the cluster
    /// is discovered from them). Exactly one of this and --redis-url.
    #[arg(long, value_delimiter = ',')]
    pub redis_cluster_nodes: Option<Vec<String>>,
}

impl RedisArgs {
    /// The store's target, with the flag to name in its errors.
    pub fn target(self) -> Result<(RedisTarget, &'static str), String> {
        match (self.redis_url, self.redis_cluster_nodes) {
            (Some(url), None) => {
                Ok((RedisTarget::from_url(&url).map_err(|e| format!("--redis-url: {e}"))?, "--redis-url"))
            }
            (None, Some(nodes)) => Ok((RedisTarget::Cluster(nodes), "--redis-cluster-nodes")),
            _ => Err("exactly one of --redis-url and --redis-cluster-nodes is required".into()),
        }
    }
}

/// Redis credentials, kept out of the URL: an ACL user and its password,
/// from a file (a mounted Secret) or the environment.
#[derive(Args, Debug, Clone, Default)]
pub struct RedisAuthArgs {
    /// Redis ACL user (Redis 6+); without it, the `default` user.
    #[arg(long)]
    pub redis_username: Option<String>,
    /// File whose first line is the Redis password.
    #[arg(long, conflicts_with = "redis_password")]
    pub redis_password_file: Option<PathBuf>,
    /// The Redis password; set it through the environment variable, not the
    /// command line (which `ps` shows).
    #[arg(long, hide_env_values = true)]
    pub redis_password: Option<String>,
    /// PEM CA that signed the Redis server's certificate, for `rediss://`
    /// URLs (default: the system's roots).
    #[arg(long)]
    pub redis_ca_file: Option<PathBuf>,
    /// PEM client certificate for Redis servers that ask for one
    /// (`tls-auth-clients yes`), with --redis-client-key-file.
    #[arg(long, requires = "redis_client_key_file")]
    pub redis_client_cert_file: Option<PathBuf>,
    /// PEM private key of --redis-client-cert-file.
    #[arg(long, requires = "redis_client_cert_file")]
    pub redis_client_key_file: Option<PathBuf>,
}

impl RedisAuthArgs {
    /// The credentials, `None` without a password; or the flag at fault.
    pub fn auth(&self) -> Result<Option<RedisAuth>, String> {
        let password = match (&self.redis_password_file, &self.redis_password) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--redis-password-file {}: {e}", path.display()))?;
                let first = text.lines().next().unwrap_or("").trim_end_matches('\r').to_string();
                if first.is_empty() {
                    return Err(format!("--redis-password-file {}: the first line is empty", path.display()));
                }
                Some(first)
            }
            (None, Some(p)) => Some(p.clone()),
            (None, None) => None,
        };
        match (password, &self.redis_username) {
            (Some(password), username) => Ok(Some(RedisAuth { username: username.clone(), password })),
            (None, Some(_)) => {
                Err("--redis-username needs a password (--redis-password-file or --redis-password)".into())
            }
            (None, None) => Ok(None),
        }
    }

    /// Which of these flags a connection used, for its error message
    /// (` (credentials from --redis-password-file, CA from --redis-ca-file)`),
    /// empty when none.
    pub fn used(&self) -> String {
        let mut used = Vec::new();
        if self.redis_password_file.is_some() {
            used.push("credentials from --redis-password-file");
        } else if self.redis_password.is_some() {
            used.push("credentials from --redis-password");
        }
        if self.redis_ca_file.is_some() {
            used.push("CA from --redis-ca-file");
        }
        if self.redis_client_cert_file.is_some() {
            used.push("client certificate from --redis-client-cert-file");
        }
        if used.is_empty() { String::new() } else { format!(" ({})", used.join(", ")) }
    }

    /// The TLS settings of `rediss://` connections, `None` when no file is
    /// given; or the flag at fault. `target` says whether the URLs ask for
    /// TLS: files without it are an error, not silently unused.
    pub fn tls(&self, target: &RedisTarget) -> Result<Option<RedisTls>, String> {
        let read = |flag: &str, p: &Option<PathBuf>| -> Result<Option<Vec<u8>>, String> {
            let Some(p) = p else { return Ok(None) };
            let pem = std::fs::read(p).map_err(|e| format!("{flag} {}: {e}", p.display()))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN ") {
                return Err(format!("{flag} {}: not a PEM file", p.display()));
            }
            Ok(Some(pem))
        };
        let ca_pem = read("--redis-ca-file", &self.redis_ca_file)?;
        let cert = read("--redis-client-cert-file", &self.redis_client_cert_file)?;
        let key = read("--redis-client-key-file", &self.redis_client_key_file)?;
        let client = cert.zip(key);
        if ca_pem.is_none() && client.is_none() {
            return Ok(None);
        }
        let urls: Vec<&str> = match target {
            RedisTarget::Standalone(u) => vec![u.as_str()],
            RedisTarget::Cluster(nodes) => nodes.iter().map(String::as_str).collect(),
            RedisTarget::Sentinel(t) if t.tls => vec![],
            RedisTarget::Sentinel(t) => {
                return Err(format!(
                    "--redis-ca-file / --redis-client-cert-file need a rediss+sentinel:// URL (TLS); got \
                     redis+sentinel://{}/{}",
                    t.hosts(),
                    t.master
                ));
            }
        };
        if let Some(u) = urls.iter().find(|u| !u.starts_with("rediss://")) {
            let u = u.split('@').next_back().unwrap_or(u);
            return Err(format!("--redis-ca-file / --redis-client-cert-file need rediss:// URLs (TLS); got {u}"));
        }
        Ok(Some(RedisTls { ca_pem, client }))
    }
}

/// Server TLS on the main listener.
#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    /// PEM certificate chain: serve TLS (needs --tls-key-file).
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long)]
    pub tls_key_file: Option<PathBuf>,
}

/// The plaintext health-only listener.
#[derive(Args, Debug, Clone)]
pub struct HealthArgs {
    /// Also serve grpc.health.v1 alone, in plaintext, on this address: for
    /// Kubernetes gRPC probes, which cannot speak TLS.
    #[arg(long)]
    pub health_listen: Option<SocketAddr>,
    /// After SIGTERM, health goes NOT_SERVING at once but new calls are
    /// still accepted for this many milliseconds (load balancers and meshes
    /// take seconds to stop sending), before the drain.
    #[arg(long, default_value_t = 0)]
    pub drain_delay_ms: u64,
    /// Serve Prometheus metrics (GET /metrics, plaintext) on this address:
    /// the same instruments the OTLP export carries. Off by default.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

/// Who the caller is, behind proxies.
#[derive(Args, Debug, Clone, Default)]
pub struct PeerArgs {
    /// Proxies (CIDRs or addresses, comma-separated) whose connections may
    /// name the caller in `x-forwarded-for`; the per-peer failure budgets
    /// then count the nearest hop that is not one of them. Empty: the TCP
    /// peer, and the header is ignored.
    #[arg(long, value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
}

/// The serving options of the flags: TLS (with `client_ca`, the admin mTLS
/// CA, when the service has one), the health listener and the metrics
/// listener (serving `scrape`, which telemetry made when asked for
/// `--metrics-listen`), bound now; or the setting at fault.
pub async fn serve_options(
    tls: &TlsArgs,
    client_ca: Option<ClientCa<'_>>,
    health: &HealthArgs,
    peers: &PeerArgs,
    drain: Duration,
    limits: Limits,
    scrape: Option<cred_telemetry::Scrape>,
) -> Result<ServeOptions, String> {
    let trusted_proxies =
        TrustedProxies::parse(&peers.trusted_proxies).map_err(|e| format!("--trusted-proxies: {e}"))?;
    let tls = ServerTls::from_flags(tls.tls_cert_file.as_deref(), tls.tls_key_file.as_deref(), client_ca)
        .map_err(|e| e.to_string())?;
    let health_listener = match health.health_listen {
        Some(a) => Some(TcpListener::bind(a).await.map_err(|e| format!("--health-listen {a}: {e}"))?),
        None => None,
    };
    let drain_delay = Duration::from_millis(health.drain_delay_ms);
    let metrics = match (health.metrics_listen, scrape) {
        (Some(a), Some(s)) => Some((TcpListener::bind(a).await.map_err(|e| format!("--metrics-listen {a}: {e}"))?, s)),
        (Some(a), None) => return Err(format!("--metrics-listen {a}: telemetry was set up without Prometheus")),
        (None, _) => None,
    };
    Ok(ServeOptions { drain, drain_delay, tls, health_listener, limits, trusted_proxies, metrics })
}

#[cfg(test)]
mod tests {
    use clap::{FromArgMatches, Parser};

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        redis: RedisArgs,
        /// Declared with its own env var, which stays.
        #[arg(long, env = "OWN_NAME", default_value_t = 1)]
        own: u32,
    }

    #[test]
    fn env_vars_carry_the_prefix() {
        use clap::CommandFactory;
        let cmd = env_prefix(Cli::command(), "SVC");
        let env = |id: &str| {
            let a = cmd.get_arguments().find(|a| a.get_id() == id).unwrap();
            a.get_env().map(|e| e.to_string_lossy().into_owned())
        };
        assert_eq!(env("max_request_bytes").as_deref(), Some("SVC_MAX_REQUEST_BYTES"));
        assert_eq!(env("redis_cluster_nodes").as_deref(), Some("SVC_REDIS_CLUSTER_NODES"));
        assert_eq!(env("own").as_deref(), Some("OWN_NAME"));
        let m = cmd.try_get_matches_from(["x", "--redis-url", "redis://h", "--max-request-bytes", "7"]).unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        assert_eq!(cli.limits.limits().unwrap().max_request_bytes, 7);
        assert!(matches!(cli.redis.target().unwrap(), (RedisTarget::Standalone(_), "--redis-url")));
        let m = env_prefix(Cli::command(), "SVC")
            .try_get_matches_from(["x", "--redis-url", "redis+sentinel://a:1,b/mymaster"])
            .unwrap();
        let Ok((RedisTarget::Sentinel(t), "--redis-url")) = Cli::from_arg_matches(&m).unwrap().redis.target() else {
            panic!("a sentinel URL is a Sentinel target")
        };
        assert_eq!((t.sentinels.len(), t.master.as_str()), (2, "mymaster"));
        let m =
            env_prefix(Cli::command(), "SVC").try_get_matches_from(["x", "--redis-url", "redis+sentinel://a"]).unwrap();
        let err = Cli::from_arg_matches(&m).unwrap().redis.target().unwrap_err();
        assert!(err.starts_with("--redis-url: ") && err.contains("master name"), "{err}");
    }

    #[test]
    fn exactly_one_store_setting() {
        use clap::CommandFactory;
        let cmd = || env_prefix(Cli::command(), "SVC");
        assert!(cmd().try_get_matches_from(["x"]).is_err());
        assert!(cmd().try_get_matches_from(["x", "--redis-url", "a", "--redis-cluster-nodes", "b"]).is_err());
    }
}
