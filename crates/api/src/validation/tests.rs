//! Table-driven validation tests: every rule has a valid and an invalid case, and the message is
//! asserted. Case names follow Istio's `TestValidateRequestAuthentication` /
//! `TestValidateAuthorizationPolicy` (pkg/config/validation/validation_test.go) where they exist.

use super::*;
use crate::resource::{decode, parse_documents};

fn report(kind: &str, api: &str, meta_extra: &str, spec: &str) -> Report {
    let text = format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: p\n  namespace: ns\n{meta_extra}spec:\n{spec}"
    );
    let docs = parse_documents(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let resource = decode(&docs[0], 0).unwrap_or_else(|e| panic!("{e}\n{text}"));
    validate(&resource)
}

fn ra(spec: &str) -> Report {
    report("RequestAuthentication", "security.istio.io/v1", "", spec)
}

fn ap(spec: &str) -> Report {
    report("AuthorizationPolicy", "security.istio.io/v1", "", spec)
}

fn ap_annotated(annotation: &str, spec: &str) -> Report {
    report(
        "AuthorizationPolicy",
        "security.istio.io/v1",
        &format!("  annotations:\n    istio.io/dry-run: \"{annotation}\"\n"),
        spec,
    )
}

/// `(case, report, expected)`: `Ok(warnings)` for a valid case (asserting its warnings, by
/// substring), or `Err((path, message substring))` for the first error.
type Case = (
    &'static str,
    Report,
    Result<&'static [&'static str], (&'static str, &'static str)>,
);

fn run(cases: Vec<Case>) {
    for (name, report, expected) in cases {
        match expected {
            Ok(warnings) => {
                assert!(
                    report.is_valid(),
                    "{name}: unexpected errors {:?}",
                    report.errors
                );
                assert_eq!(
                    report.warnings.len(),
                    warnings.len(),
                    "{name}: warnings {:?}",
                    report.warnings
                );
                for (w, want) in report.warnings.iter().zip(warnings) {
                    assert!(
                        w.message.contains(want),
                        "{name}: warning {w} lacks {want:?}"
                    );
                }
            }
            Err((path, message)) => {
                let found = report
                    .errors
                    .iter()
                    .any(|e| e.path == path && e.message.contains(message));
                assert!(
                    found,
                    "{name}: want error {path}: {message:?}, got {:?}",
                    report.errors
                );
            }
        }
    }
}

const GW: &str =
    "  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}\n";

