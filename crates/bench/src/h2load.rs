//! Runs `h2load` (nghttp2-client) against one unary gRPC method with extra
//! request headers (a bearer token), and reads its figures: the summary it
//! prints, per-request latencies from `--log-file`, and the CPU time it used.
//!
//! introspect-bench has its own driver (`bin/introspect-bench/h2load.rs`),
//! fixed to Verify without credentials; this one takes the method and the
//! headers.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::BoxError;

/// The load shape: `h2load -t 1 -c <connections> -m <streams> -n <requests>`.
#[derive(Clone, Copy)]
pub struct Load {
    pub connections: usize,
    pub streams: usize,
    pub requests: usize,
}

impl Load {
    pub fn describe(&self) -> String {
        format!("h2load -t 1 -c {} -m {} -n {}", self.connections, self.streams, self.requests)
    }
}

/// What one run did.
pub struct H2Run {
    /// Requests h2load finished (succeeded + failed).
    pub done: u64,
    /// h2load's "succeeded": HTTP-level success. A gRPC error is an HTTP 200
    /// with `grpc-status` in the trailers, so it counts here too.
    pub succeeded: u64,
    pub failed: u64,
    /// DATA frame bytes received (gRPC messages; an error answer has none).
    pub data_bytes: u64,
    /// Per-request latency, µs, sorted (HTTP 200 only).
    pub lat_us: Vec<u64>,
    /// Log lines whose status was not 200.
    pub non_200: u64,
    /// h2load's own measured time ("finished in"), first connect to last answer.
    pub duration: Duration,
    /// h2load's CPU time (user + system), from this process's reaped-children
    /// CPU time.
    pub cpu: Duration,
}

/// Runs h2load (bounded by `limit`) POSTing `body` to `http://<addr><path>`
/// with `content-type: application/grpc`, `te: trailers` and `headers`.
pub async fn run(
    addr: SocketAddr,
    path: &str,
    headers: &[String],
    body: &Path,
    load: Load,
    log: &Path,
    limit: Duration,
) -> Result<H2Run, BoxError> {
    let _ = std::fs::remove_file(log);
    let mut cmd = Command::new("h2load");
    cmd.args(["-t", "1"])
        .args(["-c", &load.connections.to_string()])
        .args(["-m", &load.streams.to_string()])
        .args(["-n", &load.requests.to_string()])
        .arg("-d")
        .arg(body)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"]);
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    cmd.arg(format!("--log-file={}", log.display())).arg(format!("http://{addr}{path}"));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let cpu_before = children_cpu();
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "h2load not found: install nghttp2-client (Debian: apt-get install nghttp2-client)".to_string()
        } else {
            format!("starting h2load: {e}")
        }
    })?;
    let t0 = Instant::now();
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| format!("h2load did not finish within {limit:?}"))?
        .map_err(|e| format!("h2load: {e}"))?;
    let wall = t0.elapsed();
    let cpu = children_cpu().saturating_sub(cpu_before);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("h2load failed ({}): {stdout}{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    // finished in 5.12s, 9765.43 req/s, 1.23MB/s
    let duration = stdout
        .lines()
        .find_map(|l| parse_duration(l.strip_prefix("finished in ")?.split(", ").next()?))
        .unwrap_or(wall);
    // requests: 50000 total, 50000 started, 50000 done, 50000 succeeded, 0 failed, 0 errored, 0 timeout
    let requests = stdout.lines().find_map(|l| l.strip_prefix("requests: ")).unwrap_or("");
    let count = |what: &str| -> u64 {
        requests.split(", ").find_map(|p| p.strip_suffix(what)?.trim().parse().ok()).unwrap_or(0)
    };
    let (done, succeeded, failed) = (count(" done"), count(" succeeded"), count(" failed"));
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
    Ok(H2Run { done, succeeded, failed, data_bytes, lat_us, non_200, duration, cpu })
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

/// CPU time of this process's children that were waited for (cutime +
/// cstime of `/proc/self/stat`).
pub fn children_cpu() -> Duration {
    let Some(f) = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| {
        let rest = &s[s.rfind(')')? + 1..];
        Some(rest.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>())
    }) else {
        return Duration::ZERO;
    };
    // After the command name: state is index 0, cutime 13, cstime 14.
    let ticks = f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / clk_tck())
}

/// Clock ticks per second of `/proc` CPU times.
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

/// `h2load --version`'s first line, or "?".
pub async fn version() -> String {
    match Command::new("h2load").arg("--version").stdin(Stdio::null()).output().await {
        Ok(o) => String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("?").trim().to_string(),
        Err(_) => "not found".into(),
    }
}
