//! The operator console's assets, built into the binary (no CDN, no build
//! step), served under `/console/` with a strict CSP: the page's script and
//! style come from files of this origin only, it cannot be framed, and it
//! calls the JSON API with the operator key in a header (never a cookie), so
//! another site can neither read it nor forge a call with it.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

/// Where the console lives on the HTTP listener.
pub const PREFIX: &str = "/console";

/// The CSP of every console response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../../console/index.html");
const APP_JS: &str = include_str!("../../console/app.js");
const APP_CSS: &str = include_str!("../../console/app.css");

/// The console's answer to a GET of `path` (under [`PREFIX`]), or `None`
/// when it has no such asset.
pub fn asset(path: &str) -> Option<Response<Full<Bytes>>> {
    let (body, kind) = match path.strip_prefix(PREFIX)? {
        "" => return Some(redirect()),
        "/" | "/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return None,
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    secure(&mut r);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    Some(r)
}

/// `/console` → `/console/`, so relative asset paths resolve.
fn redirect() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    secure(&mut r);
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/console/"));
    r
}

fn secure(r: &mut Response<Full<Bytes>>) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
