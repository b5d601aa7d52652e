//! `cargo xtask chart`: `helm lint` and `helm template` of `charts/wayguard`, with assertions on
//! what is rendered (RBAC rules exactly, no wildcards, securityContext, probes, ports, flags, the
//! tokenExchange ConfigMap), on what the values schema rejects, and on the consistency of
//! `deploy/` (the Envoy waypoint's bootstrap, Service and kind port mapping).
//!
//! [`run`] is what `cargo xtask ci` calls. It needs helm (`cargo xtask tools --kube`); it fails,
//! never skips, when helm is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};
use serde_json::Value;

const CHART: &str = "charts/wayguard";
const SEED_VALUES: &str = "examples/seed/08-token-exchange-helm-values.yaml";
const RELEASE: &str = "wayguard";
const NAMESPACE: &str = "istio-system";
const READ: &[&str] = &["get", "list", "watch"];
const STATUS: &[&str] = &["patch", "update"];

/// `(apiGroup, resource, verb, resourceName)`: one permission, the unit rules are compared in.
type Grant = (String, String, String, String);

/// The ClusterRole's rules, exactly (`tokenreviews` only with `tokenExchange.enabled`).
fn expected_cluster_grants(token_exchange: bool) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    let mut add = |group: &str, resources: &[&str], verbs: &[&str]| {
        for r in resources {
            for v in verbs {
                out.insert((group.into(), (*r).into(), (*v).into(), String::new()));
            }
        }
    };
    let gw = "gateway.networking.k8s.io";
    add(
        gw,
        &[
            "gateways",
            "gatewayclasses",
            "httproutes",
            "referencegrants",
        ],
        READ,
    );
    add(gw, &["gateways/status", "httproutes/status"], STATUS);
    let policy_kinds: [(&str, &[&str]); 4] = [
        (
            "security.istio.io",
            &["requestauthentications", "authorizationpolicies"],
        ),
        ("extauth.solo.io", &["authconfigs"]),
        (
            "enterpriseagentgateway.solo.io",
            &["enterpriseagentgatewaypolicies"],
        ),
        ("agentgateway.dev", &["agentgatewaybackends"]),
    ];
    for (group, resources) in policy_kinds {
        add(group, resources, READ);
        let status: Vec<String> = resources.iter().map(|r| format!("{r}/status")).collect();
        let status: Vec<&str> = status.iter().map(String::as_str).collect();
        add(group, &status, STATUS);
    }
    add(
        "",
        &["services", "namespaces", "secrets", "configmaps"],
        READ,
    );
    add("discovery.k8s.io", &["endpointslices"], READ);
    if token_exchange {
        add("authentication.k8s.io", &["tokenreviews"], &["create"]);
    }
    out
}

/// The release-namespace Role: the leader Lease and Events.
fn expected_role_grants() -> BTreeSet<Grant> {
    let g = |group: &str, resource: &str, verb: &str, name: &str| -> Grant {
        (group.into(), resource.into(), verb.into(), name.into())
    };
    BTreeSet::from([
        g("coordination.k8s.io", "leases", "create", ""),
        g("coordination.k8s.io", "leases", "get", "wayguard-leader"),
        g("coordination.k8s.io", "leases", "update", "wayguard-leader"),
        g("", "events", "create", ""),
        g("events.k8s.io", "events", "create", ""),
    ])
}

