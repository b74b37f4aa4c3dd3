//! `authd.v1.AdminService`: operator RPCs.

use cred_core::Authority;
use cred_core::authority::{NewApiKey, PageRequest};
use cred_core::model::Scopes;
use cred_core::store::Store;
use cred_proto::authd::v1 as pb;
use cred_proto::authd::v1::admin_service_server::AdminService;
use cred_proto::convert::{millis, timestamp};
use tonic::{Request, Response, Status};

use crate::auth::OperatorAuth;
use crate::convert::{self, uuid};
use crate::status::to_status;
use cred_telemetry::record_tenant;

/// Default audit page.
const AUDIT_PAGE_DEFAULT: usize = 100;

/// The admin service over a store.
pub struct AdminApi<S> {
    pub authority: Authority<S>,
    pub operators: OperatorAuth,
}

/// Parses the request's `tenant_id` and records it on the RPC's span.
fn tenant_id(text: &str) -> Result<uuid::Uuid, Status> {
    let id = uuid("tenant_id", text).map_err(to_status)?;
    record_tenant(id);
    Ok(id)
}

#[tonic::async_trait]
impl<S: Store> AdminService for AdminApi<S> {
    async fn create_tenant(
        &self,
        req: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let actor = self.operators.check(&req).map_err(to_status)?;
        let r = req.into_inner();
        let idle = convert::duration_ms("idle_timeout", r.idle_timeout).map_err(to_status)?;
        let max = convert::duration_ms("max_lifetime", r.max_lifetime).map_err(to_status)?;
        let quotas = convert::quotas(r.quotas);
        let t = self.authority.create_tenant(&actor, r.name, idle, max, quotas).await.map_err(to_status)?;
        record_tenant(t.id);
        Ok(Response::new(pb::CreateTenantResponse { tenant: Some(convert::tenant(t)) }))
    }

    async fn set_tenant_quotas(
        &self,
        req: Request<pb::SetTenantQuotasRequest>,
    ) -> Result<Response<pb::SetTenantQuotasResponse>, Status> {
        let actor = self.operators.check(&req).map_err(to_status)?;
        let r = req.into_inner();
        let tenant = tenant_id(&r.tenant_id)?;
        let t = self.authority.set_quotas(&actor, tenant, convert::quotas(r.quotas)).await.map_err(to_status)?;
        record_tenant(t.id);
        Ok(Response::new(pb::SetTenantQuotasResponse { tenant: Some(convert::tenant(t)) }))
    }

    async fn get_tenant(&self, req: Request<pb::GetTenantRequest>) -> Result<Response<pb::GetTenantResponse>, Status> {
        self.operators.check(&req).map_err(to_status)?;
        let id = tenant_id(&req.get_ref().tenant_id)?;
        let t = self.authority.get_tenant(id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetTenantResponse { tenant: Some(convert::tenant(t)) }))
    }

    async fn list_tenants(
        &self,
        req: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        self.operators.check(&req).map_err(to_status)?;
        let r = req.get_ref();
        let page = PageRequest { token: &r.page_token, size: r.page_size };
        let tenants = self.authority.list_tenants(page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.items.into_iter().map(convert::tenant).collect(),
            next_page_token: tenants.next_page_token,
        }))
    }

    async fn create_api_key(
        &self,
        req: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let actor = self.operators.check(&req).map_err(to_status)?;
        let r = req.into_inner();
        let new = NewApiKey {
            tenant_id: tenant_id(&r.tenant_id)?,
            env: convert::env("environment", r.environment).map_err(to_status)?,
            name: r.name,
            scopes: Scopes::parse(r.scopes.iter().map(String::as_str)).map_err(to_status)?,
            expires_at: millis("expire_time", r.expire_time).map_err(to_status)?,
        };
        let issued = self.authority.create_api_key(&actor, new).await.map_err(to_status)?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(convert::api_key(issued.record)),
            secret: issued.token,
        }))
    }

    async fn list_api_keys(
        &self,
        req: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        self.operators.check(&req).map_err(to_status)?;
        let r = req.get_ref();
        let tenant = tenant_id(&r.tenant_id)?;
        let page = PageRequest { token: &r.page_token, size: r.page_size };
        let keys = self.authority.list_api_keys(tenant, page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: keys.items.into_iter().map(convert::api_key).collect(),
            next_page_token: keys.next_page_token,
        }))
    }

    async fn list_clients(
        &self,
        req: Request<pb::ListClientsRequest>,
    ) -> Result<Response<pb::ListClientsResponse>, Status> {
        self.operators.check(&req).map_err(to_status)?;
        let r = req.get_ref();
        let tenant = tenant_id(&r.tenant_id)?;
        let env = convert::env_filter("environment", r.environment).map_err(to_status)?;
        let page = PageRequest { token: &r.page_token, size: r.page_size };
        let clients = self.authority.list_clients(tenant, env, page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListClientsResponse {
            clients: clients.items.into_iter().map(convert::client).collect(),
            next_page_token: clients.next_page_token,
        }))
    }

    async fn revoke_api_key(
        &self,
        req: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let actor = self.operators.check(&req).map_err(to_status)?;
        let r = req.into_inner();
        let tenant = tenant_id(&r.tenant_id)?;
        let key = uuid("key_id", &r.key_id).map_err(to_status)?;
        let revoked =
            self.authority.revoke_api_key(&actor, tenant, key, r.include_successor).await.map_err(to_status)?;
        Ok(Response::new(pb::RevokeApiKeyResponse { revoked_key_ids: revoked.iter().map(|k| k.to_string()).collect() }))
    }

    async fn roll_api_key(
        &self,
        req: Request<pb::RollApiKeyRequest>,
    ) -> Result<Response<pb::RollApiKeyResponse>, Status> {
        let actor = self.operators.check(&req).map_err(to_status)?;
        let r = req.into_inner();
        let tenant = tenant_id(&r.tenant_id)?;
        let key = uuid("key_id", &r.key_id).map_err(to_status)?;
        let grace = convert::duration_ms("grace_period", r.grace_period).map_err(to_status)?.unwrap_or(0);
        let rolled = self.authority.roll_api_key(&actor, tenant, key, grace).await.map_err(to_status)?;
        Ok(Response::new(pb::RollApiKeyResponse {
            api_key: Some(convert::api_key(rolled.new.record)),
            secret: rolled.new.token,
            old_key_expire_time: Some(timestamp(rolled.old_expires_at)),
        }))
    }

    async fn revoke_tenant_credentials(
        &self,
        req: Request<pb::RevokeTenantCredentialsRequest>,
    ) -> Result<Response<pb::RevokeTenantCredentialsResponse>, Status> {
        let actor = self.operators.check(&req).map_err(to_status)?;
        let r = req.into_inner();
        let tenant = tenant_id(&r.tenant_id)?;
        let before = millis("issued_before", r.issued_before).map_err(to_status)?;
        let t = self.authority.revoke_tenant_before(&actor, tenant, before).await.map_err(to_status)?;
        Ok(Response::new(pb::RevokeTenantCredentialsResponse { tenant: Some(convert::tenant(t)) }))
    }

    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        self.operators.check(&req).map_err(to_status)?;
        let r = req.into_inner();
        let tenant = tenant_id(&r.tenant_id)?;
        let after = (!r.after_event_id.is_empty()).then_some(r.after_event_id.as_str());
        let limit = if r.page_size == 0 { AUDIT_PAGE_DEFAULT } else { r.page_size as usize };
        let events = self.authority.list_audit(tenant, after, limit, r.newest_first).await.map_err(to_status)?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: events.into_iter().map(convert::audit_event).collect(),
        }))
    }
}
