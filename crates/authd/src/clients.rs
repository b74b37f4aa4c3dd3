//! `authd.v1.ClientService`: tenant backend RPCs, authenticated by an API key.

use cred_core::Authority;
use cred_core::authority::{ApiPrincipal, NewClient, PageRequest};
use cred_core::store::Store;
use cred_proto::authd::v1 as pb;
use cred_proto::authd::v1::client_service_server::ClientService;
use tonic::{Request, Response, Status};

use crate::auth::{bearer, floored, peer};
use crate::convert::{self, uuid};
use crate::status::to_status;

/// The client service over a store.
pub struct ClientApi<S> {
    pub authority: Authority<S>,
}

impl<S: Store> ClientApi<S> {
    async fn principal<T>(&self, req: &Request<T>) -> Result<ApiPrincipal, Status> {
        let token = bearer(req).map_err(to_status)?;
        let p = floored(self.authority.authenticate_api_key_from(token, peer(req))).await.map_err(to_status)?;
        cred_telemetry::record_tenant(p.tenant.id);
        Ok(p)
    }
}

fn new_client(n: NewClient) -> (Option<pb::Client>, Option<pb::Session>, String) {
    (Some(convert::client(n.client)), Some(convert::session(n.session)), n.token)
}

#[tonic::async_trait]
impl<S: Store> ClientService for ClientApi<S> {
    async fn create_client(
        &self,
        req: Request<pb::CreateClientRequest>,
    ) -> Result<Response<pb::CreateClientResponse>, Status> {
        let p = self.principal(&req).await?;
        let labels = req.into_inner().labels.into_iter().collect();
        let (client, session, token) = new_client(self.authority.create_client(&p, labels).await.map_err(to_status)?);
        Ok(Response::new(pb::CreateClientResponse { client, session, token }))
    }

    async fn create_session(
        &self,
        req: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let p = self.principal(&req).await?;
        let client = uuid("client_id", &req.get_ref().client_id).map_err(to_status)?;
        let issued = self.authority.create_session(&p, client).await.map_err(to_status)?;
        Ok(Response::new(pb::CreateSessionResponse {
            session: Some(convert::session(issued.record)),
            token: issued.token,
        }))
    }

    async fn create_test_client(
        &self,
        req: Request<pb::CreateTestClientRequest>,
    ) -> Result<Response<pb::CreateTestClientResponse>, Status> {
        let p = self.principal(&req).await?;
        let labels = req.into_inner().labels.into_iter().collect();
        let (client, session, token) =
            new_client(self.authority.create_test_client(&p, labels).await.map_err(to_status)?);
        Ok(Response::new(pb::CreateTestClientResponse { client, session, token }))
    }

    async fn get_client(&self, req: Request<pb::GetClientRequest>) -> Result<Response<pb::GetClientResponse>, Status> {
        let p = self.principal(&req).await?;
        let id = uuid("client_id", &req.get_ref().client_id).map_err(to_status)?;
        let c = self.authority.get_client(&p, id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetClientResponse { client: Some(convert::client(c)) }))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let p = self.principal(&req).await?;
        let r = req.get_ref();
        let id = uuid("client_id", &r.client_id).map_err(to_status)?;
        let page = PageRequest { token: &r.page_token, size: r.page_size };
        let v = self.authority.list_sessions(&p, id, page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: v.items.into_iter().map(convert::session).collect(),
            next_page_token: v.next_page_token,
        }))
    }

    async fn revoke_session(
        &self,
        req: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let p = self.principal(&req).await?;
        let client = uuid("client_id", &req.get_ref().client_id).map_err(to_status)?;
        let session = uuid("session_id", &req.get_ref().session_id).map_err(to_status)?;
        self.authority.revoke_session(&p, client, session).await.map_err(to_status)?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }

    async fn revoke_all_sessions(
        &self,
        req: Request<pb::RevokeAllSessionsRequest>,
    ) -> Result<Response<pb::RevokeAllSessionsResponse>, Status> {
        let p = self.principal(&req).await?;
        let client = uuid("client_id", &req.get_ref().client_id).map_err(to_status)?;
        let n = self.authority.revoke_all_sessions(&p, client).await.map_err(to_status)?;
        Ok(Response::new(pb::RevokeAllSessionsResponse { revoked_count: n }))
    }

    async fn delete_client(
        &self,
        req: Request<pb::DeleteClientRequest>,
    ) -> Result<Response<pb::DeleteClientResponse>, Status> {
        let p = self.principal(&req).await?;
        let client = uuid("client_id", &req.get_ref().client_id).map_err(to_status)?;
        self.authority.delete_client(&p, client).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteClientResponse {}))
    }
}
