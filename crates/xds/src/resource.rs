//! Type-erased xDS resources.
//!
//! A [`Resource`] keeps the typed Envoy message (for equality), its name, its type URL and its
//! encoded `Any` form. Equality is typed (`PartialEq` through an `Any` downcast), never on bytes:
//! envoy-types map fields are `HashMap`s, so two equal messages may encode differently.

use std::{any::Any as StdAny, fmt, sync::Arc};

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::Cluster, core::v3::TypedExtensionConfig,
            endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
            route::v3::RouteConfiguration,
        },
        extensions::transport_sockets::tls::v3::Secret,
    },
    google::protobuf::Any,
};

/// Well-known type URLs of the resource types wayguard serves.
pub mod type_url {
    /// `envoy.config.listener.v3.Listener` (LDS).
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    /// `envoy.config.route.v3.RouteConfiguration` (RDS).
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    /// `envoy.config.cluster.v3.Cluster` (CDS).
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    /// `envoy.config.endpoint.v3.ClusterLoadAssignment` (EDS).
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// `envoy.extensions.transport_sockets.tls.v3.Secret` (SDS).
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    /// `envoy.config.core.v3.TypedExtensionConfig` (ECDS).
    pub const EXTENSION_CONFIG: &str =
        "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

    /// Warming order: a type earlier in this list is pushed before a later one when several change
    /// at once. Clusters before their endpoints, secrets and extension configs before the listeners
    /// that need them, listeners before their routes. Unknown types go last, by URL.
    pub const WARMING_ORDER: [&str; 6] =
        [CLUSTER, ENDPOINT, SECRET, EXTENSION_CONFIG, LISTENER, ROUTE];

    /// Rank of `type_url` in [`WARMING_ORDER`] (unknown types rank last).
    pub fn warming_rank(type_url: &str) -> usize {
        WARMING_ORDER
            .iter()
            .position(|t| *t == type_url)
            .unwrap_or(WARMING_ORDER.len())
    }

    /// Whether an empty first request means "everything" (legacy wildcard): only LDS and CDS.
    pub fn is_legacy_wildcard_type(type_url: &str) -> bool {
        type_url == LISTENER || type_url == CLUSTER
    }

    /// A short label for metrics and logs: `lds`, `rds`, `cds`, `eds`, `sds`, `ecds`, or the message
    /// name after the last `.` for other types.
    pub fn short_name(type_url: &str) -> &str {
        match type_url {
            LISTENER => "lds",
            ROUTE => "rds",
            CLUSTER => "cds",
            ENDPOINT => "eds",
            SECRET => "sds",
            EXTENSION_CONFIG => "ecds",
            other => other.rsplit('.').next().unwrap_or(other),
        }
    }
}

/// An Envoy message that can live in a snapshot: any `prost` message with a type name.
///
/// Blanket-implemented; callers never implement it.
pub trait XdsMessage:
    prost::Message + prost::Name + Default + PartialEq + fmt::Debug + Send + Sync + 'static
{
}

impl<T: prost::Message + prost::Name + Default + PartialEq + fmt::Debug + Send + Sync + 'static>
    XdsMessage for T
{
}

/// Envoy messages that carry their own resource name (the name xDS subscriptions use).
pub trait NamedResource: XdsMessage {
    /// The xDS resource name of this message.
    fn resource_name(&self) -> &str;
}

impl NamedResource for Listener {
    fn resource_name(&self) -> &str {
        &self.name
    }
}

impl NamedResource for RouteConfiguration {
    fn resource_name(&self) -> &str {
        &self.name
    }
}

impl NamedResource for Cluster {
    fn resource_name(&self) -> &str {
        &self.name
    }
}

impl NamedResource for ClusterLoadAssignment {
    fn resource_name(&self) -> &str {
        &self.cluster_name
    }
}

impl NamedResource for Secret {
    fn resource_name(&self) -> &str {
        &self.name
    }
}

impl NamedResource for TypedExtensionConfig {
    fn resource_name(&self) -> &str {
        &self.name
    }
}

/// Object-safe view of an [`XdsMessage`].
trait DynMessage: Send + Sync + 'static {
    fn as_any(&self) -> &dyn StdAny;
    fn dyn_eq(&self, other: &dyn DynMessage) -> bool;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl<T: XdsMessage> DynMessage for T {
    fn as_any(&self) -> &dyn StdAny {
        self
    }

    fn dyn_eq(&self, other: &dyn DynMessage) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }

    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One named xDS resource of any Envoy message type.
///
/// The encoded `Any` is computed once, when the resource is built, and shared by every connection
/// through the `Arc<Resource>` a snapshot holds.
pub struct Resource {
    name: String,
    type_url: Arc<str>,
    message: Box<dyn DynMessage>,
    encoded: Any,
}

