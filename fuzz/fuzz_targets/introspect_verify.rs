//! introspect `Verify`: a `VerifyRequest` decoded from arbitrary bytes and
//! sent to the real service method (a fresh verifier over an in-memory
//! store holding a tenant, API keys, a session and a test client key).
//!
//! The token field may name a fixture credential: `@sk_test`, `@sk_live`,
//! `@cst`, `@tck`, optionally followed by `<byte><text>`, which replaces the
//! character at position byte % len with text (a mutated real token).
//!
//! Checked against the oracle: bad `required_environment` or an unknown
//! scope is INVALID_ARGUMENT naming the field; a text that is not a
//! well-formed token is UNAUTHENTICATED with cause MALFORMED; a mutated real
//! token never verifies; a success is exactly the fixture credential,
//! in the required environment, an API key holding the required scopes.
#![no_main]

use cred_fuzz::check::Expect;
use cred_fuzz::fixture::{World, request};
use cred_fuzz::{block_on, oracle, status};
use cred_proto::introspect::v1 as pb;
use cred_proto::introspect::v1::introspect_service_server::IntrospectService;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::Code;

const CAUSES: [&str; 6] = ["MALFORMED", "UNKNOWN", "REVOKED", "EXPIRED_IDLE", "EXPIRED_MAX", "ENV_MISMATCH"];

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = pb::VerifyRequest::decode(data) else { return };
    let w = World::new();
    let (real, mutated) = resolve(&w, &mut r.token);
    let decoded = oracle::decode_token(&r.token);

    let mut e =
        Expect::new(&["required_environment", "required_scopes"], &[Code::Unauthenticated, Code::PermissionDenied]);
    let env_ok = (0..=2).contains(&r.required_environment);
    e.bad_if(!env_ok, "required_environment")
        .bad_if(env_ok && !oracle::scopes_ok(&r.required_scopes), "required_scopes");
    let bad = !e.bad.is_empty();
    let req = r.clone();
    let result = block_on(w.introspect.verify(request(r, None)));
    if let Err(s) = &result
        && s.code() == Code::Unauthenticated
    {
        assert!(!bad, "credential judged before the request's fields: {s:?}");
        let cause = status::unauthenticated(s).expect("introspect names the cause");
        assert!(CAUSES.contains(&cause.as_str()), "{cause}");
        // Malformed exactly when the format says so.
        assert_eq!(cause == "MALFORMED", decoded.is_none(), "{cause} for {:?}", req.token);
        return;
    }
    let Some(v) = e.check(result) else { return };
    assert!(!mutated, "a mutated token verified: {:?}", req.token);
    let d = decoded.expect("verified, so well formed");
    let (kind, id) = real.expect("only the fixture's credentials exist");
    assert_eq!(v.kind, kind as i32);
    let env = match d.env {
        cred_core::model::Environment::Production => pb::Environment::Production as i32,
        cred_core::model::Environment::Test => pb::Environment::Test as i32,
    };
    assert_eq!(v.environment, env);
    assert!(req.required_environment == 0 || req.required_environment == env);
    if kind == pb::CredentialKind::ApiKey {
        assert_eq!(v.key_id, id);
        // Holds every required scope (no scopes = all).
        assert!(v.scopes.is_empty() || req.required_scopes.iter().all(|s| v.scopes.contains(s)));
    } else {
        assert_eq!(v.session_id, id);
        assert!(req.required_scopes.is_empty(), "a session verified with required scopes");
    }
});

/// Replaces a marker with a fixture token (maybe mutated); returns the
/// credential's kind and id, and whether the text was changed.
fn resolve(w: &World, token: &mut String) -> (Option<(pb::CredentialKind, String)>, bool) {
    let fixtures = [
        ("@sk_test", &w.key_token, pb::CredentialKind::ApiKey, w.key),
        ("@sk_live", &w.scoped_key_token, pb::CredentialKind::ApiKey, w.scoped_key),
        ("@cst", &w.session_token, pb::CredentialKind::Session, w.session),
        ("@tck", &w.tck_token, pb::CredentialKind::TestClientKey, w.tck_session),
    ];
    for (marker, real, kind, id) in fixtures {
        let Some(rest) = token.strip_prefix(marker) else { continue };
        let mut t = real.clone();
        if let Some((&pos, with)) = rest.as_bytes().split_first() {
            // Token text is ASCII: every index is a char boundary.
            let i = usize::from(pos) % t.len();
            t.replace_range(i..=i, std::str::from_utf8(with).unwrap_or(""));
        }
        let mutated = t != *real;
        *token = t;
        return ((!mutated).then(|| (kind, id.to_string())), mutated);
    }
    (None, false)
}
