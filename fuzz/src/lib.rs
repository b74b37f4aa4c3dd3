//! Shared harness of the fuzz targets (`fuzz_targets/*.rs`).
//!
//! Layout, one sentence a module:
//! - `oracle`: independent encoders and checks of the token and operator-key
//!   formats, and the field rules of requests, written from the contract
//!   (README's limits) rather than by calling the code under test;
//! - `fixture`: a fresh in-memory authd / introspect per input (operator key,
//!   tenant, API keys, client, session), so a crash replays alone;
//! - `status`: what every gRPC error must look like (code, field named);
//! - `check`: the verdict rule comparing a call's result with the oracle.
//!
//! Requests reach the real service methods (`AdminApi`, `ClientApi`,
//! `SessionApi`, `IntrospectApi`) with a bearer in metadata, so each target
//! runs exactly the validation the server runs.

use std::future::Future;

pub mod check;
pub mod fixture;
pub mod oracle;
pub mod status;

thread_local! {
    // One runtime per process: building it per input would dominate the cost.
    static RT: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("tokio runtime");
}

/// Runs a future to completion on the harness runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    RT.with(|rt| rt.block_on(f))
}

/// Input framing of the service targets: one selector byte (which RPC, which
/// bearer), then the request message's protobuf bytes.
pub fn split(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(s, rest)| (*s, rest))
}
