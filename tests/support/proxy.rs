//! A loopback TCP proxy in front of a Redis, for fault injection: it
//! forwards every connection, notes which ones subscribed (they sent
//! `SUBSCRIBE`), and on demand black-holes what Redis sends on those while
//! keeping their TCP sessions up: the silent death of a pub/sub connection
//! (an idle timeout that drops packets, a stalled middlebox).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; it stops accepting when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    black_hole: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards `127.0.0.1:<free>` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let black_hole = Arc::new(AtomicBool::new(false));
        let flag = black_hole.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        pump(client, server, flag).await;
                    }
                });
            }
        });
        Proxy { addr, black_hole, task }
    }

    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Drops (on) or forwards again (off) what Redis sends on subscribed
    /// connections; their TCP sessions stay up either way.
    pub fn black_hole_subscriptions(&self, on: bool) {
        self.black_hole.store(on, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(client: TcpStream, server: TcpStream, black_hole: Arc<AtomicBool>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let subscriber = Arc::new(AtomicBool::new(false));
    let seen = subscriber.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if buf[..n].windows(9).any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE")) {
                seen.store(true, Ordering::Release);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if subscriber.load(Ordering::Acquire) && black_hole.load(Ordering::Acquire) {
            continue;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}
