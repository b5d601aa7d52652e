//! Startup of `serve --kubernetes`: the first snapshot already has what the initial objects
//! reference.

use anyhow::{Result, ensure};
use wayguard_tests::kube::manifests::HttpsStack;
use wayguard_tests::kube::{KubeScenario, report};
use wayguard_tests::pki::Pki;
use wayguard_tests::ports::free_port;

use crate::common::{GATEWAY, NS, run};

/// A Gateway of the initial list references a TLS Secret and a CA ConfigMap, and the mesh
/// ConfigMap `istio-system/istio` is referenced but absent. wayguard must read the first two
/// (and learn the third is absent) before its first build: the snapshot served when `/ready`
/// turns 200 carries the certificate and the CA, and the start logs no warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referenced_objects_are_in_the_first_snapshot() -> Result<()> {
    run("referenced-objects", async |s: &mut KubeScenario| {
        let pki = Pki::new("wayguard tier3 CA")?;
        let mut stack = s.stack(NS, GATEWAY)?;
        stack.https = Some(HttpsStack {
            port: free_port()?,
            server: pki.server_cert(&["gateway.wayguard.test"])?,
            client_ca_pem: Some(pki.ca_pem().to_string()),
        });
        s.apply(&stack.yaml()).await?;
        s.clock().restart();
        let wg = s
            .start_replica(KubeScenario::replica_options("wayguard-0"))
            .await?;
        s.phase("wayguard ready with a Gateway referencing a Secret and a ConfigMap");
        let replica = s.replica(wg)?;
        let dump = replica
            .admin_get(&format!("/debug/config_dump?gateway={NS}/{GATEWAY}"))
            .await?;
        ensure!(dump.status == 200, "config_dump: {} {}", dump.status, dump.body);
        for secret in [format!("{NS}/gateway-cert"), format!("{NS}/client-ca/ca.crt")] {
            ensure!(
                dump.body.contains(&format!("\"{secret}\"")),
                "the snapshot served at /ready lacks the SDS secret {secret}:\n{}",
                dump.body
            );
        }
        // Nothing reported late, and a clean start logs no warning at all (API discovery asks
        // only for versions the cluster serves).
        s.assert_no_warnings(&[]).await?;
        report(&format!(
            "[tier3 referenced-objects] first snapshot has {NS}/gateway-cert and {NS}/client-ca/ca.crt"
        ));
        Ok(())
    })
    .await
}
