//! How the Redis store connects: options, targets, the command connection
//! (standalone, cluster or behind Sentinel, one type), the WAIT writer, and
//! the dedicated pub/sub connection of the invalidation subscriber.

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection, PubSub};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    RedisResult, Value,
};

use crate::clock::now_ms;
use crate::error::StoreError;
use crate::store::{INVALIDATION_CHANNEL, StoreResult};

use super::sentinel::{Addr, Discovery, SentinelTarget, addr_of, not_master};

/// How the Redis store connects.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Longest wait for one command's answer; past it the call fails
    /// UNAVAILABLE (fail closed).
    pub response_timeout: Duration,
    /// Longest wait for a (re)connection.
    pub connection_timeout: Duration,
    /// After every write, `WAIT` for replicas to acknowledge it (`None`: do
    /// not wait). See [`WaitReplicas`].
    pub wait_replicas: Option<WaitReplicas>,
    /// ACL user and password, kept out of the URL (they override the URL's).
    pub auth: Option<RedisAuth>,
    /// The CA and client certificate of `rediss://` connections; `None`:
    /// the system's roots, no client certificate.
    pub tls: Option<RedisTls>,
}

/// TLS to Redis beyond the `rediss://` URL: the CA that signed the
/// server's certificate (managed Redis often uses a private one; `None`:
/// the system's roots) and a client certificate for servers that ask
/// (`tls-auth-clients yes`). The key never prints.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM CA certificate(s).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and private key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client.is_some())
            .finish()
    }
}

impl RedisTls {
    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(c, k)| redis::ClientTlsConfig { client_cert: c.clone(), client_key: k.clone() }),
            root_cert: self.ca_pem.clone(),
        }
    }
}

/// A client for `info`, with `tls`'s certificates when given (which needs a
/// `rediss://` address: said, not ignored).
fn client(info: ConnectionInfo, tls: Option<&RedisTls>) -> Result<redis::Client, RedisError> {
    match tls {
        Some(t) => redis::Client::build_with_tls(info, t.certificates()),
        None => redis::Client::open(info),
    }
}

/// Redis credentials: an ACL user (Redis 6+; `default` when `None`) and its
/// password. The password never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisAuth {
    pub username: Option<String>,
    pub password: String,
}

impl std::fmt::Debug for RedisAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAuth").field("username", &self.username).field("password", &"..").finish()
    }
}

/// `info` with `auth`'s credentials, if any.
fn with_auth(info: redis::ConnectionInfo, auth: Option<&RedisAuth>) -> redis::ConnectionInfo {
    let Some(a) = auth else { return info };
    let mut settings = info.redis_settings().clone().set_password(&a.password);
    if let Some(u) = &a.username {
        settings = settings.set_username(u);
    }
    info.set_redis_settings(settings)
}

/// Replica acknowledgement of writes: after each write, `WAIT replicas
/// timeout` on the connection that wrote. Fewer acknowledgements within the
/// timeout fail the call `Unavailable` ("not replicated"); the write stays
/// on the master (the caller never received the credential, or retries an
/// idempotent revocation).
#[derive(Debug, Clone, Copy)]
pub struct WaitReplicas {
    /// Replicas that must acknowledge, at least 1.
    pub replicas: u32,
    /// Longest wait for them, at least 1 ms (`WAIT n 0` would block forever).
    pub timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            response_timeout: Duration::from_millis(500),
            connection_timeout: Duration::from_millis(500),
            wait_replicas: None,
            auth: None,
            tls: None,
        }
    }
}

/// Where the store's Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server: `redis://host:port/db`.
    Standalone(String),
    /// A Redis Cluster, by some of its nodes (`redis://host:port` each); the
    /// rest of the topology is discovered from them.
    Cluster(Vec<String>),
    /// A master and its replicas behind Redis Sentinel: the master is
    /// whichever the sentinels name now (`redis+sentinel://…/master`).
    Sentinel(SentinelTarget),
}

impl RedisTarget {
    /// The target of one URL: `redis+sentinel://…` names sentinels, any
    /// other URL one server.
    pub fn from_url(url: &str) -> Result<RedisTarget, String> {
        if SentinelTarget::is_sentinel_url(url) {
            Ok(RedisTarget::Sentinel(SentinelTarget::parse(url)?))
        } else {
            Ok(RedisTarget::Standalone(url.to_string()))
        }
    }
}

