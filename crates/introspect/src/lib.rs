//! introspect: the sidecar every internal service asks, per request, whether
//! a credential is valid and whose it is. Correct (revocations and expiry
//! honoured at once), fail-closed, and cheap on the hot path.
//!
//! Layout, one sentence a module (a module uses only those below it):
//! - `server`: assembles the gRPC services, health and reflection on a given
//!   listener, and the HTTP listener when configured;
//! - `http`: the HTTP listener's router: forward-auth, RFC 7662, unserved
//!   paths counted;
//! - `oauth`: RFC 7662 introspection: its callers' authentication and its
//!   answers;
//! - `ext_authz`: Envoy's `Authorization/Check` over the verifier, and the
//!   gRPC service that serves it;
//! - `check_response`: Envoy's `CheckResponse`: an allowed answer encoded
//!   directly, its header names encoded once; a denial as envoy-types'
//!   message;
//! - `check_request`: the fields of Envoy's `CheckRequest` a check reads,
//!   decoded without the rest;
//! - `service`: the gRPC edge, and introspect's parameters of the one status
//!   table (`cred_serve::status`);
//! - `gateway`: what every gateway endpoint shares: the bearer of an
//!   `Authorization` value, route requirements, identity headers, a refusal
//!   as HTTP (the one table, no cause told outside);
//! - `verifier`: the verify data path, one straight line from token text to
//!   answer (a `Verified` view or a `cred_core::Error`), with coalesced
//!   activity writes, over `cred_core::cache` / `cred_core::push` (the
//!   bounded caches and the store's invalidation subscription that feeds
//!   them, shared with authd).
#![forbid(unsafe_code)]

pub mod check_request;
pub mod check_response;
pub mod ext_authz;
pub mod gateway;
pub mod http;
pub mod oauth;
pub mod server;
pub mod service;
pub mod verifier;

pub use verifier::{Requirements, Verified, Verifier, VerifyOptions};
