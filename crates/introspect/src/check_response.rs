//! Envoy's `envoy.service.auth.v3.CheckResponse`, as ext_authz answers it.
//! An allowed check (nearly every one) is encoded here directly: the
//! identity headers' names are known at start, so their encoded fields
//! (`HeaderValue.key`, the `headers_to_remove` entries) are computed once,
//! and a call writes only the values (ids formatted into the output, no
//! `String` per header). The bytes are those envoy-types writes for the same
//! message (the tests compare them); building that message instead cost
//! about 6,000 instructions a check in allocations and encoding (figure g,
//! README "Benchmarks"). A denial, rare, is envoy-types' `CheckResponse`.

use std::sync::Arc;

use bytes::{Buf, BufMut};
use cred_core::model::{Scope, Scopes};
use cred_core::token::TokenKind;
use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
};
use envoy_types::pb::google::rpc;
use prost::encoding::{DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint, int32, key_len, string};
use prost::{DecodeError, Message};
use uuid::Uuid;

use crate::gateway::{IdentityHeaders, Refusal, env_name, kind_name};
use crate::verifier::Verified;

/// `CheckResponse.status` (`google.rpc.Status`).
const STATUS: u32 = 1;
/// `CheckResponse.ok_response` (`OkHttpResponse`, in the `http_response`
/// oneof).
const OK_RESPONSE: u32 = 3;
/// `OkHttpResponse.headers` (`HeaderValueOption`, repeated).
const HEADERS: u32 = 2;
/// `OkHttpResponse.headers_to_remove` (string, repeated).
const HEADERS_TO_REMOVE: u32 = 5;
/// `HeaderValueOption.header` (`HeaderValue`).
const HEADER: u32 = 1;
/// `HeaderValueOption.append_action`.
const APPEND_ACTION: u32 = 3;
/// `HeaderValue.key`.
const KEY: u32 = 1;
/// `HeaderValue.value`.
const VALUE: u32 = 2;

/// Every identity header replaces what the client sent under its name.
const ACTION: i32 = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;

/// The constant parts of an allowed answer, encoded once from the identity
/// header names.
#[derive(Debug)]
pub struct AllowedParts {
    /// `HeaderValue.key` of each header (tag, length, name), in
    /// [`IdentityHeaders::all`]'s order.
    keys: [Box<[u8]>; 7],
    /// The `headers_to_remove` entries of a session or test client key:
    /// the API key's headers.
    remove_for_session: Box<[u8]>,
    /// The `headers_to_remove` entries of an API key: the session's.
    remove_for_api_key: Box<[u8]>,
}

// Positions in `IdentityHeaders::all`, and below the values in the order
// `IdentityHeaders::values` gives them: the tests compare with those, so a
// change there fails here.
const KIND: usize = 0;
const TENANT: usize = 1;
const ENVIRONMENT: usize = 2;
const CLIENT: usize = 3;
const SESSION: usize = 4;
const API_KEY: usize = 5;
const SCOPES: usize = 6;

/// The headers a credential kind sets, in the order they are sent; the
/// others are removed.
fn set_by(kind: TokenKind) -> [usize; 5] {
    match kind {
        TokenKind::Session | TokenKind::TestClientKey => [KIND, TENANT, ENVIRONMENT, CLIENT, SESSION],
        TokenKind::ApiKey => [KIND, TENANT, ENVIRONMENT, API_KEY, SCOPES],
    }
}

impl AllowedParts {
    /// The parts for these header names.
    pub fn new(names: &IdentityHeaders) -> AllowedParts {
        let all = names.all().map(|n| n.as_str().to_string());
        let keys = all.clone().map(|n| {
            let mut b = Vec::new();
            string::encode(KEY, &n, &mut b);
            b.into_boxed_slice()
        });
        let removed = |kind| {
            let set = set_by(kind);
            let mut b = Vec::new();
            for (_, n) in all.iter().enumerate().filter(|(i, _)| !set.contains(i)) {
                string::encode(HEADERS_TO_REMOVE, n, &mut b);
            }
            b.into_boxed_slice()
        };
        AllowedParts {
            keys,
            remove_for_session: removed(TokenKind::Session),
            remove_for_api_key: removed(TokenKind::ApiKey),
        }
    }

