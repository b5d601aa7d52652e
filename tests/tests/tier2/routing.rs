//! HTTPRoute filters on a real Envoy: request/response header modifiers, URL rewrites (full
//! path, prefix, prefix to `/`, host) and redirects, as Gateway API defines them; an unsupported
//! filter answers 500 and is reported.

use anyhow::{Result, ensure};
use wayguard_tests::{EchoRequest, Req, Scenario, ScenarioBuilder, XdsMode};

matrix!(httproute_filters);

const ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: filters
  namespace: payments-prod
spec:
  parentRefs:
  - name: waypoint
  rules:
  - matches:
    - path: {type: PathPrefix, value: /hdr}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Set, value: one}]
        add: [{name: X-Add, value: two}]
        remove: [X-Remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Resp, value: set-by-route}]
    backendRefs: [{name: payments, port: 8080}]
  - matches:
    - path: {type: PathPrefix, value: /old}
    filters:
    - type: URLRewrite
      urlRewrite:
        hostname: rewritten.example
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
    backendRefs: [{name: payments, port: 8080}]
  - matches:
    - path: {type: PathPrefix, value: /strip}
    filters:
    - type: URLRewrite
      urlRewrite:
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /}
    backendRefs: [{name: payments, port: 8080}]
  - matches:
    - path: {type: PathPrefix, value: /full}
    filters:
    - type: URLRewrite
      urlRewrite:
        path: {type: ReplaceFullPath, replaceFullPath: /replaced}
    backendRefs: [{name: payments, port: 8080}]
  - matches:
    - path: {type: PathPrefix, value: /secure}
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: example.org, statusCode: 301}
  - matches:
    - path: {type: PathPrefix, value: /host-only}
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: example.org}
  - matches:
    - path: {type: PathPrefix, value: /moved}
    filters:
    - type: RequestRedirect
      requestRedirect:
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new-home}
  - matches:
    - path: {type: PathPrefix, value: /mirror}
    filters:
    - type: RequestMirror
      requestMirror:
        backendRef: {name: payments, port: 8080}
    backendRefs: [{name: payments, port: 8080}]
"#;

/// Sends `GET path` and checks the path and query the backend received.
async fn expect_forwarded(
    s: &Scenario,
    path: &str,
    want_path: &str,
    want_query: Option<&str>,
) -> Result<EchoRequest> {
    let seen = s.expect(&Req::get(path), 200).await?.echo()?;
    ensure!(
        seen.path == want_path && seen.query.as_deref() == want_query,
        "{path} reached the backend as {}?{:?}, expected {want_path}?{want_query:?}",
        seen.path,
        seen.query
    );
    Ok(seen)
}

async fn expect_location(s: &Scenario, path: &str, status: u16, location: &str) -> Result<()> {
    let resp = s.expect(&Req::get(path), status).await?;
    ensure!(
        resp.header("location") == Some(location),
        "{path}: location {:?}, expected {location}",
        resp.header("location")
    );
    Ok(())
}

async fn httproute_filters(mode: XdsMode) -> Result<()> {
    let s = ScenarioBuilder::new(mode)
        .file("filters.yaml", ROUTE)
        .start()
        .await?;
    let port = s.http_port();

    // Headers: set overwrites, add appends, remove deletes; the response header is set.
    let resp = s
        .eventually(
            &Req::get("/hdr/x")
                .header("x-set", "client")
                .header("x-add", "client")
                .header("x-remove", "gone"),
            200,
        )
        .await?;
    let seen = resp.echo()?;
    ensure!(
        seen.header("x-set") == Some("one"),
        "x-set: {:?}",
        seen.header("x-set")
    );
    ensure!(
        seen.header("x-add") == Some("client, two"),
        "x-add: {:?}",
        seen.header("x-add")
    );
    ensure!(seen.header("x-remove").is_none(), "x-remove still sent");
    ensure!(
        resp.header("x-resp") == Some("set-by-route"),
        "response x-resp: {:?}",
        resp.header("x-resp")
    );

    // Prefix rewrite by segment, host rewrite, query kept.
    let seen = expect_forwarded(&s, "/old/a?q=1", "/new/a", Some("q=1")).await?;
    ensure!(
        seen.header("host") == Some("rewritten.example"),
        "host: {:?}",
        seen.header("host")
    );
    expect_forwarded(&s, "/old", "/new", None).await?;
    // Prefix replaced by `/`: no double slash, and the bare prefix becomes `/`.
    expect_forwarded(&s, "/strip/a/b?q=2", "/a/b", Some("q=2")).await?;
    expect_forwarded(&s, "/strip", "/", None).await?;
    // Full path replacement keeps the query.
    expect_forwarded(&s, "/full/deep/path?q=3", "/replaced", Some("q=3")).await?;

    // Redirects: scheme + host with 301 (no :443 in Location), and a path-only 302 that keeps
    // the request's host and port.
    expect_location(&s, "/secure/x?q=4", 301, "https://example.org/secure/x?q=4").await?;
    // Only the host changes: the listener's port stays (Gateway API).
    let host_only = format!("http://example.org:{port}/host-only/x");
    expect_location(&s, "/host-only/x", 302, &host_only).await?;
    let moved = format!("http://127.0.0.1:{port}/new-home/x");
    expect_location(&s, "/moved/x", 302, &moved).await?;

    // An unsupported filter: 500, reported, and the other rules keep working.
    s.expect(&Req::get("/mirror"), 500).await?;
    s.eventually_status("RequestMirror reported", |v| {
        v.to_string().contains("RequestMirror")
    })
    .await?;
    s.expect(&Req::get("/anything-else"), 200).await?;
    s.assert_no_nacks().await
}
