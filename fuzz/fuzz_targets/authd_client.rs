//! authd `ClientService` and `SessionService`: every request message,
//! decoded from arbitrary bytes and sent to the real service method (over a
//! fresh in-memory store). Input: selector byte (low 4 bits: RPC, 9 of
//! them; high 4 bits: bearer — 0–11 the all-scopes test API key, 12–13 a
//! production key holding only `sessions.read`, 14 a session token, 15
//! none), then the message's protobuf bytes.
//!
//! Checked: as for the admin target (INVALID_ARGUMENT exactly when the
//! oracle finds a bad field, naming it); a key lacking the scope never
//! succeeds; a success echoes the request (labels, ids) and its token
//! parses as a credential of the right kind, client and environment.
#![no_main]

use cred_core::token::{Token, TokenKind};
use cred_fuzz::check::Expect;
use cred_fuzz::fixture::{World, request};
use cred_fuzz::{block_on, oracle};
use cred_proto::authd::v1 as pb;
use cred_proto::authd::v1::client_service_server::ClientService;
use cred_proto::authd::v1::session_service_server::SessionService;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::Code;
use uuid::Uuid;

#[derive(Clone, Copy, PartialEq)]
enum Bearer {
    Full,
    Scoped,
    Session,
    None,
}

const ALLOWED: &[Code] = &[Code::NotFound, Code::PermissionDenied, Code::FailedPrecondition, Code::ResourceExhausted];

fuzz_target!(|data: &[u8]| {
    let Some((sel, body)) = cred_fuzz::split(data) else { return };
    let w = World::new();
    let who = match sel >> 4 {
        0..=11 => Bearer::Full,
        12 | 13 => Bearer::Scoped,
        14 => Bearer::Session,
        _ => Bearer::None,
    };
    let _ = match sel % 16 % 9 {
        0 => pb::CreateClientRequest::decode(body).map(|r| create_client(&w, r.labels, who, false)),
        1 => pb::CreateTestClientRequest::decode(body).map(|r| create_client(&w, r.labels, who, true)),
        2 => pb::CreateSessionRequest::decode(body).map(|r| one_id(&w, Rpc::CreateSession, r.client_id, who)),
        3 => pb::GetClientRequest::decode(body).map(|r| one_id(&w, Rpc::GetClient, r.client_id, who)),
        4 => pb::ListSessionsRequest::decode(body).map(|r| one_id(&w, Rpc::ListSessions, r.client_id, who)),
        5 => pb::RevokeAllSessionsRequest::decode(body).map(|r| one_id(&w, Rpc::RevokeAll, r.client_id, who)),
        6 => pb::DeleteClientRequest::decode(body).map(|r| one_id(&w, Rpc::Delete, r.client_id, who)),
        7 => pb::RevokeSessionRequest::decode(body).map(|r| revoke_session(&w, r, who)),
        _ => pb::GetCurrentSessionRequest::decode(body).map(|r| current_session(&w, r, who)),
    };
});

fn bearer(w: &World, who: Bearer) -> Option<&str> {
    match who {
        Bearer::Full => Some(&w.key_token),
        Bearer::Scoped => Some(&w.scoped_key_token),
        Bearer::Session => Some(&w.session_token),
        Bearer::None => None,
    }
}

/// The oracle for an API-key RPC: `scope` is the one it needs.
fn expect(fields: &'static [&'static str], who: Bearer, scope: &str) -> Expect {
    let mut e = Expect::new(fields, ALLOWED);
    e.unauthenticated = matches!(who, Bearer::Session | Bearer::None);
    // The scoped key lacks `scope`: the service checks UUID fields before
    // scopes and scopes before labels, so which error comes first is the
    // implementation's choice; it must fail, checked by the caller.
    e.undecided = who == Bearer::Scoped && scope != "sessions.read";
    e
}

