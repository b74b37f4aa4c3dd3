//! `Identity` as an axum extractor (feature `axum`): the identity the layer
//! put in the request extensions; a handler reached without one (the
//! layer missing, or optional and no credential presented) answers 401, as
//! the layer would. `Option<Identity>` never refuses.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use cred_core::{Error, InvalidReason};
use cred_serve::status::Edge;
use http::request::Parts;

use crate::identity::Identity;
use crate::layer::DEFAULT_DOMAIN;
use crate::refusal::{Challenge, Protocol, refuse};

const EDGE: Edge = Edge { domain: DEFAULT_DOMAIN, tells_cause: false, attempts: "verifies" };

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Identity, Response> {
        parts.extensions.get::<Identity>().cloned().ok_or_else(|| {
            let challenge =
                Challenge { presented: parts.headers.contains_key(http::header::AUTHORIZATION), scopes: &[] };
            let e = Error::InvalidCredential(InvalidReason::Unknown);
            refuse(&EDGE, e, Protocol::of(&parts.headers), challenge).into_response()
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Identity {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Identity>, Infallible> {
        Ok(parts.extensions.get::<Identity>().cloned())
    }
}
