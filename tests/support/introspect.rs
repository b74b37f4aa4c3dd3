//! introspect replicas in process, on `127.0.0.1:0`, over a real Redis
//! (standalone or a cluster).

use std::net::SocketAddr;
use std::time::Duration;

use cred_core::store::redis::RedisOptions;
use cred_core::store::{RedisStore, RedisTarget};
use cred_proto::introspect::v1 as pb;
use introspect::{Verifier, VerifyOptions};
use pb::introspect_service_client::IntrospectServiceClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// One running introspect replica.
pub struct Replica {
    pub addr: SocketAddr,
    pub channel: Channel,
    /// The replica's verifier, to look at its caches.
    pub verifier: Verifier<RedisStore>,
    stop: Option<oneshot::Sender<()>>,
}

impl Replica {
    /// Starts a replica against `redis` and waits until its invalidation
    /// channel is up.
    pub async fn start(redis: &RedisTarget, opts: VerifyOptions) -> Replica {
        Replica::start_serving(redis, opts, cred_serve::serve::ServeOptions::default()).await
    }

    /// [`Replica::start`] with the server's options (trusted proxies, limits).
    pub async fn start_serving(
        redis: &RedisTarget,
        opts: VerifyOptions,
        serve: cred_serve::serve::ServeOptions,
    ) -> Replica {
        let ro = RedisOptions {
            response_timeout: opts.deadline,
            connection_timeout: opts.deadline,
            ..RedisOptions::default()
        };
        let store = RedisStore::open(redis, ro).await.expect("connect to test redis");
        let verifier = Verifier::new(store, opts);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let v = verifier.clone();
        tokio::spawn(async move {
            introspect::server::run(listener, v, serve, async {
                let _ = stopped.await;
            })
            .await
            .expect("introspect serves");
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to introspect");
        crate::assert_eventually!(
            verifier.cache().push_connected(),
            Duration::from_secs(5),
            "push channel never came up"
        );
        Replica { addr, channel, verifier, stop: Some(stop) }
    }

    pub fn client(&self) -> IntrospectServiceClient<Channel> {
        IntrospectServiceClient::new(self.channel.clone())
    }

    /// Verifies `token` (active use).
    pub async fn verify(&self, token: &str) -> Result<pb::VerifyResponse, Status> {
        self.verify_with(pb::VerifyRequest { token: token.into(), ..Default::default() }).await
    }

    /// Verifies with a full request.
    pub async fn verify_with(&self, req: pb::VerifyRequest) -> Result<pb::VerifyResponse, Status> {
        self.client().verify(req).await.map(|r| r.into_inner())
    }

    /// The precise cause of a refusal, `None` if the token was accepted.
    /// Panics if the refusal is not INVALID_API_KEY.
    pub async fn cause(&self, token: &str) -> Option<String> {
        match self.verify(token).await {
            Ok(_) => None,
            Err(s) => Some(cause(&s)),
        }
    }
}

/// The `cause` of an INVALID_API_KEY status.
pub fn cause(s: &Status) -> String {
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    let info = s.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo in {s:?}"));
    assert_eq!(info.reason, "INVALID_API_KEY");
    info.metadata.get("cause").cloned().unwrap_or_else(|| panic!("no cause in {s:?}"))
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