/// Runs every chart check; the error lists every failed assertion.
pub fn run() -> Result<()> {
    let helm = Helm::locate()?;
    let root = crate::crds::repo_root();
    let mut c = Checks::default();

    for extra in [&[][..], &["-f", SEED_VALUES][..]] {
        let out = helm.run(&root, &[&["lint", "--strict", CHART][..], extra].concat())?;
        c.check(
            out.status.success(),
            format!(
                "helm lint --strict {}: {}",
                extra.join(" "),
                Helm::output_text(&out)
            ),
        );
    }

    let defaults = helm.template(&root, &["--include-crds"])?;
    check_common(&mut c, "defaults", &defaults, false);
    check_defaults(&mut c, &defaults);

    let seed = helm.template(&root, &["-f", SEED_VALUES])?;
    check_common(&mut c, "seed values", &seed, true);
    check_token_exchange(&mut c, &root, &seed)?;

    let overrides = helm.template(
        &root,
        &[
            "--set",
            "podDisruptionBudget.enabled=true,prometheus.scrape=false,replicas=3",
            "--set",
            "jwks.fetchMode=hybrid,log.format=json,waypointClasses=null",
            "--set",
            "tokenExchange.enabled=true,tokenExchange.subjectValidator.validatorType=k8s",
        ],
    )?;
    check_common(&mut c, "overrides", &overrides, true);
    check_overrides(&mut c, &overrides);

    check_rejections(&mut c, &helm, &root)?;
    check_deploy(&mut c, &root)?;

    c.finish()
}

/// Assertion failures, collected so one run reports them all.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
    passed: usize,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if ok {
            self.passed += 1;
        } else {
            self.failures.push(what.into());
        }
    }

    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        let ok = got == want;
        self.check(ok, format!("{what}: got {got:?}, want {want:?}"));
    }

    fn finish(self) -> Result<()> {
        if self.failures.is_empty() {
            println!("chart: {} checks passed", self.passed);
            return Ok(());
        }
        for f in &self.failures {
            println!("chart: FAILED: {f}");
        }
        bail!(
            "{} of {} chart checks failed",
            self.failures.len(),
            self.failures.len() + self.passed
        )
    }
}

/// The helm binary with private cache/config/data directories.
struct Helm {
    bin: PathBuf,
    home: PathBuf,
}

impl Helm {
    fn locate() -> Result<Helm> {
        let bin = match std::env::var_os("WAYGUARD_HELM") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => crate::tools::Tools::from_env().helm,
        };
        if !bin.exists() {
            bail!(
                "helm not found at {} (run `cargo xtask tools --kube`)",
                bin.display()
            );
        }
        let home = std::env::temp_dir().join(format!("wayguard-chart-{}", std::process::id()));
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        Ok(Helm { bin, home })
    }

    fn run(&self, root: &Path, args: &[&str]) -> Result<Output> {
        Command::new(&self.bin)
            .args(args)
            .current_dir(root)
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .env("KUBECONFIG", self.home.join("no-kubeconfig"))
            .output()
            .with_context(|| format!("running {} {}", self.bin.display(), args.join(" ")))
    }

    fn output_text(out: &Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .trim()
        .to_string()
    }

    /// `helm template wayguard charts/wayguard -n istio-system ARGS`, parsed into documents.
    fn template(&self, root: &Path, args: &[&str]) -> Result<Vec<Value>> {
        let base = ["template", RELEASE, CHART, "--namespace", NAMESPACE];
        let out = self.run(root, &[&base[..], args].concat())?;
        if !out.status.success() {
            bail!(
                "helm template {}: {}",
                args.join(" "),
                Helm::output_text(&out)
            );
        }
        parse_documents(&String::from_utf8_lossy(&out.stdout))
            .with_context(|| format!("parsing the output of helm template {}", args.join(" ")))
    }
}

impl Drop for Helm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Multi-document YAML into JSON values, empty documents dropped.
fn parse_documents(text: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// `v[k0][k1]...` (keys may contain dots and slashes), `Null` when absent.
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    static NULL: Value = Value::Null;
    let mut cur = v;
    for key in path {
        cur = match cur {
            Value::Object(map) => map.get(*key).unwrap_or(&NULL),
            Value::Array(items) => key
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i))
                .unwrap_or(&NULL),
            _ => &NULL,
        };
    }
    cur
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| at(d, &["kind"]).as_str() == Some(kind))
        .collect()
}

