//! noop-introspect: the floors under introspect's verify throughput. It
//! answers every `introspect.v1.IntrospectService/Verify` with one fixed
//! `VerifyResponse` shaped like a real session answer, doing nothing else,
//! on one of two stacks:
//!
//! - `--bare`: a bare tonic `Server` with the Verify service, `grpc.health.v1`
//!   (the bench waits for SERVING) and reflection, `TCP_NODELAY` on accepted
//!   connections; no limits, no telemetry, no log. The floor the targets are
//!   measured against.
//! - default, "the same stack": assembled exactly as introspect assembles its
//!   API (`cred_serve::serve::Assembly` with the default limits, the RPC
//!   telemetry layer with introspect's call log, health, reflection, drain),
//!   after the same `cred_telemetry::init` (JSON logs on stderr under the
//!   default `RUST_LOG`). introspect minus the verify itself.
//!
//! The same h2load body drives all of them.
//!
//! Usage: `noop-introspect [--listen 127.0.0.1:0] [--bare]`. Prints `listening
//! on <addr>` on stdout once bound; stops on SIGTERM or Ctrl-C.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use cred_proto::introspect::v1 as pb;
use cred_proto::introspect::v1::introspect_service_server::{IntrospectService, IntrospectServiceServer};
use cred_serve::serve::{Assembly, ServeOptions, incoming, shutdown_signal, with_reflection};
use cred_telemetry::{CallLog, LogFormat};
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
    let mut bare = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bare" => bare = true,
            "--listen" => match args.next().map(|v| v.parse::<SocketAddr>()) {
                Some(Ok(addr)) => listen = addr,
                other => fail(&format!("--listen needs an address ({other:?})")),
            },
            _ => fail(&format!("unknown argument {a:?}; usage: noop-introspect [--listen ADDR] [--bare]")),
        }
    }
    let listener = TcpListener::bind(listen).await.unwrap_or_else(|e| fail(&format!("--listen {listen}: {e}")));
    let addr = listener.local_addr().unwrap_or_else(|e| fail(&format!("local address: {e}")));
    println!("listening on {addr}");
    let api = IntrospectServiceServer::new(Noop { answer: fixed_answer() });
    if bare {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<IntrospectServiceServer<Noop>>().await;
        let names = [<IntrospectServiceServer<Noop> as tonic::server::NamedService>::NAME];
        let router = with_reflection(Server::builder().add_service(health_service).add_service(api), &names)
            .unwrap_or_else(|e| fail(&e.to_string()));
        if let Err(e) = router.serve_with_incoming_shutdown(incoming(listener), shutdown_signal()).await {
            fail(&format!("transport: {e}"));
        }
        return;
    }
    let telemetry = cred_telemetry::init("noop-introspect", LogFormat::Json).unwrap_or_else(|e| fail(&e));
    // As introspect's server.rs assembles it; the store probe always answers.
    let served = match Assembly::new(ServeOptions::default()) {
        Ok(edge) => {
            let api = api.max_decoding_message_size(edge.max_request_bytes());
            edge.call_log(CallLog::Notable).api(api).serve(listener, || async { true }, shutdown_signal()).await
        }
        Err(e) => Err(e),
    };
    telemetry.shutdown().await;
    if let Err(e) = served {
        fail(&format!("serve: {e}"));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("noop-introspect: {msg}");
    std::process::exit(2);
}