/// The command connection: multiplexed and self-reconnecting in every form
/// (commands of all tasks are pipelined on it). A cluster connection routes
/// each command, script and pipeline by the slot of its keys, follows
/// MOVED/ASK and refreshes the topology after a failover.
#[derive(Clone)]
pub enum RedisConn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    /// The WAIT writer's connection: never re-dialled underneath (see
    /// [`Dialer`]).
    Pinned(Pinned),
    /// Behind Sentinel: the master's connection, replaced by the next call
    /// after it failed or answered as a replica, with the master the
    /// sentinels name then (see [`Dialer`]).
    Followed(Arc<Dialer>),
}

/// One connection that is never silently replaced: it notes its own
/// failure, after which the [`Dialer`] dials a new one for the next call.
#[derive(Clone)]
pub struct Pinned {
    conn: MultiplexedConnection,
    broken: Arc<AtomicBool>,
    /// The server it is connected to (behind Sentinel: compared with the
    /// master the sentinels name).
    addr: Option<Addr>,
}

impl Pinned {
    /// Marks the connection broken after a failure of the connection, or an
    /// answer that the server is no longer a master (a demoted master must
    /// never be written to again).
    fn note<T>(&self, r: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &r
            && (e.is_io_error()
                || e.is_connection_dropped()
                || e.is_timeout()
                || e.is_connection_refusal()
                || not_master(e))
        {
            self.broken.store(true, Ordering::Release);
        }
        r
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Standalone(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
            RedisConn::Pinned(p) => Box::pin(async move {
                let r = p.conn.req_packed_command(cmd).await;
                p.note(r)
            }),
            RedisConn::Followed(d) => Box::pin(async move {
                let mut p = d.pinned().await?;
                let r = p.conn.req_packed_command(cmd).await;
                p.note(r)
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Pinned(p) => Box::pin(async move {
                let r = p.conn.req_packed_commands(pipeline, offset, count).await;
                p.note(r)
            }),
            RedisConn::Followed(d) => Box::pin(async move {
                let mut p = d.pinned().await?;
                let r = p.conn.req_packed_commands(pipeline, offset, count).await;
                p.note(r)
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Standalone(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
            RedisConn::Pinned(p) => p.conn.get_db(),
            RedisConn::Followed(d) => d.db,
        }
    }
}

/// How often the subscriber PINGs its pub/sub connection, and how long an
/// answer may take before the connection counts as dead: a connection that
/// stays up but delivers nothing (an idle timeout that drops packets, a
/// stalled proxy) is found within their sum, not never.
pub(super) const PUBSUB_PING_EVERY: Duration = Duration::from_secs(1);
pub(super) const PUBSUB_PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Every connection's TCP options: no Nagle delay on small pipelined
/// commands; keepalive probes, and a user timeout on unacknowledged data,
/// so a peer that vanished (a dropped route, a killed VM) ends the
/// connection within seconds instead of the kernel's ~15 minutes. A frozen
/// Redis still ACKs at the TCP level: the response timeout and the
/// subscriber's PING cover that.
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    use redis::io::tcp::socket2::TcpKeepalive;
    let keepalive =
        TcpKeepalive::new().with_time(Duration::from_secs(5)).with_interval(Duration::from_secs(1)).with_retries(3);
    redis::io::tcp::TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
        .set_user_timeout(Duration::from_secs(5))
}

/// How the invalidation subscriber connects (a dedicated pub/sub connection).
#[derive(Clone)]
pub(super) enum Subscriber {
    Standalone(redis::Client),
    /// The seeds (their credentials and TLS settings are reused for any
    /// node) and the longest wait for one node.
    Cluster {
        seeds: Vec<ConnectionInfo>,
        timeout: Duration,
        /// The certificates of TLS seeds, for every node.
        tls: Option<RedisTls>,
    },
    /// On the master the sentinels name at each (re)subscription: a
    /// subscription on a lost master ends, and the next one finds the
    /// promoted replica.
    Sentinel(Arc<Discovery>),
}

/// Whether a subscription is no longer where invalidations are published:
/// behind Sentinel, once the sentinels name a master other than its server
/// (PUBLISH then goes there). Never, elsewhere.
#[derive(Clone, Default)]
pub(super) struct Moved(Option<(Arc<Discovery>, Option<Addr>)>);

impl Moved {
    pub(super) fn moved(&self) -> bool {
        self.0.as_ref().is_some_and(|(d, addr)| d.replaced(addr))
    }
}

/// The connections of one store.
#[derive(Clone)]
pub(super) struct Connections {
    /// Commands of every task, pipelined.
    pub(super) conn: RedisConn,
    /// Where subscriptions connect.
    pub(super) sub: Subscriber,
    /// With replica acknowledgement on: the connection writes go through
    /// (WAIT blocks the connection that issues it, so reads keep their own),
    /// and what to wait for. Standalone or Sentinel only.
    pub(super) writer: Option<(Dialer, WaitReplicas)>,
}

/// One connection at a time, never re-dialled underneath: a failure on it
/// fails the call, and only a later call dials a new one, through [`Dial`].
///
/// Why the WAIT writer needs this: WAIT counts the acknowledgements of the
/// writes *of the connection it is sent on*; sent on a connection
/// re-dialled after the write's was lost, it would count none and report
/// success at once. So a write and its WAIT use the same connection, and a
/// failure on it fails the call. Why Sentinel's command connection uses it:
/// the address changes on a failover, which a `ConnectionManager` (one
/// client, one address) cannot follow; here a lost or demoted master's
/// connection is dropped and the next call asks the sentinels again.
#[derive(Clone)]
pub struct Dialer {
    /// Where a new connection goes.
    dial: Dial,
    /// Its timeouts.
    cfg: AsyncConnectionConfig,
    /// The database number, for `ConnectionLike::get_db`.
    db: i64,
    /// The current connection and the last failed dial.
    slot: Arc<std::sync::Mutex<Slot>>,
    /// Held while dialling: one dial at a time, the others wait for its result.
    dialling: Arc<tokio::sync::Mutex<()>>,
}

/// Where a [`Dialer`] connects.
#[derive(Clone)]
enum Dial {
    /// Always the same server.
    Fixed(Box<redis::Client>),
    /// The master the sentinels name at the time.
    Sentinel(Arc<Discovery>),
}

/// A [`Dialer`]'s state.
#[derive(Default)]
struct Slot {
    /// The connection calls use until it breaks.
    conn: Option<Pinned>,
    /// When the last dial failed, and why: calls within [`REDIAL_PAUSE`] of it
    /// fail at once with the same reason, so an outage does not turn every
    /// call into a round of dials (and of sentinel queries).
    failed: Option<(Instant, String)>,
}

/// How long a failed dial answers for the calls after it.
const REDIAL_PAUSE: Duration = Duration::from_millis(100);

impl Dialer {
    fn new(dial: Dial, cfg: AsyncConnectionConfig, db: i64) -> Dialer {
        Dialer { dial, cfg, db, slot: Arc::default(), dialling: Arc::default() }
    }

    /// The current connection, if it has not failed; or the recent dial failure.
    fn current(&self) -> Option<RedisResult<Pinned>> {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = &slot.conn
            && !p.broken.load(Ordering::Acquire)
        {
            match &self.dial {
                // Another master is named: never another command to this one.
                Dial::Sentinel(d) if d.replaced(&p.addr) => p.broken.store(true, Ordering::Release),
                _ => return Some(Ok(p.clone())),
            }
        }
        match &slot.failed {
            Some((at, why)) if at.elapsed() < REDIAL_PAUSE => {
                Some(Err(RedisError::from((redis::ErrorKind::Io, "no Redis connection", why.clone()))))
            }
            _ => None,
        }
    }

    /// The current connection, or a new one if it failed.
    async fn pinned(&self) -> RedisResult<Pinned> {
        if let Some(r) = self.current() {
            return r;
        }
        let _one = self.dialling.lock().await;
        // Another call may have dialled, or failed to, while this one waited.
        if let Some(r) = self.current() {
            return r;
        }
        let dialled = async {
            let client = match &self.dial {
                Dial::Fixed(c) => (**c).clone(),
                // Boxed: the lookup's futures are deep (see `open`).
                Dial::Sentinel(d) => Box::pin(d.master()).await?,
            };
            let conn = client.get_multiplexed_async_connection_with_config(&self.cfg).await?;
            Ok::<_, RedisError>((conn, addr_of(&client)))
        };
        let dialled = dialled.await;
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match dialled {
            Ok((conn, addr)) => {
                let p = Pinned { conn, broken: Arc::default(), addr };
                *slot = Slot { conn: Some(p.clone()), failed: None };
                Ok(p)
            }
            Err(e) => {
                slot.failed = Some((Instant::now(), e.to_string()));
                Err(e)
            }
        }
    }

    /// [`Self::pinned`] as a command connection.
    async fn get(&self) -> StoreResult<RedisConn> {
        Ok(RedisConn::Pinned(self.pinned().await?))
    }
}

impl Connections {
    /// Connects to a standalone Redis (`redis://host:port/db`).
    pub(super) async fn connect(url: &str, opts: RedisOptions) -> StoreResult<Connections> {
        let info = url.into_connection_info().map_err(|e| StoreError::Unavailable(format!("bad Redis URL: {e}")))?;
        let client = client(with_auth(info, opts.auth.as_ref()).set_tcp_settings(tcp_settings()), opts.tls.as_ref())?;
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(opts.response_timeout))
            .set_connection_timeout(Some(opts.connection_timeout))
            // A lost connection is re-dialled by the next call, with at most
            // one retry ~100-200 ms later: calls succeed again within a few
            // hundred ms of Redis accepting connections (tests/store_outage.rs).
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_with_config(client.clone(), cfg.clone()).await?;
        let writer = match opts.wait_replicas {
            Some(w) if w.replicas == 0 || w.timeout.is_zero() => {
                return Err(StoreError::Unavailable("WAIT needs at least 1 replica and a timeout of 1 ms".into()));
            }
            Some(w) => {
                // The answer to WAIT may take the whole WAIT timeout.
                let cfg = AsyncConnectionConfig::new()
                    .set_response_timeout(Some(opts.response_timeout + w.timeout))
                    .set_connection_timeout(Some(opts.connection_timeout));
                let writer = Dialer::new(Dial::Fixed(Box::new(client.clone())), cfg, 0);
                writer.get().await?;
                Some((writer, w))
            }
            None => None,
        };
        Ok(Connections { conn: RedisConn::Standalone(conn), sub: Subscriber::Standalone(client), writer })
    }

    /// The connection for a write: the writer's when writes wait for
    /// replicas.
    pub(super) async fn w(&self) -> StoreResult<RedisConn> {
        match &self.writer {
            Some((w, _)) => w.get().await,
            None => Ok(self.conn.clone()),
        }
    }

    /// After a write on `conn` (from [`Self::w`]): waits for the configured
    /// replicas to acknowledge every write of that connection so far.
    pub(super) async fn replicated(&self, conn: &mut RedisConn) -> StoreResult<()> {
        let Some((_, w)) = &self.writer else { return Ok(()) };
        let acked: u32 =
            redis::cmd("WAIT").arg(w.replicas).arg(w.timeout.as_millis().max(1) as u64).query_async(conn).await?;
        if acked < w.replicas {
            return Err(StoreError::Unavailable(format!(
                "not replicated: {acked} of {} replicas acknowledged within {:?}",
                w.replicas, w.timeout
            )));
        }
        Ok(())
    }

    /// Connects to a Redis Cluster through any of `nodes` (`redis://host:port`
    /// each), with the same timeouts as a standalone server: `response_timeout`
    /// bounds a whole call, retries and redirections included.
    pub(super) async fn connect_cluster(nodes: &[String], opts: RedisOptions) -> StoreResult<Connections> {
        if opts.wait_replicas.is_some() {
            // WAIT would have to go to the master of each write's slot; the
            // redis crate sends it to every master. Not offered on a cluster.
            return Err(StoreError::Unavailable("waiting for replicas is not supported on a cluster".into()));
        }
        if nodes.is_empty() {
            return Err(StoreError::Unavailable("no cluster node given".into()));
        }
        let seeds = nodes
            .iter()
            .map(|n| {
                n.as_str()
                    .into_connection_info()
                    .map(|i| with_auth(i, opts.auth.as_ref()).set_tcp_settings(tcp_settings()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Unavailable(format!("bad Redis URL: {e}")))?;
        let mut builder = ClusterClientBuilder::new(seeds.clone());
        if let Some(t) = &opts.tls {
            builder = builder.certs(t.certificates());
        }
        let client = builder
            .connection_timeout(opts.connection_timeout)
            .response_timeout(opts.response_timeout)
            // A failed node or a MOVED answer is retried (after a topology
            // refresh) within the response timeout.
            .retries(3)
            .tcp_settings(tcp_settings())
            .build()?;
        let conn = client.get_async_connection().await?;
        Ok(Connections {
            conn: RedisConn::Cluster(conn),
            sub: Subscriber::Cluster { seeds, timeout: opts.connection_timeout, tls: opts.tls },
            writer: None,
        })
    }

    /// Connects to the master the sentinels of `t` name, with the same
    /// timeouts as a standalone server (a lookup of the master is bounded by
    /// twice the connection timeout, at least 2 s). `opts`' credentials and
    /// TLS certificates are the servers'; the sentinels take the URL's
    /// credentials and the same certificates.
    pub(super) async fn connect_sentinel(t: &SentinelTarget, opts: RedisOptions) -> StoreResult<Connections> {
        let addrs = t.sentinels.iter().map(|(host, port)| match t.tls {
            true => ConnectionAddr::TcpTls { host: host.clone(), port: *port, insecure: false, tls_params: None },
            false => ConnectionAddr::Tcp(host.clone(), *port),
        });
        let mut b = SentinelClientBuilder::new(addrs, &t.master, SentinelServerType::Master)?
            .set_client_to_redis_db(t.db)
            .set_client_to_redis_tcp_settings(tcp_settings())
            .set_client_to_sentinel_tcp_settings(tcp_settings());
        if let Some(a) = &opts.auth {
            b = b.set_client_to_redis_password(&a.password);
            if let Some(u) = &a.username {
                b = b.set_client_to_redis_username(u);
            }
        }
        if let Some(p) = &t.password {
            b = b.set_client_to_sentinel_password(p);
        }
        if let Some(u) = &t.username {
            b = b.set_client_to_sentinel_username(u);
        }
        if t.tls {
            b = b.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
            if let Some(tls) = &opts.tls {
                b = b
                    .set_client_to_redis_certificates(tls.certificates())
                    .set_client_to_sentinel_certificates(tls.certificates());
            }
        }
        // A lookup is several round trips and connections (a sentinel, then
        // the named master for `ROLE`), each a TLS handshake with rediss:
        // one connection's timeout is too short for it.
        let lookup = (opts.connection_timeout * 2).max(Duration::from_secs(2));
        let discovery = Discovery::start(b.build()?, t.master.clone(), lookup);
        let cfg = |response: Duration| {
            AsyncConnectionConfig::new()
                .set_response_timeout(Some(response))
                .set_connection_timeout(Some(opts.connection_timeout))
        };
        let conn = Dialer::new(Dial::Sentinel(discovery.clone()), cfg(opts.response_timeout), t.db);
        // At start, a wrong master name or unreachable sentinels fail here.
        conn.pinned().await?;
        let writer = match opts.wait_replicas {
            Some(w) if w.replicas == 0 || w.timeout.is_zero() => {
                return Err(StoreError::Unavailable("WAIT needs at least 1 replica and a timeout of 1 ms".into()));
            }
            // Its own connection, for the same reason as on a standalone
            // server; it follows the master the same way.
            Some(w) => {
                let writer =
                    Dialer::new(Dial::Sentinel(discovery.clone()), cfg(opts.response_timeout + w.timeout), t.db);
                writer.get().await?;
                Some((writer, w))
            }
            None => None,
        };
        Ok(Connections { conn: RedisConn::Followed(Arc::new(conn)), sub: Subscriber::Sentinel(discovery), writer })
    }

    /// Connects to `target`.
    pub(super) async fn open(target: &RedisTarget, opts: RedisOptions) -> StoreResult<Connections> {
        match target {
            RedisTarget::Standalone(url) => Connections::connect(url, opts).await,
            RedisTarget::Cluster(nodes) => Connections::connect_cluster(nodes, opts).await,
            // Boxed: the lookup's futures are deep, and every caller's
            // future would otherwise carry their layout (a test crate's
            // chain of async constructors overflowed the query depth).
            RedisTarget::Sentinel(t) => Box::pin(Connections::connect_sentinel(t, opts)).await,
        }
    }

    /// A pub/sub connection subscribed to the invalidations, and how to
    /// tell that it is no longer where they are published.
    pub(super) async fn pubsub(&self) -> StoreResult<(PubSub, Moved)> {
        let ps = match &self.sub {
            Subscriber::Standalone(client) => {
                // Bounded: a connection that takes bytes but returns none
                // would otherwise hang the subscriber for good.
                let attempt = async {
                    let mut ps = client.get_async_pubsub().await?;
                    ps.subscribe(INVALIDATION_CHANNEL).await?;
                    Ok::<_, RedisError>(ps)
                };
                match tokio::time::timeout(PUBSUB_PING_TIMEOUT * 2, attempt).await {
                    Ok(r) => r?,
                    Err(_) => return Err(StoreError::Unavailable("the subscription was not confirmed in time".into())),
                }
            }
            Subscriber::Cluster { seeds, timeout, tls } => self.cluster_pubsub(seeds, *timeout, tls.as_ref()).await?,
            Subscriber::Sentinel(discovery) => {
                let attempt = async {
                    let master = Box::pin(discovery.master()).await?;
                    let mut ps = master.get_async_pubsub().await?;
                    ps.subscribe(INVALIDATION_CHANNEL).await?;
                    Ok::<_, RedisError>((ps, addr_of(&master)))
                };
                // The lookup has its own bound, on top of the subscription's.
                return match tokio::time::timeout(PUBSUB_PING_TIMEOUT * 2 + discovery.timeout(), attempt).await {
                    Ok(r) => {
                        let (ps, addr) = r?;
                        Ok((ps, Moved(Some((discovery.clone(), addr)))))
                    }
                    Err(_) => Err(StoreError::Unavailable("the subscription was not confirmed in time".into())),
                };
            }
        };
        Ok((ps, Moved::default()))
    }

    /// A pub/sub connection subscribed to the invalidations on one live
    /// cluster node: the nodes of the current topology not flagged failing
    /// (from a rotating start, so replicas spread), then the seeds.
    async fn cluster_pubsub(
        &self,
        seeds: &[ConnectionInfo],
        timeout: Duration,
        tls: Option<&RedisTls>,
    ) -> StoreResult<PubSub> {
        let mut addrs = match self.live_nodes().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster topology; trying the seed nodes");
                Vec::new()
            }
        };
        if !addrs.is_empty() {
            let start = now_ms().unsigned_abs() as usize % addrs.len();
            addrs.rotate_left(start);
        }
        for s in seeds {
            let (h, p) = match s.addr() {
                ConnectionAddr::Tcp(h, p) | ConnectionAddr::TcpTls { host: h, port: p, .. } => (h, p),
                _ => continue,
            };
            if !addrs.contains(&(h.clone(), *p)) {
                addrs.push((h.clone(), *p));
            }
        }
        let secure = matches!(seeds.first().map(ConnectionInfo::addr), Some(ConnectionAddr::TcpTls { .. }));
        let mut last = StoreError::Unavailable("no cluster node to subscribe on".into());
        for (host, port) in addrs {
            let addr = if secure {
                ConnectionAddr::TcpTls { host: host.clone(), port, insecure: false, tls_params: None }
            } else {
                ConnectionAddr::Tcp(host.clone(), port)
            };
            let info = seeds[0].clone().set_addr(addr);
            let attempt = async {
                let mut ps = client(info, tls)?.get_async_pubsub().await?;
                ps.subscribe(INVALIDATION_CHANNEL).await?;
                Ok::<_, RedisError>(ps)
            };
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(ps)) => {
                    tracing::info!(node = %format!("{host}:{port}"), "listening for invalidations");
                    return Ok(ps);
                }
                Ok(Err(e)) => last = e.into(),
                Err(_) => last = StoreError::Unavailable(format!("{host}:{port} did not answer in time")),
            }
        }
        Err(last)
    }

    /// Addresses of the cluster's nodes that no one flags as failing, from
    /// `CLUSTER NODES` (asked of any node).
    async fn live_nodes(&self) -> StoreResult<Vec<(String, u16)>> {
        let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut self.conn.clone()).await?;
        Ok(parse_live_nodes(&text))
    }
}

/// `<id> <ip:port@bus[,host]> <flags> <master> <ping> <pong> <epoch> <link> <slots…>`
/// per line; keeps the nodes that are neither failing nor unreachable.
fn parse_live_nodes(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (addr, flags, link) = (f.get(1)?, f.get(2)?, f.get(7)?);
            let bad = flags.split(',').any(|x| matches!(x, "fail" | "fail?" | "handshake" | "noaddr"));
            if bad || *link != "connected" {
                return None;
            }
            let (host, port) = addr.split(['@', ',']).next()?.rsplit_once(':')?;
            Some((host.to_string(), port.parse().ok()?))
        })
        .filter(|(h, p)| !h.is_empty() && *p != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_live_nodes;

    #[test]
    fn live_nodes_skip_failing_and_disconnected() {
        let text = "\
a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:7001@17001,host.example master,fail - 1 1 2 disconnected 5461-10922
c 127.0.0.1:7002@17002 master - 0 1 3 connected 10923-16383
d 127.0.0.1:7003@17003 slave,fail? c 0 1 3 connected
e :0@0 master,noaddr - 0 0 0 disconnected
";
        assert_eq!(parse_live_nodes(text), vec![("127.0.0.1".to_string(), 7000), ("127.0.0.1".to_string(), 7002)]);
    }
}
