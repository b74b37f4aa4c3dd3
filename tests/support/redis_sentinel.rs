//! A Redis Sentinel setup on loopback: a master, its replicas and three
//! sentinels (`redis-server <conf> --sentinel`, so no other binary is
//! needed), with a fast failover (down after 1 s) and, if asked, a password
//! on the sentinels (`requirepass`, which they also use with each other);
//! everything killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::RedisServer;
use crate::redis_process::{free_port, pong};

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "credd-master";

/// TLS on every node and sentinel (`tls-replication yes`: replication and
/// the sentinels' own links too), client certificates optional.
pub struct TlsFiles {
    /// PEM certificate of 127.0.0.1, used by every server.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The CA that signed it (and the clients' certificates).
    pub ca: PathBuf,
}

impl TlsFiles {
    /// The servers' TLS settings, on `port`, as config lines.
    fn conf(&self, port: u16) -> String {
        format!(
            "tls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
             tls-auth-clients optional\ntls-replication yes\n",
            self.cert.display(),
            self.key.display(),
            self.ca.display()
        )
    }

    /// The same as command-line arguments.
    fn args(&self, port: u16) -> Vec<String> {
        self.conf(port)
            .lines()
            .flat_map(|l| {
                let (k, v) = l.split_once(' ').unwrap();
                [format!("--{k}"), v.to_string()]
            })
            .collect()
    }
}