/// Every permission a Role or ClusterRole grants, and the wildcards it uses.
fn grants(role: &Value) -> (BTreeSet<Grant>, Vec<String>) {
    let mut out = BTreeSet::new();
    let mut wildcards = Vec::new();
    for (i, rule) in at(role, &["rules"])
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let groups = strings(at(rule, &["apiGroups"]));
        let resources = strings(at(rule, &["resources"]));
        let verbs = strings(at(rule, &["verbs"]));
        let mut names = strings(at(rule, &["resourceNames"]));
        let urls = strings(at(rule, &["nonResourceURLs"]));
        for field in [&groups, &resources, &verbs, &names, &urls] {
            if field.iter().any(|s| s.contains('*')) {
                wildcards.push(format!("rule {i}: {field:?}"));
            }
        }
        if !urls.is_empty() {
            wildcards.push(format!("rule {i}: nonResourceURLs {urls:?}"));
        }
        if names.is_empty() {
            names.push(String::new());
        }
        for g in &groups {
            for r in &resources {
                for v in &verbs {
                    for n in &names {
                        out.insert((g.clone(), r.clone(), v.clone(), n.clone()));
                    }
                }
            }
        }
    }
    (out, wildcards)
}

/// Differences between two grant sets, for a readable failure.
fn grant_diff(got: &BTreeSet<Grant>, want: &BTreeSet<Grant>) -> String {
    let extra: Vec<_> = got.difference(want).collect();
    let missing: Vec<_> = want.difference(got).collect();
    format!("extra {extra:?}, missing {missing:?}")
}

fn one<'a>(c: &mut Checks, case: &str, docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    let found = of_kind(docs, kind);
    c.eq(&format!("{case}: number of {kind}s"), found.len(), 1);
    found.first().copied()
}

fn container(deployment: &Value) -> &Value {
    at(deployment, &["spec", "template", "spec", "containers", "0"])
}

