//! authd in process, on `127.0.0.1:0`, over a real Redis (standalone or a
//! cluster), with helpers to make authenticated calls.

use std::net::SocketAddr;
use std::time::Duration;

use authd::auth::OperatorAuth;
use cred_core::Authority;
use cred_core::cache::CacheOptions;
use cred_core::operator::{Allowlist, OperatorSecret};
use cred_core::store::redis::RedisOptions;
use cred_core::store::{RedisStore, RedisTarget};
use cred_proto::authd::v1 as pb;
use pb::admin_service_client::AdminServiceClient;
use pb::client_service_client::ClientServiceClient;
use pb::session_service_client::SessionServiceClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::{Backend, Redis};

/// A running authd and the Redis behind it.
pub struct Authd {
    pub addr: SocketAddr,
    /// A valid operator key token.
    pub operator: String,
    /// The operator checker, to exercise allowlist reloads.
    pub operators: OperatorAuth,
    /// The operator secret, to mint more operator keys.
    pub secret: OperatorSecret,
    pub channel: Channel,
    pub redis: Redis,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// A tenant with a test and a production API key.
pub struct TenantKeys {
    pub tenant_id: String,
    pub test_key: String,
    pub live_key: String,
}

/// `msg` with `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii token"));
    r
}

/// Asserts the status is UNAUTHENTICATED with ErrorInfo reason INVALID_API_KEY.
pub fn assert_invalid_api_key(s: &Status, what: &str) {
    assert_eq!(s.code(), Code::Unauthenticated, "{what}: {s:?}");
    let info = s.get_details_error_info().unwrap_or_else(|| panic!("{what}: no ErrorInfo in {s:?}"));
    assert_eq!(info.reason, "INVALID_API_KEY", "{what}");
}

impl Authd {
    /// Starts a standalone Redis and authd.
    pub async fn start() -> Authd {
        Authd::start_on(Backend::Standalone).await
    }

    /// Starts authd over the backend's Redis.
    pub async fn start_on(backend: Backend) -> Authd {
        Authd::start_with(Redis::start(backend)).await
    }

    /// Starts authd over `redis`.
    pub async fn start_with(redis: Redis) -> Authd {
        Authd::start_configured(redis, RedisOptions::default(), |a| a).await
    }

    /// Starts authd over `redis` with the given store options, and with
    /// `configure` applied to its Authority (which already has the API key
    /// cache).
    pub async fn start_configured(
        redis: Redis,
        opts: RedisOptions,
        configure: impl FnOnce(Authority<RedisStore>) -> Authority<RedisStore>,
    ) -> Authd {
        let target = redis.target();
        Authd::start_at(redis, &target, opts, configure).await
    }

    /// As [`Authd::start_configured`], but reaching `redis` at `target` (a
    /// proxy in front of it).
    pub async fn start_at(
        redis: Redis,
        target: &RedisTarget,
        opts: RedisOptions,
        configure: impl FnOnce(Authority<RedisStore>) -> Authority<RedisStore>,
    ) -> Authd {
        Authd::start_serving(redis, target, opts, cred_serve::serve::ServeOptions::default(), configure).await
    }

    /// As [`Authd::start_at`], with the given serving options.
    pub async fn start_serving(
        redis: Redis,
        target: &RedisTarget,
        opts: RedisOptions,
        serve: cred_serve::serve::ServeOptions,
        configure: impl FnOnce(Authority<RedisStore>) -> Authority<RedisStore>,
    ) -> Authd {
        let store = RedisStore::open(target, opts).await.expect("connect to test redis");
        let (secret, _) = OperatorSecret::generate();
        let (id, operator) = secret.issue();
        let operators = OperatorAuth::new(secret.clone(), Allowlist::of([id]));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let ops = operators.clone();
        let authority = configure(Authority::new(store).with_api_key_cache(CacheOptions::default()));
        let cache = authority.api_key_cache().cloned().expect("cache on");
        let server = tokio::spawn(async move {
            authd::server::run(listener, authority, ops, serve, async {
                let _ = stopped.await;
            })
            .await
            .expect("authd serves");
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to authd");
        crate::assert_eventually!(cache.push_connected(), Duration::from_secs(5), "authd's push channel never came up");
        Authd { addr, operator, operators, secret, channel, redis, stop: Some(stop), server: Some(server) }
    }

    pub fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    pub fn clients(&self) -> ClientServiceClient<Channel> {
        ClientServiceClient::new(self.channel.clone())
    }

    pub fn sessions(&self) -> SessionServiceClient<Channel> {
        SessionServiceClient::new(self.channel.clone())
    }

    /// Creates a tenant (with the given idle/max seconds, or the defaults)
    /// and a test and a production API key with all scopes.
    pub async fn tenant(&self, policy: Option<(i64, i64)>) -> TenantKeys {
        let dur = |s| Some(prost_types::Duration { seconds: s, nanos: 0 });
        let req = pb::CreateTenantRequest {
            name: "acme".into(),
            idle_timeout: policy.and_then(|p| dur(p.0)),
            max_lifetime: policy.and_then(|p| dur(p.1)),
            quotas: None,
        };
        let t = self.admin().create_tenant(authed(&self.operator, req)).await.expect("create tenant").into_inner();
        let tenant_id = t.tenant.expect("tenant").tenant_id;
        let test_key = self.api_key(&tenant_id, pb::Environment::Test, &[]).await;
        let live_key = self.api_key(&tenant_id, pb::Environment::Production, &[]).await;
        TenantKeys { tenant_id, test_key, live_key }
    }

    /// Creates an API key and returns its secret.
    pub async fn api_key(&self, tenant_id: &str, env: pb::Environment, scopes: &[&str]) -> String {
        let req = pb::CreateApiKeyRequest {
            tenant_id: tenant_id.into(),
            environment: env.into(),
            name: "backend".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expire_time: None,
        };
        self.admin().create_api_key(authed(&self.operator, req)).await.expect("create api key").into_inner().secret
    }

    /// Whether a session token is accepted (GetCurrentSession); panics on
    /// anything but success or INVALID_API_KEY.
    pub async fn session_ok(&self, token: &str) -> bool {
        match self.sessions().get_current_session(authed(token, pb::GetCurrentSessionRequest {})).await {
            Ok(_) => true,
            Err(s) => {
                assert_invalid_api_key(&s, "session token");
                false
            }
        }
    }

    /// Whether an API key is accepted (GetClient of a random id gives
    /// NOT_FOUND once authenticated).
    pub async fn api_key_ok(&self, key: &str) -> bool {
        let req = pb::GetClientRequest { client_id: uuid::Uuid::new_v4().to_string() };
        match self.clients().get_client(authed(key, req)).await {
            Err(s) if s.code() == Code::NotFound => true,
            Err(s) => {
                assert_invalid_api_key(&s, "api key");
                false
            }
            Ok(_) => panic!("a random client id was found"),
        }
    }
}

impl Drop for Authd {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            h.abort();
        }
    }
}
