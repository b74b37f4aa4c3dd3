//! Dev mode: a ready operator key, tenant, API keys and demo client, and the
//! commands to drive the whole flow from a shell (like `vault server -dev`).

use std::fmt::Write;
use std::net::SocketAddr;

use cred_core::authority::NewApiKey;
use cred_core::model::{Environment, Scopes};
use cred_core::operator::OperatorSecret;
use cred_core::store::Store;
use cred_core::{Authority, Error};

/// Everything dev mode made, with the secrets shown once in the banner.
pub struct DevSetup {
    pub operator_key_id: uuid::Uuid,
    pub operator_token: String,
    pub tenant_id: uuid::Uuid,
    pub test_key: String,
    pub live_key: String,
    pub client_id: uuid::Uuid,
    pub session_id: uuid::Uuid,
    pub session_token: String,
}

/// Creates the operator key, a tenant, a test and a production API key, and
/// a demo client with a session.
pub async fn bootstrap<S: Store>(authority: &Authority<S>, secret: &OperatorSecret) -> Result<DevSetup, Error> {
    let (operator_key_id, operator_token) = secret.issue();
    let actor = format!("operator:{operator_key_id}");
    let tenant = authority.create_tenant(&actor, "dev".into(), None, None, Default::default()).await?;
    let key = |env, name: &str| NewApiKey {
        tenant_id: tenant.id,
        env,
        name: name.into(),
        scopes: Scopes::default(),
        expires_at: None,
    };
    let test = authority.create_api_key(&actor, key(Environment::Test, "dev test key")).await?;
    let live = authority.create_api_key(&actor, key(Environment::Production, "dev production key")).await?;
    let p = authority.authenticate_api_key(&test.token).await?;
    let demo = authority.create_client(&p, [("name".to_string(), "demo".to_string())].into()).await?;
    Ok(DevSetup {
        operator_key_id,
        operator_token,
        tenant_id: tenant.id,
        test_key: test.token,
        live_key: live.token,
        client_id: demo.client.id,
        session_id: demo.session.id,
        session_token: demo.token,
    })
}

/// The banner: credentials and pasteable grpcurl / buf curl commands.
pub fn banner(d: &DevSetup, addr: SocketAddr, store: &str) -> String {
    let g = |token: &str, body: &str, method: &str| {
        format!("grpcurl -plaintext -H 'authorization: Bearer {token}' -d '{body}' {addr} {method}")
    };
    let b = |token: &str, body: &str, method: &str| {
        format!(
            "buf curl --protocol grpc --http2-prior-knowledge -H 'authorization: Bearer {token}' -d '{body}' http://{addr}/{method}"
        )
    };
    let (c, s) = (d.client_id, d.session_id);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "authd dev mode: listening on {addr}, store: {store}. Nothing here is secret; do not use it in production.\n"
    );
    let _ = writeln!(o, "operator key id:      {}", d.operator_key_id);
    let _ = writeln!(o, "operator key:         {}", d.operator_token);
    let _ = writeln!(o, "tenant id:            {}", d.tenant_id);
    let _ = writeln!(o, "test API key:         {}", d.test_key);
    let _ = writeln!(o, "production API key:   {}", d.live_key);
    let _ = writeln!(o, "demo client id:       {c}");
    let _ = writeln!(o, "demo session token:   {}\n", d.session_token);
    let _ = writeln!(o, "# List the services (server reflection):\ngrpcurl -plaintext {addr} list\n");
    let steps = [
        (
            "Register a new end user; the answer holds its first session token",
            &d.test_key,
            "{\"labels\":{\"plan\":\"free\"}}".to_string(),
            "authd.v1.ClientService/CreateClient",
        ),
        (
            "Subsequent login: a new session token for the demo client",
            &d.test_key,
            format!("{{\"client_id\":\"{c}\"}}"),
            "authd.v1.ClientService/CreateSession",
        ),
        (
            "Use the session token (slides its idle expiry)",
            &d.session_token,
            "{}".to_string(),
            "authd.v1.SessionService/GetCurrentSession",
        ),
        (
            "List the demo client's sessions",
            &d.test_key,
            format!("{{\"client_id\":\"{c}\"}}"),
            "authd.v1.ClientService/ListSessions",
        ),
        (
            "Revoke the demo session",
            &d.test_key,
            format!("{{\"client_id\":\"{c}\",\"session_id\":\"{s}\"}}"),
            "authd.v1.ClientService/RevokeSession",
        ),
        (
            "Log the demo client out everywhere",
            &d.test_key,
            format!("{{\"client_id\":\"{c}\"}}"),
            "authd.v1.ClientService/RevokeAllSessions",
        ),
        (
            "A test client key (never expires; refused with the production key)",
            &d.test_key,
            "{}".to_string(),
            "authd.v1.ClientService/CreateTestClient",
        ),
        (
            "Operator: list the tenant's API keys",
            &d.operator_token,
            format!("{{\"tenant_id\":\"{}\"}}", d.tenant_id),
            "authd.v1.AdminService/ListApiKeys",
        ),
        (
            "Operator: the audit trail",
            &d.operator_token,
            format!("{{\"tenant_id\":\"{}\"}}", d.tenant_id),
            "authd.v1.AdminService/ListAuditEvents",
        ),
        (
            "Delete the demo client with all its credentials",
            &d.test_key,
            format!("{{\"client_id\":\"{c}\"}}"),
            "authd.v1.ClientService/DeleteClient",
        ),
    ];
    for (what, token, body, method) in &steps {
        let _ = writeln!(o, "# {what}:\n{}\n", g(token, body, method));
    }
    let (_, token, body, method) = &steps[0];
    let _ = writeln!(o, "# The same with buf curl:\n{}", b(token, body, method));
    o
}

/// The banner's HTTP/JSON part (`dev --http-listen`): the Portal flow as
/// pasteable curl commands, and the console's address when it is on.
pub fn http_banner(d: &DevSetup, http: SocketAddr, console: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# HTTP/JSON on {http} (README \"HTTP/JSON\"):");
    let (k, c) = (&d.test_key, d.client_id);
    let lines = [
        format!(
            "curl -sS -X POST http://{http}/v1/clients -H 'Authorization: Bearer {k}' -d '{{\"labels\": {{\"plan\": \"free\"}}}}'"
        ),
        format!("curl -sS -X POST http://{http}/v1/clients/{c}/sessions -H 'Authorization: Bearer {k}'"),
        format!("curl -sS http://{http}/v1/session -H 'Authorization: Bearer {}'", d.session_token),
        format!("curl -sS http://{http}/v1/clients/{c}/sessions -H 'Authorization: Bearer {k}'"),
        format!("curl -sS http://{http}/v1/tenants -H 'Authorization: Bearer {}'", d.operator_token),
    ];
    for l in lines {
        let _ = writeln!(o, "{l}");
    }
    if console {
        let _ = writeln!(o, "\n# Operator console (sign in with the operator key above): http://{http}/console/");
    }
    o
}
