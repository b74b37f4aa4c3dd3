//! The credential domain of authd and introspect, with no knowledge of gRPC.
//!
//! Layout, one sentence a module, from the top floor down: each file imports
//! only from files listed below it.
//! - `authority`: every credential operation, written once over any store;
//! - `verify`: the checks that make a presented credential usable or not;
//! - `guard`: budgets of failed authentications per credential id and peer;
//! - `push`: the store's invalidations, applied to a cache;
//! - `cache`: bounded in-process caches of verified credentials, kept fresh
//!   by `push` and a max age;
//! - `store`: the store interface, its Redis and in-memory implementations,
//!   and `Instrumented`, a wrapper giving every call a `tracing` span;
//! - `operator`: operator keys, sealed offline with the server secret;
//! - `token`: the self-identifying, checksummed token format and its hash;
//! - `tag`: a per-process keyed MAC of a secret, what a cache compares on a
//!   hit instead of hashing it again;
//! - `model`: tenants, API keys, clients, sessions, audit events, limits,
//!   the stored secret hash, and the sliding-expiry rule;
//! - `error`: the domain errors (store failures and throttling included)
//!   the gRPC edge maps to status codes;
//! - `rng`: a per-thread ChaCha20 CSPRNG seeded from the OS;
//! - `clock`: wall-clock and monotonic milliseconds (the ground floor).
#![forbid(unsafe_code)]

pub mod authority;
pub mod cache;
pub mod clock;
pub mod error;
pub mod guard;
pub mod model;
pub mod operator;
pub mod push;

pub mod rng;
pub mod store;
pub mod tag;
pub mod token;
pub mod verify;

pub use authority::Authority;
pub use error::{Error, InvalidReason};
