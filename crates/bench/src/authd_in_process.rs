//! authd in this process, on its own runtime (as a separate process would
//! have its own threads, named [`AUTHD_THREADS`] so their CPU shows apart
//! from the load generator's), with its own store, on a free loopback port,
//! built as the authd binary builds it: `authd::server::run` starts the push
//! listener and sets TCP_NODELAY on accepted connections.

use std::net::SocketAddr;
use std::time::Duration;

use authd::auth::OperatorAuth;
use cred_core::Authority;
use cred_core::cache::CacheOptions;
use cred_core::operator::{Allowlist, OperatorSecret};
use cred_core::store::RedisStore;
use cred_core::store::redis::RedisOptions;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Thread name prefix of authd's runtime.
pub const AUTHD_THREADS: &str = "authd-rt";

/// How authd is set up.
pub struct AuthdOptions {
    /// Worker threads of its runtime (tokio's default: one per core).
    pub worker_threads: Option<usize>,
    /// The API key cache, as `--api-key-cache-*` configure it; `None`: off.
    pub api_key_cache: Option<CacheOptions>,
}

/// A running in-process authd.
pub struct InProcessAuthd {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), String>>>,
    // Dropped last: dropping it stops whatever still runs on it.
    _rt: BackgroundRuntime,
}

impl InProcessAuthd {
    /// Starts authd over Redis at `url`, accepting the operator `secret`
    /// signs for `operator_id`.
    pub async fn start(
        url: &str,
        secret: OperatorSecret,
        operator_id: uuid::Uuid,
        options: AuthdOptions,
    ) -> Result<InProcessAuthd, String> {
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = options.worker_threads {
            rt.worker_threads(n);
        }
        let rt = BackgroundRuntime(Some(
            rt.thread_name(AUTHD_THREADS).enable_all().build().map_err(|e| format!("authd runtime: {e}"))?,
        ));
        let (addr_tx, addr_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let url = url.to_string();
        let server = rt.handle().spawn(async move {
            let store = RedisStore::connect(&url, RedisOptions::default())
                .await
                .map_err(|e| format!("connecting authd's store: {e}"))?;
            let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .map_err(|e| format!("binding authd: {e}"))?;
            let _ = addr_tx.send(listener.local_addr().map_err(|e| format!("authd address: {e}"))?);
            let operators = OperatorAuth::new(secret, Allowlist::of([operator_id]));
            let mut authority = Authority::new(store);
            if let Some(cache) = options.api_key_cache {
                authority = authority.with_api_key_cache(cache);
            }
            authd::server::run(listener, authority, operators, cred_serve::serve::ServeOptions::default(), async move {
                let _ = stopped.await;
            })
            .await
            .map_err(|e| format!("authd stopped with an error: {e}"))
        });
        let Ok(addr) = addr_rx.await else {
            return Err(match server.await {
                Ok(Err(e)) => e,
                _ => "authd did not start".into(),
            });
        };
        Ok(InProcessAuthd { addr, stop: Some(stop), server: Some(server), _rt: rt })
    }

    /// Asks authd to drain and waits up to `within`; `Ok(false)` if it did
    /// not drain in time.
    pub async fn stop(mut self, within: Duration) -> Result<bool, String> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let Some(server) = self.server.take() else { return Ok(true) };
        match tokio::time::timeout(within, server).await {
            Ok(Ok(Ok(()))) => Ok(true),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(e)) => Err(format!("authd task failed: {e}")),
            Err(_) => Ok(false),
        }
    }
}

/// A runtime that may be dropped from async code (it shuts down in the
/// background instead of blocking).
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl BackgroundRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        self.0.as_ref().map(|rt| rt.handle().clone()).unwrap_or_else(tokio::runtime::Handle::current)
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}
