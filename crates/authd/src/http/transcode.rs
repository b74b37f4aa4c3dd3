//! JSON ↔ protobuf by the descriptor set: an HTTP request (path fields,
//! query, JSON body) into the encoded request message of its RPC, and a
//! response message into JSON, both with the proto3 JSON mapping
//! (lowerCamelCase out; either spelling in).

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, SerializeOptions, Value,
};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::routes::{BodyRule, Route};

/// INVALID_ARGUMENT naming `field` (BadRequest), as the gRPC edge does.
pub fn bad_field(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

/// The encoded request message of `route` from the path's fields, the query
/// string and the body. A field may be set in one place only; an unknown
/// field (body or query) is refused, naming it: a typo never goes unnoticed.
pub fn request(
    route: &Route,
    path: Vec<(FieldDescriptor, String)>,
    query: Option<&str>,
    body: &[u8],
) -> Result<Vec<u8>, Status> {
    let input = route.rpc.input();
    let blank = body.iter().all(u8::is_ascii_whitespace);
    let mut msg = match &route.body {
        BodyRule::Whole if !blank => from_json(&input, body, "body")?,
        BodyRule::Field(f) if !blank => {
            let Kind::Message(m) = f.kind() else { return Err(bad_field(f.json_name(), "not a message")) };
            let mut msg = DynamicMessage::new(input.clone());
            msg.set_field(f, Value::Message(from_json(&m, body, f.json_name())?));
            msg
        }
        BodyRule::None if !blank => {
            return Err(bad_field("body", format!("{} {} takes no body", route.method, route.template)));
        }
        _ => DynamicMessage::new(input.clone()),
    };
    for (field, text) in path {
        if msg.has_field(&field) {
            return Err(bad_field(field.json_name(), "is set by the path; leave it out of the body"));
        }
        msg.set_field(&field, scalar(&field, &text)?);
    }
    for (name, text) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let field = input
            .get_field_by_name(&name)
            .or_else(|| input.get_field_by_json_name(&name))
            .ok_or_else(|| bad_field(&name, "no such query parameter"))?;
        let bound = route.in_path(&field)
            || matches!(route.body, BodyRule::Whole)
            || matches!(&route.body, BodyRule::Field(f) if *f == field);
        if bound {
            return Err(bad_field(field.json_name(), "belongs in the path or the body, not the query"));
        }
        let value = scalar(&field, &text)?;
        if field.is_list() {
            match msg.get_field_mut(&field) {
                Value::List(l) => l.push(value),
                _ => return Err(bad_field(field.json_name(), "not a list")),
            }
        } else if msg.has_field(&field) {
            return Err(bad_field(field.json_name(), "given twice"));
        } else {
            msg.set_field(&field, value);
        }
    }
    Ok(msg.encode_to_vec())
}

/// `json` as a message of type `desc`. Not JSON: the error names `what`
/// and where it breaks; JSON that does not fit: it names the field
/// (`quotas.clients`, an unknown `nmae`) and what is wrong with it.
fn from_json(desc: &MessageDescriptor, json: &[u8], what: &str) -> Result<DynamicMessage, Status> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| bad_field(what, format!("not JSON: {e}")))?;
    DynamicMessage::deserialize_with_options(desc.clone(), &value, &DeserializeOptions::new()).map_err(|e| {
        let field = culprit(desc, &value).unwrap_or_else(|| what.to_string());
        bad_field(&field, format!("{e} (in a {})", desc.name()))
    })
}