fn env_map(container: &Value) -> BTreeMap<String, Value> {
    at(container, &["env"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((at(e, &["name"]).as_str()?.to_string(), e.clone())))
        .collect()
}

/// Checks that hold for every set of values: RBAC, bindings, hardening, probes, ports.
fn check_common(c: &mut Checks, case: &str, docs: &[Value], token_exchange: bool) {
    let sa_name = one(c, case, docs, "ServiceAccount")
        .and_then(|sa| at(sa, &["metadata", "name"]).as_str())
        .unwrap_or_default()
        .to_string();
    c.eq(
        &format!("{case}: ServiceAccount name"),
        sa_name.as_str(),
        RELEASE,
    );

    for kind in ["ClusterRole", "Role"] {
        for role in of_kind(docs, kind) {
            let (got, wildcards) = grants(role);
            c.check(
                wildcards.is_empty(),
                format!("{case}: {kind} uses wildcards or nonResourceURLs: {wildcards:?}"),
            );
            let secret_verbs: BTreeSet<&str> = got
                .iter()
                .filter(|(g, r, _, _)| g.is_empty() && r.starts_with("secrets"))
                .map(|(_, _, v, _)| v.as_str())
                .collect();
            c.check(
                secret_verbs.iter().all(|v| READ.contains(v)),
                format!("{case}: {kind} may write Secrets: {secret_verbs:?}"),
            );
        }
    }
    if let Some(cr) = one(c, case, docs, "ClusterRole") {
        let (got, _) = grants(cr);
        let want = expected_cluster_grants(token_exchange);
        c.check(
            got == want,
            format!("{case}: ClusterRole rules: {}", grant_diff(&got, &want)),
        );
    }
    if let Some(role) = one(c, case, docs, "Role") {
        let (got, _) = grants(role);
        let want = expected_role_grants();
        c.check(
            got == want,
            format!("{case}: Role rules: {}", grant_diff(&got, &want)),
        );
        c.eq(
            &format!("{case}: Role namespace"),
            at(role, &["metadata", "namespace"]).as_str(),
            Some(NAMESPACE),
        );
    }
    for (binding, role_kind) in [
        ("ClusterRoleBinding", "ClusterRole"),
        ("RoleBinding", "Role"),
    ] {
        let Some(b) = one(c, case, docs, binding) else {
            continue;
        };
        let role_name = of_kind(docs, role_kind)
            .first()
            .and_then(|r| at(r, &["metadata", "name"]).as_str());
        c.eq(
            &format!("{case}: {binding} roleRef"),
            (
                at(b, &["roleRef", "kind"]).as_str(),
                at(b, &["roleRef", "name"]).as_str(),
            ),
            (Some(role_kind), role_name),
        );
        c.eq(
            &format!("{case}: {binding} subjects"),
            at(b, &["subjects"]).clone(),
            serde_json::json!([{"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}]),
        );
    }

    let Some(dep) = one(c, case, docs, "Deployment") else {
        return;
    };
    let pod = at(dep, &["spec", "template", "spec"]);
    let ctr = container(dep);
    c.eq(
        &format!("{case}: serviceAccountName"),
        at(pod, &["serviceAccountName"]).as_str(),
        Some(sa_name.as_str()),
    );
    let args = strings(at(ctr, &["args"]));
    c.eq(
        &format!("{case}: first args"),
        args.get(..2).map(<[String]>::to_vec),
        Some(vec!["serve".to_string(), "--kubernetes".to_string()]),
    );
    let sc = at(ctr, &["securityContext"]);
    for (key, want) in [
        ("runAsNonRoot", Value::Bool(true)),
        ("runAsUser", Value::from(65532)),
        ("readOnlyRootFilesystem", Value::Bool(true)),
        ("allowPrivilegeEscalation", Value::Bool(false)),
    ] {
        c.eq(
            &format!("{case}: container securityContext.{key}"),
            at(sc, &[key]),
            &want,
        );
    }
    c.eq(
        &format!("{case}: capabilities.drop"),
        strings(at(sc, &["capabilities", "drop"])),
        vec!["ALL".to_string()],
    );
    c.check(
        at(sc, &["capabilities", "add"]).is_null(),
        format!("{case}: capabilities.add is set"),
    );
    for level in [sc, at(pod, &["securityContext"])] {
        c.eq(
            &format!("{case}: seccompProfile"),
            at(level, &["seccompProfile", "type"]).as_str(),
            Some("RuntimeDefault"),
        );
    }
    c.eq(
        &format!("{case}: pod runAsUser"),
        at(pod, &["securityContext", "runAsUser"]),
        &Value::from(65532),
    );
    for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/live")] {
        c.eq(
            &format!("{case}: {probe}"),
            (
                at(ctr, &[probe, "httpGet", "path"]).as_str(),
                at(ctr, &[probe, "httpGet", "port"]).as_str(),
            ),
            (Some(path), Some("http-admin")),
        );
    }
    let env = env_map(ctr);
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        c.eq(
            &format!("{case}: env {name}"),
            env.get(name)
                .map(|e| at(e, &["valueFrom", "fieldRef", "fieldPath"]).clone()),
            Some(Value::from(field)),
        );
    }
    c.check(
        !at(pod, &["affinity", "podAntiAffinity"]).is_null(),
        format!("{case}: no pod anti-affinity"),
    );
    c.check(
        at(pod, &["terminationGracePeriodSeconds"]).is_u64(),
        format!("{case}: terminationGracePeriodSeconds missing"),
    );
    c.check(
        at(ctr, &["resources", "requests"]).is_object(),
        format!("{case}: no resource requests"),
    );

    let container_ports: BTreeMap<String, Value> = at(ctr, &["ports"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                at(p, &["name"]).as_str()?.to_string(),
                at(p, &["containerPort"]).clone(),
            ))
        })
        .collect();
    let want_ports = [
        ("grpc-xds", 15010),
        ("http-admin", 15014),
        ("grpc-extauth", 8083),
        ("http-sts", 7777),
    ];
    let want: BTreeMap<String, Value> = want_ports
        .iter()
        .map(|(n, p)| ((*n).to_string(), Value::from(*p)))
        .collect();
    c.eq(&format!("{case}: container ports"), &container_ports, &want);
    if let Some(svc) = one(c, case, docs, "Service") {
        let ports: BTreeMap<String, (Value, Value)> = at(svc, &["spec", "ports"])
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    at(p, &["name"]).as_str()?.to_string(),
                    (at(p, &["port"]).clone(), at(p, &["targetPort"]).clone()),
                ))
            })
            .collect();
        let want: BTreeMap<String, (Value, Value)> = want_ports
            .iter()
            .map(|(n, p)| ((*n).to_string(), (Value::from(*p), Value::from(*n))))
            .collect();
        c.eq(&format!("{case}: Service ports"), &ports, &want);
        c.eq(
            &format!("{case}: Service selector"),
            at(svc, &["spec", "selector"]),
            at(dep, &["spec", "selector", "matchLabels"]),
        );
        c.eq(
            &format!("{case}: Service name"),
            at(svc, &["metadata", "name"]).as_str(),
            Some(RELEASE),
        );
    }
}

