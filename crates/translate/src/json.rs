//! Envoy messages rendered in the proto3 JSON mapping (`@type` on `Any`), with object keys
//! sorted, for goldens, `wayguard config-dump` and `/debug/config_dump`.
//!
//! The descriptors come from the FileDescriptorSet `envoy-types` ships (located by build.rs).

use std::sync::LazyLock;

use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(include_bytes!(env!("ENVOY_TYPES_DESCRIPTOR")).as_slice())
        .map_err(|e| e.to_string())
});

/// Why a message could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The embedded descriptor set did not load.
    #[error("envoy descriptor set: {0}")]
    Descriptors(String),
    /// The message type is not in the descriptor set.
    #[error("unknown message type {0}")]
    UnknownType(String),
    /// The bytes did not decode as that type.
    #[error("decoding {type_name}: {source}")]
    Decode {
        /// Message type.
        type_name: String,
        /// Decoder error.
        source: prost::DecodeError,
    },
    /// Serialization failed.
    #[error("serializing: {0}")]
    Serialize(#[from] serde_json::Error),
}

fn pool() -> Result<&'static DescriptorPool, JsonError> {
    POOL.as_ref().map_err(|e| JsonError::Descriptors(e.clone()))
}

/// Renders encoded bytes of the message `full_name`.
pub fn bytes_to_json(full_name: &str, bytes: &[u8]) -> Result<Value, JsonError> {
    let descriptor = pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownType(full_name.to_string()))?;
    let message =
        DynamicMessage::decode(descriptor, bytes).map_err(|source| JsonError::Decode {
            type_name: full_name.to_string(),
            source,
        })?;
    let options = SerializeOptions::new().stringify_64_bit_integers(false);
    let value = message.serialize_with_options(serde_json::value::Serializer, &options)?;
    Ok(sort_keys(value))
}

/// Renders a message.
pub fn to_json<M: Message + Name>(message: &M) -> Result<Value, JsonError> {
    bytes_to_json(&M::full_name(), &message.encode_to_vec())
}

/// Renders an `Any` (with its `@type`).
pub fn any_to_json(any: &Any) -> Result<Value, JsonError> {
    bytes_to_json(&Any::full_name(), &any.encode_to_vec())
}

/// Sorts object keys recursively (map fields come out in hash order otherwise).
pub fn sort_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}
