//! A real Redis Cluster of `redis-server` children on free loopback ports,
//! each in its own temp dir with persistence off, joined with
//! `redis-cli --cluster create`; killed on drop.
//!
//! [`RedisCluster::shared`] is one 3-master cluster per test binary (tests use
//! unique tenants and clients, so sharing is safe; a cluster takes ~2 s to
//! start). A static is never dropped, so every cluster also runs a watchdog
//! shell that kills its nodes once the test process is gone.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cred_core::store::redis::RedisOptions;
use cred_core::store::{RedisStore, RedisTarget};

use crate::redis_process::{RedisProcess, free_port, query};

/// A running cluster; dropping it kills every node.
pub struct RedisCluster {
    /// The client ports of every node, masters first as created.
    pub ports: Vec<u16>,
    /// Every node, killed on drop or by `kill`.
    nodes: Mutex<Vec<RedisProcess>>,
    /// Kills the nodes if this process dies without dropping the cluster.
    watchdog: Child,
    /// Holds the nodes' directories.
    dir: Option<tempfile::TempDir>,
}

/// A plain connection to one node (for the cluster's admin commands).
async fn node(port: u16) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("node URL");
    client.get_multiplexed_async_connection().await.expect("connect to a cluster node")
}

/// Starts one cluster node; `None` if it does not answer PING (e.g. lost a
/// port race).
fn spawn_node(port: u16, bus: u16, node_timeout_ms: u64, dir: &std::path::Path) -> Option<RedisProcess> {
    let conf = format!("nodes-{port}.conf");
    let (bus, timeout) = (bus.to_string(), node_timeout_ms.to_string());
    let args = [
        ["--cluster-enabled", "yes"],
        ["--cluster-config-file", &conf],
        ["--cluster-port", &bus],
        ["--cluster-node-timeout", &timeout],
        // A replica always takes over, however long it was cut off: the
        // failover test kills a master and wants its replica promoted.
        ["--cluster-replica-validity-factor", "0"],
    ];
    let args: Vec<String> = args.concat().into_iter().map(String::from).collect();
    RedisProcess::spawn(port, &args, dir)
}

fn info_field(text: &str, field: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().to_string()))
}

impl RedisCluster {
    /// The binary's shared cluster: 3 masters, no replicas.
    pub fn shared() -> Arc<RedisCluster> {
        static SHARED: OnceLock<Arc<RedisCluster>> = OnceLock::new();
        SHARED.get_or_init(|| Arc::new(RedisCluster::start(3, 0, 5_000))).clone()
    }

