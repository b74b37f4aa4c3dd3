//! What every error the services return must look like.

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The field an INVALID_ARGUMENT names; panics (a finding) unless the
/// message starts with `<field>: `, the `BadRequest` detail names the same
/// field, and it is one of `fields` (the request message's own fields).
pub fn invalid_field(s: &Status, fields: &[&'static str]) -> &'static str {
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let f = fields
        .iter()
        .copied()
        .find(|f| s.message().starts_with(&format!("{f}: ")))
        .unwrap_or_else(|| panic!("INVALID_ARGUMENT names none of {fields:?}: {s:?}"));
    let br = s.get_details_bad_request().unwrap_or_else(|| panic!("no BadRequest detail: {s:?}"));
    assert_eq!(br.field_violations.len(), 1, "{s:?}");
    assert_eq!(br.field_violations[0].field, f, "{s:?}");
    f
}

/// An unusable credential: UNAUTHENTICATED with ErrorInfo INVALID_API_KEY.
/// Returns the ErrorInfo `cause` metadata (introspect sets it; authd not).
pub fn unauthenticated(s: &Status) -> Option<String> {
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    let info = s.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo: {s:?}"));
    assert_eq!(info.reason, "INVALID_API_KEY", "{s:?}");
    info.metadata.get("cause").cloned()
}

/// The codes a caller-caused failure may have; never INTERNAL, UNKNOWN or
/// UNAVAILABLE (the in-memory store always answers).
pub fn assert_code_in(s: &Status, allowed: &[Code]) {
    assert!(allowed.contains(&s.code()), "unexpected {:?} (allowed {allowed:?}): {s:?}", s.code());
}