/// One sentinel process; killed on drop.
struct Sentinel {
    /// The process.
    child: Child,
    /// Its loopback port.
    port: u16,
    /// Its TLS port, with TLS.
    tls_port: Option<u16>,
    /// Holds its config file (a sentinel rewrites it) for as long as it runs.
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sentinel {
    fn spawn(master_port: u16, password: Option<&str>, tls: Option<&TlsFiles>) -> Option<Sentinel> {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let tls_port = tls.map(|_| free_port());
        let conf = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 4000\n\
             sentinel parallel-syncs {MASTER_NAME} 2\n",
            dir = dir.path().display()
        ) + &password.map(|p| format!("requirepass {p}\n")).unwrap_or_default()
            + &tls.zip(tls_port).map(|(t, p)| t.conf(p)).unwrap_or_default();
        let path = dir.path().join("sentinel.conf");
        std::fs::write(&path, conf).expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&path)
            .arg("--sentinel")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server --sentinel ({e}): install redis-server (Debian: apt-get install -y redis-server)")
            });
        let mut s = Sentinel { child, port, tls_port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if password.map_or_else(|| pong(port), |p| pong_with(port, p)) {
                return Some(s);
            }
            if let Ok(Some(_)) = s.child.try_wait() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

/// `AUTH <password>` then `PING` answered.
fn pong_with(port: u16, password: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let req = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n*1\r\n$4\r\nPING\r\n", password.len());
    let mut buf = [0u8; 12];
    s.write_all(req.as_bytes()).is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+OK\r\n+PONG\r\n"
}

/// A master (node 0 at first), replicas, and three sentinels watching them.
pub struct SentinelSetup {
    /// The data nodes: the first master, then the replicas. Which one is
    /// master changes on a failover: ask [`SentinelSetup::master_port`].
    pub nodes: Vec<RedisServer>,
    /// The TLS port of each node, with TLS (what the sentinels know them by).
    tls_ports: Vec<Option<u16>>,
    /// The sentinels.
    sentinels: Vec<Sentinel>,
    /// Their password, if any.
    password: Option<String>,
}

impl SentinelSetup {
    /// A master, `replicas` replicas of it (every node runs `setup`'s
    /// commands first, e.g. an ACL user, which Redis does not replicate) and
    /// three sentinels (with `password`, if given); returns once every
    /// sentinel sees every replica and the other two sentinels, so a
    /// failover can be agreed on.
    pub async fn start(replicas: usize, setup: &[&[&str]], password: Option<&str>) -> SentinelSetup {
        Self::start_with(replicas, setup, password, None).await
    }

    /// As [`Self::start`], with TLS everywhere when `tls` is given (each
    /// node keeps a plaintext port too, for the test's own inspection).
    pub async fn start_with(
        replicas: usize,
        setup: &[&[&str]],
        password: Option<&str>,
        tls: Option<&TlsFiles>,
    ) -> SentinelSetup {
        // A node with `before` ahead of its TLS arguments, and its TLS port.
        let start = |before: &[String]| match tls {
            Some(t) => {
                let (node, port) = RedisServer::start_with_tls(|p| [before, &t.args(p)[..]].concat());
                (node, Some(port))
            }
            None => (RedisServer::start_with(&before.iter().map(String::as_str).collect::<Vec<_>>()), None),
        };
        let (master, master_tls) = start(&[]);
        let mport = master_tls.unwrap_or(master.port).to_string();
        let (mut nodes, mut tls_ports) = (vec![master], vec![master_tls]);
        for _ in 1..=replicas {
            let (node, tls_port) = start(&["--replicaof".to_string(), "127.0.0.1".to_string(), mport.clone()]);
            nodes.push(node);
            tls_ports.push(tls_port);
        }
        for n in &nodes {
            let mut c = n.conn().await;
            for cmd in setup {
                let () = redis::cmd(cmd[0]).arg(&cmd[1..]).query_async(&mut c).await.expect("setup command");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for r in &nodes[1..] {
            loop {
                let info: String =
                    redis::cmd("INFO").arg("replication").query_async(&mut r.conn().await).await.unwrap();
                if info.contains("master_link_status:up") {
                    break;
                }
                assert!(Instant::now() < deadline, "replica {} never linked to its master:\n{info}", r.port);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let port = tls_ports[0].unwrap_or(nodes[0].port);
        let sentinels = (0..3)
            .map(|_| {
                (0..3)
                    .find_map(|_| Sentinel::spawn(port, password, tls))
                    .expect("a sentinel did not answer PING after 3 attempts")
            })
            .collect();
        let setup = SentinelSetup { nodes, tls_ports, sentinels, password: password.map(str::to_string) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ready = true;
            for s in &setup.sentinels {
                let m = setup.sentinel_master(s.port).await;
                let n = |k: &str| m.get(k).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
                ready &= n("num-slaves") == replicas && n("num-other-sentinels") == 2;
            }
            if ready {
                return setup;
            }
            assert!(Instant::now() < deadline, "the sentinels did not find each other and the replicas within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `host:port,host:port,host:port` of the sentinels.
    pub fn sentinel_hosts(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.tls_port.unwrap_or(s.port)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `redis+sentinel://[:<password>@]<sentinels>/<master name>`.
    pub fn url(&self) -> String {
        let auth = self.password.as_ref().map(|p| format!(":{p}@")).unwrap_or_default();
        let scheme = if self.sentinels[0].tls_port.is_some() { "rediss" } else { "redis" };
        format!("{scheme}+sentinel://{auth}{}/{MASTER_NAME}", self.sentinel_hosts())
    }

    /// The master's port as the first sentinel tells it now.
    pub async fn master_port(&self) -> u16 {
        let mut c = self.client(self.sentinels[0].port).await;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME)
            .query_async(&mut c)
            .await
            .expect("SENTINEL GET-MASTER-ADDR-BY-NAME");
        port
    }

    /// Asks a sentinel for a failover now (`SENTINEL FAILOVER`): the master,
    /// alive, is demoted to a replica of the one promoted. Retried for up to
    /// 20 s while the sentinel has no good replica to promote yet (one still
    /// syncing after an earlier failover).
    pub async fn failover(&self) {
        let mut c = self.client(self.sentinels[0].port).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r: redis::RedisResult<String> =
                redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER_NAME).query_async(&mut c).await;
            match r {
                Ok(_) => return,
                Err(e) => assert!(Instant::now() < deadline, "SENTINEL FAILOVER refused for 20 s: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The data node on `port` (its plaintext or TLS port).
    pub fn node(&self, port: u16) -> &RedisServer {
        let i = (0..self.nodes.len()).find(|&i| self.nodes[i].port == port || self.tls_ports[i] == Some(port));
        &self.nodes[i.expect("no node on that port")]
    }

    /// A connection to the sentinel on `port`.
    async fn client(&self, port: u16) -> redis::aio::MultiplexedConnection {
        let auth = self.password.as_ref().map(|p| format!(":{p}@")).unwrap_or_default();
        redis::Client::open(format!("redis://{auth}127.0.0.1:{port}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to a sentinel")
    }

    /// `SENTINEL MASTER <name>` as field → value.
    async fn sentinel_master(&self, port: u16) -> std::collections::HashMap<String, String> {
        redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(MASTER_NAME)
            .query_async(&mut self.client(port).await)
            .await
            .unwrap_or_default()
    }
}
