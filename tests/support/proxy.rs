//! A loopback TCP proxy in front of a Redis, for fault injection: it
//! forwards every connection, notes which ones subscribed (they sent
//! `SUBSCRIBE`), and on demand, on those, while keeping their TCP sessions
//! up: black-holes what Redis sends (the silent death of a pub/sub
//! connection: an idle timeout that drops packets); stalls both directions
//! (a stalled middlebox; what was held is delivered when it resumes); or
//! drops exactly one published invalidation (a message lost on the way).
//! On any connection, it can also hold every reply after the next command
//! that contains a given text: Redis has applied that command, its caller
//! never hears so (a Redis that froze right after a write, as seen by the
//! writer), or close the connection instead of forwarding such a command
//! (a connection lost just before it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; it stops accepting when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

/// What the proxy does to subscribed connections now.
#[derive(Default)]
struct Faults {
    black_hole: AtomicBool,
    stall: AtomicBool,
    /// Invalidations (not heartbeats) still to drop, and dropped so far.
    drop_next: AtomicU32,
    dropped: AtomicU32,
    /// The text whose command's connection gets its replies held next.
    freeze_after: std::sync::Mutex<Option<Vec<u8>>>,
    /// Replies are held on connections that met `freeze_after` since the
    /// last thaw: those that noted this epoch.
    frozen: AtomicBool,
    epoch: AtomicU64,
    /// The text whose command closes its connection instead, once.
    cut_on: std::sync::Mutex<Option<Vec<u8>>>,
}

impl Proxy {
    /// Forwards `127.0.0.1:<free>` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let faults = Arc::new(Faults::default());
        let shared = faults.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let faults = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        pump(client, server, faults).await;
                    }
                });
            }
        });
        Proxy { addr, faults, task }
    }

    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Drops (on) or forwards again (off) what Redis sends on subscribed
    /// connections; their TCP sessions stay up either way.
    pub fn black_hole_subscriptions(&self, on: bool) {
        self.faults.black_hole.store(on, Ordering::Release);
    }

    /// Holds (on) or delivers again (off) every byte both ways on subscribed
    /// connections; what was held is delivered late, in order.
    pub fn stall_subscriptions(&self, on: bool) {
        self.faults.stall.store(on, Ordering::Release);
    }

    /// Drops the next published invalidation (a `message` push that is not a
    /// heartbeat) on a subscribed connection, and only that one.
    pub fn drop_next_invalidation(&self) {
        self.faults.drop_next.fetch_add(1, Ordering::AcqRel);
    }

    /// Holds every reply on the connection that next sends a command
    /// containing `text`, that command's included, until [`Proxy::thaw`].
    pub fn freeze_after(&self, text: &str) {
        self.faults.frozen.store(true, Ordering::Release);
        *self.faults.freeze_after.lock().unwrap() = Some(text.as_bytes().to_vec());
    }

    /// Delivers the held replies and holds no more; whether the armed text
    /// was met.
    pub fn thaw(&self) -> bool {
        let armed = self.faults.freeze_after.lock().unwrap().take();
        self.faults.epoch.fetch_add(1, Ordering::AcqRel);
        self.faults.frozen.store(false, Ordering::Release);
        armed.is_none()
    }

    /// Closes, once, the connection that next sends a command containing
    /// `text`, without forwarding that command.
    pub fn cut_on(&self, text: &str) {
        *self.faults.cut_on.lock().unwrap() = Some(text.as_bytes().to_vec());
    }

    /// Whether the armed cut happened.
    pub fn was_cut(&self) -> bool {
        self.faults.cut_on.lock().unwrap().is_none()
    }

    /// Invalidations dropped so far.
    pub fn dropped(&self) -> u32 {
        self.faults.dropped.load(Ordering::Acquire)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(client: TcpStream, server: TcpStream, faults: Arc<Faults>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let subscriber = Arc::new(AtomicBool::new(false));
    // The epoch (plus one) in which this connection met the frozen text.
    let held = Arc::new(AtomicU64::new(0));
    let (seen, up_faults, hold) = (subscriber.clone(), faults.clone(), held.clone());
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
            {
                let mut armed = up_faults.cut_on.lock().unwrap();
                if armed.as_ref().is_some_and(|t| buf[..n].windows(t.len()).any(|w| w == &t[..])) {
                    // Dropping the halves closes both sockets' write sides:
                    // Redis sees EOF and closes, so the reply loop ends too.
                    *armed = None;
                    break;
                }
            }
            {
                let mut armed = up_faults.freeze_after.lock().unwrap();
                if armed.as_ref().is_some_and(|t| buf[..n].windows(t.len()).any(|w| w == &t[..])) {
                    *armed = None;
                    hold.store(up_faults.epoch.load(Ordering::Acquire) + 1, Ordering::Release);
                }
            }
            while seen.load(Ordering::Acquire) && up_faults.stall.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    // Server bytes are cut into whole RESP frames, so one can be dropped.
    let (mut buf, mut pending) = (vec![0u8; 16 * 1024], Vec::new());
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let sub = subscriber.load(Ordering::Acquire);
        if sub && faults.black_hole.load(Ordering::Acquire) {
            continue;
        }
        while held.load(Ordering::Acquire) == faults.epoch.load(Ordering::Acquire) + 1
            && faults.frozen.load(Ordering::Acquire)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !sub {
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        while sub && faults.stall.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut out = Vec::with_capacity(pending.len());
        let mut at = 0;
        while let Some(len) = frame_len(&pending[at..]) {
            let frame = &pending[at..at + len];
            at += len;
            if is_invalidation(frame) && take_one(&faults.drop_next) {
                faults.dropped.fetch_add(1, Ordering::AcqRel);
                continue;
            }
            out.extend_from_slice(frame);
        }
        pending.drain(..at);
        if cw.write_all(&out).await.is_err() {
            break;
        }
    }
    up.abort();
}

fn take_one(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1)).is_ok()
}

/// A `message` push whose payload is not a heartbeat (`h@…`).
fn is_invalidation(frame: &[u8]) -> bool {
    frame.starts_with(b"*3\r\n$7\r\nmessage\r\n") && !frame.windows(4).any(|w| w == b"\nh@")
}

/// Length of the complete RESP2 frame at the start of `b`, if it is all there.
fn frame_len(b: &[u8]) -> Option<usize> {
    let line_end = b.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(&b[1..line_end]).ok()?;
    let after = line_end + 2;
    match b.first()? {
        b'+' | b'-' | b':' => Some(after),
        b'$' => {
            let n: i64 = head.parse().ok()?;
            if n < 0 {
                return Some(after);
            }
            let end = after + n as usize + 2;
            (b.len() >= end).then_some(end)
        }
        b'*' => {
            let n: i64 = head.parse().ok()?;
            let mut at = after;
            for _ in 0..n.max(0) {
                at += frame_len(&b[at..])?;
            }
            Some(at)
        }
        _ => None,
    }
}
