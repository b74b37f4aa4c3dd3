//! The wire contract of authd and introspect: prost/tonic types
//! generated from `proto/` at build time, the encoded descriptor set for
//! server reflection, and the codec every generated service uses.
//!
//! Nothing here knows of the domain; conversions live at each service's gRPC
//! edge.
#![forbid(unsafe_code)]

pub mod codec;
pub mod limits;
pub mod serve;
pub mod tls;

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
