//! Canonical encoding of `Any` payloads nested inside resources.
//!
//! `PartialEq` on a typed message is order-insensitive for its own `HashMap` fields, but nested
//! `Any`s (a `JwtAuthentication` inside an `HttpConnectionManager` inside a `Listener`) are bytes,
//! and prost writes map entries in `HashMap` iteration order, which is random. Two equal configs
//! would compare unequal and be pushed again on every `set`.
//!
//! [`normalize`] rewrites every nested `Any` payload into a canonical form: map entries sorted by
//! key, bottom-up through `Any`s within `Any`s. The wire format cannot tell a map from a repeated
//! field, so every reordering is *verified*: it is kept only if decoding the payload with its
//! typed message (looked up by type URL) gives a value `==` to the original. Order-significant
//! repeated fields therefore never move, payloads of unknown types are left as they are (at worst
//! an equal config is pushed again), and nothing outside nested `Any`s is touched.

use std::{collections::HashMap, sync::OnceLock};

use parking_lot::RwLock;

use crate::XdsMessage;

/// Decodes two payloads as one message type and compares them (`None` if either fails to decode).
type EqFn = fn(&[u8], &[u8]) -> Option<bool>;

const TYPE_URL_PREFIX: &[u8] = b"type.googleapis.com/";
const MAX_DEPTH: usize = 64;

fn typed_eq<T: XdsMessage>(a: &[u8], b: &[u8]) -> Option<bool> {
    Some(T::decode(a).ok()? == T::decode(b).ok()?)
}

fn registry() -> &'static RwLock<HashMap<String, EqFn>> {
    static REGISTRY: OnceLock<RwLock<HashMap<String, EqFn>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        use envoy_types::pb::{
            envoy::{
                config::{
                    cluster::v3::Cluster, core::v3::TypedExtensionConfig, endpoint::v3::ClusterLoadAssignment,
                    listener::v3::Listener, route::v3::RouteConfiguration,
                },
                extensions::{
                    filters::{
                        http::{
                            cors::v3 as cors, ext_authz::v3 as ext_authz, ext_proc::v3 as ext_proc,
                            header_to_metadata::v3 as header_to_metadata, jwt_authn::v3 as jwt_authn, lua::v3 as lua,
                            oauth2::v3 as oauth2, rbac::v3 as rbac, router::v3 as router, set_metadata::v3 as set_metadata,
                        },
                        listener::tls_inspector::v3 as tls_inspector,
                        network::{http_connection_manager::v3 as hcm, tcp_proxy::v3 as tcp_proxy},
                    },
                    transport_sockets::tls::v3 as tls,
                    upstreams::http::v3 as upstreams_http,
                },
            },
            google::protobuf::Struct,
        };
        let mut map: HashMap<String, EqFn> = HashMap::new();
        macro_rules! add {
            ($($t:ty),* $(,)?) => { $( map.insert(<$t as prost::Name>::type_url(), typed_eq::<$t>); )* };
        }
        add!(
            jwt_authn::JwtAuthentication,
            jwt_authn::PerRouteConfig,
            rbac::Rbac,
            rbac::RbacPerRoute,
            ext_authz::ExtAuthz,
            ext_authz::ExtAuthzPerRoute,
            hcm::HttpConnectionManager,
            router::Router,
            tls::UpstreamTlsContext,
            tls::DownstreamTlsContext,
            tls::Secret,
            upstreams_http::HttpProtocolOptions,
            tcp_proxy::TcpProxy,
            set_metadata::Config,
            header_to_metadata::Config,
            cors::Cors,
            cors::CorsPolicy,
            lua::Lua,
            lua::LuaPerRoute,
            oauth2::OAuth2,
            ext_proc::ExternalProcessor,
            ext_proc::ExtProcPerRoute,
            tls_inspector::TlsInspector,
            Struct,
            Listener,
            RouteConfiguration,
            Cluster,
            ClusterLoadAssignment,
            TypedExtensionConfig,
        );
        RwLock::new(map)
    })
}

