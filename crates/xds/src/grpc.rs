//! The `AggregatedDiscoveryService` as a hand-written tonic service: tonic's transport and router,
//! wayguard's own gRPC message framing.
//!
//! Why not the server envoy-types generates: ADS streams live as long as the proxy, and what a
//! connected proxy costs is most of what a control plane holds. tonic's codec keeps, for the whole
//! life of a stream, a decode buffer as large as the largest request it has read and an encode
//! buffer as large as the largest response it has written. Envoy's first request carries its node
//! with every compiled-in extension (about 60 KB for Envoy 1.40), and the initial CDS/LDS
//! responses of a large gateway are the largest messages the stream ever carries, so each stream
//! would pin both for good (measured in the scale benchmark with Envoy-sized nodes: 132 KiB per
//! stream with the generated server, 34 KiB with this module, docs/benchmarks.md). Here a request
//! is decoded from a buffer released once a large message is decoded, and every response is
//! encoded into its own exactly sized buffer that the transport frees once written. The framing is the gRPC length-prefixed message (1-byte compressed flag, 4-byte
//! big-endian length, message); compression is not offered, so a compressed request is refused.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http_body::{Body as _, Frame};
use prost::Message;
use tonic::{
    Status,
    codegen::{BoxFuture, BoxStream, Bytes, Service, http},
    metadata::GRPC_CONTENT_TYPE,
    server::NamedService,
    transport::server::TcpConnectInfo,
};

use crate::{AdsService, DeltaConnection, SotwConnection, server::Protocol};

/// The gRPC service name Envoy calls (`envoy.service.discovery.v3.AggregatedDiscoveryService`).
pub const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Bytes of the gRPC message prefix: compressed flag and big-endian length.
const PREFIX: usize = 5;

/// A request buffer at most this large is kept for the next request once empty; a larger one
/// (Envoy's first request) is released.
const RETAINED_REQUEST_BUFFER: usize = 1024;

/// The tonic service for both ADS methods; mount it with `Server::add_service`.
#[derive(Clone, Debug)]
pub struct AdsServer {
    service: AdsService,
    max_message_size: usize,
}

impl AdsServer {
    pub(crate) fn new(service: AdsService, max_message_size: usize) -> Self {
        Self {
            service,
            max_message_size,
        }
    }

    fn stream<P: Protocol>(
        &self,
        request: http::Request<tonic::body::Body>,
    ) -> BoxFuture<http::Response<tonic::body::Body>, Infallible> {
        let service = self.service.clone();
        let limit = self.max_message_size;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let remote = parts
                .extensions
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr);
            let requests = Requests::new(body, limit);
            Ok(match service.start::<P>(remote, requests).await {
                Ok(responses) => {
                    let mut response = http::Response::new(tonic::body::Body::new(ResponseBody {
                        responses,
                        limit,
                        done: false,
                    }));
                    response
                        .headers_mut()
                        .insert(http::header::CONTENT_TYPE, GRPC_CONTENT_TYPE);
                    response
                }
                Err(status) => status.into_http(),
            })
        })
    }
}

impl NamedService for AdsServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<tonic::body::Body>> for AdsServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        match request.uri().path() {
            SOTW_PATH => self.stream::<SotwConnection>(request),
            DELTA_PATH => self.stream::<DeltaConnection>(request),
            path => {
                let status = Status::unimplemented(format!(
                    "{path}: {SERVICE_NAME} serves StreamAggregatedResources and DeltaAggregatedResources"
                ));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// The request messages of one stream, decoded from its HTTP/2 request body.
pub(crate) struct Requests {
    body: tonic::body::Body,
    /// Bytes received and not yet decoded (the start of the next message).
    buf: Vec<u8>,
    limit: usize,
    end: bool,
}

impl Requests {
    fn new(body: tonic::body::Body, limit: usize) -> Self {
        Self {
            body,
            buf: Vec::new(),
            limit,
            end: false,
        }
    }

    /// The next message; `Ok(None)` when the client closed its side of the stream. An error is a
    /// reset or broken connection (the transport's status) or a malformed message.
    pub(crate) async fn message<M: Message + Default>(&mut self) -> Result<Option<M>, Status> {
        loop {
            if let Some(message) = self.decode()? {
                return Ok(Some(message));
            }
            if self.end {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Status::internal(format!(
                        "the request stream ended inside a message ({} bytes of it received)",
                        self.buf.len()
                    )))
                };
            }
            let frame = std::future::poll_fn(|cx| Pin::new(&mut self.body).poll_frame(cx)).await;
            match frame {
                Some(Ok(frame)) => {
                    // Trailers carry nothing for a request stream.
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(status)) => return Err(status),
                None => self.end = true,
            }
        }
    }

    /// Decodes the buffered message if it is complete.
    fn decode<M: Message + Default>(&mut self) -> Result<Option<M>, Status> {
        let Some(prefix) = self.buf.first_chunk::<PREFIX>() else {
            return Ok(None);
        };
        match prefix[0] {
            0 => {}
            1 => {
                return Err(Status::unimplemented(
                    "compressed request messages are not supported (the server accepts no grpc-encoding)",
                ));
            }
            flag => {
                return Err(Status::internal(format!(
                    "invalid gRPC compressed flag {flag} in a request message prefix"
                )));
            }
        }
        let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if length > self.limit {
            return Err(Status::out_of_range(format!(
                "request message of {length} bytes is larger than the limit of {} bytes",
                self.limit
            )));
        }
        // No reservation for the announced length: memory follows the bytes that arrived, so a
        // prefix announcing a huge message costs nothing until its bytes come.
        let Some(bytes) = self.buf.get(PREFIX..PREFIX + length) else {
            return Ok(None);
        };
        let message = M::decode(bytes)
            .map_err(|error| Status::internal(format!("decoding a request message: {error}")))?;
        self.buf.drain(..PREFIX + length);
        if self.buf.is_empty() && self.buf.capacity() > RETAINED_REQUEST_BUFFER {
            self.buf = Vec::new();
        }
        Ok(Some(message))
    }
}

/// The response body: every message encoded into its own buffer, then the status trailers.
struct ResponseBody<M> {
    responses: BoxStream<M>,
    limit: usize,
    done: bool,
}

impl<M: Message> http_body::Body for ResponseBody<M> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let status = match ready!(self.responses.as_mut().poll_next(cx)) {
            Some(Ok(message)) => match encode(&message, self.limit) {
                Ok(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Err(status) => status,
            },
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        self.done = true;
        let mut trailers = http::HeaderMap::new();
        if let Err(status) = status.add_header(&mut trailers) {
            tracing::warn!(error = %status, "could not write the status trailers");
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// One length-prefixed gRPC message in an exactly sized buffer.
fn encode<M: Message>(message: &M, limit: usize) -> Result<Bytes, Status> {
    let length = message.encoded_len();
    if length > limit {
        return Err(Status::resource_exhausted(format!(
            "response message of {length} bytes is larger than the limit of {limit} bytes"
        )));
    }
    let prefix = u32::try_from(length).map_err(|_| {
        Status::resource_exhausted(format!(
            "response message of {length} bytes does not fit a gRPC message"
        ))
    })?;
    let mut buf = Vec::with_capacity(PREFIX + length);
    buf.push(0);
    buf.extend_from_slice(&prefix.to_be_bytes());
    message
        .encode(&mut buf)
        .map_err(|error| Status::internal(format!("encoding a response message: {error}")))?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
#[path = "grpc_tests.rs"]
mod tests;
