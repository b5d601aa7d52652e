//! Rendering of a gateway's snapshot as JSON (proto3 JSON mapping, private keys redacted), shared
//! by `/debug/config_dump` and `wayguard config-dump`.

use serde_json::{Value, json};
use wayguard_translate::json::any_to_json;
use wayguard_xds::Snapshot;

/// Replaces private keys in rendered secrets.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "privateKey" {
                    *v = json!({"inlineString": "[redacted]"});
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Every resource of a snapshot, by type URL, with versions.
pub fn snapshot_json(gateway: &str, snapshot: &Snapshot) -> Value {
    let mut types = serde_json::Map::new();
    for type_url in snapshot.type_urls() {
        let Some(resources) = snapshot.resources(type_url) else {
            continue;
        };
        let mut items = Vec::new();
        for (name, versioned) in resources.resources() {
            let mut config = any_to_json(versioned.resource.as_any())
                .unwrap_or_else(|e| json!({"error": e.to_string()}));
            redact(&mut config);
            items.push(
                json!({"name": name, "version": versioned.version.to_string(), "config": config}),
            );
        }
        types.insert(
            type_url.to_string(),
            json!({"version": resources.version().to_string(), "resources": items}),
        );
    }
    json!({
        "gateway": gateway,
        "version": snapshot.version().to_string(),
        "resources": types,
    })
}
