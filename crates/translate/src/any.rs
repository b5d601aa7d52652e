//! Packing messages into `google.protobuf.Any`.

use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

/// Packs a message with its `type.googleapis.com/...` URL.
pub fn to_any<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}
