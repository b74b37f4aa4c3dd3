//! noop-introspect: the floor under introspect's verify throughput.
//!
//! Serves `introspect.v1.IntrospectService/Verify` with the same stack as the
//! real `introspect` binary (tonic `Server`, the same generated service and
//! codec, `grpc.health.v1`, reflection v1 + v1alpha through
//! `cred_serve::serve::with_reflection`, a multi-threaded tokio runtime,
//! `TCP_NODELAY` on accepted connections through `cred_serve::serve::incoming`,
//! `serve_with_incoming_shutdown`) and answers every request with one fixed `VerifyResponse` shaped like a
//! real session answer, doing nothing else. The same h2load body drives both.
//!
//! Usage: `noop-introspect [--listen 127.0.0.1:0]`. Prints `listening on
//! <addr>` on stdout once bound; stops on SIGTERM or Ctrl-C.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use cred_proto::introspect::v1 as pb;
use cred_proto::introspect::v1::introspect_service_server::{IntrospectService, IntrospectServiceServer};
use cred_serve::serve::{incoming, with_reflection};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

/// Answers every verify with the same response.
struct Noop {
    answer: pb::VerifyResponse,
}

#[tonic::async_trait]
impl IntrospectService for Noop {
    async fn verify(&self, _req: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyResponse>, Status> {
        Ok(Response::new(self.answer.clone()))
    }
}

/// A response with the fields (and about the size) of a real session answer.
fn fixed_answer() -> pb::VerifyResponse {
    let ts = |seconds| Some(prost_types::Timestamp { seconds, nanos: 123_000_000 });
    pb::VerifyResponse {
        kind: pb::CredentialKind::Session as i32,
        tenant_id: "0b6b1f0e-3f4a-4c55-9a53-1f1e6f0c2a11".into(),
        environment: pb::Environment::Test as i32,
        client_id: "5d2c7a90-8e21-4f0b-b0b4-7f7e2b9d4c33".into(),
        session_id: "9a0f3e55-1c6d-4b8e-a2f7-3d4c5b6a7e88".into(),
        key_id: String::new(),
        scopes: vec![],
        labels: Default::default(),
        create_time: ts(1_790_000_000),
        expire_time: ts(1_790_086_400),
        max_expire_time: ts(1_790_604_800),
    }
}

#[tokio::main]
async fn main() {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(addr) => listen = addr,
                Err(e) => fail(&format!("--listen {v}: {e}")),
            },
            _ => fail(&format!("unknown argument {a:?}; usage: noop-introspect [--listen ADDR]")),
        }
    }
    let listener = TcpListener::bind(listen).await.unwrap_or_else(|e| fail(&format!("--listen {listen}: {e}")));
    let addr = listener.local_addr().unwrap_or_else(|e| fail(&format!("local address: {e}")));
    println!("listening on {addr}");

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<IntrospectServiceServer<Noop>>().await;
    // As introspect's server.rs assembles it.
    let router = with_reflection(Server::builder().add_service(health_service))
        .unwrap_or_else(|e| fail(&e.to_string()))
        .add_service(IntrospectServiceServer::new(Noop { answer: fixed_answer() }));
    if let Err(e) = router.serve_with_incoming_shutdown(incoming(listener), cred_serve::serve::shutdown_signal()).await
    {
        fail(&format!("transport: {e}"));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("noop-introspect: {msg}");
    std::process::exit(2);
}
