//! The credential domain of authd and introspect, with no knowledge of gRPC.
//!
//! Layout, one sentence a module:
//! - `token`: the self-identifying, checksummed token format and its hash;
//! - `rng`: a per-thread ChaCha20 CSPRNG seeded from the OS;
//! - `model`: tenants, API keys, clients, sessions, audit events, limits,
//!   and the sliding-expiry rule;
//! - `operator`: operator keys, sealed offline with the server secret;
//! - `cache`: bounded in-process caches of verified credentials, kept fresh
//!   by `push` (the store's invalidations) and a max age;
//! - `store`: the store interface, its Redis and in-memory implementations,
//!   and `Instrumented`, a wrapper giving every call a `tracing` span;
//! - `authority`: every credential operation, written once over any store;
//! - `guard`: budgets of failed authentications per credential id and peer;
//! - `verify`: the checks that make a presented credential usable or not;
//! - `error`: the domain errors the gRPC edge maps to status codes.
#![forbid(unsafe_code)]

pub mod authority;
pub mod cache;
pub mod error;
pub mod guard;
pub mod model;
pub mod operator;
pub mod push;

pub mod rng;
pub mod store;
pub mod token;
pub mod verify;

pub use authority::Authority;
pub use error::{Error, InvalidReason};