/// Flag values, `--name=value` -> `name -> value`.
fn flags(dep: &Value) -> BTreeMap<String, String> {
    strings(at(container(dep), &["args"]))
        .into_iter()
        .filter_map(|a| {
            let (k, v) = a.strip_prefix("--")?.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

fn check_defaults(c: &mut Checks, docs: &[Value]) {
    let crds: BTreeSet<String> = of_kind(docs, "CustomResourceDefinition")
        .iter()
        .filter_map(|d| at(d, &["metadata", "name"]).as_str().map(str::to_string))
        .collect();
    let want_crds: BTreeSet<String> = [
        "requestauthentications.security.istio.io",
        "authorizationpolicies.security.istio.io",
        "authconfigs.extauth.solo.io",
        "enterpriseagentgatewaypolicies.enterpriseagentgateway.solo.io",
        "agentgatewaybackends.agentgateway.dev",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    c.eq("defaults: CRDs (--include-crds)", crds, want_crds);
    c.eq(
        "defaults: ConfigMaps (tokenExchange off)",
        of_kind(docs, "ConfigMap").len(),
        0,
    );
    c.eq(
        "defaults: PodDisruptionBudgets",
        of_kind(docs, "PodDisruptionBudget").len(),
        0,
    );
    let Some(dep) = of_kind(docs, "Deployment").first().copied() else {
        return;
    };
    let want: BTreeMap<String, String> = [
        ("xds-address", "0.0.0.0:15010"),
        ("admin-address", "0.0.0.0:15014"),
        ("extauth-address", "0.0.0.0:8083"),
        ("sts-address", "0.0.0.0:7777"),
        ("root-namespace", "istio-system"),
        ("gateway-class", "wayguard,istio-waypoint"),
        ("waypoint-class", "istio-waypoint"),
        ("debounce", "100ms"),
        ("debounce-max", "1s"),
        ("jwks-refresh-interval", "20m"),
        ("jwks-fetch-mode", "istiod"),
        ("log", "info"),
        ("log-format", "text"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    c.eq("defaults: serve flags", flags(dep), want);
    c.eq(
        "defaults: replicas",
        at(dep, &["spec", "replicas"]),
        &Value::from(2),
    );
    let annotations = at(dep, &["spec", "template", "metadata", "annotations"]);
    c.eq(
        "defaults: prometheus annotations",
        (
            at(annotations, &["prometheus.io/scrape"]).as_str(),
            at(annotations, &["prometheus.io/port"]).as_str(),
            at(annotations, &["prometheus.io/path"]).as_str(),
        ),
        (Some("true"), Some("15014"), Some("/metrics")),
    );
    let image = at(container(dep), &["image"]).as_str().unwrap_or_default();
    c.check(
        image.starts_with("ghcr.io/wayguard/wayguard:") && !image.ends_with(':'),
        format!("defaults: image {image:?}"),
    );
}

/// The seed's tokenExchange block reaches the STS's file unchanged, and the pod mounts it.
fn check_token_exchange(c: &mut Checks, root: &Path, docs: &[Value]) -> Result<()> {
    let seed_text = std::fs::read_to_string(root.join(SEED_VALUES))
        .with_context(|| format!("reading {SEED_VALUES}"))?;
    let seed: Value = serde_saphyr::from_str(&seed_text)?;
    let seed = at(&seed, &["tokenExchange"]);
    let Some(cm) = one(c, "seed values", docs, "ConfigMap") else {
        return Ok(());
    };
    c.eq(
        "seed values: ConfigMap name",
        at(cm, &["metadata", "name"]).as_str(),
        Some("wayguard-token-exchange"),
    );
    let file = at(cm, &["data", "token-exchange.yaml"])
        .as_str()
        .unwrap_or_default();
    let rendered: Value = serde_saphyr::from_str(file)
        .with_context(|| format!("parsing the rendered token-exchange.yaml:\n{file}"))?;
    let mut leaves = Vec::new();
    collect_leaves(seed, &mut Vec::new(), &mut leaves);
    c.check(
        leaves.len() >= 6,
        format!(
            "seed values: tokenExchange has only {} leaves",
            leaves.len()
        ),
    );
    for (path, want) in leaves {
        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
        c.eq(
            &format!("seed values: token-exchange.yaml {}", path.join(".")),
            at(&rendered, &keys),
            &want,
        );
    }
    if let Some(dep) = of_kind(docs, "Deployment").first().copied() {
        let ctr = container(dep);
        let mount = at(ctr, &["volumeMounts"])
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| at(m, &["name"]).as_str() == Some("token-exchange"));
        let mount_path = mount.and_then(|m| at(m, &["mountPath"]).as_str());
        let volume_cm = at(dep, &["spec", "template", "spec", "volumes"])
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| at(v, &["name"]).as_str() == Some("token-exchange"))
            .and_then(|v| at(v, &["configMap", "name"]).as_str());
        c.eq(
            "seed values: token-exchange volume",
            volume_cm,
            at(cm, &["metadata", "name"]).as_str(),
        );
        let env = env_map(ctr);
        let env_path = env
            .get("WAYGUARD_TOKEN_EXCHANGE_CONFIG")
            .and_then(|e| at(e, &["value"]).as_str().map(str::to_string));
        c.eq(
            "seed values: WAYGUARD_TOKEN_EXCHANGE_CONFIG",
            env_path,
            mount_path.map(|p| format!("{p}/token-exchange.yaml")),
        );
        c.check(
            !at(
                dep,
                &[
                    "spec",
                    "template",
                    "metadata",
                    "annotations",
                    "checksum/token-exchange",
                ],
            )
            .is_null(),
            "seed values: no checksum/token-exchange annotation",
        );
    }
    Ok(())
}

/// Every scalar below `v`, with its key path.
fn collect_leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                path.push(k.clone());
                collect_leaves(child, path, out);
                path.pop();
            }
        }
        other => out.push((path.clone(), other.clone())),
    }
}