/// Teaches [`normalize`] a message type that wayguard packs into `Any`s (the common Envoy
/// filters, TLS contexts and `Struct` are known already). Unknown payloads are left as encoded.
pub fn register_any_type<T: XdsMessage>() {
    registry().write().insert(T::type_url(), typed_eq::<T>);
}

/// Returns `message` with every nested `Any` payload canonical, and its encoding when that was
/// computed anyway (so the caller need not encode again).
pub(crate) fn normalize<T: XdsMessage>(message: T) -> (T, Vec<u8>) {
    let bytes = message.encode_to_vec();
    let Some(mut fields) = parse(&bytes, 0) else {
        return (message, bytes);
    };
    if !canonicalize_anys(&mut fields, 0) {
        return (message, bytes);
    }
    let canonical = write(&fields);
    match T::decode(canonical.as_slice()) {
        Ok(normalized) => (normalized, canonical),
        Err(_) => (message, bytes),
    }
}

/// One decoded wire-format field.
#[derive(Clone, Debug)]
struct Field<'a> {
    number: u64,
    value: Value<'a>,
}

#[derive(Clone, Debug)]
enum Value<'a> {
    Varint(u64),
    Fixed64(&'a [u8]),
    Fixed32(&'a [u8]),
    /// Length-delimited; `message` is set when the payload also parses as a message, `dirty`
    /// once something inside it was rewritten (then it is written from `message`, not `raw`).
    Bytes {
        raw: &'a [u8],
        message: Option<Vec<Field<'a>>>,
        dirty: bool,
    },
}

fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            // Only minimal encodings, so that parse -> write is byte-exact.
            return (shift == 0 || byte != 0).then_some(value);
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Parses `buf` as a message; `None` if it is not one (then it is a string or bytes).
fn parse(mut buf: &[u8], depth: usize) -> Option<Vec<Field<'_>>> {
    let mut fields = Vec::new();
    while !buf.is_empty() {
        let key = read_varint(&mut buf)?;
        let number = key >> 3;
        if number == 0 || number > 536_870_911 {
            return None;
        }
        let value = match key & 7 {
            0 => Value::Varint(read_varint(&mut buf)?),
            1 => {
                let (v, rest) = buf.split_at_checked(8)?;
                buf = rest;
                Value::Fixed64(v)
            }
            2 => {
                let len = usize::try_from(read_varint(&mut buf)?).ok()?;
                let (v, rest) = buf.split_at_checked(len)?;
                buf = rest;
                let message = if depth < MAX_DEPTH && !v.is_empty() {
                    parse(v, depth + 1)
                } else {
                    None
                };
                Value::Bytes {
                    raw: v,
                    message,
                    dirty: false,
                }
            }
            5 => {
                let (v, rest) = buf.split_at_checked(4)?;
                buf = rest;
                Value::Fixed32(v)
            }
            _ => return None,
        };
        fields.push(Field { number, value });
    }
    Some(fields)
}

