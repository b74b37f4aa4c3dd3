//! The credential a request presents: its `authorization` header, as
//! `Bearer <token>` (the scheme in any case, RFC 7235) or the raw token.

use http::HeaderMap;

/// What the `authorization` header holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// No `authorization` header at all.
    Nothing,
    /// A token (still unverified).
    Token(&'a str),
    /// A header that holds no usable token: empty, not text, another scheme
    /// (`Basic …`), or more than one `authorization` header (which one would
    /// the app read?).
    Unusable,
}

/// Reads the presented credential from the request headers.
pub fn presented(headers: &HeaderMap) -> Presented<'_> {
    let mut all = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = all.next() else { return Presented::Nothing };
    if all.next().is_some() {
        return Presented::Unusable;
    }
    match value.to_str() {
        Ok(text) => token(text).map_or(Presented::Unusable, Presented::Token),
        Err(_) => Presented::Unusable,
    }
}

/// The token in one header value: after a case-insensitive `Bearer` and
/// its spaces, or the whole value if it has no space in it.
pub fn token(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let t = match value.split_once([' ', '\t']) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim_start_matches([' ', '\t']),
        Some(_) => return None,
        // The scheme with no token after it.
        None if value.eq_ignore_ascii_case("bearer") => return None,
        None => value,
    };
    (!t.is_empty() && !t.contains([' ', '\t'])).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_in_any_case_or_raw() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer   abc", " Bearer abc ", "Bearer\tabc", "abc"] {
            assert_eq!(token(v), Some("abc"), "{v:?}");
        }
    }

    #[test]
    fn anything_else_is_no_token() {
        for v in ["", " ", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Bearer a b", "Token abc", "Bearerabc def"] {
            assert_eq!(token(v), None, "{v:?}");
        }
        // A lone word is a raw token, even "Bearer"-like text glued to it:
        // introspect refuses it as malformed.
        assert_eq!(token("Bearerabc"), Some("Bearerabc"));
    }

    #[test]
    fn headers() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), Presented::Nothing);
        h.insert("authorization", "Bearer t0k".parse().unwrap());
        assert_eq!(presented(&h), Presented::Token("t0k"));
        h.append("authorization", "Bearer other".parse().unwrap());
        assert_eq!(presented(&h), Presented::Unusable, "two authorization headers");
        let mut h = HeaderMap::new();
        h.insert("authorization", http::HeaderValue::from_bytes(b"Bearer \xff").unwrap());
        assert_eq!(presented(&h), Presented::Unusable, "not text");
        h.insert("authorization", "".parse().unwrap());
        assert_eq!(presented(&h), Presented::Unusable, "empty");
    }
}
