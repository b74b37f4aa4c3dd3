//! A `redis-server` child process on a free loopback port, in a temp dir,
//! with persistence off; killed on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cred_core::store::RedisStore;
use cred_core::store::redis::RedisOptions;

/// A running redis-server; dropping it kills the process.
pub struct RedisServer {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    /// Extra config arguments, kept for restarts.
    extra: Vec<String>,
    /// Holds the working directory for as long as the server runs.
    dir: tempfile::TempDir,
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free loopback port")
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid} failed");
}

/// Spawns redis-server and waits for PING; `None` if it does not come up
/// (e.g. lost the port race).
fn spawn(port: u16, extra: &[String], dir: &std::path::Path) -> Option<Child> {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot start redis-server ({e}). The integration tests need a real Redis: \
             install it (Debian: apt-get install -y redis-server) or run the README's test command"
        ),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if pong(port) {
            return Some(child);
        }
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

pub(crate) fn pong(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Sends one command (whitespace-separated words) to the server on `port`
/// and returns its answer as text: a bulk or simple string, or an integer.
/// `None` if it cannot connect, or on an error reply.
pub(crate) fn query(port: u16, command: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut req = format!("*{}\r\n", words.len());
    for w in &words {
        req.push_str(&format!("${}\r\n{w}\r\n", w.len()));
    }
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else { continue };
        let head = std::str::from_utf8(&raw[1..end]).ok()?;
        match raw[0] {
            b'+' | b':' => return Some(head.to_string()),
            b'$' => {
                // A bulk string: `$<len>\r\n<len bytes>\r\n`.
                let len: usize = head.parse().ok()?;
                if raw.len() >= end + 2 + len {
                    return Some(String::from_utf8_lossy(&raw[end + 2..end + 2 + len]).into_owned());
                }
            }
            _ => return None,
        }
    }
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
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            if let Some(child) = spawn(port, &extra, dir.path()) {
                return RedisServer { child, port, extra, dir };
            }
        }
        panic!("redis-server did not answer PING on a loopback port after 3 attempts");
    }

    /// Stops the server with `SHUTDOWN SAVE` (its data goes to disk).
    pub fn shutdown(&mut self) {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.write_all(b"SHUTDOWN SAVE\r\n");
        }
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and directory (loading what
    /// `shutdown` saved).
    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = spawn(self.port, &self.extra, self.dir.path()) {
                self.child = child;
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not come back on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process with SIGKILL (`kill -9`: no shutdown, no save) and
    /// waits for it to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.id(), "-CONT");
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
