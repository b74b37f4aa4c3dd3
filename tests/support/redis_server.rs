//! A standalone `redis-server` on a free loopback port, in a temp dir, with
//! persistence off; killed on drop. Stopped, restarted, killed and frozen by
//! the outage tests.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use cred_core::store::RedisStore;
use cred_core::store::redis::RedisOptions;

use crate::redis_process::{RedisProcess, free_port, log_tail, query};

/// A running redis-server; dropping it kills the process.
pub struct RedisServer {
    /// The process (killed on drop), replaced by `restart`.
    process: RedisProcess,
    /// The loopback port it listens on.
    pub port: u16,
    /// Extra config arguments, kept for restarts.
    extra: Vec<String>,
    /// Holds the working directory for as long as the server runs.
    dir: tempfile::TempDir,
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid} failed");
}

impl RedisServer {
    /// Starts a server; panics with a clear message when `redis-server` is
    /// not installed or does not come up.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra config arguments (e.g. `["--appendonly", "yes"]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::start_trying(|| extra.clone())
    }

    /// Starts a server that also listens on a TLS port, with the extra
    /// arguments `args(tls_port)` gives; returns it and its TLS port. Every
    /// attempt picks both ports afresh: a port found free can be taken by
    /// another test's outgoing connection before redis binds it.
    pub fn start_with_tls(args: impl Fn(u16) -> Vec<String>) -> (RedisServer, u16) {
        let tls_port = std::cell::Cell::new(0);
        let server = Self::start_trying(|| {
            tls_port.set(free_port());
            args(tls_port.get())
        });
        (server, tls_port.get())
    }

    /// Up to three attempts, each on a fresh port and with `extra()` asked again.
    fn start_trying(mut extra: impl FnMut() -> Vec<String>) -> RedisServer {
        let mut logs = Vec::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let extra = extra();
            if let Some(process) = RedisProcess::spawn(port, &extra, dir.path()) {
                return RedisServer { process, port, extra, dir };
            }
            logs.push(format!("port {port}, {extra:?}:\n{}", log_tail(dir.path())));
        }
        panic!("redis-server did not answer PING on a loopback port after 3 attempts:\n{}", logs.join("\n"));
    }

    /// Stops the server with `SHUTDOWN SAVE` (its data goes to disk).
    pub fn shutdown(&mut self) {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.write_all(b"SHUTDOWN SAVE\r\n");
        }
        let _ = self.process.child.wait();
    }

    /// Starts the server again on the same port and directory (loading what
    /// `shutdown` saved).
    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(process) = RedisProcess::spawn(self.port, &self.extra, self.dir.path()) {
                self.process = process;
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not come back on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process with SIGKILL (`kill -9`: no shutdown, no save) and
    /// waits for it to be gone.
    pub fn kill9(&mut self) {
        self.process.kill();
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        signal(self.process.child.id(), "-STOP");
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&self) {
        signal(self.process.child.id(), "-CONT");
    }

    /// Total commands the server has executed (script-internal calls
    /// included), from `INFO commandstats`, minus the INFO calls themselves.
    pub fn commands(&self) -> u64 {
        self.command_stats().into_iter().filter(|(k, _)| k != "info").map(|(_, v)| v).sum()
    }

    /// Calls per command name (`evalsha`, `hgetall`, ...) from `INFO commandstats`.
    pub fn command_stats(&self) -> std::collections::HashMap<String, u64> {
        let text = query(self.port, "INFO commandstats").expect("INFO commandstats");
        text.lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.strip_prefix("calls=")?.split(',').next()?.parse().ok()?;
                Some((name.to_string(), calls))
            })
            .collect()
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A store connected to this server.
    pub async fn store(&self) -> RedisStore {
        RedisStore::connect(&self.url(), RedisOptions::default()).await.expect("connect to test redis")
    }

    /// A plain connection for inspecting the server.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }
}