// === impl Resource ===

impl Resource {
    /// Wraps `message` under an explicit resource `name`.
    ///
    /// Nested `Any` payloads are rewritten into canonical form (see [`register_any_type`]) so
    /// that equal configurations compare equal even though prost encodes maps in random order.
    /// The encoding is computed here and cached.
    ///
    /// [`register_any_type`]: crate::register_any_type
    pub fn new<T: XdsMessage>(name: impl Into<String>, message: T) -> Self {
        let type_url: Arc<str> = T::type_url().into();
        let (message, bytes) = crate::canonical::normalize(message);
        let encoded = Any {
            type_url: type_url.to_string(),
            value: bytes,
        };
        Self {
            name: name.into(),
            type_url,
            message: Box::new(message),
            encoded,
        }
    }

    /// Wraps a message that names itself (Listener, RouteConfiguration, Cluster,
    /// ClusterLoadAssignment, Secret, TypedExtensionConfig).
    pub fn from_named<T: NamedResource>(message: T) -> Self {
        let name = message.resource_name().to_owned();
        Self::new(name, message)
    }

    /// The xDS resource name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The type URL, e.g. [`type_url::LISTENER`].
    pub fn type_url(&self) -> &str {
        &self.type_url
    }

    /// The typed message, if it is a `T`.
    pub fn downcast_ref<T: XdsMessage>(&self) -> Option<&T> {
        self.message.as_any().downcast_ref::<T>()
    }

    /// Typed equality: same type URL, same name and `==` messages. Never compares bytes.
    pub fn same_content(&self, other: &Resource) -> bool {
        self.type_url == other.type_url
            && self.name == other.name
            && self.message.dyn_eq(&*other.message)
    }

    /// The encoded `Any` (cached).
    pub fn as_any(&self) -> &Any {
        &self.encoded
    }

    /// Size of the encoded message in bytes.
    pub fn encoded_len(&self) -> usize {
        self.encoded.value.len()
    }
}

impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        self.same_content(other)
    }
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Msg<'a>(&'a dyn DynMessage);
        impl fmt::Debug for Msg<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.debug(f)
            }
        }
        f.debug_struct("Resource")
            .field("name", &self.name)
            .field("type_url", &self.type_url)
            .field("message", &Msg(&*self.message))
            .finish()
    }
}

impl<T: NamedResource> From<T> for Resource {
    fn from(message: T) -> Self {
        Self::from_named(message)
    }
}

#[cfg(test)]
mod tests {
    use prost::{Message, Name};

    use super::*;

    #[test]
    fn type_url_constants_match_envoy_types() {
        assert_eq!(Listener::type_url(), type_url::LISTENER);
        assert_eq!(RouteConfiguration::type_url(), type_url::ROUTE);
        assert_eq!(Cluster::type_url(), type_url::CLUSTER);
        assert_eq!(ClusterLoadAssignment::type_url(), type_url::ENDPOINT);
        assert_eq!(Secret::type_url(), type_url::SECRET);
        assert_eq!(TypedExtensionConfig::type_url(), type_url::EXTENSION_CONFIG);
    }

    #[test]
    fn equality_is_typed_and_encoding_is_cached() {
        let a = Resource::from(Cluster {
            name: "c".into(),
            ..Default::default()
        });
        let b = Resource::from(Cluster {
            name: "c".into(),
            ..Default::default()
        });
        let listener = Resource::new(
            "c",
            Listener {
                name: "c".into(),
                ..Default::default()
            },
        );
        assert_eq!(a, b);
        assert_ne!(a, listener);
        let any = a.as_any();
        assert_eq!(any.type_url, type_url::CLUSTER);
        assert_eq!(
            Cluster::decode(any.value.as_slice()).ok().as_ref(),
            a.downcast_ref::<Cluster>()
        );
        assert!(a.downcast_ref::<Listener>().is_none());
    }

    #[test]
    fn warming_order_and_short_names() {
        let mut types = vec![
            type_url::ROUTE,
            type_url::LISTENER,
            "type.googleapis.com/x.Y",
            type_url::CLUSTER,
        ];
        types.sort_by_key(|t| type_url::warming_rank(t));
        assert_eq!(
            types,
            [
                type_url::CLUSTER,
                type_url::LISTENER,
                type_url::ROUTE,
                "type.googleapis.com/x.Y"
            ]
        );
        assert_eq!(type_url::short_name(type_url::ENDPOINT), "eds");
        assert_eq!(type_url::short_name("type.googleapis.com/x.Y"), "Y");
    }
}