#[test]
fn request_authentication_rules() {
    let good_rule = "  jwtRules:\n  - issuer: https://issuer\n    jwksUri: https://issuer/keys\n";
    let jwk = r#"{"keys":[{"kty":"RSA","e":"AQAB","n":"xyz","kid":"a"}]}"#;
    let jwk_private = r#"{"keys":[{"kty":"RSA","e":"AQAB","n":"xyz","d":"secret"}]}"#;
    run(vec![
        ("empty spec", ra("  {}\n"), Ok(&[])),
        ("good", ra(&format!("{GW}{good_rule}")), Ok(&[])),
        (
            "dry run annotation not supported",
            report(
                "RequestAuthentication",
                "security.istio.io/v1",
                "  annotations: {istio.io/dry-run: \"true\"}\n",
                good_rule,
            ),
            Err((
                "metadata.annotations[istio.io/dry-run]",
                "ns/p has unsupported annotation istio.io/dry-run, please remove the annotation",
            )),
        ),
        (
            "v1beta1 is served",
            report(
                "RequestAuthentication",
                "security.istio.io/v1beta1",
                "",
                good_rule,
            ),
            Ok(&[]),
        ),
        (
            "targetRef and selector both set",
            ra(&format!(
                "{GW}  selector: {{matchLabels: {{app: a}}}}\n{good_rule}"
            )),
            Err((
                "spec",
                "only one of targetRefs or workloadSelector can be set",
            )),
        ),
        (
            "bad workload selector empty key",
            ra("  selector:\n    matchLabels: {\"\": a}\n"),
            Err((
                "spec.selector.matchLabels[]",
                "empty key is not supported in selector: \"=a\"",
            )),
        ),
        (
            "wildcard selector value",
            ra("  selector:\n    matchLabels: {app: \"a*\"}\n"),
            Err((
                "spec.selector.matchLabels[app]",
                "wildcard is not supported in selector",
            )),
        ),
        (
            "selector without labels warns",
            ra("  selector: {}\n"),
            Ok(&["workload selector specified without labels"]),
        ),
        (
            "bad targetRef empty name",
            ra(
                "  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: Gateway, name: \"\"}\n",
            ),
            Err(("spec.targetRefs[0].name", "targetRef name must be set")),
        ),
        (
            "bad targetRef non-empty namespace",
            ra(
                "  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: Gateway, name: w, namespace: other}\n",
            ),
            Err((
                "spec.targetRefs[0].namespace",
                "cross namespace referencing is not supported",
            )),
        ),
        (
            "bad targetRef wrong group",
            ra("  targetRefs:\n  - {group: wrong.io, kind: Gateway, name: w}\n"),
            Err((
                "spec.targetRefs[0]",
                "targetRef must be to one of [Service ServiceEntry Gateway GatewayClass] but was wrong.io/Gateway",
            )),
        ),
        (
            "bad targetRef wrong kind",
            ra("  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: w}\n"),
            Err((
                "spec.targetRef",
                "but was gateway.networking.k8s.io/HTTPRoute",
            )),
        ),
        (
            "good service targetRef",
            ra("  targetRefs:\n  - {group: \"\", kind: Service, name: s}\n"),
            Ok(&[]),
        ),
        (
            "empty issuer and jwksUri",
            ra("  jwtRules:\n  - audiences: [a]\n"),
            Err((
                "spec.jwtRules[0]",
                "issuer or jwksUri must be non-empty string",
            )),
        ),
        (
            "empty issuer and set jwksUri",
            ra("  jwtRules:\n  - jwksUri: https://x/keys\n"),
            Ok(&["issuer is empty"]),
        ),
        (
            "bad JwksUri no protocol",
            ra("  jwtRules:\n  - issuer: a\n    jwksUri: foo.com/keys\n"),
            Err(("spec.jwtRules[0].jwksUri", "failed to parse jwksUri")),
        ),
        (
            "bad JwksUri scheme",
            ra("  jwtRules:\n  - issuer: a\n    jwksUri: ftp://foo.com/keys\n"),
            Err((
                "spec.jwtRules[0].jwksUri",
                "URI scheme \"ftp\" is not supported",
            )),
        ),
        (
            "bad JwksUri invalid port",
            ra("  jwtRules:\n  - issuer: a\n    jwksUri: https://foo.com:99999/keys\n"),
            Err(("spec.jwtRules[0].jwksUri", "invalid port number")),
        ),
        (
            "jwks and jwksUri both set",
            ra(&format!(
                "  jwtRules:\n  - issuer: a\n    jwksUri: https://x/k\n    jwks: '{jwk}'\n"
            )),
            Err(("spec.jwtRules[0]", "only one of jwks or jwksUri can be set")),
        ),
        (
            "jwksUri and legacy jwks_uri both set",
            ra("  jwtRules:\n  - issuer: a\n    jwksUri: https://x/k\n    jwks_uri: https://x/k\n"),
            Err(("spec.jwtRules[0]", "only one of jwks or jwksUri can be set")),
        ),
        (
            "jwks ok",
            ra(&format!("  jwtRules:\n  - issuer: a\n    jwks: '{jwk}'\n")),
            Ok(&[]),
        ),
        (
            "jwks error",
            ra("  jwtRules:\n  - issuer: a\n    jwks: 'foo'\n"),
            Err(("spec.jwtRules[0].jwks", "jwks parse error")),
        ),
        (
            "jwks without usable key",
            ra("  jwtRules:\n  - issuer: a\n    jwks: '{\"keys\":[{\"kty\":\"RSA\"}]}'\n"),
            Err(("spec.jwtRules[0].jwks.keys[0]", "is not a usable JWK")),
        ),
        (
            "jwks with private RSA key warns",
            ra(&format!(
                "  jwtRules:\n  - issuer: a\n    jwks: '{jwk_private}'\n"
            )),
            Ok(&["contains private key material"]),
        ),
        (
            "empty audience",
            ra("  jwtRules:\n  - issuer: a\n    audiences: [\"\"]\n"),
            Err((
                "spec.jwtRules[0].audiences[0]",
                "audience must be non-empty string",
            )),
        ),
        (
            "bad header location",
            ra("  jwtRules:\n  - issuer: a\n    fromHeaders: [{name: \"\"}]\n"),
            Err((
                "spec.jwtRules[0].fromHeaders[0].name",
                "location header name must be non-empty string",
            )),
        ),
        (
            "bad param location",
            ra("  jwtRules:\n  - issuer: a\n    fromParams: [\"\"]\n"),
            Err((
                "spec.jwtRules[0].fromParams[0]",
                "location query must be non-empty string",
            )),
        ),
        (
            "bad cookie location",
            ra("  jwtRules:\n  - issuer: a\n    fromCookies: [\"\"]\n"),
            Err((
                "spec.jwtRules[0].fromCookies[0]",
                "cookie name must be non-empty string",
            )),
        ),
        (
            "good locations",
            ra(
                "  jwtRules:\n  - issuer: a\n    fromHeaders: [{name: x-jwt, prefix: \"Bearer \"}]\n    fromParams: [token]\n    fromCookies: [session]\n",
            ),
            Ok(&[]),
        ),
        (
            "null claim",
            ra(
                "  jwtRules:\n  - issuer: a\n    outputClaimToHeaders: [{header: x-a, claim: \"\"}]\n",
            ),
            Err((
                "spec.jwtRules[0].outputClaimToHeaders[0]",
                "outputClaimToHeaders header and claim value must be non-empty string",
            )),
        ),
        (
            "null header",
            ra(
                "  jwtRules:\n  - issuer: a\n    outputClaimToHeaders: [{header: \"\", claim: sub}]\n",
            ),
            Err((
                "spec.jwtRules[0].outputClaimToHeaders[0]",
                "outputClaimToHeaders header and claim value must be non-empty string",
            )),
        ),
        (
            "invalid header value",
            ra(
                "  jwtRules:\n  - issuer: a\n    outputClaimToHeaders: [{header: \"x:a\", claim: sub}]\n",
            ),
            Err((
                "spec.jwtRules[0].outputClaimToHeaders[0].header",
                "invalid header name",
            )),
        ),
        (
            "duplicate output header warns",
            ra(
                "  jwtRules:\n  - issuer: a\n    outputClaimToHeaders: [{header: x-a, claim: sub}, {header: X-A, claim: email}]\n",
            ),
            Ok(&["is also written by outputClaimToHeaders[0]"]),
        ),
        (
            "invalid payload header",
            ra("  jwtRules:\n  - issuer: a\n    outputPayloadToHeader: \"bad header\"\n"),
            Err((
                "spec.jwtRules[0].outputPayloadToHeader",
                "invalid header name",
            )),
        ),
        (
            "timeout too small",
            ra("  jwtRules:\n  - issuer: a\n    timeout: 100us\n"),
            Err((
                "spec.jwtRules[0].timeout",
                "must be a valid duration greater than 1ms",
            )),
        ),
        (
            "timeout unparsable",
            ra("  jwtRules:\n  - issuer: a\n    timeout: \"5\"\n"),
            Err(("spec.jwtRules[0].timeout", "missing unit")),
        ),
        (
            "timeout ok",
            ra("  jwtRules:\n  - issuer: a\n    timeout: 1.5s\n"),
            Ok(&[]),
        ),
        (
            "empty space delimited claim",
            ra("  jwtRules:\n  - issuer: a\n    spaceDelimitedClaims: [\"\"]\n"),
            Err((
                "spec.jwtRules[0].spaceDelimitedClaims[0]",
                "claim name must be non-empty string",
            )),
        ),
        (
            "duplicate issuer, same locations",
            ra("  jwtRules:\n  - issuer: a\n  - issuer: a\n    audiences: [x]\n"),
            Err(("spec.jwtRules[1].issuer", "merge them into one rule")),
        ),
        (
            "duplicate issuer, different locations warns",
            ra("  jwtRules:\n  - issuer: a\n  - issuer: a\n    fromHeaders: [{name: x-jwt}]\n"),
            Ok(&["they read different token locations"]),
        ),
        (
            "presence required",
            ra("  jwtRules:\n  - issuer: a\n    presence: REQUIRED\n"),
            Ok(&[]),
        ),
        (
            "placeholder in jwksUri warns",
            ra("  jwtRules:\n  - issuer: a\n    jwksUri: \"${JWKS_URI}\"\n"),
            Ok(&["unexpanded ${...} placeholder"]),
        ),
    ]);
}

