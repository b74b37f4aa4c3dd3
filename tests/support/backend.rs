//! Which Redis a harness runs over: its own standalone server, or a cluster
//! (the binary's shared one, or one a test owns), and the macro that runs a
//! test body against each.

use std::sync::Arc;

use cred_core::store::{RedisStore, RedisTarget};

use crate::{RedisCluster, RedisServer};

/// The store backend a harness starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh `redis-server` of the test's own.
    Standalone,
    /// The test binary's shared 3-master cluster ([`RedisCluster::shared`]).
    Cluster,
}

/// The Redis behind a harness.
pub enum Redis {
    Server(RedisServer),
    Cluster(Arc<RedisCluster>),
}

impl Redis {
    /// Starts (or, for the shared cluster, joins) the backend's Redis.
    pub fn start(backend: Backend) -> Redis {
        match backend {
            Backend::Standalone => Redis::Server(RedisServer::start()),
            Backend::Cluster => Redis::Cluster(RedisCluster::shared()),
        }
    }

    /// What a store (or a service flag) connects to.
    pub fn target(&self) -> RedisTarget {
        match self {
            Redis::Server(s) => RedisTarget::Standalone(s.url()),
            Redis::Cluster(c) => c.target(),
        }
    }

    /// A store connected to it.
    pub async fn store(&self) -> RedisStore {
        match self {
            Redis::Server(s) => s.store().await,
            Redis::Cluster(c) => c.store().await,
        }
    }

    /// The standalone server, for the tests that poke the process itself
    /// (SIGSTOP, restart, INFO commandstats, a keyspace dump).
    pub fn server(&self) -> &RedisServer {
        match self {
            Redis::Server(s) => s,
            Redis::Cluster(_) => panic!("this test needs a standalone redis-server"),
        }
    }

    /// [`Redis::server`], mutably (restarts).
    pub fn server_mut(&mut self) -> &mut RedisServer {
        match self {
            Redis::Server(s) => s,
            Redis::Cluster(_) => panic!("this test needs a standalone redis-server"),
        }
    }
}

/// Runs each named `async fn(Backend)` as two tests, `standalone::<name>`
/// and `cluster::<name>`, so one body covers both deployments.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),+ $(,)?) => {
        mod standalone {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Backend::Standalone).await
                }
            )+
        }
        mod cluster {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Backend::Cluster).await
                }
            )+
        }
    };
}