fn write(fields: &[Field<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    write_into(&mut out, fields);
    out
}

fn write_into(out: &mut Vec<u8>, fields: &[Field<'_>]) {
    for field in fields {
        let wire = match field.value {
            Value::Varint(_) => 0,
            Value::Fixed64(_) => 1,
            Value::Bytes { .. } => 2,
            Value::Fixed32(_) => 5,
        };
        write_varint(out, (field.number << 3) | wire);
        match &field.value {
            Value::Varint(v) => write_varint(out, *v),
            Value::Fixed64(v) | Value::Fixed32(v) => out.extend_from_slice(v),
            Value::Bytes {
                message: Some(inner),
                dirty: true,
                ..
            } => {
                let bytes = write(inner);
                write_varint(out, bytes.len() as u64);
                out.extend_from_slice(&bytes);
            }
            Value::Bytes { raw, .. } => {
                write_varint(out, raw.len() as u64);
                out.extend_from_slice(raw);
            }
        }
    }
}

/// If `fields` is an `Any` (`type_url` = 1, `value` = 2), its type URL.
fn any_type_url<'f>(fields: &'f [Field<'_>]) -> Option<&'f [u8]> {
    let mut type_url = None;
    for field in fields {
        match (field.number, &field.value) {
            (1, Value::Bytes { raw, .. })
                if type_url.is_none() && raw.starts_with(TYPE_URL_PREFIX) =>
            {
                type_url = Some(&raw[..]);
            }
            (2, Value::Bytes { .. }) => {}
            _ => return None,
        }
    }
    type_url
}

/// Canonicalizes every `Any` payload reachable in `fields`; true if any bytes changed.
fn canonicalize_anys(fields: &mut [Field<'_>], depth: usize) -> bool {
    let is_any = any_type_url(fields).map(|t| String::from_utf8_lossy(t).into_owned());
    let mut changed = false;
    for field in fields.iter_mut() {
        let Value::Bytes {
            message: Some(inner),
            dirty,
            ..
        } = &mut field.value
        else {
            continue;
        };
        let mut inner_changed = depth < MAX_DEPTH && canonicalize_anys(inner, depth + 1);
        if field.number == 2
            && let Some(type_url) = &is_any
        {
            inner_changed |= sort_map_runs(type_url, inner);
        }
        *dirty |= inner_changed;
        changed |= inner_changed;
    }
    changed
}

/// Key of a map entry (`key` = 1, `value` = 2, key first), or `None` if `value` is not one.
fn map_entry_key(value: &Value<'_>) -> Option<Vec<u8>> {
    let Value::Bytes {
        message: Some(entry),
        ..
    } = value
    else {
        return None;
    };
    if !entry.iter().all(|f| f.number == 1 || f.number == 2) {
        return None;
    }
    match entry.as_slice() {
        [] => Some(Vec::new()),
        [key] | [key, _] if key.number == 1 => match &key.value {
            Value::Bytes { raw, .. } => Some(raw.to_vec()),
            Value::Fixed32(v) | Value::Fixed64(v) => Some(v.to_vec()),
            Value::Varint(v) => Some(v.to_be_bytes().to_vec()),
        },
        [value] if value.number == 2 => Some(Vec::new()),
        _ => None,
    }
}

/// A run of map-entry-shaped fields somewhere inside an `Any` payload.
struct Candidate {
    /// Field indexes from the payload root to the message holding the run.
    at: Vec<usize>,
    start: usize,
    end: usize,
    /// Field numbers from the payload root to the run: identifies the schema field.
    numbers: Vec<u64>,
}

/// What verification taught us about a schema field: `true` = a map (order-insensitive),
/// `false` = order-significant (or not a field at all). Keyed by type URL and field-number path.
type Learned = HashMap<(String, Vec<u64>), bool>;
const MAX_LEARNED: usize = 10_000;

fn learned() -> &'static RwLock<Learned> {
    static LEARNED: OnceLock<RwLock<Learned>> = OnceLock::new();
    LEARNED.get_or_init(|| RwLock::new(HashMap::new()))
}

/// Collects runs of two or more same-numbered, map-entry-shaped fields, children before parents
/// (so sorting a run never moves a candidate collected later). Nested `Any`s are skipped: they
/// were canonicalized with their own type.
fn collect(
    fields: &[Field<'_>],
    at: &mut Vec<usize>,
    numbers: &mut Vec<u64>,
    out: &mut Vec<Candidate>,
) {
    for (i, field) in fields.iter().enumerate() {
        if let Value::Bytes {
            message: Some(inner),
            ..
        } = &field.value
            && any_type_url(inner).is_none()
            && at.len() < MAX_DEPTH
        {
            at.push(i);
            numbers.push(field.number);
            collect(inner, at, numbers, out);
            numbers.pop();
            at.pop();
        }
    }
    let mut start = 0;
    while start < fields.len() {
        let number = fields[start].number;
        let end = fields[start..]
            .iter()
            .position(|f| f.number != number)
            .map_or(fields.len(), |n| start + n);
        if end - start >= 2
            && fields[start..end]
                .iter()
                .all(|f| map_entry_key(&f.value).is_some())
        {
            let mut numbers = numbers.clone();
            numbers.push(number);
            out.push(Candidate {
                at: at.clone(),
                start,
                end,
                numbers,
            });
        }
        start = end;
    }
}

fn node_mut<'f, 'a>(
    mut fields: &'f mut Vec<Field<'a>>,
    at: &[usize],
) -> Option<&'f mut Vec<Field<'a>>> {
    for i in at {
        match &mut fields.get_mut(*i)?.value {
            Value::Bytes {
                message: Some(inner),
                dirty,
                ..
            } => {
                // Everything on the way to a rewritten run is written from the tree.
                *dirty = true;
                fields = inner;
            }
            _ => return None,
        }
    }
    Some(fields)
}

/// Sorts, anywhere inside the payload of an `Any` of `type_url`, every run of map-entry-shaped
/// fields by key. A reordering is kept only if the typed decode stays `==` to the original
/// (learned once per schema field). True if anything moved.
fn sort_map_runs(type_url: &str, payload: &mut Vec<Field<'_>>) -> bool {
    let Some(eq) = registry().read().get(type_url).copied() else {
        return false;
    };
    let mut candidates = Vec::new();
    collect(payload, &mut Vec::new(), &mut Vec::new(), &mut candidates);
    if candidates.is_empty() {
        return false;
    }
    let original = write(payload);
    let mut changed = false;
    for candidate in candidates {
        let key = (type_url.to_owned(), candidate.numbers);
        let known = learned().read().get(&key).copied();
        if known == Some(false) {
            continue;
        }
        let Some(node) = node_mut(payload, &candidate.at) else {
            continue;
        };
        let run = &mut node[candidate.start..candidate.end];
        let Some(order) = sort_run(run) else {
            continue;
        };
        if known == Some(true) {
            changed = true;
            continue;
        }
        let is_map = eq(&original, &write(payload)) == Some(true);
        let mut learned = learned().write();
        if learned.len() < MAX_LEARNED {
            learned.insert(key, is_map);
        }
        drop(learned);
        if is_map {
            changed = true;
        } else if let Some(node) = node_mut(payload, &candidate.at) {
            unsort_run(&mut node[candidate.start..candidate.end], &order);
        }
    }
    changed
}

/// Sorts `run` by map key; returns the permutation applied (`run[i]` came from `order[i]`), or
/// `None` if nothing moved (already sorted, or duplicate keys, which a map cannot have).
fn sort_run(run: &mut [Field<'_>]) -> Option<Vec<usize>> {
    let keys = run
        .iter()
        .map(|f| map_entry_key(&f.value))
        .collect::<Option<Vec<_>>>()?;
    let mut order: Vec<usize> = (0..run.len()).collect();
    order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
    if order.windows(2).any(|w| keys[w[0]] == keys[w[1]])
        || order.iter().enumerate().all(|(i, o)| i == *o)
    {
        return None;
    }
    permute(run, |to| order[to]);
    Some(order)
}

/// Undoes [`sort_run`].
fn unsort_run(run: &mut [Field<'_>], order: &[usize]) {
    let mut inverse = vec![0; order.len()];
    for (to, from) in order.iter().enumerate() {
        inverse[*from] = to;
    }
    permute(run, |to| inverse[to]);
}

/// Rearranges `run` so that position `i` holds the field that was at `from(i)`, by moves.
fn permute(run: &mut [Field<'_>], from: impl Fn(usize) -> usize) {
    let placeholder = || Field {
        number: 0,
        value: Value::Varint(0),
    };
    let mut taken: Vec<Field<'_>> = run
        .iter_mut()
        .map(|f| std::mem::replace(f, placeholder()))
        .collect();
    for (i, slot) in run.iter_mut().enumerate() {
        *slot = std::mem::replace(&mut taken[from(i)], placeholder());
    }
}

#[cfg(test)]
#[path = "canonical_tests.rs"]
pub(crate) mod tests;
