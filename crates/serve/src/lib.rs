//! cred-serve: the gRPC edge authd and introspect share, so that each
//! binary's `server.rs` only names its services and its `main.rs` only its
//! own flags. It knows no domain logic beyond the one status table.
//!
//! Layout, one sentence a module (a module uses only those below it):
//! - `args`: the shared flags as clap `Args` (limits, Redis target, TLS,
//!   health listener), with each binary's env var prefix;
//! - `serve`: reflection, health (the process, readiness, the store), drain,
//!   the health-only listener, and `Assembly`, which puts a service's API
//!   behind the limits and the telemetry layer and serves it;
//! - `http`: a plain HTTP/1.1 and h2c listener serving an axum router,
//!   stopped and drained with the gRPC server;
//! - `unserved`: requests for what the server does not serve, counted and
//!   logged;
//! - `tls`: server TLS from PEM files, checked at start with errors naming
//!   the flag, the handshakes with the config current at each accept,
//!   reloaded when the files change, and the client-certificate interceptor
//!   of admin mTLS;
//! - `limits`: request size, metadata, stream and timeout limits, and the
//!   wrapper that refuses an oversized message from its length prefix;
//! - `peer`: the caller's address for the per-peer budgets, through
//!   trusted proxies' `x-forwarded-for`;
//! - `status`: the one table from `cred_core::Error` to `tonic::Status`,
//!   with what the services really differ in as an `Edge` parameter, and
//!   the floor an outside caller's refusals are held to;
//! - `check`: the `health-check` subcommand, a `grpc.health.v1` client
//!   (the distroless image's `helm test` runs it).
//! - `watch`: a reload run on SIGHUP and when files' directories change.
#![forbid(unsafe_code)]

pub mod args;
pub mod check;
pub mod http;
pub mod limits;
pub mod peer;
pub mod serve;
pub mod status;
pub mod tls;
pub mod unserved;
pub mod watch;
