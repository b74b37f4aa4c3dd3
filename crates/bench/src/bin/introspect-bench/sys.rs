//! Processes and `/proc`: the child servers (killed on drop), CPU time and
//! RSS per process, and which TCP connections to Redis a process holds.

use std::collections::HashSet;
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

use crate::BoxError;

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

    /// Whether it exited, with its log, as an error.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                Some(format!("{} exited ({status}); its log ({}):\n{}", self.name, self.log.display(), tail(&self.log)))
            }
            _ => None,
        }
    }

    /// A new HTTP/2 connection to it.
    pub async fn channel(&self) -> Result<Channel, BoxError> {
        connect(self.addr).await
    }

    /// A verify client on a new connection.
    pub async fn client(&self) -> Result<IntrospectServiceClient<Channel>, BoxError> {
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
pub fn free_port() -> Result<u16, BoxError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// One HTTP/2 connection, TCP_NODELAY, bounded waits.
pub async fn connect(addr: SocketAddr) -> Result<Channel, BoxError> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))
}

/// Where the sibling binaries are: next to this executable.
pub fn sibling(name: &str) -> Result<PathBuf, BoxError> {
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let p = me.parent().ok_or("current_exe has no parent")?.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found next to this benchmark; build it first: \
             `cargo build --release -p introspect -p cred-bench` (or run crates/bench/introspect-bench.sh)",
            p.display()
        ))
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
/// and waits until `grpc.health.v1.Health/Check` answers SERVING for the
/// verify service. Retries on another port if the port was taken.
pub async fn start_introspect(
    bin: &Path,
    name: &str,
    redis_url: &str,
    extra: &[String],
    logs: &Path,
) -> Result<Started, BoxError> {
    let mut last = String::new();
    for attempt in 0..3 {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = logs.join(format!("{name}.{attempt}.log"));
        let mut cmd = Command::new(bin);
        cmd.arg("serve").args(["--listen", &addr.to_string(), "--redis-url", redis_url]).args(extra);
        // Quiet by default; RUST_LOG=info measures with the per-call log lines on.
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let t0 = Instant::now();
        let proc = spawn(cmd, name, addr, &log)?;
        match wait_serving(proc, t0).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Starts the no-op server on a free port and waits until it is SERVING.
pub async fn start_noop(bin: &Path, logs: &Path) -> Result<Proc, BoxError> {
    let mut last = String::new();
    for attempt in 0..3 {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", &addr.to_string()]);
        let proc = spawn(cmd, "noop-introspect", addr, &logs.join(format!("noop.{attempt}.log")))?;
        match wait_serving(proc, Instant::now()).await {
            Ok(s) => return Ok(s.proc),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn spawn(mut cmd: Command, name: &str, addr: SocketAddr, log: &Path) -> Result<Proc, BoxError> {
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
async fn wait_serving(mut proc: Proc, t0: Instant) -> Result<Started, BoxError> {
    let req = || HealthCheckRequest { service: VERIFY_SERVICE.to_string() };
    let uri = format!("http://{}", proc.addr);
    loop {
        if let Some(e) = proc.exited() {
            return Err(e);
        }
        if t0.elapsed() > START_LIMIT {
            return Err(format!("{} not SERVING within {START_LIMIT:?}; log:\n{}", proc.name, tail(&proc.log)));
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
            if t0.elapsed() > START_LIMIT {
                break;
            }
        }
    }
}

// ------------------------------------------------------------------ /proc

/// Clock ticks per second for `/proc/*/stat` times.
pub fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Fields of `/proc/<pid>/stat` after the command name, so index 0 is
/// field 3 (state).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect())
}

/// utime + stime of a process, in seconds (all its threads, alive or gone).
pub fn cpu_s(pid: u32) -> f64 {
    stat_fields(&pid.to_string()).map_or(0.0, |f| (f[11] + f[12]) as f64 / clk_tck())
}

/// CPU of this process, in seconds.
pub fn self_cpu_s() -> f64 {
    stat_fields("self").map_or(0.0, |f| (f[11] + f[12]) as f64 / clk_tck())
}

/// cutime + cstime of this process: CPU of its children that were waited
/// for (h2load), in seconds.
pub fn children_cpu_s() -> f64 {
    stat_fields("self").map_or(0.0, |f| (f[13] + f[14]) as f64 / clk_tck())
}

/// `VmRSS` (or another `/proc/<pid>/status` field) in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// Local ports of the TCP connections `pid` holds to `127.0.0.1:remote_port`
/// (its connections to Redis), from `/proc/<pid>/fd` and `/proc/net/tcp`.
pub fn ports_to(pid: u32, remote_port: u16) -> HashSet<u16> {
    let mut inodes = HashSet::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in dir.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if let Some(i) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(i.to_string());
                }
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{remote_port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 || f[2] != remote || !inodes.contains(f[9]) {
                return None;
            }
            u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok()
        })
        .collect()
}

/// Busy CPU of the whole machine (every process), in seconds, from the
/// first line of `/proc/stat` (user nice system idle iowait irq softirq
/// steal ...): everything but idle and iowait.
pub fn machine_busy_s() -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().next() else { return 0.0 };
    let f: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|v| v.parse().unwrap_or(0)).collect();
    if f.len() < 8 {
        return 0.0;
    }
    (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) as f64 / clk_tck()
}
