//! One `introspect.v1.IntrospectService/Verify` call with a deadline, its
//! answer read back into the domain vocabulary: an `Identity`, or the
//! `cred_core::Error` the one status table turns into the caller's refusal.
//! Whatever is not a verdict on the credential (unreachable, past the
//! deadline, any unexpected code) is UNAVAILABLE: fail closed.

use std::time::Duration;

use cred_core::error::{Spent, StoreError, Throttled};
use cred_core::model::Environment;
use cred_core::{Error, InvalidReason};
use cred_proto::introspect::v1 as pb;
use cred_serve::status::{CAUSE, THROTTLED};
use pb::introspect_service_client::IntrospectServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::identity::{Identity, from_response};

/// What a verify asks of introspect, and how long it waits.
#[derive(Debug, Clone)]
pub(crate) struct Verify {
    /// The shared channel's client (cloning it is cheap).
    pub client: IntrospectServiceClient<Channel>,
    /// Longest wait for introspect's answer, connecting included.
    pub deadline: Duration,
    /// A credential of the other environment is refused (401).
    pub environment: Option<Environment>,
    /// The credential must be an API key holding these (403 otherwise).
    pub scopes: Vec<String>,
    /// Do not count as activity (no sliding of a session's expiry).
    pub passive: bool,
}

impl Verify {
    /// Verifies `token`.
    pub async fn verify(&self, token: String) -> Result<Identity, Error> {
        // Garbage and typos are refused here, without a round trip: the
        // same parser introspect runs first.
        if cred_core::token::Token::parse(&token).is_err() {
            return Err(Error::InvalidCredential(InvalidReason::Malformed));
        }
        let mut req = tonic::Request::new(pb::VerifyRequest {
            token,
            required_environment: self.environment.map_or(pb::Environment::Unspecified, pb::Environment::from) as i32,
            required_scopes: self.scopes.clone(),
            passive: self.passive,
        });
        // grpc-timeout lets introspect give up too; the local timeout is what
        // bounds a black-holed or unreachable introspect.
        req.set_timeout(self.deadline);
        let mut client = self.client.clone();
        match tokio::time::timeout(self.deadline, client.verify(req)).await {
            Ok(Ok(answer)) => from_response(answer.into_inner()),
            Ok(Err(status)) => Err(refusal(&status)),
            Err(_) => Err(Error::Store(StoreError::Unavailable(format!(
                "introspect did not answer within {:?}",
                self.deadline
            )))),
        }
    }
}

/// introspect's refusal in the domain vocabulary. The precise cause is kept
/// only for the debug log of the one table (this edge tells nobody); the
/// message of a scope refusal is this crate's own, not introspect's.
fn refusal(s: &Status) -> Error {
    let details = s.get_error_details();
    let info = details.error_info();
    match s.code() {
        Code::Unauthenticated => {
            let cause = info.and_then(|i| i.metadata.get(CAUSE)).map(String::as_str);
            Error::InvalidCredential(reason(cause.unwrap_or_default()))
        }
        Code::PermissionDenied => Error::Forbidden("the credential lacks a required scope"),
        Code::ResourceExhausted if info.is_some_and(|i| i.reason == THROTTLED) => {
            let spent = match info.and_then(|i| i.metadata.get("limit")).map(String::as_str) {
                Some("peer") => Spent::Peer,
                _ => Spent::Credential,
            };
            let retry_after = details.retry_info().and_then(|r| r.retry_delay).unwrap_or(Duration::from_secs(1));
            Error::Throttled(Throttled { spent, retry_after })
        }
        // introspect's request size limit: only a token far too long for
        // any real credential gets there.
        Code::ResourceExhausted => Error::InvalidCredential(InvalidReason::Malformed),
        code => Error::Store(StoreError::Unavailable(format!("introspect answered {code:?}: {}", s.message()))),
    }
}

/// The `InvalidReason` named by introspect's `cause`.
fn reason(cause: &str) -> InvalidReason {
    use InvalidReason as R;
    [R::Malformed, R::Revoked, R::ExpiredIdle, R::ExpiredMax, R::EnvMismatch]
        .into_iter()
        .find(|r| r.as_str() == cause)
        .unwrap_or(R::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cred_serve::status::Edge;

    const INTROSPECT: Edge = Edge { domain: "introspect", tells_cause: true, attempts: "verifies" };

    #[test]
    fn introspect_refusals_read_back() {
        let s = INTROSPECT.status(Error::InvalidCredential(InvalidReason::Revoked));
        assert!(matches!(refusal(&s), Error::InvalidCredential(InvalidReason::Revoked)));
        let s = INTROSPECT.status(Error::Forbidden("scopes were required of a session token"));
        assert!(matches!(refusal(&s), Error::Forbidden(m) if m == "the credential lacks a required scope"));
        let t = Throttled { spent: Spent::Peer, retry_after: Duration::from_millis(2500) };
        match refusal(&INTROSPECT.status(Error::Throttled(t))) {
            Error::Throttled(back) => assert_eq!(back, t),
            e => panic!("{e:?}"),
        }
        for s in [Status::unavailable("x"), Status::internal("x"), Status::unimplemented("x"), Status::cancelled("x")] {
            assert!(matches!(refusal(&s), Error::Store(StoreError::Unavailable(_))), "{s:?}");
        }
        assert!(matches!(refusal(&Status::resource_exhausted("too big")), Error::InvalidCredential(_)));
    }
}