    /// Starts `masters` masters with `replicas` replicas each and waits until
    /// every node reports `cluster_state:ok` (and every replica is in sync).
    pub fn start(masters: usize, replicas: usize, node_timeout_ms: u64) -> RedisCluster {
        let started = Instant::now();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::new();
        for i in 0..masters * (1 + replicas) {
            let node_dir = dir.path().join(format!("n{i}"));
            std::fs::create_dir(&node_dir).expect("node dir");
            let node = (0..3)
                .find_map(|_| {
                    let (port, bus) = (free_port(), free_port());
                    spawn_node(port, bus, node_timeout_ms, &node_dir)
                })
                .expect("a cluster node did not answer PING on a loopback port after 3 attempts");
            nodes.push(node);
        }
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        let watchdog = watchdog(&nodes, dir.path());
        let cluster = RedisCluster { ports: ports.clone(), nodes: Mutex::new(nodes), watchdog, dir: Some(dir) };
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); it comes with redis-server (Debian: redis-tools)"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_ready(&ports, Duration::from_secs(20));
        eprintln!("redis cluster of {} nodes up in {:?}", ports.len(), started.elapsed());
        cluster
    }

    /// Waits until every node in `ports` sees the whole cluster as ok, and
    /// every replica among them is in sync with its master.
    pub fn wait_ready(&self, ports: &[u16], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = ports.iter().all(|&p| {
                let Some(info) = query(p, "CLUSTER INFO") else { return false };
                let ok = info_field(&info, "cluster_state").as_deref() == Some("ok")
                    && info_field(&info, "cluster_slots_ok").as_deref() == Some("16384");
                let Some(repl) = query(p, "INFO replication") else { return false };
                let synced = info_field(&repl, "role").as_deref() == Some("master")
                    || info_field(&repl, "master_link_status").as_deref() == Some("up");
                ok && synced
            });
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "redis cluster on {ports:?} not ready after {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis://127.0.0.1:<port>` of every node (the seeds).
    pub fn nodes(&self) -> Vec<String> {
        self.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect()
    }

    /// The store's target: every node as a seed.
    pub fn target(&self) -> RedisTarget {
        RedisTarget::Cluster(self.nodes())
    }

    /// A store connected to this cluster.
    pub async fn store(&self) -> RedisStore {
        RedisStore::connect_cluster(&self.nodes(), RedisOptions::default()).await.expect("connect to test cluster")
    }

    /// The port of the master that serves `key`'s slot now, asked of any live
    /// node.
    pub fn master_of(&self, key: &str) -> u16 {
        let live = self.live_ports();
        let port = *live.first().expect("no live node");
        let slot: u16 =
            query(port, &format!("CLUSTER KEYSLOT {key}")).and_then(|s| s.parse().ok()).expect("CLUSTER KEYSLOT");
        let nodes = query(port, "CLUSTER NODES").expect("CLUSTER NODES");
        nodes
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let is_master = f.get(2)?.split(',').any(|x| x == "master");
                let serves = f.get(8..)?.iter().any(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
                });
                let (_, p) = f.get(1)?.split('@').next()?.rsplit_once(':')?;
                (is_master && serves).then(|| p.parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {nodes}"))
    }

    /// The slot of `key`.
    pub fn slot_of(&self, key: &str) -> u16 {
        let port = *self.live_ports().first().expect("no live node");
        query(port, &format!("CLUSTER KEYSLOT {key}")).and_then(|s| s.parse().ok()).expect("CLUSTER KEYSLOT")
    }

    /// Moves `slot` from the master on `from` to the one on `to` as
    /// `redis-cli --cluster reshard` does (SETSLOT IMPORTING / MIGRATING,
    /// MIGRATE key by key, SETSLOT NODE on every master), but one key at a
    /// time in the order `first` sorts them (lowest first), `pause` after
    /// each, so that callers meet the slot half moved. Keys created at the
    /// source meanwhile are moved too.
    pub async fn move_slot(&self, slot: u16, from: u16, to: u16, pause: Duration, first: impl Fn(&str) -> u8) {
        let (mut src, mut dst) = (node(from).await, node(to).await);
        let id = |port: u16| query(port, "CLUSTER MYID").expect("CLUSTER MYID");
        let (src_id, dst_id) = (id(from), id(to));
        let setslot = |state: &str, id: &str| {
            let mut c = redis::cmd("CLUSTER");
            c.arg("SETSLOT").arg(slot).arg(state).arg(id);
            c
        };
        let () = setslot("IMPORTING", &src_id).query_async(&mut dst).await.expect("SETSLOT IMPORTING");
        let () = setslot("MIGRATING", &dst_id).query_async(&mut src).await.expect("SETSLOT MIGRATING");
        loop {
            let mut keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(10_000)
                .query_async(&mut src)
                .await
                .expect("GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            keys.sort_by_key(|k| (first(k), k.clone()));
            for k in keys {
                let () = redis::cmd("MIGRATE")
                    .arg("127.0.0.1")
                    .arg(to)
                    .arg(&k)
                    .arg(0)
                    .arg(5_000)
                    .query_async(&mut src)
                    .await
                    .map(|_: redis::Value| ())
                    .unwrap_or_else(|e| panic!("MIGRATE {k}: {e}"));
                tokio::time::sleep(pause).await;
            }
        }
        // The target first, as redis-cli does, then every other master.
        let () = setslot("NODE", &dst_id).query_async(&mut dst).await.expect("SETSLOT NODE on the target");
        for port in self.live_ports().into_iter().filter(|&p| p != to && self.is_master(p)) {
            let () = setslot("NODE", &dst_id).query_async(&mut node(port).await).await.expect("SETSLOT NODE");
        }
    }

    /// Pub/sub clients connected to the node on `port` (0 if it is down).
    pub fn pubsub_clients(&self, port: u16) -> usize {
        query(port, "CLIENT LIST TYPE pubsub").map_or(0, |t| t.lines().filter(|l| !l.trim().is_empty()).count())
    }

    /// Whether the node on `port` is a master now.
    pub fn is_master(&self, port: u16) -> bool {
        query(port, "INFO replication").and_then(|i| info_field(&i, "role")).is_some_and(|r| r == "master")
    }

    /// Kills one node with SIGKILL (no goodbye to clients or the cluster).
    pub fn kill(&self, port: u16) {
        let mut nodes = self.nodes.lock().expect("nodes");
        let n = nodes.iter_mut().find(|n| n.port == port).unwrap_or_else(|| panic!("no node on port {port}"));
        n.child.kill().expect("kill -9 a cluster node");
        n.child.wait().expect("reap a cluster node");
    }

    /// Ports of the nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        let mut nodes = self.nodes.lock().expect("nodes");
        nodes.iter_mut().filter_map(|n| n.running().then_some(n.port)).collect()
    }
}

/// `sh` polling this process; once it is gone, kills the nodes and removes
/// their directory. Needed for the shared (static, never dropped) cluster.
fn watchdog(nodes: &[RedisProcess], dir: &std::path::Path) -> Child {
    let pids: Vec<String> = nodes.iter().map(|n| n.child.id().to_string()).collect();
    Command::new("sh")
        .args([
            "-c",
            r#"parent=$1; dir=$2; shift 2
               while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
               kill -9 "$@" 2>/dev/null; rm -rf "$dir""#,
            "watchdog",
            &std::process::id().to_string(),
            &dir.display().to_string(),
        ])
        .args(pids)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the cluster watchdog (sh)")
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        // The watchdog first, so it never signals a pid that was reused.
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        // Then the nodes (killed on drop), before their directory goes.
        if let Ok(nodes) = self.nodes.get_mut() {
            nodes.clear();
        }
        drop(self.dir.take());
    }
}
