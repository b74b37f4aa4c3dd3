//! The HTTP routes of authd's RPCs, read at start from the `google.api.http`
//! option of each method in the descriptor set (the proto is the one source
//! of truth), and the matching of a request's method and path against them.

use http::Method;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, MethodDescriptor, Value};

/// The services served over HTTP/JSON.
pub const SERVICES: [&str; 3] = ["authd.v1.AdminService", "authd.v1.ClientService", "authd.v1.SessionService"];

/// Where the request message's fields come from, besides the path.
#[derive(Debug, Clone)]
pub enum BodyRule {
    /// No body (GET, DELETE): the remaining fields come from the query.
    None,
    /// `body: "*"`: the JSON body is the request message, less the path's fields.
    Whole,
    /// `body: "<field>"`: the JSON body is that field.
    Field(FieldDescriptor),
}

/// One segment of a path template.
#[derive(Debug, Clone)]
enum Segment {
    /// A fixed segment, matched exactly.
    Literal(String),
    /// `{field}`: one path segment, the value of a top-level field.
    Var(FieldDescriptor),
}

/// One RPC's HTTP binding.
#[derive(Debug, Clone)]
pub struct Route {
    /// The HTTP method of the binding.
    pub method: Method,
    /// The path template, segment by segment.
    segments: Vec<Segment>,
    /// The custom verb after `:` in the last segment (`:revokeAll`).
    verb: Option<String>,
    /// Where the body goes in the request message.
    pub body: BodyRule,
    /// The RPC: its input and output types are the JSON's.
    pub rpc: MethodDescriptor,
    /// `/authd.v1.ClientService/CreateClient`: where the gRPC stack routes it.
    pub grpc_path: String,
    /// The template as written in the proto, for listings and errors.
    pub template: String,
}

/// What a request's method and path matched.
pub enum Found<'a> {
    /// A route, and the path's field values (percent-decoded).
    Route(&'a Route, Vec<(FieldDescriptor, String)>),
    /// The path is known, but not with this method: these are.
    WrongMethod(Vec<Method>),
    /// No route has this path.
    NoPath,
}

/// Every route of [`SERVICES`].
#[derive(Debug, Clone)]
pub struct Table {
    /// In proto order; a request tries them in turn (a score of them).
    routes: Vec<Route>,
}

impl Table {
    /// The routes of authd's own descriptor set.
    pub fn authd() -> Result<Table, String> {
        let pool =
            DescriptorPool::decode(cred_proto::FILE_DESCRIPTOR_SET).map_err(|e| format!("descriptor set: {e}"))?;
        Table::from_pool(&pool)
    }

    /// The routes of [`SERVICES`] in `pool`; every method must have one.
    pub fn from_pool(pool: &DescriptorPool) -> Result<Table, String> {
        let http =
            pool.get_extension_by_name("google.api.http").ok_or("google.api.http is not in the descriptor set")?;
        let mut routes = Vec::new();
        for name in SERVICES {
            let service =
                pool.get_service_by_name(name).ok_or_else(|| format!("{name} is not in the descriptor set"))?;
            for m in service.methods() {
                let options = m.options();
                if !options.has_extension(&http) {
                    return Err(format!("{} has no google.api.http option", m.full_name()));
                }
                let rule = options.get_extension(&http);
                let rule = rule.as_message().ok_or("google.api.http is not a message")?;
                routes.push(route(&m, rule).map_err(|e| format!("{}: {e}", m.full_name()))?);
            }
        }
        Ok(Table { routes })
    }

    /// Every route, in proto order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route of `method` and `path` (no query).
    pub fn find(&self, method: &Method, path: &str) -> Found<'_> {
        let (segments, verb) = split(path);
        let mut allowed = Vec::new();
        for r in &self.routes {
            let Some(params) = r.matches(&segments, verb) else { continue };
            if r.method == *method {
                return Found::Route(r, params);
            }
            allowed.push(r.method.clone());
        }
        if allowed.is_empty() { Found::NoPath } else { Found::WrongMethod(allowed) }
    }
}

impl Route {
    /// The path's field values, if `segments` and `verb` fit this template.
    fn matches(&self, segments: &[&str], verb: Option<&str>) -> Option<Vec<(FieldDescriptor, String)>> {
        if segments.len() != self.segments.len() || verb != self.verb.as_deref() {
            return None;
        }
        let mut params = Vec::new();
        for (want, got) in self.segments.iter().zip(segments) {
            match want {
                Segment::Literal(l) if l == got => {}
                Segment::Literal(_) => return None,
                Segment::Var(_) if got.is_empty() => return None,
                Segment::Var(f) => {
                    let value = percent_encoding::percent_decode_str(got).decode_utf8().ok()?;
                    params.push((f.clone(), value.into_owned()));
                }
            }
        }
        Some(params)
    }

