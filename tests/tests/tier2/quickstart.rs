//! examples/quickstart as shipped (demo tokens, inline JWKS), with its ports moved to free
//! loopback ports and the Gateway bound to 127.0.0.1.

use anyhow::{Context, Result, ensure};
use wayguard_tests::wayguard::workspace_root;
use wayguard_tests::{EchoBackend, Req, ScenarioBuilder, XdsMode, ports};

matrix!(quickstart_demo_tokens);

fn demo_token(name: &str) -> Result<String> {
    let path = workspace_root().join("examples/quickstart/demo").join(name);
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("{}", path.display()))?
        .trim()
        .to_string())
}

async fn quickstart_demo_tokens(mode: XdsMode) -> Result<()> {
    let root = workspace_root().join("examples/quickstart");
    let gateway = std::fs::read_to_string(root.join("gateway.yaml"))?;
    let policies = std::fs::read_to_string(root.join("policies.yaml"))?;
    let echo = EchoBackend::start().await?;
    let port = ports::free_port()?;
    ensure!(
        gateway.contains("port: 10080") && gateway.contains("8081"),
        "quickstart gateway.yaml changed shape; update this test"
    );
    let gateway = gateway
        .replace("port: 10080", &format!("port: {port}"))
        .replace("8081", &echo.port().to_string())
        .replace(
            "  gatewayClassName: wayguard\n",
            "  gatewayClassName: wayguard\n  addresses:\n  - type: IPAddress\n    value: 127.0.0.1\n",
        );
    let s = ScenarioBuilder::new(mode)
        .gateway("demo", "waypoint")
        .with_echo(echo)
        .http_port(port)
        .no_generated_gateway()
        .file("gateway.yaml", gateway)
        .file("policies.yaml", policies)
        .start()
        .await?;
    let alice = demo_token("alice.jwt")?;
    let bob = demo_token("bob.jwt")?;
    let seen = s
        .eventually(&Req::get("/orders").bearer(&alice), 200)
        .await?
        .echo()?;
    ensure!(
        seen.header("x-user-email") == Some("alice@example.com"),
        "x-user-email: {:?}",
        seen.header("x-user-email")
    );
    s.expect(&Req::get("/orders").bearer(&bob), 200).await?;
    s.expect_body(&Req::get("/orders"), 403, "RBAC: access denied")
        .await?;
    s.expect(&Req::get("/healthz"), 200).await?;
    s.expect(&Req::post("/healthz"), 403).await?;
    s.expect(&Req::post("/orders").bearer(&alice), 200).await?;
    s.expect_body(
        &Req::post("/orders").bearer(&bob),
        403,
        "RBAC: access denied",
    )
    .await?;
    s.expect_body(
        &Req::get("/orders").bearer(&demo_token("expired.jwt")?),
        401,
        "Jwt is expired",
    )
    .await?;
    s.expect_body(
        &Req::get("/orders").bearer(&demo_token("wrong-audience.jwt")?),
        403,
        "Audiences in Jwt are not allowed",
    )
    .await?;
    s.assert_no_nacks().await
}
