//! `introspect.v1.IntrospectService`: wire ↔ verifier. Errors go through
//! the one table (`cred_serve::status`), with introspect's parameters.

use cred_core::Error;
use cred_core::model::{Environment, Scopes};
use cred_core::store::Store;
use cred_core::token::TokenKind;
use cred_proto::convert::timestamp;
use cred_proto::introspect::v1 as pb;
use cred_proto::introspect::v1::introspect_service_server::IntrospectService;
use cred_serve::status::Edge;
use tonic::{Request, Response, Status};

use crate::gateway::{bearer, outcome};
use crate::verifier::{Requirements, Verified, Verifier};
use cred_telemetry::metrics::verify_outcome;
use cred_telemetry::record_tenant;

/// How introspect answers: its internal callers learn the precise cause
/// (ErrorInfo `metadata["cause"]`), under the domain "introspect".
pub const EDGE: Edge = Edge { domain: "introspect", tells_cause: true, attempts: "verifies" };

/// The service over a verifier.
pub struct IntrospectApi<S> {
    /// The verify data path.
    pub verifier: Verifier<S>,
}

fn requirements(r: &pb::VerifyRequest) -> Result<Requirements, Error> {
    let env = match pb::Environment::try_from(r.required_environment) {
        Ok(e) => Option::<Environment>::from(e),
        Err(_) => return Err(Error::invalid("required_environment", "unknown environment")),
    };
    let scopes = if r.required_scopes.is_empty() {
        None
    } else {
        let s = Scopes::parse(r.required_scopes.iter().map(String::as_str))
            .map_err(|e| Error::invalid("required_scopes", e.to_string()))?;
        Some(s)
    };
    Ok(Requirements { env, scopes, passive: r.passive })
}

/// An id as the answer writes it (hyphenated, lower case: `Uuid`'s
/// `Display`), encoded straight into a `String` of its length, without the
/// formatting machinery.
fn id(u: uuid::Uuid) -> String {
    u.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).to_owned()
}

fn response(v: Verified) -> pb::VerifyResponse {
    let environment = pb::Environment::from(v.env) as i32;
    let (tenant_id, create_time, expire_time) =
        (id(v.tenant_id), Some(timestamp(v.created_at)), v.expires_at.map(timestamp));
    match v.kind {
        TokenKind::Session | TokenKind::TestClientKey => pb::VerifyResponse {
            kind: if v.kind == TokenKind::TestClientKey {
                pb::CredentialKind::TestClientKey as i32
            } else {
                pb::CredentialKind::Session as i32
            },
            tenant_id,
            environment,
            client_id: id(v.key.0),
            session_id: id(v.key.1),
            key_id: String::new(),
            scopes: vec![],
            labels: v.labels,
            create_time,
            expire_time,
            max_expire_time: v.cap.map(timestamp),
        },
        TokenKind::ApiKey => pb::VerifyResponse {
            kind: pb::CredentialKind::ApiKey as i32,
            tenant_id,
            environment,
            client_id: String::new(),
            session_id: String::new(),
            key_id: id(v.key.1),
            scopes: v.scopes.names().into_iter().map(str::to_string).collect(),
            labels: Default::default(),
            create_time,
            expire_time,
            max_expire_time: None,
        },
    }
}

#[tonic::async_trait]
impl<S: Store> IntrospectService for IntrospectApi<S> {
    async fn verify(&self, req: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyResponse>, Status> {
        let peer = cred_serve::peer::client_ip(&req);
        let r = req.into_inner();
        let verified = match requirements(&r) {
            Ok(want) => self.verifier.verify_from(bearer(&r.token), &want, peer).await,
            Err(e) => Err(e),
        };
        match verified {
            Ok(v) => {
                record_tenant(v.tenant_id);
                verify_outcome("VALID");
                Ok(Response::new(response(v)))
            }
            Err(e) => {
                verify_outcome(outcome(&e));
                Err(EDGE.status(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_as_uuid_displays_them() {
        for _ in 0..100 {
            let u = cred_core::rng::uuid();
            assert_eq!(id(u), u.to_string());
        }
        assert_eq!(id(uuid::Uuid::nil()), uuid::Uuid::nil().to_string());
        assert_eq!(id(uuid::Uuid::max()), uuid::Uuid::max().to_string());
    }
}
