//! Redis Sentinel: the `redis+sentinel://` URL, asking the sentinels for
//! the current master (through the redis crate's `SentinelClient`, which
//! also checks with `ROLE` that the named master is one), and a watch of
//! that answer every second. Following a failover, re-dialling after a
//! lost, demoted or replaced master, is the connections' job (`conn`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::sentinel::SentinelClient;
use redis::{ConnectionAddr, ErrorKind, RedisError, RedisResult};

/// The port of a sentinel given without one.
const SENTINEL_PORT: u16 = 26379;

/// A Redis behind Sentinel: the sentinels to ask (any of them; the first
/// that names a live master is believed) and the master's name. Parsed from
/// `redis+sentinel://[user:password@]host[:port][,host[:port]…]/master[/db]`
/// (`rediss+sentinel://`: TLS to the sentinels and to the servers). The
/// URL's credentials are the sentinels' own; the servers' come from the
/// store options, as for a plain URL without credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelTarget {
    /// Seed sentinels, `(host, port)`.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the master under.
    pub master: String,
    /// TLS to the sentinels and to the master.
    pub tls: bool,
    /// The database number on the master.
    pub db: i64,
    /// The sentinels' ACL user (`requirepass`/ACL on the sentinels).
    pub username: Option<String>,
    /// The sentinels' password; never printed.
    pub password: Option<String>,
}

impl std::fmt::Debug for SentinelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelTarget")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("tls", &self.tls)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .finish()
    }
}

impl SentinelTarget {
    /// Whether `url` names sentinels (`redis+sentinel://`, `rediss+sentinel://`).
    pub fn is_sentinel_url(url: &str) -> bool {
        url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
    }

    /// Parses a `redis+sentinel://` URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<SentinelTarget, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("redis+sentinel://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("rediss+sentinel://") {
            (true, r)
        } else {
            return Err("a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://".into());
        };
        if rest.contains('?') || rest.contains('#') {
            return Err("a Sentinel URL takes no query or fragment (?…, #…)".into());
        }
        let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match hosts.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, hosts),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or(("", u));
                let user = (!user.is_empty()).then(|| decode(user)).transpose()?;
                (user, Some(decode(pass)?))
            }
        };
        let sentinels = hosts.split(',').map(host_port).collect::<Result<Vec<_>, _>>()?;
        if sentinels.is_empty() || hosts.is_empty() {
            return Err("no sentinel given (redis+sentinel://host:port,host:port/master)".into());
        }
        let mut parts = path.trim_end_matches('/').splitn(2, '/');
        let master = decode(parts.next().unwrap_or(""))?;
        if master.is_empty() {
            return Err("no master name after the sentinels (redis+sentinel://host:port/master)".into());
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(d) => d.parse().map_err(|_| format!("the database number {d:?} is not a number"))?,
        };
        Ok(SentinelTarget { sentinels, master, tls, db, username, password })
    }

    /// The sentinels as `host:port,host:port`, for messages.
    pub fn hosts(&self) -> String {
        self.sentinels.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>().join(",")
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| format!("sentinel {s:?}: no closing ]"))?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(format!("sentinel {s:?}: no host"));
    }
    let port = match port {
        None => SENTINEL_PORT,
        Some(p) => p.parse().map_err(|_| format!("sentinel {s:?}: the port is not a number"))?,
    };
    Ok((host.to_string(), port))
}

/// Percent-decoding of a URL part (a password may hold `@`, `:` or `/`).
fn decode(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or("a % in the URL is not followed by two hex digits")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the URL does not decode to UTF-8".to_string())
}

/// How often the sentinels are asked which server is master while the
/// connections to it work. A failover that leaves the old master running
/// (a manual `SENTINEL FAILOVER`, a partition that heals) is otherwise
/// unseen: the old master answers, and Sentinel turns it into a replica only
/// seconds later, dropping what was written to it meanwhile.
pub(super) const MASTER_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A server's address, to compare with the master the sentinels name.
pub(super) type Addr = (String, u16);

/// `(host, port)` of a client's server.
pub(super) fn addr_of(client: &redis::Client) -> Option<Addr> {
    match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(h, p) | ConnectionAddr::TcpTls { host: h, port: p, .. } => Some((h.clone(), *p)),
        _ => None,
    }
}

