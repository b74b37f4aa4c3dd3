//! introspect: the sidecar every internal service asks, per request, whether
//! a credential is valid and whose it is. Correct (revocations and expiry
//! honoured at once), fail-closed, and cheap on the hot path.
//!
//! Layout, one sentence a module:
//! - `verifier`: the verify data path, one straight line from token text to
//!   answer, with coalesced activity writes;
//! - `cache`: the bounded caches of verified credentials, tenants and
//!   refused tokens, and the invalidation record;
//! - `push`: the store's invalidation subscription, feeding the caches;
//! - `service`: the gRPC edge and the error table;
//! - `server`: assembles service, health and reflection on a given listener.
#![forbid(unsafe_code)]

pub mod cache;
pub mod push;
pub mod server;
pub mod service;
pub mod verifier;

pub use verifier::{Requirements, Verifier, VerifyError, VerifyOptions};
