//! An axum service behind `credd-client`. `/whoami` needs a verified
//! credential (the `Identity` extractor); `/hello` takes anyone
//! (`Option<Identity>`) when the layer is optional.
//!
//! ```sh
//! introspect serve --redis-url redis://127.0.0.1:6379 --listen 127.0.0.1:50052 &
//! cargo run -p credd-client --features axum --example axum_service -- http://127.0.0.1:50052 127.0.0.1:8080
//! curl -i -H "authorization: Bearer cst_test_..." http://127.0.0.1:8080/whoami
//! ```

use axum::routing::get;
use axum::{Json, Router};
use credd_client::{Environment, Identity, IntrospectLayer};
use serde_json::{Value, json};

/// The routes, without the layer (the tests put a probe between the two).
pub fn routes() -> Router {
    Router::new().route("/whoami", get(whoami)).route("/hello", get(hello))
}

/// The service: every route behind the layer. `Router::route_layer` puts a
/// layer on some routes only (another `IntrospectLayer` with other scopes,
/// say).
pub fn app(layer: IntrospectLayer) -> Router {
    routes().layer(layer)
}

async fn whoami(id: Identity) -> Json<Value> {
    Json(json!({
        "tenant_id": id.tenant_id.to_string(),
        "kind": id.credential.kind_name(),
        "environment": match id.environment { Environment::Production => "production", Environment::Test => "test" },
        "client_id": id.client_id().map(|u| u.to_string()),
        "session_id": id.session_id().map(|u| u.to_string()),
        "key_id": id.key_id().map(|u| u.to_string()),
        "scopes": id.scopes,
        "labels": id.labels,
    }))
}

async fn hello(id: Option<Identity>) -> String {
    match id {
        Some(id) => format!("hello, {}", id.client_id().or(id.key_id()).unwrap_or_default()),
        None => "hello, stranger".to_string(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let introspect = args.next().unwrap_or_else(|| "http://127.0.0.1:50052".into());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let layer = IntrospectLayer::lazy(&introspect)?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(layer)).await?;
    Ok(())
}
