//! credd-client: verify the caller of a Rust service with introspect.
//!
//! [`IntrospectLayer`] is a tower layer for tonic and axum services. Per
//! request it reads the `authorization` header (`Bearer <token>`, the scheme
//! in any case, or the raw token), calls `introspect.v1.IntrospectService/
//! Verify` over a shared tonic `Channel` with a deadline
//! ([`DEFAULT_DEADLINE`], 500 ms), and either calls the inner service with
//! the verified [`Identity`] in the request extensions or answers itself:
//!
//! | outcome | HTTP caller | gRPC caller (`content-type: application/grpc…`) |
//! |---|---|---|
//! | no, or an unusable, credential | 401, `WWW-Authenticate: Bearer error="invalid_token"` (bare `Bearer` when none was sent) | UNAUTHENTICATED, ErrorInfo `INVALID_API_KEY` |
//! | lacks a required scope | 403, `WWW-Authenticate: Bearer error="insufficient_scope"` | PERMISSION_DENIED |
//! | introspect throttles the credential | 429, `Retry-After` | RESOURCE_EXHAUSTED, RetryInfo |
//! | introspect unreachable, past the deadline, UNAVAILABLE, anything unexpected | 503 | UNAVAILABLE |
//!
//! It fails closed: nothing but a Verify success (or, in optional mode, no
//! credential at all) reaches the inner service. HTTP refusals carry the
//! AIP-193 JSON body of `cred_serve::status::HttpError`; gRPC ones are
//! trailers-only. The precise cause introspect tells its internal callers
//! is never passed on. With the `axum` feature, `Identity` and
//! `Option<Identity>` are extractors.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use credd_client::{Identity, IntrospectLayer};
//! let layer = IntrospectLayer::lazy("http://127.0.0.1:50052")?
//!     .deadline(std::time::Duration::from_millis(300))
//!     .scopes(["clients.read"])?;
//! // tonic: Server::builder().layer(layer).add_service(...)
//! // axum:  Router::new().route(...).layer(layer)
//! # Ok(()) }
//! ```
//!
//! Layout, one sentence a module (a module uses only those below it):
//! - `layer`, `extract`: the tower layer and service, and the axum
//!   extractor (feature `axum`);
//! - `refusal`: a refusal as a gRPC trailers-only or an HTTP JSON answer,
//!   from the one status table;
//! - `verify`: the Verify call with its deadline, its answer read back into
//!   an `Identity` or a `cred_core::Error`;
//! - `identity`: the verified caller as a plain Rust value;
//! - `bearer`: the token in the `authorization` header.
#![forbid(unsafe_code)]

pub mod bearer;
#[cfg(feature = "axum")]
mod extract;
pub mod identity;
pub mod layer;
mod refusal;
mod verify;

pub use cred_core::model::Environment;
pub use identity::{Credential, Identity};
pub use layer::{DEFAULT_DEADLINE, DEFAULT_DOMAIN, IntrospectLayer, IntrospectService, ResponseBody};
