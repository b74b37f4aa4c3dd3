//! A plain HTTP listener beside a gRPC server (introspect's gateway
//! endpoints): an axum `Router` served over HTTP/1.1 and h2c by hyper, with
//! a header read timeout (a slow client cannot hold a connection forever
//! before its request), the caller's address as axum's `ConnectInfo`, and a
//! graceful stop: no new connections, requests in flight finish. Also the
//! router of the Prometheus listener. authd's HTTP/JSON listener takes the
//! gRPC listener's header and stream limits instead of the defaults.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tonic::transport::server::TcpConnectInfo;
use tower::ServiceExt;

use crate::limits::Limits;

/// Longest wait for a request's headers once a connection is open or idle.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) read, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `router` on `listener` until `stop` completes; then accepts no
/// more and returns once the open connections have finished their requests
/// (the caller bounds that wait). With `limits`, a request head is held to
/// its header list size (at least 8 KiB, hyper's floor) and h2c to its
/// header list size and concurrent streams, as on the gRPC listener;
/// without, to [`MAX_HEAD_BYTES`] and hyper's h2 defaults.
pub async fn serve(listener: TcpListener, router: Router, limits: Option<Limits>, stop: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let max_head = limits.map_or(MAX_HEAD_BYTES, |l| (l.max_header_list_bytes as usize).max(8192));
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(max_head);
    if let Some(l) = limits {
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(l.max_concurrent_streams)
            .max_header_list_size(l.max_header_list_bytes);
    }
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: wait, do not spin.
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = router.clone().map_request(move |req: http::Request<hyper::body::Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            // What tonic sets on its accepted connections: requests handed on
            // to a gRPC service stack (authd's HTTP/JSON) carry the peer for
            // the per-peer budgets as they would over gRPC.
            req.extensions_mut().insert(TcpConnectInfo { local_addr: None, remote_addr: Some(peer) });
            req
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// `GET /metrics`: the registry in Prometheus' text format; anything else
/// is 404.
pub fn metrics_router(scrape: cred_telemetry::Scrape) -> Router {
    let get = move || {
        let scrape = scrape.clone();
        async move { ([(http::header::CONTENT_TYPE, cred_telemetry::Scrape::CONTENT_TYPE)], scrape.text()) }
    };
    Router::new().route("/metrics", axum::routing::get(get))
}