#[test]
fn authorization_policy_rules() {
    let rule = "  rules:\n  - to:\n    - operation: {methods: [GET]}\n";
    run(vec![
        ("good", ap(&format!("{GW}{rule}")), Ok(&[])),
        ("allow-rules-nil", ap("  action: ALLOW\n"), Ok(&[])),
        ("allow-empty-rule", ap("  rules: [{}]\n"), Ok(&[])),
        (
            "deny-rules-nil",
            ap("  action: DENY\n"),
            Err(("spec.rules", "DENY action without `rules` is meaningless")),
        ),
        (
            "custom-good",
            ap("  action: CUSTOM\n  provider: {name: ext}\n  rules: [{}]\n"),
            Ok(&[]),
        ),
        (
            "custom-empty-provider",
            ap("  action: CUSTOM\n  provider: {name: \"\"}\n  rules: [{}]\n"),
            Err(("spec.provider.name", "`provider.name` must not be empty")),
        ),
        (
            "custom-nil-provider",
            ap("  action: CUSTOM\n  rules: [{}]\n"),
            Err(("spec.provider.name", "`provider.name` must not be empty")),
        ),
        (
            "custom-without-rules",
            ap("  action: CUSTOM\n  provider: {name: ext}\n"),
            Err(("spec.rules", "CUSTOM action without `rules` is meaningless")),
        ),
        (
            "custom-invalid-rule",
            ap(
                "  action: CUSTOM\n  provider: {name: ext}\n  rules:\n  - from:\n    - source: {requestPrincipals: [\"*\"]}\n",
            ),
            Err((
                "spec.rules[0].from[0].source.requestPrincipals",
                "From.RequestPrincipals is currently not supported with CUSTOM action",
            )),
        ),
        (
            "custom-invalid-when",
            ap(
                "  action: CUSTOM\n  provider: {name: ext}\n  rules:\n  - when: [{key: \"request.auth.claims[iss]\", values: [a]}]\n",
            ),
            Err((
                "spec.rules[0].when[0].key",
                "is currently not supported with CUSTOM action",
            )),
        ),
        (
            "provider-wrong-action",
            ap("  action: DENY\n  provider: {name: ext}\n  rules: [{}]\n"),
            Err((
                "spec.provider",
                "`provider` must not be with non CUSTOM action, found DENY",
            )),
        ),
        (
            "dry-run-valid-allow",
            ap_annotated("true", "  rules: [{}]\n"),
            Ok(&[]),
        ),
        (
            "dry-run-valid-deny",
            ap_annotated("false", "  action: DENY\n  rules: [{}]\n"),
            Ok(&[]),
        ),
        (
            "dry-run-invalid-value",
            ap_annotated("foo", "  rules: [{}]\n"),
            Err((
                "metadata.annotations[istio.io/dry-run]",
                "ns/p has annotation istio.io/dry-run with invalid value (foo)",
            )),
        ),
        (
            "dry-run-invalid-action-audit",
            ap_annotated("true", "  action: AUDIT\n  rules: [{}]\n"),
            Err((
                "metadata.annotations[istio.io/dry-run]",
                "only supports action ALLOW/DENY, found action AUDIT in ns/p",
            )),
        ),
        (
            "selector-empty-labels",
            ap("  selector: {}\n"),
            Ok(&["workload selector specified without labels"]),
        ),
        (
            "target-refs-and-selector-cannot-both-be-set",
            ap(&format!("{GW}  selector: {{matchLabels: {{app: a}}}}\n")),
            Err((
                "spec",
                "only one of targetRefs or workloadSelector can be set",
            )),
        ),
        (
            "target-ref-and-target-refs-cannot-both-be-set",
            ap(&format!(
                "{GW}  targetRef: {{group: gateway.networking.k8s.io, kind: Gateway, name: w}}\n"
            )),
            Err((
                "spec",
                "only one of targetRefs or workloadSelector can be set",
            )),
        ),
        (
            "from-empty",
            ap("  rules:\n  - from: []\n"),
            Err(("spec.rules[0].from", "`from` must not be empty")),
        ),
        (
            "source-nil",
            ap("  rules:\n  - from: [{}]\n"),
            Err((
                "spec.rules[0].from[0].source",
                "`from.source` must not be nil",
            )),
        ),
        (
            "source-empty",
            ap("  rules:\n  - from: [{source: {}}]\n"),
            Err((
                "spec.rules[0].from[0].source",
                "`from.source` must not be empty",
            )),
        ),
        (
            "to-empty",
            ap("  rules:\n  - to: []\n"),
            Err(("spec.rules[0].to", "`to` must not be empty")),
        ),
        (
            "operation-nil",
            ap("  rules:\n  - to: [{}]\n"),
            Err((
                "spec.rules[0].to[0].operation",
                "`to.operation` must not be nil",
            )),
        ),
        (
            "operation-empty",
            ap("  rules:\n  - to: [{operation: {}}]\n"),
            Err((
                "spec.rules[0].to[0].operation",
                "`to.operation` must not be empty",
            )),
        ),
        (
            "Principals-empty",
            ap("  rules:\n  - from: [{source: {principals: [\"\"]}}]\n"),
            Err((
                "spec.rules[0].from[0].source.principals[0]",
                "empty value not allowed, found in Principals",
            )),
        ),
        (
            "NotRequestPrincipals-empty",
            ap("  rules:\n  - from: [{source: {notRequestPrincipals: [\"\"]}}]\n"),
            Err((
                "spec.rules[0].from[0].source.notRequestPrincipals[0]",
                "empty value not allowed, found in NotRequestPrincipals",
            )),
        ),
        (
            "Paths-empty",
            ap("  rules:\n  - to: [{operation: {paths: [\"\"]}}]\n"),
            Err((
                "spec.rules[0].to[0].operation.paths[0]",
                "empty value not allowed, found in Paths",
            )),
        ),
        (
            "Hosts-empty",
            ap("  rules:\n  - to: [{operation: {notHosts: [\"\"]}}]\n"),
            Err((
                "spec.rules[0].to[0].operation.notHosts[0]",
                "empty value not allowed, found in NotHosts",
            )),
        ),
        (
            "good serviceAccounts",
            ap("  rules:\n  - from: [{source: {serviceAccounts: [ns/sa, sa2]}}]\n"),
            Ok(&[]),
        ),
        (
            "serviceAccounts and namespaces",
            ap("  rules:\n  - from: [{source: {serviceAccounts: [sa], namespaces: [ns]}}]\n"),
            Err((
                "spec.rules[0].from[0].source",
                "cannot set serviceAccounts with namespaces or principals, found at rule 0",
            )),
        ),
        (
            "serviceAccounts wildcard",
            ap("  rules:\n  - from: [{source: {serviceAccounts: [\"ns/*\"]}}]\n"),
            Err((
                "spec.rules[0].from[0].source.serviceAccounts[0]",
                "wildcard not allowed, found in ServiceAccounts",
            )),
        ),
        (
            "serviceAccounts format",
            ap("  rules:\n  - from: [{source: {serviceAccounts: [a/b/c]}}]\n"),
            Err((
                "spec.rules[0].from[0].source.serviceAccounts[0]",
                "expected format 'serviceAccount' or 'namespace/serviceAccount', found a/b/c",
            )),
        ),
        (
            "trustDomains two wildcards",
            ap("  rules:\n  - from: [{source: {trustDomains: [\"*a*\"]}}]\n"),
            Err((
                "spec.rules[0].from[0].source.trustDomains[0]",
                "at most one wildcard is allowed",
            )),
        ),
        (
            "trustDomains inner wildcard",
            ap("  rules:\n  - from: [{source: {trustDomains: [\"a*b\"]}}]\n"),
            Err((
                "spec.rules[0].from[0].source.trustDomains[0]",
                "wildcard is only allowed at the start or end",
            )),
        ),
        (
            "invalid ip in ipBlocks",
            ap("  rules:\n  - from: [{source: {ipBlocks: [1.2.3.4.5]}}]\n"),
            Err((
                "spec.rules[0].from[0].source.ipBlocks[0]",
                "bad IP address (1.2.3.4.5)",
            )),
        ),
        (
            "invalid cidr in remoteIpBlocks",
            ap("  rules:\n  - from: [{source: {remoteIpBlocks: [10.0.0.0/33]}}]\n"),
            Err((
                "spec.rules[0].from[0].source.remoteIpBlocks[0]",
                "bad CIDR range (10.0.0.0/33)",
            )),
        ),
        (
            "good ip blocks",
            ap("  rules:\n  - from: [{source: {ipBlocks: [10.0.0.1, 10.0.0.0/8, \"::1\"]}}]\n"),
            Ok(&[]),
        ),
        (
            "invalid port",
            ap("  rules:\n  - to: [{operation: {ports: [\"65536\"]}}]\n"),
            Err(("spec.rules[0].to[0].operation.ports[0]", "bad port (65536)")),
        ),
        (
            "non-numeric port",
            ap("  rules:\n  - to: [{operation: {notPorts: [http]}}]\n"),
            Err((
                "spec.rules[0].to[0].operation.notPorts[0]",
                "bad port (http): strconv.ParseUint",
            )),
        ),
        (
            "path template not last",
            ap("  rules:\n  - to: [{operation: {paths: [\"/a/{**}/{*}\"]}}]\n"),
            Err((
                "spec.rules[0].to[0].operation.paths[0]",
                "{**} is not the last operator",
            )),
        ),
        (
            "good path template",
            ap("  rules:\n  - to: [{operation: {paths: [\"/a/{*}/b\", \"/x/{**}\"]}}]\n"),
            Ok(&[]),
        ),
        (
            "condition-key-empty",
            ap("  rules:\n  - when: [{key: \"\", values: [a]}]\n"),
            Err(("spec.rules[0].when[0].key", "`key` must not be empty")),
        ),
        (
            "condition-value-missing",
            ap("  rules:\n  - when: [{key: source.ip}]\n"),
            Err((
                "spec.rules[0].when[0]",
                "at least one of `values` or `notValues` must be set for key source.ip",
            )),
        ),
        (
            "condition-value-invalid",
            ap("  rules:\n  - when: [{key: source.ip, values: [a.b.c.d]}]\n"),
            Err((
                "spec.rules[0].when[0].values",
                "invalid `value` for `key` source.ip: bad IP address (a.b.c.d)",
            )),
        ),
        (
            "condition-notValue-invalid",
            ap("  rules:\n  - when: [{key: destination.port, notValues: [\"-1\"]}]\n"),
            Err((
                "spec.rules[0].when[0].notValues",
                "invalid `notValue` for `key` destination.port: bad port (-1)",
            )),
        ),
        (
            "condition-unknown",
            ap("  rules:\n  - when: [{key: key1, values: [a]}]\n"),
            Err(("spec.rules[0].when[0].values", "unknown attribute: key1")),
        ),
        (
            "condition-bad-header-key",
            ap("  rules:\n  - when: [{key: request.headers, values: [a]}]\n"),
            Err((
                "spec.rules[0].when[0].values",
                "bad key (request.headers): should have format a[b]",
            )),
        ),
        (
            "condition-destination-namespace",
            ap("  rules:\n  - when: [{key: destination.namespace, values: [a]}]\n"),
            Err((
                "spec.rules[0].when[0].values",
                "attribute destination.namespace is replaced by the metadata.namespace",
            )),
        ),
        (
            "condition-nested-claims",
            ap("  rules:\n  - when: [{key: \"request.auth.claims[a][b]\", values: [x]}]\n"),
            Ok(&[]),
        ),
        (
            "L7DenyWithFrom",
            ap("  action: DENY\n  rules:\n  - from: [{source: {requestPrincipals: [\"*\"]}}]\n"),
            Ok(&["will deny all traffic to TCP ports"]),
        ),
        (
            "L7DenyWithFromAndToWithPort",
            ap(
                "  action: DENY\n  rules:\n  - from: [{source: {requestPrincipals: [\"*\"]}}]\n    to: [{operation: {methods: [GET], ports: [\"8080\"]}}]\n",
            ),
            Ok(&[]),
        ),
        (
            "spiffe principal warns",
            ap(
                "  rules:\n  - from: [{source: {principals: [\"spiffe://cluster.local/ns/a/sa/b\"]}}]\n",
            ),
            Ok(&["under istiod this value never matches"]),
        ),
        (
            "inner wildcard warns",
            ap("  rules:\n  - to: [{operation: {paths: [\"/a*b\"]}}]\n"),
            Ok(&["is matched literally, not as a wildcard"]),
        ),
        (
            "request principal split warns",
            ap("  rules:\n  - from: [{source: {requestPrincipals: [\"https://example.com*\"]}}]\n"),
            Ok(&["never matches"]),
        ),
        (
            "deny notValues on request.auth warns about anonymous requests",
            ap(
                "  action: DENY\n  rules:\n  - when: [{key: request.auth.audiences, notValues: [api]}]\n",
            ),
            Ok(&[
                "anonymous requests are denied",
                "will deny all traffic to TCP ports",
            ]),
        ),
    ]);
}

