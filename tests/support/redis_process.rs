//! One `redis-server` child process, the only place that spawns one: on a
//! loopback port with persistence off, up once it answers PING, killed on
//! drop. Also free loopback ports and a one-command RESP client for
//! inspecting a node.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server; dropping it kills the process.
pub(crate) struct RedisProcess {
    /// The process, for signals, `wait` and `try_wait`.
    pub(crate) child: Child,
    /// The loopback port it listens on.
    pub(crate) port: u16,
}

impl RedisProcess {
    /// Spawns `redis-server --port <port>` (plus `extra`) in `dir` and waits
    /// until it answers PING; `None` if it exits or stays silent for 10 s
    /// (e.g. lost a port race). Panics with a clear message when
    /// `redis-server` is not installed.
    pub(crate) fn spawn(port: u16, extra: &[String], dir: &Path) -> Option<RedisProcess> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .current_dir(dir)
            // Its log, for the message when it does not come up.
            .stdout(log_file(dir))
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot start redis-server ({e}). The integration tests need a real Redis: \
                 install it (Debian: apt-get install -y redis-server) or run the README's test command"
            ),
        };
        // Killed on drop from here on, also when it never comes up.
        let mut process = RedisProcess { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if pong(port) {
                return Some(process);
            }
            if let Ok(Some(_)) = process.child.try_wait() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// SIGKILL (no shutdown, no save), then reaps the process.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis.log` in `dir`, appended to (a restart keeps the directory).
fn log_file(dir: &Path) -> Stdio {
    let f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("redis.log"));
    f.map_or_else(|_| Stdio::null(), Stdio::from)
}

/// The last lines of the log a node in `dir` wrote, for a failure message.
pub(crate) fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join("\n")
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free loopback port")
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
