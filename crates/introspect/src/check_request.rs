//! The part of Envoy's `envoy.service.auth.v3.CheckRequest` that a check
//! reads, with the same field numbers: the source address, the request's
//! headers, the route's context extensions. Every other field (and there are
//! many: the destination, metadata, TLS session, body, path...) is skipped
//! while decoding. envoy-types' `CheckRequest` decodes all of it into a large
//! struct that the generated service then moves through each of its futures
//! (figure g counted the copies and allocations: README, "Benchmarks").
//! Headers stay slices of the received buffer (`Bytes`) until one is read.

use std::collections::HashMap;

use bytes::Bytes;

/// `CheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<Attributes>,
}

/// `AttributeContext`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Attributes {
    #[prost(message, optional, tag = "1")]
    pub source: Option<Peer>,
    #[prost(message, optional, tag = "4")]
    pub request: Option<Request>,
    #[prost(map = "string, string", tag = "10")]
    pub context_extensions: HashMap<String, String>,
}

/// `AttributeContext.Peer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    #[prost(message, optional, tag = "1")]
    pub address: Option<Address>,
}

/// `config.core.v3.Address`: of its `oneof`, only the socket address
/// (member 1) is read; a pipe or internal address is skipped.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    #[prost(message, optional, tag = "1")]
    pub socket_address: Option<SocketAddress>,
}

/// `config.core.v3.SocketAddress`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    #[prost(string, tag = "2")]
    pub address: String,
}

/// `AttributeContext.Request`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

/// `AttributeContext.HttpRequest`: `headers` (a map on the wire, read as
/// its entries) and `header_map` (what Envoy sends instead with
/// `encode_raw_headers`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    #[prost(message, repeated, tag = "3")]
    pub headers: Vec<Header>,
    #[prost(message, optional, tag = "13")]
    pub header_map: Option<HeaderMap>,
}

/// An entry of `HttpRequest.headers` (map entries are messages with key 1
/// and value 2 on the wire).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `config.core.v3.HeaderMap`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderMap {
    #[prost(message, repeated, tag = "1")]
    pub headers: Vec<HeaderValue>,
}

/// `config.core.v3.HeaderValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
    #[prost(bytes = "bytes", tag = "3")]
    pub raw_value: Bytes,
}

impl CheckRequest {
    /// The value of header `name` (lower case, as Envoy sends names): from
    /// `headers`, or from `header_map` when Envoy sends raw headers.
    pub fn header(&self, name: &str) -> Option<&str> {
        let http = self.attributes.as_ref()?.request.as_ref()?.http.as_ref()?;
        if let Some(h) = http.headers.iter().find(|h| h.key.as_ref() == name.as_bytes()) {
            return std::str::from_utf8(&h.value).ok();
        }
        let map = http.header_map.as_ref()?;
        let h = map.headers.iter().find(|h| h.key.eq_ignore_ascii_case(name.as_bytes()))?;
        std::str::from_utf8(if h.value.is_empty() { &h.raw_value } else { &h.value }).ok()
    }

    /// The end user's address as Envoy reports it.
    pub fn source(&self) -> Option<std::net::IpAddr> {
        let a = self.attributes.as_ref()?.source.as_ref()?.address.as_ref()?.socket_address.as_ref()?;
        a.address.parse().ok()
    }

    /// The route's context extension `key`.
    pub fn extension(&self, key: &str) -> Option<&str> {
        self.attributes.as_ref()?.context_extensions.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use envoy_types::pb::envoy::config::core::v3 as core;
    use envoy_types::pb::envoy::service::auth::v3 as full;
    use prost::Message;

    use super::*;

    fn decode(r: &full::CheckRequest) -> CheckRequest {
        CheckRequest::decode(Bytes::from(r.encode_to_vec())).expect("decodes")
    }

    /// What envoy-types encodes, this reads back: the same field numbers.
    #[test]
    fn reads_what_envoy_sends() {
        let headers = HashMap::from([
            ("authorization".to_string(), "Bearer t".to_string()),
            (":path".to_string(), "/x".to_string()),
        ]);
        let addr = core::SocketAddress { address: "198.51.100.7".into(), ..Default::default() };
        let r = full::CheckRequest {
            attributes: Some(full::AttributeContext {
                source: Some(full::attribute_context::Peer {
                    address: Some(core::Address { address: Some(core::address::Address::SocketAddress(addr)) }),
                    service: "ignored".into(),
                    ..Default::default()
                }),
                request: Some(full::attribute_context::Request {
                    http: Some(full::attribute_context::HttpRequest {
                        headers,
                        method: "GET".into(),
                        body: "ignored".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                context_extensions: HashMap::from([("credd.scopes".to_string(), "a b".to_string())]),
                ..Default::default()
            }),
        };
        let lite = decode(&r);
        assert_eq!(lite.header("authorization"), Some("Bearer t"));
        assert_eq!(lite.header("x-missing"), None);
        assert_eq!(lite.source(), Some("198.51.100.7".parse().unwrap()));
        assert_eq!(lite.extension("credd.scopes"), Some("a b"));
        assert_eq!(decode(&full::CheckRequest::default()).header("authorization"), None);
    }

    /// Raw headers (`encode_raw_headers: true`): the value in `raw_value`,
    /// names matched whatever their case.
    #[test]
    fn reads_raw_headers() {
        let hv = |k: &str, v: &[u8]| core::HeaderValue { key: k.into(), raw_value: v.to_vec(), ..Default::default() };
        let r = full::CheckRequest {
            attributes: Some(full::AttributeContext {
                request: Some(full::attribute_context::Request {
                    http: Some(full::attribute_context::HttpRequest {
                        header_map: Some(core::HeaderMap {
                            headers: vec![hv("Host", b"h"), hv("Authorization", b"Bearer raw")],
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        assert_eq!(decode(&r).header("authorization"), Some("Bearer raw"));
        // A pipe address is no socket address: no source.
        let pipe = full::CheckRequest {
            attributes: Some(full::AttributeContext {
                source: Some(full::attribute_context::Peer {
                    address: Some(core::Address {
                        address: Some(core::address::Address::Pipe(core::Pipe { path: "/p".into(), mode: 0 })),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        assert_eq!(decode(&pipe).source(), None);
    }
}
