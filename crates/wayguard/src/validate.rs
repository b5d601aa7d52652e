//! `wayguard validate FILE...`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use wayguard_api::ObjectRef;
use wayguard_api::validation::validate;

use crate::files::{expand, load_file};

/// Counts of what `validate` found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Resources checked.
    pub resources: usize,
    /// Problems that make the input invalid.
    pub errors: usize,
    /// Warnings.
    pub warnings: usize,
}

/// Validates every resource in `paths`, writing one line per problem:
/// `FILE: Kind namespace/name: field path: message` (warnings prefixed with `warning: `).
pub fn run(paths: &[PathBuf], out: &mut dyn Write) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    let files = match expand(paths) {
        Ok(files) => files,
        Err(e) => {
            writeln!(out, "{e}")?;
            summary.errors += 1;
            return Ok(summary);
        }
    };
    if files.is_empty() {
        writeln!(
            out,
            "no .yaml or .yml files found in {}",
            display_list(paths)
        )?;
        summary.errors += 1;
    }
    let mut seen: BTreeMap<ObjectRef, String> = BTreeMap::new();
    // (cookie domain or appUrl host, cookie name) -> the AuthConfigs using it, with their file.
    let mut cookies: BTreeMap<(String, String), Vec<(String, ObjectRef)>> = BTreeMap::new();
    for path in files {
        let file = load_file(&path);
        let name = path.display().to_string();
        let docs = match file.documents {
            Ok(docs) => docs,
            Err(e) => {
                writeln!(out, "{name}: {e}")?;
                summary.errors += 1;
                continue;
            }
        };
        for doc in docs {
            let resource = match doc.result {
                Ok(r) => r,
                Err(e) => {
                    writeln!(out, "{name}: {e}")?;
                    summary.errors += 1;
                    continue;
                }
            };
            summary.resources += 1;
            let object = resource.object_ref();
            if let Some(first) = seen.insert(object.clone(), name.clone()) {
                writeln!(
                    out,
                    "{name}: {object}: is also defined in {first}; one of them would overwrite the other"
                )?;
                summary.errors += 1;
            }
            if let wayguard_api::resource::Resource::AuthConfig(ac) = &resource
                && let Some(key) = session_cookie(ac)
            {
                cookies
                    .entry(key)
                    .or_default()
                    .push((name.clone(), object.clone()));
            }
            let report = validate(&resource);
            for issue in &report.errors {
                writeln!(out, "{name}: {object}: {issue}")?;
            }
            for issue in &report.warnings {
                writeln!(out, "warning: {name}: {object}: {issue}")?;
            }
            summary.errors += report.errors.len();
            summary.warnings += report.warnings.len();
        }
    }
    for ((host, cookie), users) in &cookies {
        if users.len() < 2 {
            continue;
        }
        let all: Vec<String> = users.iter().map(|(_, o)| o.to_string()).collect();
        for (file, object) in users {
            writeln!(
                out,
                "warning: {file}: {object}: session cookie {cookie:?} on {host} is also used by {}; the logins overwrite each other's sessions. Give each a distinct session.redis.cookieName (or leave it unset: wayguard derives one per AuthConfig)",
                all.iter()
                    .filter(|o| **o != object.to_string())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
            summary.warnings += 1;
        }
    }
    Ok(summary)
}

/// The cookie an AuthConfig's sessions use, with where the browser scopes it (its domain, else
/// the appUrl host). Unset names are derived per AuthConfig and never collide.
fn session_cookie(ac: &wayguard_api::solo::AuthConfig) -> Option<(String, String)> {
    let oidc = ac.spec.configs.iter().find_map(|c| {
        c.oauth2
            .as_ref()
            .and_then(|o| o.oidc_authorization_code.as_deref())
    })?;
    let session = oidc.session.as_ref()?;
    let name = session.redis.as_ref().map(|r| r.cookie_name.clone())?;
    if name.is_empty() {
        return None;
    }
    let domain = session
        .cookie_options
        .as_ref()
        .and_then(|c| c.domain.clone())
        .filter(|d| !d.is_empty());
    let host = domain.or_else(|| {
        let rest = oidc
            .app_url
            .split_once("://")
            .map_or(oidc.app_url.as_str(), |(_, r)| r);
        rest.split(['/', ':']).next().map(str::to_string)
    })?;
    Some((host, name))
}

fn display_list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_config(name: &str, cookie: &str, app: &str) -> String {
        format!(
            "apiVersion: extauth.solo.io/v1
kind: AuthConfig
metadata: {{name: {name}, namespace: demo}}
spec:
  configs:
  - oauth2:
      oidcAuthorizationCode:
        appUrl: {app}
        clientId: c
        disableClientSecret: true
        issuerUrl: https://idp.example/
        session: {{redis: {{cookieName: {cookie}, options: {{host: ':6379'}}}}}}
"
        )
    }

    #[test]
    fn two_authconfigs_sharing_a_session_cookie_on_one_host_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = [
            auth_config("a", "session", "https://app.example/a"),
            auth_config("b", "session", "https://app.example:8443/b"),
            auth_config("c", "session", "https://other.example"),
            auth_config("d", "own", "https://app.example"),
        ]
        .join("---\n");
        std::fs::write(dir.path().join("login.yaml"), text).expect("write");
        let mut out = Vec::new();
        let summary = run(&[dir.path().to_path_buf()], &mut out).expect("run");
        let out = String::from_utf8(out).expect("utf8");
        assert_eq!(summary.errors, 0, "{out}");
        assert_eq!(summary.warnings, 2, "{out}");
        assert!(
            out.contains("AuthConfig demo/a: session cookie \"session\" on app.example is also used by AuthConfig demo/b"),
            "{out}"
        );
        assert!(!out.contains("demo/c") && !out.contains("demo/d"), "{out}");
    }
}
