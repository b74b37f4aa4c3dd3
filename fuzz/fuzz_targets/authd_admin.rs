//! authd `AdminService`: every request message, decoded from arbitrary
//! bytes and sent to the real service method (over a fresh in-memory store)
//! with an operator key. Input: selector byte (low 4 bits: RPC, 9–15 as 7;
//! high 4 bits: bearer, 13–15 unusable), then the message's protobuf bytes.
//!
//! Checked: INVALID_ARGUMENT exactly when the oracle (README limits) finds a
//! bad field, naming it in the message and a BadRequest; otherwise only the
//! RPC's own codes; an unusable operator key is always UNAUTHENTICATED; a
//! success echoes what was asked and returns a token that parses as asked.
#![no_main]

use authd::admin::AdminApi;
use cred_core::clock::now_ms;
use cred_core::store::MemoryStore;
use cred_core::token::{Token, TokenKind};
use cred_fuzz::check::{Expect, ms};
use cred_fuzz::fixture::{World, request};
use cred_fuzz::{block_on, oracle};
use cred_proto::authd::v1 as pb;
use cred_proto::authd::v1::admin_service_server::AdminService;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::Code;
use uuid::Uuid;

const LOOKUP: &[Code] = &[Code::NotFound];

fuzz_target!(|data: &[u8]| {
    let Some((sel, body)) = cred_fuzz::split(data) else { return };
    let w = World::new();
    let bearer = match sel >> 4 {
        13 => None,
        14 => Some(w.unlisted_operator_token.as_str()),
        15 => Some(w.foreign_operator_token.as_str()),
        _ => Some(w.operator_token.as_str()),
    };
    let unauth = sel >> 4 >= 13;
    // A body that does not decode is the codec's INVALID_ARGUMENT; nothing
    // of ours runs.
    let _ = match sel % 16 {
        0 => pb::CreateTenantRequest::decode(body).map(|r| create_tenant(&w, r, bearer, unauth)),
        1 => pb::GetTenantRequest::decode(body).map(|r| get_tenant(&w, r, bearer, unauth)),
        2 => pb::CreateApiKeyRequest::decode(body).map(|r| create_api_key(&w, r, bearer, unauth)),
        3 => pb::ListApiKeysRequest::decode(body).map(|r| list_api_keys(&w, r, bearer, unauth)),
        4 => pb::RevokeApiKeyRequest::decode(body).map(|r| revoke_api_key(&w, r, bearer, unauth)),
        5 => pb::RollApiKeyRequest::decode(body).map(|r| roll_api_key(&w, r, bearer, unauth)),
        6 => pb::RevokeTenantCredentialsRequest::decode(body).map(|r| revoke_tenant(&w, r, bearer, unauth)),
        8 => pb::ListClientsRequest::decode(body).map(|r| list_clients(&w, r, bearer, unauth)),
        _ => pb::ListAuditEventsRequest::decode(body).map(|r| list_audit(&w, r, bearer, unauth)),
    };
});

fn api(w: &World) -> &AdminApi<MemoryStore> {
    &w.admin
}

fn expect(fields: &'static [&'static str], allowed: &'static [Code], unauth: bool) -> Expect {
    let mut e = Expect::new(fields, allowed);
    e.unauthenticated = unauth;
    e
}

fn same_id(a: &str, b: &str) -> bool {
    Uuid::parse_str(a).ok() == Uuid::parse_str(b).ok()
}

fn create_tenant(w: &World, r: pb::CreateTenantRequest, bearer: Option<&str>, unauth: bool) {
    let fields =
        &["name", "idle_timeout", "max_lifetime", "quotas.api_keys", "quotas.clients", "quotas.sessions_per_client"];
    let mut e = expect(fields, &[], unauth);
    let idle = oracle::duration_ms(r.idle_timeout.as_ref());
    let max = oracle::duration_ms(r.max_lifetime.as_ref());
    let q = r.quotas.unwrap_or_default();
    e.bad_if(idle.is_err(), "idle_timeout")
        .bad_if(max.is_err(), "max_lifetime")
        .bad_if(!oracle::name_ok(&r.name), "name")
        .bad_if(!oracle::quota_ok(q.api_keys), "quotas.api_keys")
        .bad_if(!oracle::quota_ok(q.clients), "quotas.clients")
        .bad_if(!oracle::quota_ok(q.sessions_per_client), "quotas.sessions_per_client");
    let mut policy = None;
    if let (Ok(i), Ok(m)) = (idle, max) {
        match oracle::policy(i, m) {
            Ok(p) => policy = Some(p),
            Err(f) => {
                e.bad_if(true, f);
            }
        }
    }
    let name = r.name.clone();
    if let Some(resp) = e.check(block_on(api(w).create_tenant(request(r, bearer)))) {
        let t = resp.tenant.expect("tenant");
        assert_eq!(t.name, name);
        let (idle, max) = policy.expect("valid");
        assert_eq!(t.idle_timeout.map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000), Some(idle));
        assert_eq!(t.max_lifetime.map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000), Some(max));
        assert!(t.revoked_before.is_none() && Uuid::parse_str(&t.tenant_id).is_ok());
    }
}