#[test]
fn solo_rules() {
    let oidc = "  configs:\n  - oauth2:\n      oidcAuthorizationCode:\n        clientId: c\n        clientSecretRef: {name: s}\n        issuerUrl: https://idp/realms/x/\n        appUrl: https://app\n";
    let ac = |spec: &str| report("AuthConfig", "extauth.solo.io/v1", "", spec);
    let pol = |spec: &str| {
        report(
            "EnterpriseAgentgatewayPolicy",
            "enterpriseagentgateway.solo.io/v1alpha1",
            "",
            spec,
        )
    };
    let backend = |spec: &str| report("AgentgatewayBackend", "agentgateway.dev/v1alpha1", "", spec);
    run(vec![
        ("good oidc", ac(oidc), Ok(&[])),
        (
            "appUrl with a trailing slash and a callbackPath with a leading one",
            ac(&oidc.replace(
                "appUrl: https://app",
                "appUrl: https://app/\n        callbackPath: /cb",
            )),
            Ok(&["register \"https://app/cb\" at the provider"]),
        ),
        (
            "no configs",
            ac("  configs: []\n"),
            Err(("spec.configs", "at least one config is required")),
        ),
        (
            "unsupported config type",
            ac("  configs:\n  - basicAuth: {realm: x}\n"),
            Err((
                "spec.configs[0].basicAuth",
                "config type basicAuth is not supported by wayguard",
            )),
        ),
        (
            "missing client id",
            ac(&oidc.replace("clientId: c", "clientId: \"\"")),
            Err((
                "spec.configs[0].oauth2.oidcAuthorizationCode.clientId",
                "required field is missing",
            )),
        ),
        (
            "issuer not a url",
            ac(&oidc.replace("https://idp/realms/x/", "idp/realms")),
            Err((
                "spec.configs[0].oauth2.oidcAuthorizationCode.issuerUrl",
                "is not an absolute URL",
            )),
        ),
        (
            "missing client secret",
            ac(&oidc.replace("        clientSecretRef: {name: s}\n", "")),
            Err((
                "spec.configs[0].oauth2.oidcAuthorizationCode.clientSecretRef",
                "required unless the client is public",
            )),
        ),
        (
            "public client",
            ac(&oidc.replace(
                "        clientSecretRef: {name: s}\n",
                "        clientAuthentication: {clientSecret: {disableClientSecret: true}}\n",
            )),
            Ok(&[]),
        ),
        (
            "callback path without slash",
            ac(&format!("{oidc}        callbackPath: callback\n")),
            Err((
                "spec.configs[0].oauth2.oidcAuthorizationCode.callbackPath",
                "must start with '/'",
            )),
        ),
        (
            "cookie and redis",
            ac(&format!(
                "{oidc}        session: {{cookie: {{}}, redis: {{options: {{host: \"r:6379\"}}}}}}\n"
            )),
            Err((
                "spec.configs[0].oauth2.oidcAuthorizationCode.session",
                "only one of cookie or redis can be set",
            )),
        ),
        (
            "redis host without port",
            ac(&format!(
                "{oidc}        session: {{redis: {{options: {{host: redis}}}}}}\n"
            )),
            Err((
                "spec.configs[0].oauth2.oidcAuthorizationCode.session.redis.options.host",
                "must be host:port",
            )),
        ),
        (
            "samesite none not secure",
            ac(&format!(
                "{oidc}        session: {{cookieOptions: {{sameSite: NoneMode, notSecure: true}}}}\n"
            )),
            Err((
                "spec.configs[0].oauth2.oidcAuthorizationCode.session.cookieOptions.sameSite",
                "NoneMode requires a Secure cookie",
            )),
        ),
        (
            "static pkce challenge warns",
            ac(&format!(
                "{oidc}        authEndpointQueryParams: {{code_challenge: abc}}\n"
            )),
            Ok(&["a static PKCE challenge defeats PKCE"]),
        ),
        (
            "bad duration",
            ac(&format!("{oidc}        discoveryPollInterval: \"30\"\n")),
            Err((
                "spec.configs[0].oauth2.oidcAuthorizationCode.discoveryPollInterval",
                "missing unit",
            )),
        ),
        (
            "boolean expr unknown name",
            ac(&format!(
                "{}  booleanExpr: oidc && opa\n",
                oidc.replace("  - oauth2:", "  - name: oidc\n    oauth2:")
            )),
            Err(("spec.booleanExpr", "references \"opa\"")),
        ),
        (
            "policy good",
            pol(
                "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: g}]\n  traffic: {entExtAuth: {authConfigRef: {name: a}}}\n",
            ),
            Ok(&[]),
        ),
        (
            "policy without targets",
            pol("  traffic: {entExtAuth: {authConfigRef: {name: a}}}\n"),
            Err((
                "spec.targetRefs",
                "at least one target reference is required",
            )),
        ),
        (
            "policy bad target",
            pol(
                "  targetRefs: [{group: apps, kind: Deployment, name: g}]\n  traffic: {entExtAuth: {authConfigRef: {name: a}}}\n",
            ),
            Err(("spec.targetRefs[0]", "unsupported target apps/Deployment")),
        ),
        (
            "policy nothing to apply",
            pol("  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: g}]\n"),
            Err(("spec", "nothing to apply")),
        ),
        (
            "token exchange mode missing",
            pol(
                "  targetRefs: [{group: agentgateway.dev, kind: AgentgatewayBackend, name: b}]\n  backend: {tokenExchange: {}}\n",
            ),
            Err((
                "spec.backend.tokenExchange.mode",
                "required field is missing",
            )),
        ),
        (
            "token exchange elicitation unsupported",
            pol(
                "  targetRefs: [{group: agentgateway.dev, kind: AgentgatewayBackend, name: b}]\n  backend: {tokenExchange: {mode: ElicitationOnly}}\n",
            ),
            Err((
                "spec.backend.tokenExchange.mode",
                "ElicitationOnly (upstream OAuth consent) is not supported",
            )),
        ),
        (
            "backend static",
            backend("  static: {host: mcp.default.svc, port: 8080}\n"),
            Ok(&[]),
        ),
        (
            "backend mcp",
            backend(
                "  mcp:\n    targets:\n    - name: t\n      static: {host: h, port: 80, path: /mcp}\n",
            ),
            Ok(&[]),
        ),
        (
            "backend none",
            backend("  {}\n"),
            Err(("spec", "exactly one of static or mcp must be set")),
        ),
        (
            "backend ai unsupported",
            backend("  ai: {provider: x}\n"),
            Err(("spec.ai", "ai is not supported by wayguard")),
        ),
    ]);
}

#[test]
fn http_route_warnings() {
    let route = |spec: &str| report("HTTPRoute", "gateway.networking.k8s.io/v1", "", spec);
    let parent = "  parentRefs: [{name: waypoint}]\n";
    run(vec![
        (
            "supported filters",
            route(&format!(
                "{parent}  rules:\n  - filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {{set: [{{name: x, value: abc}}]}}\n    backendRefs: [{{name: s, port: 80}}]\n"
            )),
            Ok(&[]),
        ),
        (
            "request mirror",
            route(&format!(
                "{parent}  rules:\n  - filters:\n    - type: RequestMirror\n      requestMirror: {{backendRef: {{name: m, port: 80}}}}\n    backendRefs: [{{name: s, port: 80}}]\n"
            )),
            Ok(&[
                "RequestMirror filters are not supported by wayguard; requests to this rule will get 500",
            ]),
        ),
        (
            "backendRef filters",
            route(&format!(
                "{parent}  rules:\n  - backendRefs:\n    - name: s\n      port: 80\n      filters:\n      - type: RequestHeaderModifier\n        requestHeaderModifier: {{remove: [x]}}\n"
            )),
            Ok(&["backendRef filters are not supported by wayguard"]),
        ),
    ]);
}
