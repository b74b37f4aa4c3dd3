//! introspect: the sidecar every internal service asks, per request, whether
//! a credential is valid and whose it is. Correct (revocations and expiry
//! honoured at once), fail-closed, and cheap on the hot path.
//!
//! Layout, one sentence a module:
//! - `verifier`: the verify data path, one straight line from token text to
//!   answer, with coalesced activity writes;
//! - `cred_core::cache` / `cred_core::push` (re-used, not here): the bounded
//!   caches and the store's invalidation subscription that feeds them;
//! - `service`: the gRPC edge and the error table;
//! - `server`: assembles service, health and reflection on a given listener.
#![forbid(unsafe_code)]

/// The caches live in `cred-core` (authd caches API keys with them too).
pub use cred_core::cache;
pub mod server;
pub mod service;
pub mod verifier;

pub use verifier::{Requirements, Verifier, VerifyError, VerifyOptions};
