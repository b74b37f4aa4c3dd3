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

/// The shell variables the banner exports, so its commands say
/// `$CREDD_TEST_KEY` instead of repeating 100-character keys.
pub const VARS: [&str; 4] = ["CREDD_OPERATOR_KEY", "CREDD_TEST_KEY", "CREDD_LIVE_KEY", "CREDD_SESSION_TOKEN"];

/// The banner: the ids, the secrets as `export` lines to paste into a
/// shell, and pasteable grpcurl / buf curl commands using them, for authd
/// on `addr` and introspect on `introspect` (both over the same store).
pub fn banner(d: &DevSetup, addr: SocketAddr, introspect: SocketAddr, store: &str) -> String {
    let [op, test, live, cst] = VARS;
    let g = |var: &str, body: &str, method: &str| {
        format!("grpcurl -plaintext -H \"authorization: Bearer ${var}\" -d '{body}' {addr} {method}")
    };
    let b = |var: &str, body: &str, method: &str| {
        format!(
            "buf curl --protocol grpc --http2-prior-knowledge -H \"authorization: Bearer ${var}\" -d '{body}' http://{addr}/{method}"
        )
    };
    let (c, s) = (d.client_id, d.session_id);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "authd dev mode: listening on {addr}, introspect on {introspect}, store: {store}. Nothing here is secret; do not use it in production.\n"
    );
    let _ = writeln!(o, "operator key id:      {}", d.operator_key_id);
    let _ = writeln!(o, "tenant id:            {}", d.tenant_id);
    let _ = writeln!(o, "demo client id:       {c}");
    let _ = writeln!(o, "demo session id:      {s}\n");
    let _ = writeln!(o, "# Paste into your shell; the commands below use these:");
    for (var, value) in
        [op, test, live, cst].iter().zip([&d.operator_token, &d.test_key, &d.live_key, &d.session_token])
    {
        let _ = writeln!(o, "export {var}={value}");
    }
    let _ = writeln!(o, "\n# List the services (server reflection):\ngrpcurl -plaintext {addr} list\n");
    let _ = writeln!(
        o,
        "# Verify the demo session token, as every service of the platform does per request (introspect):\n\
         grpcurl -plaintext -d \"{{\\\"token\\\": \\\"${cst}\\\"}}\" {introspect} introspect.v1.IntrospectService/Verify\n"
    );
    let steps = [
        (
            "Register a new end user; the answer holds its first session token",
            test,
            "{\"labels\":{\"plan\":\"free\"}}".to_string(),
            "authd.v1.ClientService/CreateClient",
        ),
        (
            "Subsequent login: a new session token for the demo client",
            test,
            format!("{{\"client_id\":\"{c}\"}}"),
            "authd.v1.ClientService/CreateSession",
        ),
        (
            "Use the session token (slides its idle expiry)",
            cst,
            "{}".to_string(),
            "authd.v1.SessionService/GetCurrentSession",
        ),
        (
            "List the demo client's sessions",
            test,
            format!("{{\"client_id\":\"{c}\"}}"),
            "authd.v1.ClientService/ListSessions",
        ),
        (
            "Revoke the demo session (the Verify above now fails)",
            test,
            format!("{{\"client_id\":\"{c}\",\"session_id\":\"{s}\"}}"),
            "authd.v1.ClientService/RevokeSession",
        ),
        (
            "Log the demo client out everywhere",
            test,
            format!("{{\"client_id\":\"{c}\"}}"),
            "authd.v1.ClientService/RevokeAllSessions",
        ),
        (
            "A test client key (never expires; refused with the production key)",
            test,
            "{}".to_string(),
            "authd.v1.ClientService/CreateTestClient",
        ),
        (
            "Operator: list the tenant's API keys",
            op,
            format!("{{\"tenant_id\":\"{}\"}}", d.tenant_id),
            "authd.v1.AdminService/ListApiKeys",
        ),
        (
            "Operator: the audit trail",
            op,
            format!("{{\"tenant_id\":\"{}\"}}", d.tenant_id),
            "authd.v1.AdminService/ListAuditEvents",
        ),
        (
            "Delete the demo client with all its credentials",
            test,
            format!("{{\"client_id\":\"{c}\"}}"),
            "authd.v1.ClientService/DeleteClient",
        ),
    ];
    for (what, var, body, method) in &steps {
        let _ = writeln!(o, "# {what}:\n{}\n", g(var, body, method));
    }
    let (_, var, body, method) = &steps[0];
    let _ = writeln!(o, "# The same with buf curl:\n{}", b(var, body, method));
    o
}

/// The banner's HTTP/JSON part (`dev --http-listen`): the Portal flow as
/// pasteable curl commands, and the console's address when it is on.
pub fn http_banner(d: &DevSetup, http: SocketAddr, console: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# HTTP/JSON on {http} (README \"HTTP/JSON\"):");
    let [op, k, _, cst] = VARS;
    let c = d.client_id;
    let lines = [
        format!(
            "curl -sS -X POST http://{http}/v1/clients -H \"Authorization: Bearer ${k}\" -d '{{\"labels\": {{\"plan\": \"free\"}}}}'"
        ),
        format!("curl -sS -X POST http://{http}/v1/clients/{c}/sessions -H \"Authorization: Bearer ${k}\""),
        format!("curl -sS http://{http}/v1/session -H \"Authorization: Bearer ${cst}\""),
        format!("curl -sS http://{http}/v1/clients/{c}/sessions -H \"Authorization: Bearer ${k}\""),
        format!("curl -sS http://{http}/v1/tenants -H \"Authorization: Bearer ${op}\""),
        format!(
            "curl -sS \"http://{http}/v1/tenants/{}/clients?pageSize=10\" -H \"Authorization: Bearer ${op}\"",
            d.tenant_id
        ),
    ];
    for l in lines {
        let _ = writeln!(o, "{l}");
    }
    if console {
        let _ = writeln!(o, "\n# Operator console (sign in with the operator key, ${op}): http://{http}/console/");
    }
    o
}
