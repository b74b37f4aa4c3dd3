//! HTTP/JSON for every RPC, transcoded in process from the proto's
//! `google.api.http` options (ARCHITECTURE.md, "HTTP/JSON").
//!
//! One job a file, top first (each uses only those below it):
//! `listener` (the router `cred_serve` serves, and a request's way through the
//! gRPC stack),
//! `console` (the operator console's built-in assets and their headers),
//! `transcode` (JSON ↔ the request and response messages, gRPC framing),
//! `routes` (the route table from the descriptor set, path matching).

pub mod console;
pub mod listener;
pub mod routes;
pub mod transcode;

pub use listener::{Api, router};
pub use routes::Table;

/// The HTTP/JSON listener of a server, and whether it serves the console.
pub struct Listen {
    /// Where HTTP/JSON is served (bound by the caller: tests use port 0).
    pub listener: tokio::net::TcpListener,
    /// Serve the operator console under `/console/` (off by default).
    pub console: bool,
}
