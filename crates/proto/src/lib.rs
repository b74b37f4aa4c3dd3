//! The wire contract of authd and introspect: prost/tonic types
//! generated from `proto/` at build time, the encoded descriptor set for
//! server reflection, the codec every generated service uses, and the
//! conversions between wire and domain types that both services need.
//!
//! Layout, one sentence a module (a module uses only those below it):
//! - `convert`: `Timestamp` ↔ `Millis` and wire ↔ domain `Environment`,
//!   written once beside the generated types;
//! - `authd::v1`, `introspect::v1`: the generated modules (`build.rs`);
//! - `codec`: prost's codec, with an undecodable request INVALID_ARGUMENT.
//!
//! Serving (TLS, limits, health, drain) is `cred-serve`'s.
#![forbid(unsafe_code)]

pub mod codec;
pub mod convert;

/// `authd.v1`: the credential issuing API.
pub mod authd {
    pub mod v1 {
        tonic::include_proto!("authd.v1");
    }
}

/// `introspect.v1`: the verify API.
pub mod introspect {
    pub mod v1 {
        tonic::include_proto!("introspect.v1");
    }
}

/// Encoded `FileDescriptorSet` of every proto file, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
