//! Per-request limits every server applies the same way: request size,
//! header list size, streams per connection, and a per-request timeout.
//!
//! The request size is enforced on the raw gRPC framing, before a byte of
//! the message is buffered: the 5-byte prefix of each message announces its
//! length, and a prefix over the limit ends the request with
//! RESOURCE_EXHAUSTED (naming the limit) at once. tonic's own check
//! (`max_decoding_message_size`) would answer OUT_OF_RANGE, which gRPC
//! reserves for values out of a valid range, and stays as a backstop.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::Frame;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::Request;
use tonic::codegen::{Bytes, Service};
use tonic::server::NamedService;
use tonic::transport::Server;

/// The limits of one server. Defaults suit credential RPCs, whose requests
/// are a few hundred bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request message accepted, in bytes; a larger one is refused
    /// RESOURCE_EXHAUSTED before it is read.
    pub max_request_bytes: usize,
    /// Largest HTTP/2 header list (all metadata of a call), in bytes; hyper
    /// answers a larger one with HTTP 431 on that stream (far larger: GOAWAY
    /// ENHANCE_YOUR_CALM), never buffering it whole.
    pub max_header_list_bytes: u32,
    /// Most calls in flight on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS);
    /// clients queue beyond it, and extra streams are refused (REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// Longest a call may run; past it tonic answers CANCELLED ("Timeout
    /// expired"). A client's shorter `grpc-timeout` wins.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 64 * 1024,
            max_header_list_bytes: 16 * 1024,
            max_concurrent_streams: 256,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a configured limit is refused at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct LimitError {
    /// The flag that is wrong.
    pub setting: &'static str,
    /// What is wrong with it.
    pub message: &'static str,
}

/// tonic's default decoding limit: above it tonic would refuse first.
pub const MAX_REQUEST_BYTES_CEILING: usize = 4 * 1024 * 1024;

impl Limits {
    /// Checks every limit is usable; an error names the flag (the same in
    /// both services).
    pub fn validate(&self) -> Result<(), LimitError> {
        let err = |setting, message| Err(LimitError { setting, message });
        if self.max_request_bytes == 0 || self.max_request_bytes > MAX_REQUEST_BYTES_CEILING {
            return err("--max-request-bytes", "must be between 1 and 4194304");
        }
        if self.max_header_list_bytes < 1024 {
            return err("--max-header-list-bytes", "must be at least 1024");
        }
        if self.max_concurrent_streams == 0 {
            return err("--max-concurrent-streams", "must be positive");
        }
        if self.request_timeout.is_zero() {
            return err("--request-timeout-ms", "must be positive");
        }
        Ok(())
    }

    /// Applies the connection-level limits to a server builder.
    pub fn apply<L>(&self, server: Server<L>) -> Server<L> {
        server
            .http2_max_header_list_size(self.max_header_list_bytes)
            .max_concurrent_streams(self.max_concurrent_streams)
            .timeout(self.request_timeout)
    }

    /// Wraps a generated service so that its requests are held to
    /// [`Limits::max_request_bytes`].
    pub fn service<S>(&self, inner: S) -> SizeLimited<S> {
        SizeLimited { inner, max: self.max_request_bytes }
    }
}

/// A service whose request messages may not exceed a size.
#[derive(Debug, Clone)]
pub struct SizeLimited<S> {
    /// The generated service.
    inner: S,
    /// Largest request message, in bytes.
    max: usize,
}

impl<S: NamedService> NamedService for SizeLimited<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for SizeLimited<S>
where
    S: Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let max = self.max;
        self.inner.call(req.map(|b| Body::new(Framed { inner: b, max, header: [0; 5], seen: 0, left: 0 })))
    }
}

/// A request body read through the gRPC framing (1 flag byte, 4 length
/// bytes, message), failing as soon as a prefix announces too much.
struct Framed {
    /// The request body as it arrives.
    inner: Body,
    /// Largest message, in bytes.
    max: usize,
    /// The prefix being read.
    header: [u8; 5],
    /// How many bytes of `header` arrived.
    seen: usize,
    /// Message bytes still to pass before the next prefix.
    left: u64,
}

impl Framed {
    /// Follows the framing through one data chunk.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.left > 0 {
                let n = (self.left.min(data.len() as u64)) as usize;
                self.left -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.seen).min(data.len());
            self.header[self.seen..self.seen + n].copy_from_slice(&data[..n]);
            self.seen += n;
            data = &data[n..];
            if self.seen == 5 {
                self.seen = 0;
                let len = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]);
                if len as usize > self.max {
                    return Err(Status::resource_exhausted(format!(
                        "request message of {len} bytes exceeds the limit of {} bytes (max request bytes)",
                        self.max
                    )));
                }
                self.left = u64::from(len);
            }
        }
        Ok(())
    }
}

impl http_body::Body for Framed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => f,
            other => return other,
        };
        if let Some(data) = frame.data_ref()
            && let Err(s) = self.scan(data)
        {
            return Poll::Ready(Some(Err(s)));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(max: usize) -> Framed {
        Framed { inner: Body::empty(), max, header: [0; 5], seen: 0, left: 0 }
    }

    fn message(len: u32) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend(std::iter::repeat_n(7u8, len as usize));
        v
    }

    #[test]
    fn follows_the_framing_across_chunks() {
        let mut f = framed(10);
        let mut bytes = message(10);
        bytes.extend(message(3));
        // One byte at a time: prefixes split anywhere.
        for b in &bytes {
            f.scan(std::slice::from_ref(b)).unwrap();
        }
        let mut bytes = message(10);
        bytes.extend(message(11));
        let e = f.scan(&bytes).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("limit of 10 bytes"), "{e:?}");
    }

    #[test]
    fn a_huge_prefix_is_refused_before_its_body() {
        let mut f = framed(64 * 1024);
        let e = f.scan(&[0, 0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    }

    #[test]
    fn validation_names_the_setting() {
        let bad = Limits { max_request_bytes: 0, ..Limits::default() };
        assert_eq!(bad.validate().unwrap_err().setting, "--max-request-bytes");
        assert!(Limits::default().validate().is_ok());
    }
}
