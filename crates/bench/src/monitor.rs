//! Redis `MONITOR` over a raw connection: every command Redis executes, with
//! its microsecond timestamp and the client address that sent it (`lua` for
//! commands a script ran). Windows are delimited by `ECHO <marker>` sent from
//! another connection, so no line is lost to buffering.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// One executed command.
#[derive(Debug, Clone)]
pub struct Line {
    /// Redis' clock, microseconds since the epoch.
    pub at_us: i64,
    /// `127.0.0.1:<port>` of the sending client, or `lua`.
    pub source: String,
    /// Lower-case command name.
    pub cmd: String,
    /// The raw line, for printing.
    pub raw: String,
}

impl Line {
    fn parse(raw: &str) -> Option<Line> {
        // 1700000000.123456 [0 127.0.0.1:54321] "hgetall" "c:{...}"
        let (ts, rest) = raw.split_once(' ')?;
        let (secs, micros) = ts.split_once('.')?;
        let at_us = secs.parse::<i64>().ok()? * 1_000_000 + micros.parse::<i64>().ok()?;
        let rest = rest.strip_prefix('[')?;
        let (inside, rest) = rest.split_once(']')?;
        let source = inside.split_whitespace().nth(1)?.to_string();
        let cmd = rest.trim_start().strip_prefix('"')?.split('"').next()?.to_lowercase();
        Some(Line { at_us, source, cmd, raw: raw.to_string() })
    }

    /// The client port, `None` for `lua` (or unix sockets).
    pub fn port(&self) -> Option<u16> {
        self.source.rsplit_once(':')?.1.parse().ok()
    }
}

/// A running MONITOR capture.
pub struct Monitor {
    lines: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Monitor {
    /// Connects and starts capturing.
    pub async fn start(port: u16) -> Result<Monitor, String> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("MONITOR connection: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.write_all(b"MONITOR\r\n").await.map_err(|e| format!("MONITOR: {e}"))?;
        let mut r = BufReader::new(s);
        let mut first = String::new();
        tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut first))
            .await
            .map_err(|_| "MONITOR: no answer")?
            .map_err(|e| format!("MONITOR: {e}"))?;
        if first.trim_end() != "+OK" {
            return Err(format!("MONITOR answered {first:?}"));
        }
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let task = tokio::spawn(async move {
            let mut buf = String::new();
            loop {
                buf.clear();
                match r.read_line(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let l = buf.trim_end().strip_prefix('+').unwrap_or(buf.trim_end()).to_string();
                        sink.lock().unwrap_or_else(|p| p.into_inner()).push(l);
                    }
                }
            }
        });
        Ok(Monitor { lines, task })
    }

    /// Sends `ECHO <marker>` on `admin` and waits (bounded) until MONITOR
    /// shows it: every command executed before is then captured.
    pub async fn mark(&self, admin: &mut MultiplexedConnection, marker: &str) -> Result<(), String> {
        let _: String = redis::cmd("ECHO").arg(marker).query_async(admin).await.map_err(|e| format!("ECHO: {e}"))?;
        for _ in 0..500 {
            if self.lines.lock().unwrap_or_else(|p| p.into_inner()).iter().rev().any(|l| is_marker(l, marker)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Err(format!("MONITOR never showed marker {marker}"))
    }

    /// The lines strictly between `ECHO from` and `ECHO to`.
    pub fn between(&self, from: &str, to: &str) -> Vec<Line> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let start = lines.iter().position(|l| is_marker(l, from)).map_or(0, |i| i + 1);
        let end = lines[start..].iter().position(|l| is_marker(l, to)).map_or(lines.len(), |i| start + i);
        lines[start..end].iter().filter_map(|l| Line::parse(l)).collect()
    }

    /// Stops capturing (dropping does the same).
    pub fn stop(self) {}
}

impl Drop for Monitor {
    /// Closes the MONITOR connection: a MONITOR left running slows every
    /// later command Redis runs.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether a raw MONITOR line is `ECHO <marker>` (clients send the command
/// name in any case).
fn is_marker(raw: &str, marker: &str) -> bool {
    raw.ends_with(&format!("\" \"{marker}\"")) && Line::parse(raw).is_some_and(|l| l.cmd == "echo")
}

/// Top-level commands (not run by a script) sent from any of `ports`.
/// The health probe's PINGs (one a second, whatever the load) are left out:
/// they are not work of any verify. [`pings`] counts them.
pub fn from_ports<'a>(lines: &'a [Line], ports: &HashSet<u16>) -> Vec<&'a Line> {
    lines
        .iter()
        .filter(|l| l.port().is_some_and(|p| ports.contains(&p)) && !l.cmd.eq_ignore_ascii_case("ping"))
        .collect()
}

/// The health probe's PINGs among `lines` from `ports`.
pub fn pings(lines: &[Line], ports: &HashSet<u16>) -> usize {
    lines.iter().filter(|l| l.port().is_some_and(|p| ports.contains(&p)) && l.cmd.eq_ignore_ascii_case("ping")).count()
}
