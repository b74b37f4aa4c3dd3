//! The one `h2load` (nghttp2-client) driver: POSTs a gRPC body to one unary
//! method with extra request headers (a bearer token), optionally paced, and
//! reads its figures: the summary it prints, per-request latencies from
//! `--log-file`, and the CPU time it used (it is a reaped child).
//!
//! h2load counts a gRPC error (HTTP 200 with `grpc-status` ≠ 0 in the
//! trailers) as a success; callers check answers some other way.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::proc_stats::children_cpu_s;
use crate::stats::percentile;

/// The load shape: `h2load -t 1 -c <connections> -m <streams> -n <requests>
/// [--rps <rps>]`.
#[derive(Clone, Copy)]
pub struct Load {
    pub connections: usize,
    pub streams: usize,
    pub requests: usize,
    /// Requests per second per connection (`--rps`), if paced.
    pub rps: Option<usize>,
}

impl Load {
    pub fn describe(&self) -> String {
        let mut s = format!("h2load -t 1 -c {} -m {} -n {}", self.connections, self.streams, self.requests);
        if let Some(r) = self.rps {
            s.push_str(&format!(" --rps {r}"));
        }
        s
    }
}

/// Where the load goes: `http://<addr><path>` with these extra headers.
pub struct Target<'a> {
    pub addr: SocketAddr,
    pub path: &'a str,
    pub headers: &'a [String],
    /// HTTP/1.1 (`--h1`; the streams are then the pipelining depth) instead
    /// of h2c: introspect's forward-auth listener.
    pub h1: bool,
}

/// What one run did.
pub struct H2Run {
    /// h2load's own rate ("finished in ..., N req/s").
    pub req_per_s: f64,
    /// Requests h2load finished (succeeded + failed).
    pub done: u64,
    /// HTTP-level successes: a gRPC error counts here too.
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    /// DATA frame bytes received (gRPC messages; an error answer has none).
    pub data_bytes: u64,
    /// Per-request latency, µs, sorted (HTTP 200 only).
    pub lat_us: Vec<u64>,
    /// Log lines whose status was not 200.
    pub non_200: u64,
    /// h2load's own measured time ("finished in"), first connect to last answer.
    pub duration: Duration,
    /// From spawn to exit, by this process's clock.
    pub wall: Duration,
    /// h2load's CPU time (user + system), from this process's reaped-children
    /// CPU time.
    pub cpu: Duration,
}

impl H2Run {
    /// Latency percentile, µs.
    pub fn p(&self, q: f64) -> f64 {
        percentile(&self.lat_us, q)
    }
    /// DATA bytes per successful response.
    pub fn data_per_response(&self) -> f64 {
        self.data_bytes as f64 / self.succeeded.max(1) as f64
    }
}

/// Runs h2load (bounded by `limit`) POSTing `body` to `target` with
/// `content-type: application/grpc` and `te: trailers`; `log` is its
/// per-request log (removed afterwards).
pub async fn run(target: &Target<'_>, body: &Path, load: Load, log: &Path, limit: Duration) -> Result<H2Run, String> {
    let _ = std::fs::remove_file(log);
    let mut cmd = Command::new("h2load");
    cmd.args(["-t", "1"])
        .args(["-c", &load.connections.to_string()])
        .args(["-m", &load.streams.to_string()])
        .args(["-n", &load.requests.to_string()])
        .arg("-d")
        .arg(body)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"]);
    for h in target.headers {
        cmd.arg("-H").arg(h);
    }
    if target.h1 {
        cmd.arg("--h1");
    }
    cmd.arg(format!("--log-file={}", log.display()));
    if let Some(r) = load.rps {
        cmd.arg(format!("--rps={r}"));
    }
    cmd.arg(format!("http://{}{}", target.addr, target.path));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let cpu_before = children_cpu_s();
    let t0 = Instant::now();
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "h2load not found: install nghttp2-client (Debian: apt-get install nghttp2-client)".to_string()
        } else {
            format!("starting h2load: {e}")
        }
    })?;
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| format!("h2load did not finish within {limit:?}"))?
        .map_err(|e| format!("h2load: {e}"))?;
    let wall = t0.elapsed();
    let cpu = Duration::from_secs_f64((children_cpu_s() - cpu_before).max(0.0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("h2load failed ({}): {stdout}{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    // finished in 5.12s, 9765.43 req/s, 1.23MB/s
    let finished = stdout
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .ok_or_else(|| format!("no 'finished in' line in h2load output:\n{stdout}"))?;
    let mut parts = finished.split(", ");
    let duration = parts.next().and_then(parse_duration).unwrap_or(wall);
    let req_per_s = parts
        .next()
        .and_then(|r| r.strip_suffix(" req/s")?.parse().ok())
        .ok_or_else(|| format!("no req/s in h2load's 'finished in' line: {finished}"))?;
    // requests: 50000 total, 50000 started, 50000 done, 50000 succeeded, 0 failed, 0 errored, 0 timeout
    let requests = stdout.lines().find_map(|l| l.strip_prefix("requests: ")).unwrap_or("");
    let count = |what: &str| -> u64 {
        requests.split(", ").find_map(|p| p.strip_suffix(what)?.trim().parse().ok()).unwrap_or(0)
    };
    // traffic: 20.41MB (21400000) total, 2.50MB (2625000) headers (space savings 95.00%), 15.26MB (16000000) data
    let data_bytes = stdout
        .lines()
        .find_map(|l| l.strip_prefix("traffic: "))
        .and_then(|t| t.split(", ").find(|p| p.ends_with(" data")))
        .and_then(|p| p.split_once('(')?.1.split_once(')')?.0.parse().ok())
        .unwrap_or(0);
    let text = std::fs::read_to_string(log).map_err(|e| format!("h2load log {}: {e}", log.display()))?;
    let mut lat_us = Vec::with_capacity(load.requests);
    let mut non_200 = 0;
    for l in text.lines() {
        let mut f = l.split('\t');
        let (_start, status, lat) = (f.next(), f.next(), f.next());
        match (status, lat.and_then(|v| v.trim().parse::<u64>().ok())) {
            (Some("200"), Some(us)) => lat_us.push(us),
            _ => non_200 += 1,
        }
    }
    lat_us.sort_unstable();
    let _ = std::fs::remove_file(log);
    Ok(H2Run {
        req_per_s,
        done: count(" done"),
        succeeded: count(" succeeded"),
        failed: count(" failed"),
        errored: count(" errored"),
        timeout: count(" timeout"),
        data_bytes,
        lat_us,
        non_200,
        duration,
        wall,
        cpu,
    })
}

/// `5.12s`, `512.34ms` or `51.23us`, as h2load prints durations.
fn parse_duration(s: &str) -> Option<Duration> {
    let (v, unit) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("us") {
        (v, 1e-6)
    } else {
        (s.strip_suffix('s')?, 1.0)
    };
    Some(Duration::from_secs_f64(v.trim().parse::<f64>().ok()? * unit))
}

/// `h2load --version`'s first line, or "not found".
pub async fn version() -> String {
    match Command::new("h2load").arg("--version").stdin(Stdio::null()).output().await {
        Ok(o) => String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("?").trim().to_string(),
        Err(_) => "not found".into(),
    }
}