fn check_overrides(c: &mut Checks, docs: &[Value]) {
    let Some(dep) = of_kind(docs, "Deployment").first().copied() else {
        return;
    };
    let f = flags(dep);
    c.eq(
        "overrides: --jwks-fetch-mode",
        f.get("jwks-fetch-mode").map(String::as_str),
        Some("hybrid"),
    );
    c.eq(
        "overrides: --log-format",
        f.get("log-format").map(String::as_str),
        Some("json"),
    );
    c.eq(
        "overrides: --waypoint-class (none)",
        f.get("waypoint-class").map(String::as_str),
        Some(""),
    );
    c.eq(
        "overrides: replicas",
        at(dep, &["spec", "replicas"]),
        &Value::from(3),
    );
    c.check(
        at(
            dep,
            &[
                "spec",
                "template",
                "metadata",
                "annotations",
                "prometheus.io/scrape",
            ],
        )
        .is_null(),
        "overrides: prometheus annotations with prometheus.scrape=false",
    );
    if let Some(pdb) = one(c, "overrides", docs, "PodDisruptionBudget") {
        c.eq(
            "overrides: PDB minAvailable",
            at(pdb, &["spec", "minAvailable"]),
            &Value::from(1),
        );
        c.eq(
            "overrides: PDB selector",
            at(pdb, &["spec", "selector", "matchLabels"]),
            at(dep, &["spec", "selector", "matchLabels"]),
        );
    }
    if let Some(cm) = of_kind(docs, "ConfigMap").first() {
        let file = at(cm, &["data", "token-exchange.yaml"])
            .as_str()
            .unwrap_or_default();
        match serde_saphyr::from_str::<Value>(file) {
            Ok(v) => {
                c.eq(
                    "overrides: k8s subject validator has no remoteConfig",
                    at(&v, &["subjectValidator"]).clone(),
                    serde_json::json!({"validatorType": "k8s"}),
                );
                c.eq(
                    "overrides: default issuer",
                    at(&v, &["issuer"]).as_str(),
                    Some("wayguard.istio-system.svc.cluster.local:7777"),
                );
            }
            Err(e) => c.check(false, format!("overrides: token-exchange.yaml: {e}")),
        }
    }
}

