//! A lean load client for unary gRPC calls whose bodies differ per call
//! (h2load sends one body for all): each call is a pre-encoded request on
//! the `h2` crate directly, with no tower stack and no codec, so the load
//! costs about what h2load's does and the server under test gets the
//! machine's share that h2load would leave it. A call succeeds on
//! `grpc-status: 0`.

use std::net::SocketAddr;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderValue, Request};
use tokio::net::TcpStream;

/// Open HTTP/2 connections to one server.
#[derive(Clone)]
pub struct H2Grpc {
    connections: Vec<SendRequest<Bytes>>,
    authority: String,
}

impl H2Grpc {
    /// `connections` HTTP/2 connections (prior knowledge, `TCP_NODELAY`).
    pub async fn connect(addr: SocketAddr, connections: usize) -> Result<H2Grpc, String> {
        let mut open = Vec::with_capacity(connections);
        for _ in 0..connections {
            let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connecting to {addr}: {e}"))?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            let (send, conn) = h2::client::handshake(tcp).await.map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            open.push(send);
        }
        Ok(H2Grpc { connections: open, authority: addr.to_string() })
    }

    /// POSTs `frame` (a gRPC message frame) to `path` on connection `conn`
    /// (modulo their number) with `authorization`, and reads the answer to
    /// its trailers.
    pub async fn call(&self, conn: usize, path: &str, authorization: &HeaderValue, frame: Bytes) -> Result<(), String> {
        let send = self.connections[conn % self.connections.len()].clone();
        let mut send = send.ready().await.map_err(|e| e.to_string())?;
        let req = Request::post(format!("http://{}{path}", self.authority))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", authorization)
            .body(())
            .map_err(|e| e.to_string())?;
        let (answer, mut body) = send.send_request(req, false).map_err(|e| e.to_string())?;
        body.send_data(frame, true).map_err(|e| e.to_string())?;
        let (head, mut stream) = answer.await.map_err(|e| e.to_string())?.into_parts();
        if head.status != http::StatusCode::OK {
            return Err(format!("HTTP {}", head.status));
        }
        // A refusal can come trailers-only, in the headers.
        if let Some(s) = head.headers.get("grpc-status") {
            return status(s);
        }
        while let Some(chunk) = stream.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = stream.flow_control().release_capacity(chunk.len());
        }
        let trailers = stream.trailers().await.map_err(|e| e.to_string())?.ok_or("no trailers")?;
        trailers.get("grpc-status").map_or_else(|| Err("no grpc-status".to_string()), status)
    }
}

fn status(s: &HeaderValue) -> Result<(), String> {
    match s.as_bytes() {
        b"0" => Ok(()),
        other => Err(format!("grpc-status {}", String::from_utf8_lossy(other))),
    }
}
