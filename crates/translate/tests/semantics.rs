//! Semantic tests of generated RBAC: a small evaluator of the RBAC subset wayguard emits (as
//! Envoy's `rbac/matchers.cc` evaluates it) decides requests, so tests assert decisions, not only
//! shapes. The same decisions are asserted end to end against a real Envoy in the tier-2 tests.

mod common;

use serde_json::{Value, json};

/// A request as RBAC sees it: headers, path, peer principal, JWT payload (absent: no token).
#[derive(Default)]
struct Request {
    method: &'static str,
    path: &'static str,
    principal: Option<&'static str>,
    jwt: Option<Value>,
}

fn string_match(m: &Value, s: &str) -> bool {
    let ic = m["ignoreCase"].as_bool().unwrap_or(false);
    let fold = |x: &str| if ic { x.to_lowercase() } else { x.to_string() };
    let (s, cmp) = (fold(s), fold);
    if let Some(e) = m["exact"].as_str() {
        s == cmp(e)
    } else if let Some(p) = m["prefix"].as_str() {
        s.starts_with(&cmp(p))
    } else if let Some(p) = m["suffix"].as_str() {
        s.ends_with(&cmp(p))
    } else if let Some(r) = m["safeRegex"]["regex"].as_str() {
        regex_full(r, &s)
    } else {
        panic!("unsupported string matcher {m}")
    }
}

fn regex_full(r: &str, s: &str) -> bool {
    // RE2 full match; the only regexes used here are `.+` and anchored literals with `.*`.
    let r = format!("^(?:{r})$");
    regex_lite(&r, s)
}

fn regex_lite(r: &str, s: &str) -> bool {
    // Minimal: translate to a glob-like check for the patterns wayguard emits in these tests.
    if r == "^(?:.+)$" {
        return !s.is_empty();
    }
    panic!("regex {r} not supported by the test evaluator")
}

fn value_match(m: &Value, v: Option<&Value>) -> bool {
    let Some(v) = v else { return false };
    if let Some(sm) = m.get("stringMatch") {
        return v.as_str().is_some_and(|s| string_match(sm, s));
    }
    if let Some(or) = m.get("orMatch") {
        return or["valueMatchers"]
            .as_array()
            .expect("list")
            .iter()
            .any(|x| value_match(x, Some(v)));
    }
    if let Some(list) = m.get("listMatch") {
        return v
            .as_array()
            .is_some_and(|items| items.iter().any(|i| value_match(&list["oneOf"], Some(i))));
    }
    panic!("unsupported value matcher {m}")
}

fn metadata(mm: &Value, req: &Request) -> bool {
    assert_eq!(mm["filter"], "envoy.filters.http.jwt_authn");
    let Some(payload) = &req.jwt else {
        return false;
    };
    let path: Vec<&str> = mm["path"]
        .as_array()
        .expect("path")
        .iter()
        .map(|p| p["key"].as_str().expect("key"))
        .collect();
    assert_eq!(path[0], "payload");
    let mut cur = payload;
    for k in &path[1..] {
        match cur.get(k) {
            Some(v) => cur = v,
            None => return false,
        }
    }
    value_match(&mm["value"], Some(cur))
}