/// Asks the sentinels for the current master. One lookup at a time (the
/// library's client keeps one connection per sentinel), each bounded.
pub(super) struct Discovery {
    /// The library's client: asks each sentinel in turn, skips a master
    /// flagged down, and checks the one named with `ROLE`.
    client: tokio::sync::Mutex<SentinelClient>,
    /// The master's name, for errors.
    master: String,
    /// Longest wait for one lookup.
    timeout: Duration,
    /// The master named by the last lookup that found one.
    named: tokio::sync::watch::Sender<Option<Addr>>,
}

impl Discovery {
    /// The discovery, and a task asking the sentinels every
    /// [`MASTER_CHECK_EVERY`] (it ends with the last connection using it).
    pub(super) fn start(client: SentinelClient, master: String, timeout: Duration) -> Arc<Discovery> {
        let d = Arc::new(Discovery {
            client: tokio::sync::Mutex::new(client),
            master,
            timeout,
            named: tokio::sync::watch::Sender::new(None),
        });
        let weak: Weak<Discovery> = Arc::downgrade(&d);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(MASTER_CHECK_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(d) = weak.upgrade() else { return };
                // A failed lookup changes nothing: a lost master fails the
                // connections by itself.
                if let Err(e) = d.master().await {
                    tracing::debug!(error = %e, "sentinel check of the master failed");
                }
            }
        });
        d
    }

    /// The bound of one lookup.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the sentinels last named a master other than `addr`.
    pub(super) fn replaced(&self, addr: &Option<Addr>) -> bool {
        matches!((&*self.named.borrow(), addr), (Some(named), Some(a)) if named != a)
    }

    /// A client for the server that is the master now; an error while
    /// there is none (down and not yet replaced) or no sentinel answers.
    pub(super) async fn master(&self) -> RedisResult<redis::Client> {
        let mut client = self.client.lock().await;
        match tokio::time::timeout(self.timeout, client.async_get_client()).await {
            Ok(Ok(c)) => {
                let addr = addr_of(&c);
                if addr.is_some() && *self.named.borrow() != addr {
                    tracing::info!(master = ?addr, name = %self.master, "the sentinels name a master");
                    self.named.send_replace(addr);
                }
                Ok(c)
            }
            Ok(Err(e)) if e.kind() == ErrorKind::MasterNameNotFoundBySentinel => Err(RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "no sentinel names a live master",
                format!("{:?} (unknown name, or the master is down and not yet replaced)", self.master),
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the sentinels did not name a master within {:?}", self.timeout),
            ))),
        }
    }
}

/// Whether an answer says the server is no longer (or not yet) a writable
/// master: a demoted master answers writes `READONLY`, a replica cut off
/// from its master `MASTERDOWN`. Such a connection must be dropped and the
/// master asked for again, never written to again.
pub(super) fn not_master(e: &RedisError) -> bool {
    matches!(e.code(), Some("READONLY" | "MASTERDOWN"))
        || e.to_string().contains("READONLY")
        || e.to_string().contains("MASTERDOWN")
}

#[cfg(test)]
mod tests {
    use super::SentinelTarget;

    #[test]
    fn sentinel_urls_parse() {
        let t = SentinelTarget::parse("redis+sentinel://h1:26380,h2,[::1]:7/mymaster").unwrap();
        assert_eq!(t.sentinels, vec![("h1".into(), 26380), ("h2".into(), 26379), ("::1".into(), 7)]);
        assert_eq!((t.master.as_str(), t.tls, t.db, t.password), ("mymaster", false, 0, None));
        let t = SentinelTarget::parse("rediss+sentinel://u:p%40ss@h:1/m/3").unwrap();
        assert_eq!((t.tls, t.db, t.username.as_deref(), t.password.as_deref()), (true, 3, Some("u"), Some("p@ss")));
        assert!(!format!("{t:?}").contains("p@ss"));
        let t = SentinelTarget::parse("redis+sentinel://:pw@h/m").unwrap();
        assert_eq!((t.username, t.password.as_deref()), (None, Some("pw")));
        for bad in [
            "redis://h/m",
            "redis+sentinel://h1",
            "redis+sentinel:///m",
            "redis+sentinel://h:x/m",
            "redis+sentinel://h/m/x",
            "redis+sentinel://h/m?protocol=resp3",
        ] {
            assert!(SentinelTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
