//! Test support for the integration suites: a real `redis-server` on a free
//! loopback port or a real Redis Cluster of them, an in-process authd on
//! `127.0.0.1:0` in front of it, introspect replicas, and small helpers for
//! authenticated requests and error details; and the real binaries as
//! child processes (`binaries`). One module spawns `redis-server` for both
//! the standalone server and the cluster.
//!
//! Tests that need Redis fail loudly when `redis-server` is missing; they
//! never skip.
#![forbid(unsafe_code)]

pub mod authd;
pub mod backend;
pub mod binaries;
pub mod gateways;
pub mod introspect;
pub mod proxy;
pub mod redis_cluster;
mod redis_process;
pub mod redis_sentinel;
pub mod redis_server;
pub mod session_layout;

pub use authd::Authd;
pub use backend::{Backend, Redis};
pub use introspect::Replica;
pub use redis_cluster::RedisCluster;
pub use redis_server::RedisServer;

/// Polls `$cond` (an async expression returning bool) every 20 ms until it
/// holds, failing after `$timeout`. For state that settles, not for timing
/// assertions.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $timeout:expr, $($msg:tt)+) => {{
        let deadline = std::time::Instant::now() + $timeout;
        loop {
            if $cond {
                break;
            }
            assert!(std::time::Instant::now() < deadline, $($msg)+);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}
