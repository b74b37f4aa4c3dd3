//! What introspect-bench's figures share: a private Redis, authd in process
//! (over real gRPC), a tenant with a test API key and one hot client session
//! token (CST), the h2load body that verifies it, two `introspect` replicas
//! (A and B, default flags and log level unless `--rust-log`, stderr to a
//! file) and the two floors, `noop-introspect --bare` and `noop-introspect`
//! (the same stack), as separate processes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cred_core::model::Tenant;
use cred_core::operator::OperatorSecret;
use cred_core::store::redis::RedisOptions;
use cred_core::store::{INVALIDATION_CHANNEL, RedisStore, Store};
use cred_proto::authd::v1 as apb;
use cred_proto::introspect::v1 as pb;
use prost::Message;
use redis::aio::MultiplexedConnection;
use tonic::transport::Channel;

use crate::api::{create_client, grpc_frame, new_tenant};
use crate::authd_in_process::{AuthdOptions, InProcessAuthd};
use crate::process::{self, Proc};
use crate::redis_info::{admin_connection, numsub};
use crate::redis_server::RedisServer;

/// The gRPC path of Verify, h2load's target.
pub const VERIFY_PATH: &str = "/introspect.v1.IntrospectService/Verify";

/// Everything the figures share.
pub struct Env {
    pub url: String,
    pub redis_port: u16,
    pub redis_pid: u32,
    /// The benchmark's own Redis connection.
    pub admin: MultiplexedConnection,
    /// Logs and bodies.
    pub dir: PathBuf,
    pub introspect_bin: PathBuf,
    /// Figure e's cached credentials.
    pub credentials: usize,
    /// `RUST_LOG` of every introspect started; `None`: unset, the shipped
    /// default.
    pub rust_log: Option<String>,
    pub authd: Channel,
    pub api_key: String,
    pub operator: String,
    pub tenant: Tenant,
    pub hot_cst: String,
    /// The h2load body: VerifyRequest{token: hot_cst}, framed.
    pub body: PathBuf,
    pub a: Proc,
    pub b: Proc,
    /// The floor: a bare tonic server answering Verify.
    pub bare: Proc,
    /// The same stack as introspect answering Verify with a fixed response.
    pub noop: Proc,
    authd_server: InProcessAuthd,
}

impl Env {
    /// Starts authd, creates the tenant and the hot CST, starts the no-op
    /// and replicas A and B, and waits until both replicas subscribed to
    /// invalidations.
    pub async fn start(
        redis: &RedisServer,
        introspect_bin: PathBuf,
        noop_bin: PathBuf,
        dir: &Path,
        credentials: usize,
        rust_log: Option<String>,
    ) -> Result<Env, String> {
        let url = redis.url();
        let mut admin = admin_connection(&url).await?;
        let (secret, _) = OperatorSecret::generate();
        let (operator_id, operator) = secret.issue();
        let authd_server = InProcessAuthd::start(
            &url,
            secret,
            operator_id,
            AuthdOptions { worker_threads: Some(2), api_key_cache: None },
        )
        .await?;
        let authd_addr = authd_server.addr;
        let authd = process::connect(authd_addr).await?;

        // Tenant, production API key and the hot CST, through authd's gRPC API.
        let (tenant_id, api_key) = new_tenant(&authd, &operator, "bench", apb::Environment::Production).await?;
        let (_, _, hot_cst) = create_client(&authd, &api_key).await?;
        let tenant_uuid: uuid::Uuid = tenant_id.parse().map_err(|e| format!("tenant id {tenant_id}: {e}"))?;
        let store = RedisStore::connect(&url, RedisOptions::default()).await.map_err(|e| e.to_string())?;
        let tenant = store.get_tenant(tenant_uuid).await.map_err(|e| e.to_string())?.ok_or("tenant not stored")?;
        println!(
            "authd in process on {authd_addr}; tenant {tenant_id} (idle {} h, max {} d), production API key, CST {}…",
            tenant.idle_timeout_ms / 3_600_000,
            tenant.max_lifetime_ms / 86_400_000,
            &hot_cst[..12]
        );

        let body = dir.join("verify.body");
        let req = pb::VerifyRequest { token: hot_cst.clone(), ..Default::default() };
        std::fs::write(&body, grpc_frame(&req.encode_to_vec())).map_err(|e| format!("{}: {e}", body.display()))?;

        let subscribers = numsub(&mut admin, INVALIDATION_CHANNEL).await?;
        let bare = process::start_noop(&noop_bin, true, dir).await?;
        let noop = process::start_noop(&noop_bin, false, dir).await?;
        let level = rust_log.as_deref();
        let a = process::start_introspect(&introspect_bin, "introspect-A", &url, &[], level, dir).await?.proc;
        let b = process::start_introspect(&introspect_bin, "introspect-B", &url, &[], level, dir).await?.proc;
        // SERVING does not wait for the invalidation subscription: wait for it here.
        let t = Instant::now();
        while numsub(&mut admin, INVALIDATION_CHANNEL).await? < subscribers + 2 {
            if t.elapsed() > Duration::from_secs(10) {
                return Err("the replicas never subscribed to invalidations".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        println!(
            "noop-introspect --bare pid {} on {}; noop-introspect (same stack) pid {} on {}; introspect A pid {} on \
             {}; introspect B pid {} on {} (default flags: touch granularity 1 s, cache max age 30 s; RUST_LOG {}; \
             stderr to files in {}); both subscribed to {INVALIDATION_CHANNEL}",
            bare.pid,
            bare.addr,
            noop.pid,
            noop.addr,
            a.pid,
            a.addr,
            b.pid,
            b.addr,
            level.map_or("unset (the shipped default)".to_string(), |l| format!("={l}")),
            dir.display()
        );
        Ok(Env {
            url,
            redis_port: redis.port(),
            redis_pid: redis.pid(),
            admin,
            dir: dir.to_path_buf(),
            introspect_bin,
            credentials,
            rust_log,
            authd,
            api_key,
            operator,
            tenant,
            hot_cst,
            body,
            a,
            b,
            bare,
            noop,
            authd_server,
        })
    }

    /// Stops authd and every process it started.
    pub async fn stop(self) {
        let _ = self.authd_server.stop(Duration::from_secs(5)).await;
        for p in [self.a, self.b, self.bare, self.noop] {
            p.stop().await;
        }
    }
}