fn get_tenant(w: &World, mut r: pb::GetTenantRequest, bearer: Option<&str>, unauth: bool) {
    w.subst(&mut r.tenant_id);
    let mut e = expect(&["tenant_id"], LOOKUP, unauth);
    e.bad_if(!oracle::uuid_ok(&r.tenant_id), "tenant_id");
    let id = r.tenant_id.clone();
    if let Some(resp) = e.check(block_on(api(w).get_tenant(request(r, bearer)))) {
        assert!(same_id(&resp.tenant.expect("tenant").tenant_id, &id));
    }
}

fn create_api_key(w: &World, mut r: pb::CreateApiKeyRequest, bearer: Option<&str>, unauth: bool) {
    w.subst(&mut r.tenant_id);
    let mut e = expect(&["tenant_id", "environment", "name", "scopes", "expire_time"], LOOKUP, unauth);
    let exp = oracle::timestamp_ms(r.expire_time.as_ref());
    let before = now_ms();
    e.bad_if(!oracle::uuid_ok(&r.tenant_id), "tenant_id")
        .bad_if(oracle::env_of(r.environment).is_none(), "environment")
        .bad_if(!oracle::name_ok(&r.name), "name")
        .bad_if(!oracle::scopes_ok(&r.scopes), "scopes")
        .bad_if(exp.is_err() || exp.is_ok_and(|x| x.is_some_and(|x| x <= before)), "expire_time");
    let req = r.clone();
    let result = block_on(api(w).create_api_key(request(r, bearer)));
    // "In the future" is judged at the service's own now.
    e.undecided = exp.is_ok_and(|x| x.is_some_and(|x| x > before && x <= now_ms()));
    if let Some(resp) = e.check(result) {
        let k = resp.api_key.expect("api_key");
        assert!(same_id(&k.tenant_id, &req.tenant_id));
        assert_eq!((k.environment, &k.name), (req.environment, &req.name));
        let mut want: Vec<&str> =
            oracle::SCOPES.iter().copied().filter(|s| req.scopes.iter().any(|r| r == s)).collect();
        want.dedup();
        assert_eq!(k.scopes, want);
        assert_eq!(k.expire_time.as_ref().map(ms), exp.expect("valid"));
        let t = Token::parse(&resp.secret).expect("the issued secret parses");
        assert_eq!(t.kind, TokenKind::ApiKey);
        assert_eq!(Some(t.env), oracle::env_of(req.environment));
        assert_eq!(
            (t.route.to_string(), t.id.to_string()),
            (Uuid::parse_str(&req.tenant_id).expect("ok").to_string(), k.key_id)
        );
    }
}

fn list_api_keys(w: &World, mut r: pb::ListApiKeysRequest, bearer: Option<&str>, unauth: bool) {
    w.subst(&mut r.tenant_id);
    let mut e = expect(&["tenant_id", "page_size", "page_token"], LOOKUP, unauth);
    e.bad_if(!oracle::uuid_ok(&r.tenant_id), "tenant_id")
        .bad_if(!oracle::page_size_ok(r.page_size), "page_size")
        .bad_if(!oracle::page_token_ok(&r.page_token), "page_token");
    let id = r.tenant_id.clone();
    if let Some(resp) = e.check(block_on(api(w).list_api_keys(request(r, bearer)))) {
        assert!(resp.api_keys.iter().all(|k| same_id(&k.tenant_id, &id)));
    }
}

fn list_clients(w: &World, mut r: pb::ListClientsRequest, bearer: Option<&str>, unauth: bool) {
    w.subst(&mut r.tenant_id);
    let mut e = expect(&["tenant_id", "environment", "page_size", "page_token"], LOOKUP, unauth);
    e.bad_if(!oracle::uuid_ok(&r.tenant_id), "tenant_id")
        .bad_if(r.environment != 0 && oracle::env_of(r.environment).is_none(), "environment")
        .bad_if(!oracle::page_size_ok(r.page_size), "page_size")
        .bad_if(!oracle::page_token_ok(&r.page_token), "page_token");
    let (id, env, most) = (r.tenant_id.clone(), r.environment, if r.page_size == 0 { 100 } else { r.page_size });
    if let Some(resp) = e.check(block_on(api(w).list_clients(request(r, bearer)))) {
        assert!(resp.clients.len() <= most as usize, "a page larger than asked for");
        assert!(resp.clients.iter().all(|c| same_id(&c.tenant_id, &id) && (env == 0 || c.environment == env)));
    }
}

