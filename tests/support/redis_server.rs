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
    /// Holds the working directory for as long as the server runs.
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free loopback port")
}

fn pong(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl RedisServer {
    /// Starts a server; panics with a clear message when `redis-server` is
    /// not installed or does not come up.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra config arguments (e.g. `["--appendonly", "yes"]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(extra)
                .current_dir(dir.path())
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
                    return RedisServer { child, port, _dir: dir };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // lost the port race; try another
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not answer PING on a loopback port after 3 attempts");
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
