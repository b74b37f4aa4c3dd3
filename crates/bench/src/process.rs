//! The one process wrapper: a server the benchmark spawned (killed on drop,
//! stderr to a log file), found next to the benchmark's own executable,
//! started on a free loopback port and waited for until it serves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cred_proto::introspect::v1::introspect_service_client::IntrospectServiceClient;
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The health service name introspect reports SERVING for.
pub const VERIFY_SERVICE: &str = "introspect.v1.IntrospectService";

/// A child server process; killed (SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    pub pid: u32,
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: Child,
}

impl Proc {
    /// Stops the process and waits for it (bounded).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// Sends SIGTERM and waits (bounded by `within`) for the exit status:
    /// what a server does on a graceful stop.
    pub async fn terminate(mut self, within: Duration) -> Result<std::process::ExitStatus, String> {
        let sent = std::process::Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        if !sent.is_ok_and(|s| s.success()) {
            return Err(format!("kill -TERM {} failed", self.pid));
        }
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => Err(format!("{}: {e}", self.name)),
            Err(_) => Err(format!("{} did not exit within {within:?} of SIGTERM", self.name)),
        }
    }

    /// Whether it exited, with its log, as an error.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                Some(format!("{} exited ({status}); its log ({}):\n{}", self.name, self.log.display(), tail(&self.log)))
            }
            _ => None,
        }
    }

    /// A connection to it, retried until it is accepted (bounded: a server
    /// that was just spawned may not listen yet).
    pub async fn channel_when_up(&self) -> Result<Channel, String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let ep = Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(5));
        loop {
            match ep.connect().await {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() > deadline => {
                    let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                    return Err(format!("cannot connect to {}: {e}; log:\n{log}", self.addr));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// A new HTTP/2 connection to it.
    pub async fn channel(&self) -> Result<Channel, String> {
        connect(self.addr).await
    }

    /// A verify client on a new connection.
    pub async fn client(&self) -> Result<IntrospectServiceClient<Channel>, String> {
        Ok(IntrospectServiceClient::new(self.channel().await?))
    }
}

/// The last lines of a log file.
pub fn tail(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A free loopback port (another process may take it before we use it; the
/// callers retry).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// One HTTP/2 connection, TCP_NODELAY, bounded waits.
pub async fn connect(addr: SocketAddr) -> Result<Channel, String> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))
}

/// Where the sibling binaries are: next to this executable. `build` is the
/// command that builds them, for the error.
pub fn sibling(name: &str, build: &str) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let p = me.parent().ok_or("current_exe has no parent")?.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("{} not found next to this benchmark; build it first: {build}", p.display()))
    }
}

/// How long a start may take before it is a failure.
const START_LIMIT: Duration = Duration::from_secs(20);

/// What a timed start saw.
pub struct Started {
    pub proc: Proc,
    /// From just before spawn to the first SERVING answer.
    pub to_serving: Duration,
}

/// Starts `bin serve --listen 127.0.0.1:<free> --redis-url <url> <extra>`
/// with the shipped log level (`RUST_LOG` unset) unless `rust_log` names
/// one, stderr to a file as users run it, and waits until
/// `grpc.health.v1.Health/Check` answers SERVING for the verify service.
/// Retries on another port if the port was taken.
pub async fn start_introspect(
    bin: &Path,
    name: &str,
    redis_url: &str,
    extra: &[String],
    rust_log: Option<&str>,
    logs: &Path,
) -> Result<Started, String> {
    let mut last = String::new();
    for attempt in 0..3 {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = logs.join(format!("{name}.{attempt}.log"));
        let mut cmd = Command::new(bin);
        cmd.arg("serve").args(["--listen", &addr.to_string(), "--redis-url", redis_url]).args(extra);
        match rust_log {
            Some(level) => cmd.env("RUST_LOG", level),
            None => cmd.env_remove("RUST_LOG"),
        };
        let t0 = Instant::now();
        let proc = spawn(cmd, name, addr, &log)?;
        match wait_serving(proc, t0, START_LIMIT).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Starts `noop-introspect` (`--bare` if `bare`) on a free port, with the
/// shipped log level, and waits until it is SERVING.
pub async fn start_noop(bin: &Path, bare: bool, logs: &Path) -> Result<Proc, String> {
    let name = if bare { "noop-introspect --bare" } else { "noop-introspect" };
    let mut last = String::new();
    for attempt in 0..3 {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", &addr.to_string()]).env_remove("RUST_LOG");
        if bare {
            cmd.arg("--bare");
        }
        let log = logs.join(format!("{}.{attempt}.log", if bare { "bare" } else { "noop" }));
        let proc = spawn(cmd, name, addr, &log)?;
        match wait_serving(proc, Instant::now(), START_LIMIT).await {
            Ok(s) => return Ok(s.proc),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Spawns `cmd` with stdin and stdout closed and stderr to `log`.
pub fn spawn(mut cmd: Command, name: &str, addr: SocketAddr, log: &Path) -> Result<Proc, String> {
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {name}: {e}"))?;
    let pid = child.id().ok_or_else(|| format!("{name} has no pid"))?;
    Ok(Proc { name: name.to_string(), pid, addr, log: log.to_path_buf(), child })
}

/// Polls the health service until SERVING: connection attempts every
/// ~0.25 ms (tokio's timer rounds this up to its 1 ms tick; a pure spin would
/// take one of the two cores from the process being measured), then health
/// checks back to back on the open connection.
pub async fn wait_serving(mut proc: Proc, t0: Instant, limit: Duration) -> Result<Started, String> {
    let req = || HealthCheckRequest { service: VERIFY_SERVICE.to_string() };
    let uri = format!("http://{}", proc.addr);
    loop {
        if let Some(e) = proc.exited() {
            return Err(e);
        }
        if t0.elapsed() > limit {
            return Err(format!("{} not SERVING within {limit:?}; log:\n{}", proc.name, tail(&proc.log)));
        }
        let ep = Endpoint::from_shared(uri.clone()).map_err(|e| e.to_string())?;
        let ch = match ep.tcp_nodelay(true).timeout(Duration::from_secs(5)).connect().await {
            Ok(ch) => ch,
            Err(_) => {
                tokio::time::sleep(Duration::from_micros(250)).await;
                continue;
            }
        };
        let mut h = HealthClient::new(ch);
        loop {
            match h.check(req()).await {
                Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => {
                    return Ok(Started { to_serving: t0.elapsed(), proc });
                }
                // Not yet registered or not yet serving: ask again.
                Ok(_) => {}
                Err(s) if s.code() == tonic::Code::NotFound => {}
                // The connection broke: reconnect.
                Err(_) => break,
            }
            if t0.elapsed() > limit {
                break;
            }
        }
    }
}
