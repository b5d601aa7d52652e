//! gRPC framing: requests split and joined across HTTP/2 data frames, limits, malformed input,
//! and the buffers a long-lived stream keeps.

use envoy_types::pb::envoy::{config::core::v3::Node, service::discovery::v3::DiscoveryRequest};
use http_body_util::StreamBody;
use tonic::Code;

use super::*;

fn request(type_url: &str, node_id_len: usize) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.into(),
        node: Some(Node {
            id: "x".repeat(node_id_len),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn framed(message: &DiscoveryRequest) -> Vec<u8> {
    encode(message, usize::MAX).expect("encode").to_vec()
}

/// A request body delivering `chunks` as separate data frames.
fn body(chunks: Vec<Vec<u8>>) -> tonic::body::Body {
    let frames = chunks
        .into_iter()
        .map(|chunk| Ok::<_, Status>(Frame::data(Bytes::from(chunk))));
    tonic::body::Body::new(StreamBody::new(futures::stream::iter(frames)))
}

async fn all(mut requests: Requests) -> (Vec<DiscoveryRequest>, Result<(), Status>) {
    let mut messages = Vec::new();
    loop {
        match requests.message::<DiscoveryRequest>().await {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => return (messages, Ok(())),
            Err(status) => return (messages, Err(status)),
        }
    }
}

#[tokio::test]
async fn messages_split_across_frames_and_joined_in_one_frame_decode() {
    let (a, b, c) = (request("a", 10), request("b", 3000), request("c", 0));
    let mut bytes = framed(&a);
    bytes.extend(framed(&b));
    bytes.extend(framed(&c));
    // Every split point, including inside the 5-byte prefix.
    for split in [1, 3, 5, 7, 40, bytes.len() - 2] {
        let chunks = vec![bytes[..split].to_vec(), bytes[split..].to_vec()];
        let (messages, end) = all(Requests::new(body(chunks), usize::MAX)).await;
        assert!(end.is_ok(), "split {split}: {end:?}");
        assert_eq!(
            messages,
            vec![a.clone(), b.clone(), c.clone()],
            "split {split}"
        );
    }
    // One byte per frame.
    let chunks = bytes.iter().map(|b| vec![*b]).collect();
    let (messages, end) = all(Requests::new(body(chunks), usize::MAX)).await;
    assert!(end.is_ok());
    assert_eq!(messages.len(), 3);
}

#[tokio::test]
async fn a_large_first_request_does_not_pin_its_buffer() {
    // Envoy's first request carries its node (about 60 KB); later ones are small.
    let mut requests = Requests::new(
        body(vec![
            framed(&request("cds", 60_000)),
            framed(&request("lds", 10)),
        ]),
        usize::MAX,
    );
    let first = requests.message::<DiscoveryRequest>().await;
    assert_eq!(first.expect("decodes").expect("message").type_url, "cds");
    assert!(
        requests.buf.capacity() <= RETAINED_REQUEST_BUFFER,
        "kept {} bytes after the first request",
        requests.buf.capacity()
    );
    let second = requests.message::<DiscoveryRequest>().await;
    assert_eq!(second.expect("decodes").expect("message").type_url, "lds");
    assert!(
        requests
            .message::<DiscoveryRequest>()
            .await
            .expect("end")
            .is_none()
    );
}

#[tokio::test]
async fn malformed_requests_are_refused_with_a_status() {
    let good = framed(&request("a", 1));
    let mut compressed = good.clone();
    compressed[0] = 1;
    let mut bad_flag = good.clone();
    bad_flag[0] = 7;
    let truncated = good[..good.len() - 1].to_vec();
    let mut garbage = vec![0, 0, 0, 0, 3];
    garbage.extend([0xff, 0xff, 0xff]);
    let cases: [(&str, Vec<u8>, usize, Code, &str); 5] = [
        (
            "compressed",
            compressed,
            usize::MAX,
            Code::Unimplemented,
            "compressed",
        ),
        (
            "flag",
            bad_flag,
            usize::MAX,
            Code::Internal,
            "compressed flag 7",
        ),
        (
            "truncated",
            truncated,
            usize::MAX,
            Code::Internal,
            "ended inside a message",
        ),
        (
            "limit",
            good.clone(),
            4,
            Code::OutOfRange,
            "limit of 4 bytes",
        ),
        (
            "garbage",
            garbage,
            usize::MAX,
            Code::Internal,
            "decoding a request message",
        ),
    ];
    for (name, bytes, limit, code, needle) in cases {
        let (messages, end) = all(Requests::new(body(vec![bytes]), limit)).await;
        assert!(messages.is_empty(), "{name}");
        let status = end.expect_err(name);
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert!(status.message().contains(needle), "{name}: {status:?}");
    }
}

#[test]
fn responses_are_length_prefixed_and_limited() {
    let message = request("t", 100);
    let bytes = encode(&message, usize::MAX).expect("encode");
    let length = message.encoded_len();
    assert_eq!(bytes.len(), PREFIX + length);
    assert_eq!(bytes[0], 0);
    assert_eq!(
        u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize,
        length
    );
    assert_eq!(
        DiscoveryRequest::decode(&bytes[PREFIX..]).expect("decode"),
        message
    );
    let status = encode(&message, length - 1).expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn an_announced_length_reserves_nothing_before_its_bytes_arrive() {
    // A 5-byte prefix announcing 60 MiB, then the stream ends.
    let mut requests = Requests::new(body(vec![vec![0, 0x03, 0xc0, 0, 0]]), usize::MAX);
    let status = requests
        .message::<DiscoveryRequest>()
        .await
        .expect_err("truncated");
    assert!(
        status.message().contains("ended inside a message"),
        "{status:?}"
    );
    assert!(
        requests.buf.capacity() <= RETAINED_REQUEST_BUFFER,
        "reserved {} bytes for bytes that never came",
        requests.buf.capacity()
    );
}
