//! `introspect.v1.IntrospectService`: wire ↔ verifier, and the one table
//! from verify errors to statuses.

use cred_core::model::{Environment, Millis, Scopes};
use cred_core::store::Store;
use cred_core::token::TokenKind;
use cred_proto::introspect::v1 as pb;
use cred_proto::introspect::v1::introspect_service_server::IntrospectService;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::verifier::{Requirements, Verified, Verifier, VerifyError};
use cred_core::cache::Record;
use cred_telemetry::metrics::verify_outcome;
use cred_telemetry::record_tenant;

/// `google.rpc.ErrorInfo.reason` of every unusable credential.
pub const INVALID_API_KEY: &str = "INVALID_API_KEY";
/// `google.rpc.ErrorInfo.reason` of a refusal by the failed-verify budgets
/// (`metadata.limit`: "credential id" or "peer").
pub const THROTTLED: &str = "TOO_MANY_FAILED_AUTHENTICATIONS";
/// `google.rpc.ErrorInfo.metadata` key holding the precise reason.
pub const CAUSE: &str = "cause";

/// The service over a verifier.
pub struct IntrospectApi<S> {
    pub verifier: Verifier<S>,
}

/// Maps a verify error to the status the caller sees.
pub fn to_status(e: VerifyError) -> Status {
    match e {
        VerifyError::Invalid(r) => Status::with_error_details(
            Code::Unauthenticated,
            "invalid credential",
            ErrorDetails::with_error_info(INVALID_API_KEY, "introspect", [(CAUSE.to_string(), r.as_str().to_string())]),
        ),
        VerifyError::Forbidden(m) => Status::permission_denied(m),
        // RESOURCE_EXHAUSTED, not INVALID_API_KEY: the token may be good,
        // and callers must not drop it; RetryInfo says when to come back.
        VerifyError::Throttled(t) => {
            let mut d = ErrorDetails::with_retry_info(Some(t.retry_after));
            d.set_error_info(THROTTLED, "introspect", [("limit".to_string(), t.spent.as_str().to_string())]);
            Status::with_error_details(
                Code::ResourceExhausted,
                format!("too many failed verifies for this {}; retry later", t.spent.as_str()),
                d,
            )
        }
        VerifyError::Unavailable(m) => {
            tracing::warn!(error = %m, "verify failed closed");
            Status::unavailable("credential store unavailable")
        }
    }
}

fn invalid_argument(field: &'static str, message: String) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {message}"),
        ErrorDetails::with_bad_request_violation(field, message),
    )
}

fn requirements(r: &pb::VerifyRequest) -> Result<Requirements, Status> {
    let env = match pb::Environment::try_from(r.required_environment) {
        Ok(pb::Environment::Unspecified) => None,
        Ok(pb::Environment::Production) => Some(Environment::Production),
        Ok(pb::Environment::Test) => Some(Environment::Test),
        Err(_) => return Err(invalid_argument("required_environment", "unknown environment".into())),
    };
    let scopes = if r.required_scopes.is_empty() {
        None
    } else {
        let s = Scopes::parse(r.required_scopes.iter().map(String::as_str))
            .map_err(|e| invalid_argument("required_scopes", e.to_string()))?;
        Some(s)
    };
    Ok(Requirements { env, scopes, passive: r.passive })
}

fn ts(ms: Millis) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

fn env(e: Environment) -> i32 {
    match e {
        Environment::Production => pb::Environment::Production as i32,
        Environment::Test => pb::Environment::Test as i32,
    }
}

fn response(v: Verified) -> pb::VerifyResponse {
    let tenant_id = v.entry.tenant.id.to_string();
    let expire_time = v.expires_at.map(ts);
    match &v.entry.record {
        Record::Session(s) => pb::VerifyResponse {
            kind: if v.kind == TokenKind::TestClientKey {
                pb::CredentialKind::TestClientKey as i32
            } else {
                pb::CredentialKind::Session as i32
            },
            tenant_id,
            environment: env(s.env),
            client_id: v.key.0.to_string(),
            session_id: v.key.1.to_string(),
            key_id: String::new(),
            scopes: vec![],
            labels: s.labels.iter().flat_map(|l| l.iter()).map(|(k, v)| (k.clone(), v.clone())).collect(),
            create_time: Some(ts(s.created_at)),
            expire_time,
            max_expire_time: s.cap.map(ts),
        },
        Record::ApiKey(k) => pb::VerifyResponse {
            kind: pb::CredentialKind::ApiKey as i32,
            tenant_id,
            environment: env(k.env),
            client_id: String::new(),
            session_id: String::new(),
            key_id: k.id.to_string(),
            scopes: k.scopes.names().into_iter().map(str::to_string).collect(),
            labels: Default::default(),
            create_time: Some(ts(k.created_at)),
            expire_time,
            max_expire_time: None,
        },
    }
}

#[tonic::async_trait]
impl<S: Store> IntrospectService for IntrospectApi<S> {
    async fn verify(&self, req: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyResponse>, Status> {
        let peer = req.remote_addr().map(|a| a.ip());
        let r = req.into_inner();
        let want = requirements(&r).inspect_err(|_| verify_outcome("BAD_REQUEST"))?;
        match self.verifier.verify_from(&r.token, &want, peer).await {
            Ok(v) => {
                record_tenant(v.entry.tenant.id);
                verify_outcome("VALID");
                Ok(Response::new(response(v)))
            }
            Err(e) => {
                verify_outcome(match &e {
                    VerifyError::Invalid(reason) => reason.as_str(),
                    VerifyError::Forbidden(_) => "FORBIDDEN",
                    VerifyError::Unavailable(_) => "UNAVAILABLE",
                    VerifyError::Throttled(_) => "THROTTLED",
                });
                Err(to_status(e))
            }
        }
    }
}