fn principal(p: &Value, req: &Request) -> bool {
    if p["any"].as_bool() == Some(true) {
        return true;
    }
    if let Some(ids) = p.get("andIds") {
        return ids["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .all(|i| principal(i, req));
    }
    if let Some(ids) = p.get("orIds") {
        return ids["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .any(|i| principal(i, req));
    }
    if let Some(n) = p.get("notId") {
        return !principal(n, req);
    }
    if let Some(sm) = p.get("sourcedMetadata") {
        return metadata(&sm["metadataMatcher"], req);
    }
    if let Some(a) = p.get("authenticated") {
        return req
            .principal
            .is_some_and(|pr| string_match(&a["principalName"], pr));
    }
    panic!("unsupported principal {p}")
}

fn permission(p: &Value, req: &Request) -> bool {
    if p["any"].as_bool() == Some(true) {
        return true;
    }
    if let Some(r) = p.get("andRules") {
        return r["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .all(|i| permission(i, req));
    }
    if let Some(r) = p.get("orRules") {
        return r["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|i| permission(i, req));
    }
    if let Some(n) = p.get("notRule") {
        return !permission(n, req);
    }
    if let Some(h) = p.get("header") {
        let value = match h["name"].as_str() {
            Some(":method") => req.method,
            other => panic!("header {other:?} not modelled"),
        };
        return string_match(&h["stringMatch"], value);
    }
    if let Some(u) = p.get("urlPath") {
        return string_match(&u["path"], req.path);
    }
    panic!("unsupported permission {p}")
}

fn policy_matches(policy: &Value, req: &Request) -> bool {
    let any = |k: &str, f: &dyn Fn(&Value) -> bool| policy[k].as_array().expect(k).iter().any(f);
    any("permissions", &|p| permission(p, req)) && any("principals", &|p| principal(p, req))
}

/// Envoy's decision over the RBAC filters in chain order: 200 (allowed) or 403.
fn decide(filters: &Value, req: &Request) -> u16 {
    for f in filters.as_array().expect("filters") {
        if f["name"] != "envoy.filters.http.rbac" {
            continue;
        }
        let rules = &f["typedConfig"]["rules"];
        if rules.is_null() {
            continue;
        }
        let matched = rules["policies"]
            .as_object()
            .map(|ps| ps.values().any(|p| policy_matches(p, req)))
            .unwrap_or(false);
        match rules["action"].as_str().unwrap_or("ALLOW") {
            "ALLOW" if !matched => return 403,
            "DENY" if matched => return 403,
            _ => {}
        }
    }
    200
}

fn filters(fixture: &str) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/{fixture}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    common::translate(&common::load(&text))["httpFilters"].clone()
}

fn get(path: &'static str) -> Request {
    Request {
        method: "GET",
        path,
        ..Default::default()
    }
}

#[test]
fn deny_on_audiences_denies_anonymous_requests() {
    // SEMANTICS.md §2.5: without a token there is no metadata, `not_id` is true, the DENY matches.
    let f = filters("seed-04-deny-audience");
    assert_eq!(decide(&f, &get("/")), 403, "anonymous request");
    let good = Request {
        jwt: Some(json!({"iss": "i", "sub": "s", "aud": "api://payments"})),
        ..get("/")
    };
    assert_eq!(decide(&f, &good), 200);
    let good_list = Request {
        jwt: Some(json!({"iss": "i", "sub": "s", "aud": ["x", "api://payments"]})),
        ..get("/")
    };
    assert_eq!(decide(&f, &good_list), 200, "aud as a list");
    let wrong = Request {
        jwt: Some(json!({"iss": "i", "sub": "s", "aud": "api://other"})),
        ..get("/")
    };
    assert_eq!(decide(&f, &wrong), 403);

    // Adding requestPrincipals ["*"] scopes the DENY to authenticated requests.
    let f = filters("seed-04-deny-audience-authenticated-only");
    assert_eq!(
        decide(&f, &get("/")),
        200,
        "anonymous request passes once the rule needs a principal"
    );
    assert_eq!(decide(&f, &wrong), 403);
    assert_eq!(decide(&f, &good), 200);
}

#[test]
fn groups_claim_allow() {
    let f = filters("seed-03-groups-claim");
    assert_eq!(decide(&f, &get("/")), 403, "no token");
    let admin = Request {
        jwt: Some(json!({"iss": "i", "sub": "s", "groups": ["dev", "payments-admin"]})),
        ..get("/")
    };
    assert_eq!(decide(&f, &admin), 200);
    let scalar = Request {
        jwt: Some(json!({"iss": "i", "sub": "s", "groups": "payments-admin"})),
        ..get("/")
    };
    assert_eq!(decide(&f, &scalar), 200, "a scalar claim matches too");
    let other = Request {
        jwt: Some(json!({"iss": "i", "sub": "s", "groups": ["dev"]})),
        ..get("/")
    };
    assert_eq!(decide(&f, &other), 403);
    let no_sub = Request {
        jwt: Some(json!({"iss": "i", "groups": ["payments-admin"]})),
        ..get("/")
    };
    assert_eq!(
        decide(&f, &no_sub),
        403,
        "requestPrincipals [*] needs iss and sub"
    );
    let numeric = Request {
        jwt: Some(json!({"iss": "i", "sub": "s", "groups": 7})),
        ..get("/")
    };
    assert_eq!(decide(&f, &numeric), 403, "only string values match");
}

#[test]
fn principal_method_path_and_scope() {
    let f = filters("seed-05-principal-and-claim");
    let ok = Request {
        method: "POST",
        path: "/charge",
        principal: Some("spiffe://cluster.local/ns/checkout/sa/checkout"),
        // scope is normalised into a list by jwt_authn (space_delimited_claims).
        jwt: Some(json!({"iss": "i", "sub": "s", "scope": ["payments:read", "payments:write"]})),
    };
    assert_eq!(decide(&f, &ok), 200);
    assert_eq!(
        decide(
            &f,
            &Request {
                principal: Some("spiffe://cluster.local/ns/other/sa/x"),
                ..ok
            }
        ),
        403
    );
    let ok = || Request {
        method: "POST",
        path: "/charge",
        principal: Some("spiffe://cluster.local/ns/checkout/sa/checkout"),
        jwt: Some(json!({"iss": "i", "sub": "s", "scope": ["payments:write"]})),
    };
    assert_eq!(
        decide(
            &f,
            &Request {
                principal: None,
                ..ok()
            }
        ),
        403,
        "no client certificate"
    );
    assert_eq!(
        decide(
            &f,
            &Request {
                method: "GET",
                ..ok()
            }
        ),
        403
    );
    assert_eq!(
        decide(
            &f,
            &Request {
                path: "/refund",
                ..ok()
            }
        ),
        403
    );
    assert_eq!(decide(&f, &Request { jwt: None, ..ok() }), 403);
}

#[test]
fn empty_policies() {
    assert_eq!(
        decide(&filters("allow-nil-rule"), &get("/")),
        403,
        "ALLOW without rules denies all"
    );
    assert_eq!(
        decide(&filters("allow-empty-rule"), &get("/")),
        200,
        "rules [{{}}] allows all"
    );
    assert_eq!(
        decide(&filters("deny-empty-rule"), &get("/")),
        403,
        "DENY [{{}}] denies all"
    );
    assert_eq!(
        decide(&filters("dry-run-allow"), &get("/x")),
        200,
        "dry-run only: nothing enforced"
    );
}

#[test]
fn translation_is_independent_of_insertion_order() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    for name in [
        "jwt-multiple-policies-sorted",
        "attachment",
        "dry-run-mix",
        "custom-providers",
        "deny-and-allow",
    ] {
        let text = std::fs::read_to_string(format!("{dir}/{name}.yaml")).expect("fixture");
        let docs: Vec<&str> = text.split("\n---\n").collect();
        let forward = common::translate(&common::load(&docs.join("\n---\n")));
        let mut reversed = docs.clone();
        reversed.reverse();
        let backward = common::translate(&common::load(&reversed.join("\n---\n")));
        assert_eq!(forward, backward, "{name}");
        let mut rotated = docs.clone();
        rotated.rotate_left(1);
        assert_eq!(
            forward,
            common::translate(&common::load(&rotated.join("\n---\n"))),
            "{name}"
        );
    }
}

/// Trust-domain aliases from mesh config (istiod: trustdomain/bundle.go, builder testdata
/// `td-aliases-source-principal-*`): a `source.principal` condition written for the local trust
/// domain matches the same workload under every alias (tier 2 checks `principals` on Envoy).
#[test]
fn trust_domain_aliases_from_mesh_config() {
    const POLICY: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: checkout-only, namespace: foo}
spec:
  targetRefs:
  - {group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}
  action: ALLOW
  rules:
  - when:
    - key: source.principal
      values: ["new-td/ns/checkout/sa/checkout"]
"#;
    const MESH: &str = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    trustDomain: new-td
    trustDomainAliases: [old-td, cluster.local]
"#;
    let peer = |principal: &'static str| Request {
        principal: Some(principal),
        ..get("/")
    };
    let with_aliases =
        common::translate(&common::load(&format!("{MESH}---\n{POLICY}")))["httpFilters"].clone();
    for allowed in [
        "spiffe://new-td/ns/checkout/sa/checkout",
        "spiffe://old-td/ns/checkout/sa/checkout",
        "spiffe://cluster.local/ns/checkout/sa/checkout",
    ] {
        assert_eq!(decide(&with_aliases, &peer(allowed)), 200, "{allowed}");
    }
    for denied in [
        "spiffe://other-td/ns/checkout/sa/checkout",
        "spiffe://new-td/ns/other/sa/checkout",
    ] {
        assert_eq!(decide(&with_aliases, &peer(denied)), 403, "{denied}");
    }
    // Without mesh config the trust domain is cluster.local alone: the policy's own trust
    // domain is matched as written, nothing else.
    let plain = common::translate(&common::load(POLICY))["httpFilters"].clone();
    assert_eq!(
        decide(&plain, &peer("spiffe://new-td/ns/checkout/sa/checkout")),
        200
    );
    assert_eq!(
        decide(
            &plain,
            &peer("spiffe://cluster.local/ns/checkout/sa/checkout")
        ),
        403
    );
}