fn create_client(w: &World, labels: std::collections::HashMap<String, String>, who: Bearer, test: bool) {
    let mut e = expect(&["labels"], who, "clients.create");
    let lacks_scope = e.undecided;
    e.bad_if(!oracle::labels_ok(labels.iter()), "labels");
    let sent = labels.clone();
    let result = if test {
        let r = block_on(w.clients.create_test_client(request(pb::CreateTestClientRequest { labels }, bearer(w, who))));
        r.map(|r| r.map(|r| (r.client, r.session, r.token)))
    } else {
        let r = block_on(w.clients.create_client(request(pb::CreateClientRequest { labels }, bearer(w, who))));
        r.map(|r| r.map(|r| (r.client, r.session, r.token)))
    };
    if let Some((c, s, token)) = e.check(result) {
        assert!(!lacks_scope, "succeeded without clients.create");
        let (c, s) = (c.expect("client"), s.expect("session"));
        assert_eq!(c.labels, sent);
        assert_eq!((c.tenant_id, c.environment), (w.tenant.to_string(), pb::Environment::Test as i32));
        let t = Token::parse(&token).expect("the issued token parses");
        assert_eq!(t.kind, if test { TokenKind::TestClientKey } else { TokenKind::Session });
        assert_eq!((t.route.to_string(), t.id.to_string()), (c.client_id, s.session_id));
        assert_eq!(s.test_key, test);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Rpc {
    CreateSession,
    GetClient,
    ListSessions,
    RevokeAll,
    Delete,
}

fn one_id(w: &World, rpc: Rpc, mut client_id: String, who: Bearer) {
    w.subst(&mut client_id);
    let scope = match rpc {
        Rpc::CreateSession => "sessions.create",
        Rpc::GetClient => "clients.read",
        Rpc::ListSessions => "sessions.read",
        Rpc::RevokeAll => "sessions.revoke",
        Rpc::Delete => "clients.delete",
    };
    let mut e = expect(&["client_id"], who, scope);
    let lacks_scope = e.undecided;
    e.bad_if(!oracle::uuid_ok(&client_id), "client_id");
    let id = Uuid::parse_str(&client_id).ok();
    let b = bearer(w, who);
    let c = client_id.clone();
    // Each arm checks its own response; `ok` is whether it succeeded.
    let ok = match rpc {
        Rpc::CreateSession => e
            .check(block_on(w.clients.create_session(request(pb::CreateSessionRequest { client_id: c }, b))))
            .map(|r| {
                let t = Token::parse(&r.token).expect("the issued token parses");
                assert_eq!((t.kind, Some(t.route)), (TokenKind::Session, id));
                assert_eq!(r.session.expect("session").session_id, t.id.to_string());
            })
            .is_some(),
        Rpc::GetClient => e
            .check(block_on(w.clients.get_client(request(pb::GetClientRequest { client_id: c }, b))))
            .map(|r| assert_eq!(Uuid::parse_str(&r.client.expect("client").client_id).ok(), id))
            .is_some(),
        Rpc::ListSessions => e
            .check(block_on(
                w.clients.list_sessions(request(pb::ListSessionsRequest { client_id: c, ..Default::default() }, b)),
            ))
            .map(|r| assert!(r.sessions.iter().all(|s| Uuid::parse_str(&s.client_id).ok() == id)))
            .is_some(),
        Rpc::RevokeAll => e
            .check(block_on(w.clients.revoke_all_sessions(request(pb::RevokeAllSessionsRequest { client_id: c }, b))))
            .map(|r| assert!(r.revoked_count <= 1, "the fixture's clients hold one session each"))
            .is_some(),
        Rpc::Delete => {
            e.check(block_on(w.clients.delete_client(request(pb::DeleteClientRequest { client_id: c }, b)))).is_some()
        }
    };
    assert!(!(ok && lacks_scope), "succeeded without {scope}");
    // Another tenant's or an unknown client: never found (the fixture has one tenant).
    if ok {
        assert!(id == Some(w.client) || id == Some(w.tck_client), "found client {client_id:?}");
    }
}

fn revoke_session(w: &World, mut r: pb::RevokeSessionRequest, who: Bearer) {
    w.subst(&mut r.client_id);
    w.subst(&mut r.session_id);
    let mut e = expect(&["client_id", "session_id"], who, "sessions.revoke");
    let lacks_scope = e.undecided;
    e.bad_if(!oracle::uuid_ok(&r.client_id), "client_id").bad_if(!oracle::uuid_ok(&r.session_id), "session_id");
    let ids = (Uuid::parse_str(&r.client_id).ok(), Uuid::parse_str(&r.session_id).ok());
    if e.check(block_on(w.clients.revoke_session(request(r, bearer(w, who))))).is_some() {
        assert!(!lacks_scope, "succeeded without sessions.revoke");
        assert!(
            ids == (Some(w.client), Some(w.session)) || ids == (Some(w.tck_client), Some(w.tck_session)),
            "revoked {ids:?}"
        );
    }
}

fn current_session(w: &World, r: pb::GetCurrentSessionRequest, who: Bearer) {
    // Only a session token or test client key is a usable bearer here.
    let mut e = Expect::new(&[], &[]);
    e.unauthenticated = who != Bearer::Session;
    if let Some(resp) = e.check(block_on(w.sessions.get_current_session(request(r, bearer(w, who))))) {
        assert_eq!(resp.client.expect("client").client_id, w.client.to_string());
        assert_eq!(resp.session.expect("session").session_id, w.session.to_string());
    }
}