fn revoke_api_key(w: &World, mut r: pb::RevokeApiKeyRequest, bearer: Option<&str>, unauth: bool) {
    w.subst(&mut r.tenant_id);
    w.subst(&mut r.key_id);
    let mut e = expect(&["tenant_id", "key_id"], LOOKUP, unauth);
    e.bad_if(!oracle::uuid_ok(&r.tenant_id), "tenant_id").bad_if(!oracle::uuid_ok(&r.key_id), "key_id");
    let key = r.key_id.clone();
    if let Some(resp) = e.check(block_on(api(w).revoke_api_key(request(r, bearer)))) {
        assert!(same_id(resp.revoked_key_ids.first().expect("one id"), &key));
    }
}

fn roll_api_key(w: &World, mut r: pb::RollApiKeyRequest, bearer: Option<&str>, unauth: bool) {
    w.subst(&mut r.tenant_id);
    w.subst(&mut r.key_id);
    let mut e = expect(&["tenant_id", "key_id", "grace_period"], LOOKUP, unauth);
    let grace = oracle::duration_ms(r.grace_period.as_ref());
    e.bad_if(!oracle::uuid_ok(&r.tenant_id), "tenant_id")
        .bad_if(!oracle::uuid_ok(&r.key_id), "key_id")
        .bad_if(!grace.is_ok_and(|g| (0..=30 * oracle::DAY_MS).contains(&g.unwrap_or(0))), "grace_period");
    let tenant = r.tenant_id.clone();
    if let Some(resp) = e.check(block_on(api(w).roll_api_key(request(r, bearer)))) {
        let k = resp.api_key.expect("api_key");
        let t = Token::parse(&resp.secret).expect("the issued secret parses");
        assert!(same_id(&t.route.to_string(), &tenant) && same_id(&t.id.to_string(), &k.key_id));
        let old_end = ms(&resp.old_key_expire_time.expect("old expiry"));
        assert!(old_end <= now_ms() + grace.expect("valid").unwrap_or(0));
    }
}

fn revoke_tenant(w: &World, mut r: pb::RevokeTenantCredentialsRequest, bearer: Option<&str>, unauth: bool) {
    w.subst(&mut r.tenant_id);
    let mut e = expect(&["tenant_id", "issued_before"], LOOKUP, unauth);
    let before = oracle::timestamp_ms(r.issued_before.as_ref());
    let start = now_ms();
    // More than the documented 5 s of clock skew ahead: refused.
    let future = matches!(before, Ok(Some(b)) if b > start + 5_000);
    e.bad_if(!oracle::uuid_ok(&r.tenant_id), "tenant_id").bad_if(before.is_err() || future, "issued_before");
    if let Some(resp) = e.check(block_on(api(w).revoke_tenant_credentials(request(r, bearer)))) {
        let rb = resp.tenant.expect("tenant").revoked_before.as_ref().map(ms).expect("revoked_before set");
        match before.expect("valid") {
            Some(b) if b <= start => assert_eq!(rb, b),
            // Now or a moment ahead: taken as now.
            _ => assert!(rb > start && rb <= now_ms() + 1, "cut-off {rb} for a call at {start}"),
        }
    }
}

fn list_audit(w: &World, mut r: pb::ListAuditEventsRequest, bearer: Option<&str>, unauth: bool) {
    w.subst(&mut r.tenant_id);
    let mut e = expect(&["tenant_id", "after_event_id", "page_size"], LOOKUP, unauth);
    e.bad_if(!oracle::uuid_ok(&r.tenant_id), "tenant_id")
        .bad_if(!r.after_event_id.is_empty() && !oracle::event_id_ok(&r.after_event_id), "after_event_id")
        .bad_if(r.page_size > 1000, "page_size");
    let (id, page) = (r.tenant_id.clone(), r.page_size);
    if let Some(resp) = e.check(block_on(api(w).list_audit_events(request(r, bearer)))) {
        let limit = if page == 0 { 100 } else { page as usize };
        assert!(resp.events.len() <= limit);
        assert!(resp.events.iter().all(|ev| same_id(&ev.tenant_id, &id)));
    }
}