/// Values the schema (or the templates) must refuse, with a word the error must contain.
fn check_rejections(c: &mut Checks, helm: &Helm, root: &Path) -> Result<()> {
    let cases: [(&[&str], &str); 9] = [
        (&["--set", "replica=3"], "replica"),
        (&["--set", "jwks.fetchMode=bogus"], "fetchMode"),
        (
            &["--set-string", "jwks.refreshInterval=20x"],
            "refreshInterval",
        ),
        (&["--set", "log.format=xml"], "format"),
        (&["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (
            &["--set", "tokenExchange.subjectValidator.validatorType=oidc"],
            "validatorType",
        ),
        (
            &["--set", "tokenExchange.actorValidator.validatorTyp=k8s"],
            "validatorTyp",
        ),
        (&["--set", "tokenExchange.enabled=true"], "url"),
        // The template's own guard, for installs that skip the schema.
        (
            &[
                "--skip-schema-validation",
                "--set",
                "tokenExchange.enabled=true",
            ],
            "remoteConfig.url is required",
        ),
    ];
    for (args, needle) in cases {
        let base = ["template", RELEASE, CHART, "--namespace", NAMESPACE];
        let out = helm.run(root, &[&base[..], args].concat())?;
        let text = Helm::output_text(&out);
        c.check(
            !out.status.success() && text.contains(needle),
            format!(
                "helm template {} should fail mentioning {needle:?}; status {}, output: {}",
                args.join(" "),
                out.status,
                text.lines().take(5).collect::<Vec<_>>().join(" | ")
            ),
        );
    }
    Ok(())
}

/// deploy/: the Envoy waypoint's bootstrap targets the seed Gateway and the chart's Service, and
/// the Gateway listener, Envoy port, Service and kind port mapping line up.
fn check_deploy(c: &mut Checks, root: &Path) -> Result<()> {
    let read = |p: &str| -> Result<Vec<Value>> {
        let text = std::fs::read_to_string(root.join(p)).with_context(|| format!("reading {p}"))?;
        parse_documents(&text).with_context(|| format!("parsing {p}"))
    };
    let envoy = read("deploy/envoy-waypoint.yaml")?;
    let app = read("deploy/kind/payments.yaml")?;
    let kind = read("deploy/kind/cluster.yaml")?;

    let bootstrap: Value = match one(c, "envoy-waypoint.yaml", &envoy, "ConfigMap") {
        Some(cm) => {
            let text = at(cm, &["data", "envoy.yaml"]).as_str().unwrap_or_default();
            serde_saphyr::from_str(text).context("parsing the bootstrap in envoy-waypoint.yaml")?
        }
        None => Value::Null,
    };
    c.eq(
        "envoy-waypoint.yaml: node metadata wayguard.io/gateway",
        at(&bootstrap, &["node", "metadata", "wayguard.io/gateway"]).as_str(),
        Some("payments-prod/waypoint"),
    );
    let xds = at(
        &bootstrap,
        &[
            "static_resources",
            "clusters",
            "0",
            "load_assignment",
            "endpoints",
            "0",
            "lb_endpoints",
            "0",
            "endpoint",
            "address",
            "socket_address",
        ],
    );
    c.eq(
        "envoy-waypoint.yaml: xDS address",
        (
            at(xds, &["address"]).as_str(),
            at(xds, &["port_value"]).as_u64(),
        ),
        (Some("wayguard.istio-system.svc"), Some(15010)),
    );

    let listener_port = of_kind(&app, "Gateway")
        .first()
        .map(|g| at(g, &["spec", "listeners", "0", "port"]).clone());
    c.eq(
        "payments.yaml: Gateway payments-prod/waypoint",
        of_kind(&app, "Gateway").first().map(|g| {
            (
                at(g, &["metadata", "namespace"]).clone(),
                at(g, &["metadata", "name"]).clone(),
            )
        }),
        Some((Value::from("payments-prod"), Value::from("waypoint"))),
    );
    if let Some(dep) = one(c, "envoy-waypoint.yaml", &envoy, "Deployment") {
        let ctr = container(dep);
        c.eq(
            "envoy-waypoint.yaml: image",
            at(ctr, &["image"]).as_str(),
            Some("envoyproxy/envoy:v1.40.0"),
        );
        c.eq(
            "envoy-waypoint.yaml: container port = Gateway listener port",
            Some(at(ctr, &["ports", "0", "containerPort"]).clone()),
            listener_port.clone(),
        );
        c.eq(
            "envoy-waypoint.yaml: bootstrap volume",
            at(
                dep,
                &[
                    "spec",
                    "template",
                    "spec",
                    "volumes",
                    "0",
                    "configMap",
                    "name",
                ],
            )
            .as_str(),
            Some("waypoint-envoy-bootstrap"),
        );
    }
    if let Some(svc) = one(c, "envoy-waypoint.yaml", &envoy, "Service") {
        c.eq(
            "envoy-waypoint.yaml: Service port = Gateway listener port",
            Some(at(svc, &["spec", "ports", "0", "port"]).clone()),
            listener_port,
        );
        let node_port = at(svc, &["spec", "ports", "0", "nodePort"]).clone();
        let mapped = kind
            .first()
            .map(|k| {
                at(
                    k,
                    &["nodes", "0", "extraPortMappings", "0", "containerPort"],
                )
                .clone()
            })
            .unwrap_or(Value::Null);
        c.eq(
            "kind cluster.yaml maps the waypoint's NodePort",
            mapped,
            node_port,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_expand_rules_and_flag_wildcards() {
        let role = parse_documents(
            r#"
kind: ClusterRole
rules:
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "list"]
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    resourceNames: ["wayguard-leader"]
    verbs: ["*"]
"#,
        )
        .expect("yaml");
        let (got, wildcards) = grants(&role[0]);
        assert_eq!(got.len(), 3);
        assert!(got.contains(&(
            "coordination.k8s.io".into(),
            "leases".into(),
            "*".into(),
            "wayguard-leader".into()
        )));
        assert_eq!(wildcards.len(), 1);
    }

    #[test]
    fn expected_rules_grant_secrets_read_only_and_tokenreviews_only_with_sts() {
        let without = expected_cluster_grants(false);
        let with = expected_cluster_grants(true);
        assert_eq!(with.len(), without.len() + 1);
        assert!(
            without
                .iter()
                .filter(|(_, r, _, _)| r == "secrets")
                .all(|(_, _, v, _)| READ.contains(&v.as_str()))
        );
        // Gateway API 4x3 + 2x2, Istio 2x3 + 2x2, three Solo/agentgateway kinds 3 + 2 each,
        // core 4x3, EndpointSlices 3.
        assert_eq!(without.len(), 16 + 10 + 3 * 5 + 12 + 3);
    }

    #[test]
    fn at_walks_objects_arrays_and_dotted_keys() {
        let v = serde_json::json!({"a": [{"prometheus.io/port": "15014"}]});
        assert_eq!(at(&v, &["a", "0", "prometheus.io/port"]), "15014");
        assert!(at(&v, &["a", "1", "x"]).is_null());
    }

    #[test]
    fn leaves_have_paths() {
        let v = serde_json::json!({"a": {"b": 1, "c": {"d": "x"}}, "e": true});
        let mut out = Vec::new();
        collect_leaves(&v, &mut Vec::new(), &mut out);
        assert_eq!(out.len(), 3);
        assert!(out.contains(&(vec!["a".into(), "c".into(), "d".into()], Value::from("x"))));
    }
}
