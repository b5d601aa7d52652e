//! Behaviour the tier-3 tests found missing, kept as ignored tests until fixed.

use std::time::Duration;

use anyhow::{Result, ensure};
use wayguard_tests::kube::manifests::HttpsStack;
use wayguard_tests::kube::{KubeScenario, report};
use wayguard_tests::pki::Pki;
use wayguard_tests::ports::free_port;
use wayguard_tests::yaml::namespace;

use crate::common::{GATEWAY, NS, SEED02, internal, okta, run, seed_with};

/// The RequestAuthentication printer column ISSUERS ("Trusted JWT issuers") is
/// `.spec.jwtRules[*].issuer`, but the apiserver prints only the first JSONPath result, so a
/// policy with two issuers (seed 02) shows one. Needs no wayguard: the apiserver computes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known gap: the ISSUERS printer column shows only the first issuer of a multi-issuer \
            RequestAuthentication (the apiserver prints the first JSONPath result)"]
async fn issuers_column_lists_every_issuer() -> Result<()> {
    run("issuers-column", async |s: &mut KubeScenario| {
        let okta = okta().await?;
        let internal = internal().await?;
        s.apply(&namespace(NS)).await?;
        s.apply(&seed_with(SEED02, Some(&okta), Some(&internal))?)
            .await?;
        let (table, text) = s.table("requestauthentication").await?;
        report(&format!(
            "[tier3 issuers-column] kubectl get requestauthentication -A:\n{text}"
        ));
        let issuers = table
            .cell("NAME", "payments-jwt-multi", "ISSUERS")
            .unwrap_or_default();
        ensure!(
            issuers.contains(okta.issuer()) && issuers.contains(internal.issuer()),
            "kubectl get requestauthentication -A: ISSUERS of payments-jwt-multi (seed 02, two \
             jwtRules) is {issuers:?}, expected both {} and {}\n{text}",
            okta.issuer(),
            internal.issuer()
        );
        Ok(())
    })
    .await
}

/// At startup `serve --kubernetes` waits (up to 5 s) until every referenced Secret/ConfigMap
/// has an index entry, which never happens when (a) a referenced object does not exist (the
/// mesh ConfigMap `istio-system/istio` is always referenced and usually absent: the watcher's
/// InitDone deletes rather than inserts) or (b) it is referenced by a Gateway of the initial
/// list (its watcher starts only after the first rebuild, which comes after the wait). So every
/// start takes 5 s more, logs `some referenced Secrets/ConfigMaps did not arrive within 5s`,
/// and the first snapshot lacks the Gateway's certificate (pushed a moment later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known gap: startup waits 5s in vain for referenced Secrets/ConfigMaps (absent mesh \
            ConfigMap; Gateway references watched only after the initial build)"]
async fn referenced_secrets_arrive_before_the_initial_build() -> Result<()> {
    run("referenced-secrets", async |s: &mut KubeScenario| {
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
        let ready = s.phase("wayguard ready with a Gateway referencing a Secret and a ConfigMap");
        let waited = s
            .replica(wg)?
            .warnings()
            .into_iter()
            .filter(|l| l.contains("did not arrive"))
            .collect::<Vec<_>>();
        ensure!(
            waited.is_empty() && ready < Duration::from_secs(4),
            "wayguard serve --kubernetes took {ready:?} to become ready with the Gateway's TLS \
             Secret gateway-cert and ConfigMap client-ca present in the cluster; it logged: \
             {waited:?}"
        );
        Ok(())
    })
    .await
}
