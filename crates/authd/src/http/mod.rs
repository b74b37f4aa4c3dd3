//! HTTP/JSON for every RPC, transcoded in process from the proto's
//! `google.api.http` options (ARCHITECTURE.md, "HTTP/JSON").
//!
//! One job a file, top first (each uses only those below it):
//! `listener` (the socket, and a request's way through the gRPC stack),
//! `transcode` (JSON ↔ the request and response messages, gRPC framing),
//! `routes` (the route table from the descriptor set, path matching).

pub mod listener;
pub mod routes;
pub mod transcode;

pub use listener::{Api, serve};
pub use routes::Table;
