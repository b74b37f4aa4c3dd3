//! A private `redis-server` for one benchmark run: loopback only, a free
//! port, no persistence, in a temporary directory, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::free_port;

/// Environment variable naming the `redis-server` binary to run.
pub const BINARY_VAR: &str = "CRED_BENCH_REDIS_SERVER";

/// A running `redis-server` child process.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl RedisServer {
    /// Starts `redis-server` (or `$CRED_BENCH_REDIS_SERVER`) on a free
    /// loopback port and waits until it answers PING.
    pub async fn start() -> Result<RedisServer, String> {
        let bin = std::env::var(BINARY_VAR).unwrap_or_else(|_| "redis-server".to_string());
        // Another process may take the port between our probe and Redis'
        // bind; try a few ports before giving up.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(&bin).await {
                Ok(s) => return Ok(s),
                Err(Start::Fatal(e)) => return Err(e),
                Err(Start::Retry(e)) => last = e,
            }
        }
        Err(last)
    }

    async fn try_start(bin: &str) -> Result<RedisServer, Start> {
        let port = free_port().map_err(Start::Fatal)?;
        let dir = tempfile::tempdir().map_err(|e| Start::Fatal(format!("temp dir: {e}")))?;
        let log = dir.path().join("redis.log");
        let child = Command::new(bin)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Start::Fatal(if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "`{bin}` was not found. The benchmark runs its own Redis: install Redis 7 \
                         (Debian/Ubuntu: `apt-get install redis-server`) or set {BINARY_VAR} to \
                         the path of a redis-server binary."
                    )
                } else {
                    format!("starting `{bin}`: {e}")
                })
            })?;
        let mut server = RedisServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(Start::Retry(format!(
                    "`{bin}` exited ({status}) before answering PING on port {port}; its log:\n{text}"
                )));
            }
            if ping(&server.url()).await {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(Start::Fatal(format!("`{bin}` did not answer PING on 127.0.0.1:{port} within 10 s")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its log goes.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Start {
    /// Worth another port.
    Retry(String),
    /// No point retrying.
    Fatal(String),
}

async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok_and(|p| p == "PONG")
}