    /// The allowed answer for `v`.
    pub fn allowed(self: &Arc<Self>, v: &Verified) -> Allowed {
        let (first, second) = v.key;
        let values = match v.kind {
            TokenKind::Session | TokenKind::TestClientKey => [
                Value::Text(kind_name(v.kind)),
                Value::Id(v.tenant_id),
                Value::Text(env_name(v.env)),
                Value::Id(first),
                Value::Id(second),
            ],
            TokenKind::ApiKey => [
                Value::Text(kind_name(v.kind)),
                Value::Id(v.tenant_id),
                Value::Text(env_name(v.env)),
                Value::Id(second),
                Value::Scopes(v.scopes),
            ],
        };
        let mut a = Allowed { parts: self.clone(), kind: v.kind, values, ok_len: 0 };
        a.ok_len = a.headers().map(|(key, value)| len_delimited(HEADERS, option_len(key, value))).sum::<usize>()
            + a.removed().len();
        a
    }
}

/// An identity header's value, written straight into the output.
#[derive(Debug, Clone, Copy)]
enum Value {
    /// A name: the kind, the environment.
    Text(&'static str),
    /// An id, hyphenated lower case as `Uuid`'s `Display` writes it.
    Id(Uuid),
    /// An API key's scope names, space-separated; every name for a key
    /// holding all (`gateway::scope_names`).
    Scopes(Scopes),
}

impl Value {
    fn scope_names(s: Scopes) -> impl Iterator<Item = &'static str> {
        // `allows` is true of every scope for a key stored with none.
        Scope::ALL.into_iter().filter(move |n| s.allows(*n)).map(Scope::name)
    }

    fn len(self) -> usize {
        match self {
            Value::Text(t) => t.len(),
            Value::Id(_) => uuid::fmt::Hyphenated::LENGTH,
            Value::Scopes(s) => {
                let (n, chars) = Value::scope_names(s).fold((0usize, 0), |(n, c), name| (n + 1, c + name.len()));
                chars + n.saturating_sub(1)
            }
        }
    }

    fn write(self, buf: &mut impl BufMut) {
        match self {
            Value::Text(t) => buf.put_slice(t.as_bytes()),
            Value::Id(id) => buf.put_slice(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes()),
            Value::Scopes(s) => {
                for (i, name) in Value::scope_names(s).enumerate() {
                    if i > 0 {
                        buf.put_u8(b' ');
                    }
                    buf.put_slice(name.as_bytes());
                }
            }
        }
    }
}