/// The path of the first field of `value` that does not fit `desc`, found
/// by trying each alone (descending into message fields), if one does.
fn culprit(desc: &MessageDescriptor, value: &serde_json::Value) -> Option<String> {
    let fits = |d: &MessageDescriptor, v: &serde_json::Value| {
        DynamicMessage::deserialize_with_options(d.clone(), v, &DeserializeOptions::new()).is_ok()
    };
    for (key, v) in value.as_object()? {
        let alone = serde_json::Value::Object([(key.clone(), v.clone())].into_iter().collect());
        if fits(desc, &alone) {
            continue;
        }
        let field = desc.get_field_by_json_name(key).or_else(|| desc.get_field_by_name(key));
        let Some(f) = field else { return Some(key.clone()) };
        if let Kind::Message(m) = f.kind()
            && !f.is_list()
            && !f.is_map()
            && let Some(inner) = culprit(&m, v)
        {
            return Some(format!("{}.{inner}", f.json_name()));
        }
        return Some(f.json_name().to_string());
    }
    None
}

/// A field's value from its text in a path or query: scalars and enums as
/// written, `Timestamp`/`Duration` in their JSON form (`2026-01-01T00:00:00Z`,
/// `30s`).
fn scalar(field: &FieldDescriptor, text: &str) -> Result<Value, Status> {
    let bad = |what: &str| bad_field(field.json_name(), format!("`{text}` is not {what}"));
    Ok(match field.kind() {
        Kind::String => Value::String(text.to_string()),
        Kind::Bool => Value::Bool(text.parse().map_err(|_| bad("true or false"))?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(text.parse().map_err(|_| bad("an unsigned 32-bit integer"))?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(text.parse().map_err(|_| bad("an unsigned 64-bit integer"))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(text.parse().map_err(|_| bad("a 32-bit integer"))?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(text.parse().map_err(|_| bad("a 64-bit integer"))?),
        Kind::Enum(e) => {
            let v = e.get_value_by_name(text).or_else(|| text.parse().ok().and_then(|n| e.get_value(n)));
            Value::EnumNumber(v.ok_or_else(|| bad(&format!("a value of {}", e.name())))?.number())
        }
        Kind::Message(m) => {
            let json = serde_json::Value::String(text.to_string());
            let msg = DynamicMessage::deserialize(m.clone(), json).map_err(|_| bad(&format!("a {}", m.name())))?;
            Value::Message(msg)
        }
        _ => return Err(bad_field(field.json_name(), "cannot be given in a URL")),
    })
}

/// The proto3 JSON of an encoded message of type `desc`.
pub fn response(desc: &MessageDescriptor, bytes: &[u8]) -> Result<Vec<u8>, Status> {
    let msg = DynamicMessage::decode(desc.clone(), bytes)
        .map_err(|e| Status::internal(format!("undecodable {} from the service: {e}", desc.name())))?;
    let mut out = serde_json::Serializer::new(Vec::new());
    msg.serialize_with_options(&mut out, &SerializeOptions::new())
        .map_err(|e| Status::internal(format!("{} as JSON: {e}", desc.name())))?;
    Ok(out.into_inner())
}

/// One gRPC message: uncompressed flag, big-endian length, the bytes.
pub fn frame(msg: &[u8]) -> Result<Bytes, Status> {
    let len = u32::try_from(msg.len()).map_err(|_| Status::resource_exhausted("request message too large"))?;
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.put_u8(0);
    b.put_u32(len);
    b.put_slice(msg);
    Ok(b.freeze())
}

/// The one message of a unary gRPC response body.
pub fn unframe(body: &[u8]) -> Result<&[u8], Status> {
    let bad = || Status::internal("malformed gRPC response body from the service");
    let (head, rest) = body.split_at_checked(5).ok_or_else(bad)?;
    if head[0] != 0 {
        return Err(Status::internal("compressed gRPC response from the service"));
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    rest.get(..len).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::super::routes::{Found, Table};
    use super::*;

    fn encode(
        t: &Table,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: &str,
    ) -> Result<DynamicMessage, Status> {
        let Found::Route(r, params) = t.find(&method, path) else { panic!("no route {method} {path}") };
        let bytes = request(r, params, query, body.as_bytes())?;
        Ok(DynamicMessage::decode(r.rpc.input(), bytes.as_slice()).unwrap())
    }

    fn json(m: &DynamicMessage) -> String {
        serde_json::to_string(m).unwrap()
    }

    #[test]
    fn path_query_and_body_fill_the_request() {
        let t = Table::authd().unwrap();
        let m = encode(
            &t,
            Method::POST,
            "/v1/tenants",
            None,
            r#"{"name":"acme","idleTimeout":"60s","max_lifetime":"3600s"}"#,
        )
        .unwrap();
        assert_eq!(json(&m), r#"{"name":"acme","idleTimeout":"60s","maxLifetime":"3600s"}"#);
        let m = encode(&t, Method::GET, "/v1/clients/c1/sessions", Some("pageSize=5&page_token=x"), "").unwrap();
        assert_eq!(json(&m), r#"{"clientId":"c1","pageSize":5,"pageToken":"x"}"#);
        let m = encode(&t, Method::POST, "/v1/clients/c1/sessions", None, "").unwrap();
        assert_eq!(json(&m), r#"{"clientId":"c1"}"#);
        let m = encode(&t, Method::PUT, "/v1/tenants/t1/quotas", None, r#"{"clients":"5"}"#).unwrap();
        assert_eq!(json(&m), r#"{"tenantId":"t1","quotas":{"clients":"5"}}"#);
    }

    #[test]
    fn bad_input_names_the_problem() {
        let t = Table::authd().unwrap();
        let e = |method, path, query, body| encode(&t, method, path, query, body).unwrap_err();
        let s = e(Method::POST, "/v1/tenants", None, r#"{"nmae":"x"}"#);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().starts_with("nmae: "), "{}", s.message());
        let s = e(Method::POST, "/v1/tenants", None, r#"{"name":"a","quotas":{"clients":"-1"}}"#);
        assert!(s.message().starts_with("quotas.clients: "), "{}", s.message());
        let s = e(Method::POST, "/v1/tenants", None, r#"{"name":"a","idle_timeout":"soon"}"#);
        assert!(s.message().starts_with("idleTimeout: "), "{}", s.message());
        assert!(e(Method::POST, "/v1/tenants", None, "[1]").message().starts_with("body: "));
        assert!(e(Method::POST, "/v1/tenants", None, r#"{"name":"#).message().contains("EOF"));
        assert!(e(Method::POST, "/v1/tenants", None, r#"{"name":5}"#).message().starts_with("name: invalid type"));
        assert!(e(Method::POST, "/v1/tenants", None, r#"{"name":"a"} x"#).message().contains("trailing"));
        assert!(e(Method::GET, "/v1/clients/c1/sessions", Some("pageSize=-1"), "").message().starts_with("pageSize"));
        assert!(e(Method::GET, "/v1/clients/c1/sessions", Some("bogus=1"), "").message().starts_with("bogus"));
        assert!(e(Method::GET, "/v1/clients/c1/sessions", Some("clientId=c2"), "").message().starts_with("clientId"));
        assert!(e(Method::GET, "/v1/clients/c1", None, "{}").message().starts_with("body"));
        assert!(
            e(Method::POST, "/v1/clients/c1/sessions", None, r#"{"clientId":"c2"}"#).message().starts_with("clientId")
        );
    }

    #[test]
    fn responses_are_lower_camel_case_and_frames_round_trip() {
        let pool = prost_reflect::DescriptorPool::decode(cred_proto::FILE_DESCRIPTOR_SET).unwrap();
        let desc = pool.get_message_by_name("authd.v1.RevokeAllSessionsResponse").unwrap();
        let msg = cred_proto::authd::v1::RevokeAllSessionsResponse { revoked_count: 3 }.encode_to_vec();
        let framed = frame(&msg).unwrap();
        let out = response(&desc, unframe(&framed).unwrap()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"revokedCount":3}"#);
        assert!(unframe(&framed[..4]).is_err());
    }
}
