//! `authd.v1.SessionService`: end-user RPCs, authenticated by a session
//! token or a test client key.

use cred_core::Authority;
use cred_core::store::Store;
use cred_proto::authd::v1 as pb;
use cred_proto::authd::v1::session_service_server::SessionService;
use tonic::{Request, Response, Status};

use crate::auth::{bearer, floored, peer};
use crate::convert;
use crate::status::to_status;

/// The session service over a store.
pub struct SessionApi<S> {
    pub authority: Authority<S>,
}

#[tonic::async_trait]
impl<S: Store> SessionService for SessionApi<S> {
    async fn get_current_session(
        &self,
        req: Request<pb::GetCurrentSessionRequest>,
    ) -> Result<Response<pb::GetCurrentSessionResponse>, Status> {
        let token = bearer(&req).map_err(to_status)?;
        let p = floored(self.authority.authenticate_session_from(token, peer(&req))).await.map_err(to_status)?;
        cred_telemetry::record_tenant(p.tenant.id);
        Ok(Response::new(pb::GetCurrentSessionResponse {
            client: Some(convert::client(p.client)),
            session: Some(convert::session(p.session)),
        }))
    }
}
