//! authd's parameters of the one status table (`cred_serve::status`): its
//! ErrorInfo domain, and no precise cause for anyone (tenant backends get
//! no oracle; it goes to the debug log).

use cred_core::Error;
use cred_serve::status::Edge;
use tonic::Status;

/// How authd answers.
pub const EDGE: Edge = Edge { domain: "authd", tells_cause: false, attempts: "authentications" };

/// Maps a domain error to the status the caller sees.
pub fn to_status(e: Error) -> Status {
    EDGE.status(e)
}
