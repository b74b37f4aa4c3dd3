//! authd: the gRPC service that issues, rotates, lists and revokes
//! credentials, over the `cred-core` domain and any of its stores.
//!
//! Layout, one sentence a module:
//! - `server`: assembles the services, health and reflection, and serves
//!   them on a listener the caller hands in until the caller's shutdown;
//! - `http`: the HTTP/JSON listener, transcoding each request into a call
//!   of the same gRPC service stack;
//! - `admin`, `clients`, `sessions`: one gRPC service each, converting
//!   requests to domain calls and back;
//! - `auth`: takes the bearer credential from metadata and checks operator
//!   keys (with a reloadable allowlist);
//! - `convert`: wire ↔ domain conversions and field validation;
//! - `status`: the one table from domain errors to `tonic::Status`;
//! - `dev`: the zero-setup dev mode's bootstrap and banner.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod clients;
pub mod convert;
pub mod dev;
pub mod http;
pub mod server;
pub mod sessions;
pub mod status;
