//! Writes the checked-in seed corpora `fuzz/seeds/<target>/`: valid tokens
//! and operator keys, and one valid (marker-bearing) request per RPC plus a
//! few bad ones, in each target's input framing. Deterministic: rerunning
//! it rewrites the same files.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example write_seeds`

use std::path::Path;

use cred_fuzz::oracle::{self, OPERATOR_SECRET, PREFIXES};
use cred_proto::authd::v1 as pb;
use cred_proto::introspect::v1 as ipb;
use prost::Message;
use prost_types::{Duration, Timestamp};
use uuid::Uuid;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let secret: [u8; 32] = std::array::from_fn(|i| i as u8 * 7 + 1);
    let route = 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef_u128;
    for (i, (prefix, _, _)) in PREFIXES.iter().enumerate() {
        let t = oracle::encode_token(prefix, route, u128::MAX - i as u128, &secret);
        write("token", &format!("text-{i}"), &[&[0u8][..], t.as_bytes()].concat());
        let mut s = vec![1u8, i as u8];
        s.extend((0..80).map(|b| (b * 13 + i) as u8));
        write("token", &format!("structured-{i}"), &s);
    }
    write("token", "garbage", b"\x00sk_live_not-a-token");

    let id = Uuid::from_u128(route);
    let opk = oracle::seal_operator_key(&OPERATOR_SECRET, &[9u8; 24], id);
    write("operator", "key", &[&[0u8][..], opk.as_bytes()].concat());
    write("operator", "structured", &(0..48).map(|b| (b * 5 + 1) as u8).collect::<Vec<_>>());
    write("operator", "allowlist", format!("\x00# ops\n{id}  # alice\n\n").as_bytes());
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    write("operator", "secret", format!("\x00{b64}\n").as_bytes());

    // authd_admin: selector low 3 bits = RPC, high bits 0 = valid operator key.
    let day = Duration { seconds: 86_400, nanos: 0 };
    let a = |rpc: u8, name: &str, m: &dyn Fn() -> Vec<u8>| write("authd_admin", name, &[&[rpc][..], &m()].concat());
    let t = || "@tenant".to_string();
    a(0, "create_tenant", &|| {
        pb::CreateTenantRequest {
            name: "acme".into(),
            idle_timeout: Some(day),
            max_lifetime: Some(Duration { seconds: 7 * 86_400, nanos: 0 }),
            quotas: Some(pb::Quotas { api_keys: 10, clients: 0, sessions_per_client: 5 }),
        }
        .encode_to_vec()
    });
    a(0, "create_tenant_bad", &|| {
        pb::CreateTenantRequest {
            name: "a\u{7}".into(),
            idle_timeout: Some(Duration { seconds: -1, nanos: 5 }),
            max_lifetime: None,
            quotas: None,
        }
        .encode_to_vec()
    });
    a(1, "get_tenant", &|| pb::GetTenantRequest { tenant_id: t() }.encode_to_vec());
    a(2, "create_api_key", &|| {
        pb::CreateApiKeyRequest {
            tenant_id: t(),
            environment: 2,
            name: "ci".into(),
            scopes: vec!["clients.read".into(), "sessions.create".into()],
            expire_time: Some(Timestamp { seconds: 4_000_000_000, nanos: 0 }),
        }
        .encode_to_vec()
    });
    a(3, "list_api_keys", &|| pb::ListApiKeysRequest { tenant_id: t(), ..Default::default() }.encode_to_vec());
    a(4, "revoke_api_key", &|| {
        pb::RevokeApiKeyRequest { tenant_id: t(), key_id: "@key".into(), include_successor: true }.encode_to_vec()
    });
    a(5, "roll_api_key", &|| {
        pb::RollApiKeyRequest { tenant_id: t(), key_id: "@key".into(), grace_period: Some(day) }.encode_to_vec()
    });
    a(6, "revoke_tenant", &|| {
        pb::RevokeTenantCredentialsRequest {
            tenant_id: t(),
            issued_before: Some(Timestamp { seconds: 1_700_000_000, nanos: 0 }),
        }
        .encode_to_vec()
    });
    a(7, "list_audit", &|| {
        pb::ListAuditEventsRequest {
            tenant_id: t(),
            after_event_id: "1700000000000-0".into(),
            page_size: 10,
            newest_first: false,
        }
        .encode_to_vec()
    });
    a(8, "list_clients", &|| {
        pb::ListClientsRequest { tenant_id: t(), environment: 2, page_size: 2, ..Default::default() }.encode_to_vec()
    });
    a(0xd1, "get_tenant_no_bearer", &|| pb::GetTenantRequest { tenant_id: t() }.encode_to_vec());

    // authd_client: selector % 16 % 9 = RPC, high bits 0 = all-scopes test key.
    let c = |sel: u8, name: &str, m: Vec<u8>| write("authd_client", name, &[&[sel][..], &m].concat());
    let labels = [("plan".to_string(), "free".to_string()), ("region".to_string(), "eu-1".to_string())].into();
    c(0, "create_client", pb::CreateClientRequest { labels }.encode_to_vec());
    let bad_labels = [("Bad Key".to_string(), "x".repeat(300))].into();
    c(1, "create_test_client_bad", pb::CreateTestClientRequest { labels: bad_labels }.encode_to_vec());
    let cid = || "@client".to_string();
    c(2, "create_session", pb::CreateSessionRequest { client_id: cid() }.encode_to_vec());
    c(3, "get_client", pb::GetClientRequest { client_id: cid() }.encode_to_vec());
    c(4, "list_sessions", pb::ListSessionsRequest { client_id: cid(), ..Default::default() }.encode_to_vec());
    c(5, "revoke_all", pb::RevokeAllSessionsRequest { client_id: cid() }.encode_to_vec());
    c(6, "delete_client", pb::DeleteClientRequest { client_id: cid() }.encode_to_vec());
    c(
        7,
        "revoke_session",
        pb::RevokeSessionRequest { client_id: cid(), session_id: "@session".into() }.encode_to_vec(),
    );
    c(0xe8, "current_session", pb::GetCurrentSessionRequest {}.encode_to_vec());
    c(0xc4, "list_sessions_scoped", pb::ListSessionsRequest { client_id: cid(), ..Default::default() }.encode_to_vec());

    // introspect_verify: the message alone.
    for (i, marker) in ["@sk_test", "@sk_live", "@cst", "@tck", "@cst\u{5}x"].iter().enumerate() {
        let r = ipb::VerifyRequest {
            token: marker.to_string(),
            required_environment: (i % 3) as i32,
            required_scopes: if i < 2 { vec!["sessions.read".into()] } else { vec![] },
            passive: i % 2 == 0,
        };
        write("introspect_verify", &format!("verify-{i}"), &r.encode_to_vec());
    }
}
