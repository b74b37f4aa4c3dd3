//! The `health-check` subcommand both binaries have: one `grpc.health.v1`
//! Check against an address, exit 0 only on SERVING. The image is
//! distroless (no shell, no grpcurl), so the chart's `helm test` pod runs the
//! same image with this instead of a separate health client.

use std::time::Duration;

use clap::Args;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// `health-check`: where to ask, and for which health name.
#[derive(Args, Debug, Clone)]
pub struct HealthCheckArgs {
    /// The server, host:port (a name or an IP address; plaintext gRPC).
    #[arg(long)]
    pub addr: String,
    /// The health name to ask for: "" is the overall status (readiness),
    /// `credd.live` the process, `credd.store` the store.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Longest wait for the connection and the answer together, in
    /// milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub timeout_ms: u64,
}

/// Asks `a.addr` for the status of `a.service`: `Ok` with a line to print on
/// SERVING, else an error naming what was seen (unreachable, timed out,
/// unknown name, NOT_SERVING).
pub async fn health_check(a: &HealthCheckArgs) -> Result<String, String> {
    let name = if a.service.is_empty() { "the overall status (\"\")".to_string() } else { format!("{:?}", a.service) };
    let timeout = Duration::from_millis(a.timeout_ms);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", a.addr))
        .map_err(|e| format!("--addr {}: not host:port ({e})", a.addr))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let ask = async {
        let channel =
            endpoint.connect().await.map_err(|e| format!("{}: cannot connect: {}", a.addr, source_chain(&e)))?;
        HealthClient::new(channel)
            .check(HealthCheckRequest { service: a.service.clone() })
            .await
            .map(|r| r.into_inner().status)
            .map_err(|s| match s.code() {
                tonic::Code::NotFound => {
                    format!("{}: {name} is not a health name this server knows (NOT_FOUND)", a.addr)
                }
                code => format!("{}: health check failed: {code:?}: {}", a.addr, s.message()),
            })
    };
    let status = tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| format!("{}: no answer within {} ms", a.addr, a.timeout_ms))??;
    match ServingStatus::try_from(status) {
        Ok(ServingStatus::Serving) => Ok(format!("{}: {name}: SERVING", a.addr)),
        Ok(s) => Err(format!("{}: {name}: {}", a.addr, s.as_str_name())),
        Err(_) => Err(format!("{}: {name}: unknown status {status}", a.addr)),
    }
}

/// An error with its causes ("transport error: connection refused"): tonic's
/// own Display stops at the first.
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