    /// Whether `field` is bound by the path.
    pub fn in_path(&self, field: &FieldDescriptor) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Var(f) if f == field))
    }
}

/// `/v1/a/b:verb` → (["v1", "a", "b"], Some("verb")). A `:` counts as the
/// verb only in the last segment.
fn split(path: &str) -> (Vec<&str>, Option<&str>) {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (path, verb) = match path.rsplit_once('/').map_or(path, |(_, last)| last).rsplit_once(':') {
        Some((_, v)) => (&path[..path.len() - v.len() - 1], Some(v)),
        None => (path, None),
    };
    (path.split('/').collect(), verb)
}

/// The route of `m` from its `HttpRule`.
fn route(m: &MethodDescriptor, rule: &DynamicMessage) -> Result<Route, String> {
    let text = |name: &str| match rule.get_field_by_name(name).as_deref() {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let (method, template) = [
        (Method::GET, "get"),
        (Method::PUT, "put"),
        (Method::POST, "post"),
        (Method::DELETE, "delete"),
        (Method::PATCH, "patch"),
    ]
    .into_iter()
    .find_map(|(method, name)| text(name).map(|t| (method, t)))
    .ok_or("the HttpRule has no get, put, post, delete or patch pattern")?;
    let input = m.input();
    let body = match text("body").as_deref() {
        None => BodyRule::None,
        Some("*") => BodyRule::Whole,
        Some(f) => BodyRule::Field(
            input.get_field_by_name(f).ok_or_else(|| format!("body field `{f}` is not in the request"))?,
        ),
    };
    let (parts, verb) = split(&template);
    if !template.starts_with('/') {
        return Err(format!("template `{template}` does not start with /"));
    }
    let mut segments = Vec::new();
    for p in parts {
        let seg = match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => Segment::Var(input.get_field_by_name(name).ok_or_else(|| {
                format!("`{{{name}}}` in `{template}` is not a field of the request (only `{{field}}` is supported)")
            })?),
            None if p.contains(['{', '}', '*']) => return Err(format!("unsupported segment `{p}` in `{template}`")),
            None => Segment::Literal(p.to_string()),
        };
        segments.push(seg);
    }
    Ok(Route {
        method,
        segments,
        verb: verb.map(str::to_string),
        body,
        grpc_path: format!("/{}/{}", m.parent_service().full_name(), m.name()),
        rpc: m.clone(),
        template,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table::authd().expect("every RPC has a route")
    }

    fn rpc(t: &Table, method: Method, path: &str) -> Option<(String, Vec<String>)> {
        match t.find(&method, path) {
            Found::Route(r, p) => Some((r.rpc.name().to_string(), p.into_iter().map(|(_, v)| v).collect())),
            _ => None,
        }
    }

    #[test]
    fn every_rpc_has_one_route() {
        let t = table();
        let pool = DescriptorPool::decode(cred_proto::FILE_DESCRIPTOR_SET).unwrap();
        let rpcs: usize = SERVICES.iter().map(|s| pool.get_service_by_name(s).unwrap().methods().len()).sum();
        assert_eq!(t.routes().len(), rpcs);
        for (i, a) in t.routes().iter().enumerate() {
            for b in &t.routes()[i + 1..] {
                assert!(a.method != b.method || a.template != b.template, "{} twice", a.template);
            }
        }
    }

    #[test]
    fn paths_verbs_and_methods_pick_the_rpc() {
        let t = table();
        assert_eq!(rpc(&t, Method::POST, "/v1/clients"), Some(("CreateClient".into(), vec![])));
        assert_eq!(rpc(&t, Method::POST, "/v1/clients/c1/sessions"), Some(("CreateSession".into(), vec!["c1".into()])));
        assert_eq!(
            rpc(&t, Method::POST, "/v1/clients/c1/sessions:revokeAll"),
            Some(("RevokeAllSessions".into(), vec!["c1".into()]))
        );
        assert_eq!(
            rpc(&t, Method::DELETE, "/v1/clients/c%201/sessions/s1"),
            Some(("RevokeSession".into(), vec!["c 1".into(), "s1".into()]))
        );
        assert_eq!(rpc(&t, Method::GET, "/v1/session"), Some(("GetCurrentSession".into(), vec![])));
        assert!(
            matches!(t.find(&Method::PUT, "/v1/clients/c1"), Found::WrongMethod(m) if m.contains(&Method::GET) && m.contains(&Method::DELETE))
        );
        assert!(matches!(t.find(&Method::GET, "/v1/clients/c1/sessions:nope"), Found::NoPath));
        assert!(matches!(t.find(&Method::GET, "/v1/clients//sessions"), Found::NoPath));
        assert!(matches!(t.find(&Method::GET, "/"), Found::NoPath));
    }
}
