//! Runs `h2load` against a Verify endpoint and reads its figures: the
//! summary it prints, and per-request latencies from `--log-file`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::BoxError;
use crate::stats::percentile;

/// The load shape.
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

/// What one run did.
pub struct H2Run {
    pub req_per_s: f64,
    pub succeeded: u64,
    pub failed: u64,
    /// DATA frame bytes received (gRPC messages; an error answer has none).
    pub data_bytes: u64,
    /// Per-request latency, µs, sorted (HTTP 200 only).
    pub lat_us: Vec<u64>,
    /// Requests whose log status was not 200.
    pub non_200: u64,
    pub wall: Duration,
}

impl H2Run {
    pub fn p(&self, q: f64) -> f64 {
        percentile(&self.lat_us, q)
    }
    /// DATA bytes per successful response.
    pub fn data_per_response(&self) -> f64 {
        self.data_bytes as f64 / self.succeeded.max(1) as f64
    }
}

/// Runs h2load (bounded by `limit`) POSTing `body` to Verify at `addr`.
pub async fn run(addr: SocketAddr, body: &Path, load: Load, log: &Path, limit: Duration) -> Result<H2Run, BoxError> {
    let _ = std::fs::remove_file(log);
    let mut cmd = Command::new("h2load");
    cmd.args(["-t", "1"])
        .args(["-c", &load.connections.to_string()])
        .args(["-m", &load.streams.to_string()])
        .args(["-n", &load.requests.to_string()])
        .arg("-d")
        .arg(body)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg(format!("--log-file={}", log.display()));
    if let Some(r) = load.rps {
        cmd.arg(format!("--rps={r}"));
    }
    cmd.arg(format!("http://{addr}/introspect.v1.IntrospectService/Verify"));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let t0 = std::time::Instant::now();
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("h2load failed ({}): {stdout}{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let req_per_s = stdout
        .lines()
        .find_map(|l| l.strip_prefix("finished in ")?.split(", ").nth(1)?.strip_suffix(" req/s")?.parse().ok())
        .ok_or_else(|| format!("no 'finished in' line in h2load output:\n{stdout}"))?;
    let requests = stdout.lines().find_map(|l| l.strip_prefix("requests: ")).unwrap_or("");
    let count = |what: &str| -> u64 {
        requests.split(", ").find_map(|p| p.strip_suffix(what)?.trim().parse().ok()).unwrap_or(0)
    };
    let (succeeded, failed) = (count(" succeeded"), count(" failed") + count(" errored") + count(" timeout"));
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
    Ok(H2Run { req_per_s, succeeded, failed, data_bytes, lat_us, non_200, wall })
}