/// The length of a length-delimited field `tag` holding `len` bytes.
fn len_delimited(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn start(tag: u32, len: usize, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// `HeaderValue`: the precomputed key, and the value unless empty (proto3
/// does not send an empty string).
fn header_len(key: &[u8], value: Value) -> usize {
    let n = value.len();
    key.len() + if n == 0 { 0 } else { len_delimited(VALUE, n) }
}

/// `HeaderValueOption`: the header and its append action.
fn option_len(key: &[u8], value: Value) -> usize {
    len_delimited(HEADER, header_len(key, value)) + int32::encoded_len(APPEND_ACTION, &ACTION)
}

/// An allowed check's answer: `status` OK, `ok_response` with the identity
/// headers set and the others removed.
#[derive(Debug, Clone)]
pub struct Allowed {
    /// The names' encodings, shared by every answer.
    parts: Arc<AllowedParts>,
    /// Which headers are set (and so which are removed).
    kind: TokenKind,
    /// The values, in [`set_by`]'s order.
    values: [Value; 5],
    /// The length of the `OkHttpResponse`, computed once: it is needed for
    /// the length prefix and again for the whole message's length.
    ok_len: usize,
}

impl Allowed {
    fn headers(&self) -> impl Iterator<Item = (&[u8], Value)> {
        set_by(self.kind).into_iter().zip(self.values).map(|(i, v)| (&*self.parts.keys[i], v))
    }

    fn removed(&self) -> &[u8] {
        match self.kind {
            TokenKind::Session | TokenKind::TestClientKey => &self.parts.remove_for_session,
            TokenKind::ApiKey => &self.parts.remove_for_api_key,
        }
    }

    fn encoded_len(&self) -> usize {
        // A `Status` of code OK has no field to send, but it is present:
        // envoy-types sends it as an empty message.
        len_delimited(STATUS, 0) + len_delimited(OK_RESPONSE, self.ok_len)
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        start(STATUS, 0, buf);
        start(OK_RESPONSE, self.ok_len, buf);
        for (key, value) in self.headers() {
            start(HEADERS, option_len(key, value), buf);
            start(HEADER, header_len(key, value), buf);
            buf.put_slice(key);
            let n = value.len();
            if n > 0 {
                start(VALUE, n, buf);
                value.write(buf);
            }
            int32::encode(APPEND_ACTION, &ACTION, buf);
        }
        buf.put_slice(self.removed());
    }

    /// The same answer as envoy-types' message.
    fn to_message(&self) -> CheckResponse {
        let mut b = Vec::with_capacity(self.encoded_len());
        self.encode_raw(&mut b);
        CheckResponse::decode(b.as_slice()).expect("envoy-types decodes an allowed answer (the tests check it)")
    }
}

/// What ext_authz answers: the gRPC codec encodes either.
#[derive(Debug, Clone)]
pub enum Answer {
    /// An allowed check, encoded here.
    Allowed(Allowed),
    /// envoy-types' message: a denial, or what was decoded into an
    /// `Answer` (only tests decode answers).
    Full(CheckResponse),
}

impl Answer {
    /// The denial `r`, with its status, headers and JSON body.
    pub fn denied(r: &Refusal) -> Answer {
        let set = |name: &http::HeaderName, value: &http::HeaderValue| HeaderValueOption {
            header: Some(HeaderValue {
                key: name.as_str().to_string(),
                value: value.to_str().unwrap_or_default().to_string(),
                ..Default::default()
            }),
            append_action: ACTION,
            ..Default::default()
        };
        let denied = DeniedHttpResponse {
            status: Some(HttpStatus { code: i32::from(r.status.as_u16()) }),
            headers: r.headers().iter().map(|(n, v)| set(n, v)).collect(),
            body: r.body.to_string(),
        };
        Answer::Full(CheckResponse {
            status: Some(rpc::Status { code: r.code as i32, message: String::new(), details: vec![] }),
            http_response: Some(HttpResponse::DeniedResponse(denied)),
            ..Default::default()
        })
    }
}

impl Message for Answer {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            Answer::Allowed(a) => a.encode_raw(buf),
            Answer::Full(m) => m.encode_raw(buf),
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // Merging into an allowed answer merges into the same message in
        // envoy-types' form.
        if let Answer::Allowed(a) = self {
            *self = Answer::Full(a.to_message());
        }
        match self {
            Answer::Full(m) => m.merge_field(tag, wire_type, buf, ctx),
            Answer::Allowed(_) => unreachable!("replaced just above"),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Answer::Allowed(a) => a.encoded_len(),
            Answer::Full(m) => m.encoded_len(),
        }
    }

    fn clear(&mut self) {
        *self = Answer::Full(CheckResponse::default());
    }
}

impl Default for Answer {
    /// The empty message, as decoding starts from.
    fn default() -> Self {
        Answer::Full(CheckResponse::default())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use cred_core::model::Environment;
    use envoy_types::ext_authz::v3::pb::OkHttpResponse;

    use super::*;

    /// The answer as ext_authz built it with envoy-types before this module:
    /// the reference the direct encoding must equal.
    fn reference(names: &IdentityHeaders, v: &Verified) -> CheckResponse {
        let set_now = names.values(v);
        let headers_to_remove = names
            .all()
            .into_iter()
            .filter(|n| !set_now.iter().any(|(s, _)| s == n))
            .map(|n| n.as_str().to_string())
            .collect();
        let headers = set_now
            .into_iter()
            .map(|(n, value)| HeaderValueOption {
                header: Some(HeaderValue { key: n.as_str().to_string(), value, ..Default::default() }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                ..Default::default()
            })
            .collect();
        CheckResponse {
            status: Some(rpc::Status { code: tonic::Code::Ok as i32, ..Default::default() }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                headers_to_remove,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn verified(kind: TokenKind, env: Environment, scopes: Scopes) -> Verified {
        Verified {
            kind,
            key: (Uuid::new_v4(), Uuid::new_v4()),
            tenant_id: Uuid::new_v4(),
            env,
            scopes,
            labels: HashMap::new(),
            created_at: 1_700_000_000_000,
            expires_at: None,
            cap: None,
        }
    }

    /// For every credential kind, environment, several scope sets and
    /// header names of different lengths, the bytes are envoy-types' bytes,
    /// and envoy-types reads them back as the same message.
    #[test]
    fn allowed_answers_are_envoy_types_bytes() {
        let one = Scopes::parse(["sessions.read"]).unwrap();
        let some = Scopes::parse(["clients.read", "sessions.revoke", "clients.create"]).unwrap();
        let shapes = [
            verified(TokenKind::Session, Environment::Production, Scopes::default()),
            verified(TokenKind::Session, Environment::Test, Scopes::default()),
            verified(TokenKind::TestClientKey, Environment::Test, Scopes::default()),
            // Stored with no scope: every scope is named.
            verified(TokenKind::ApiKey, Environment::Production, Scopes::default()),
            verified(TokenKind::ApiKey, Environment::Test, one),
            verified(TokenKind::ApiKey, Environment::Production, some),
        ];
        // The default prefix, a short one, and one long enough that names
        // and lengths need two-byte varints (a `HeaderValueOption` over 127
        // bytes).
        let long = format!("x-{}-", "a".repeat(120));
        for prefix in ["x-credd-", "x-", "X-Auth-", long.as_str()] {
            let names = IdentityHeaders::new(prefix).unwrap();
            let parts = Arc::new(AllowedParts::new(&names));
            for v in &shapes {
                let want = reference(&names, v);
                let answer = Answer::Allowed(parts.allowed(v));
                let bytes = answer.encode_to_vec();
                assert_eq!(bytes, want.encode_to_vec(), "{prefix} {:?} {:?}", v.kind, v.scopes);
                assert_eq!(answer.encoded_len(), bytes.len());
                assert_eq!(CheckResponse::decode(bytes.as_slice()).unwrap(), want);
            }
        }
    }

    /// A denial is envoy-types' message as it is; decoding into an
    /// `Answer`, or merging into an allowed one, gives envoy-types' form.
    #[test]
    fn denials_and_decoding_use_envoy_types() {
        let r = Refusal::of(cred_core::Error::InvalidCredential(cred_core::InvalidReason::Revoked), true);
        let Answer::Full(m) = Answer::denied(&r) else { panic!("a denial is envoy-types' message") };
        assert_eq!(Answer::denied(&r).encode_to_vec(), m.encode_to_vec());
        match &m.http_response {
            Some(HttpResponse::DeniedResponse(d)) => assert_eq!(d.status.as_ref().map(|s| s.code), Some(401)),
            other => panic!("{other:?}"),
        }

        let names = IdentityHeaders::new("x-credd-").unwrap();
        let v = verified(TokenKind::ApiKey, Environment::Test, Scopes::default());
        let bytes = Answer::Allowed(Arc::new(AllowedParts::new(&names)).allowed(&v)).encode_to_vec();
        match Answer::decode(bytes.as_slice()).unwrap() {
            Answer::Full(m) => assert_eq!(m, reference(&names, &v)),
            Answer::Allowed(_) => panic!("decoded into envoy-types' form"),
        }
        // Merging a denial's fields over an allowed answer: the later
        // `http_response` wins, as with envoy-types' messages.
        let mut merged = Answer::Allowed(Arc::new(AllowedParts::new(&names)).allowed(&v));
        merged.merge(Answer::denied(&r).encode_to_vec().as_slice()).unwrap();
        let mut want = reference(&names, &v);
        want.merge(m.encode_to_vec().as_slice()).unwrap();
        assert_eq!(merged.encode_to_vec(), want.encode_to_vec());
        merged.clear();
        assert_eq!(merged.encoded_len(), 0);
    }
}
