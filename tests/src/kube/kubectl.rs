//! kubectl with one kubeconfig, run on a blocking thread so the async runtime (echo backend,
//! issuers) keeps serving while it runs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// What one kubectl run produced.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit status 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl KubectlOutput {
    /// stdout when the command succeeded, else an error with the command and its stderr.
    pub fn ok(self) -> Result<String> {
        if self.success {
            Ok(self.stdout)
        } else {
            bail!(
                "`{}` failed: {}{}",
                self.command,
                self.stderr.trim(),
                if self.stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!("\nstdout: {}", self.stdout.trim())
                }
            )
        }
    }
}

/// `kubectl --kubeconfig <file>`.
#[derive(Debug, Clone)]
pub struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// kubectl at `binary` using `kubeconfig`.
    pub fn new(binary: &Path, kubeconfig: &Path) -> Self {
        Self {
            binary: binary.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    /// The same kubectl with another kubeconfig.
    pub fn with_kubeconfig(&self, kubeconfig: &Path) -> Self {
        Self::new(&self.binary, kubeconfig)
    }

    /// The kubeconfig it uses.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Runs kubectl with `args` and `stdin` (if any); never fails on a non-zero exit.
    pub async fn run_with_stdin(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<KubectlOutput> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
        let stdin = stdin.map(str::to_string);
        let binary = self.binary.clone();
        let kubeconfig = self.kubeconfig.clone();
        tokio::task::spawn_blocking(move || run_blocking(&binary, &kubeconfig, &args, stdin))
            .await
            .map_err(|e| anyhow!("kubectl task: {e}"))?
    }

    /// Runs kubectl with `args`; never fails on a non-zero exit.
    pub async fn run(&self, args: &[&str]) -> Result<KubectlOutput> {
        self.run_with_stdin(args, None).await
    }

    /// Runs kubectl with `args`; stdout, or an error with stderr.
    pub async fn ok(&self, args: &[&str]) -> Result<String> {
        self.run(args).await?.ok()
    }

    /// `kubectl apply -f -` of `yaml` (client-side apply, as a user would type it).
    pub async fn apply(&self, yaml: &str) -> Result<String> {
        self.run_with_stdin(&["apply", "-f", "-"], Some(yaml))
            .await?
            .ok()
    }

    /// `kubectl apply --server-side --validate=false -f -` (large objects such as CRDs;
    /// kubectl's client-side schema check cannot read a `null` in a CRD's `enum`, which
    /// schemars writes for `Option<enum>`: "unknown object type \"nil\"". The apiserver still
    /// checks the CRD itself: structural schema, CEL compilation).
    pub async fn apply_server_side(&self, yaml: &str) -> Result<String> {
        self.run_with_stdin(
            &[
                "apply",
                "--server-side",
                "--validate=false",
                "--field-manager=wayguard-tests",
                "-f",
                "-",
            ],
            Some(yaml),
        )
        .await?
        .ok()
    }

    /// `kubectl apply -f -` that must be rejected; returns kubectl's stderr.
    pub async fn apply_rejected(&self, yaml: &str) -> Result<String> {
        let out = self
            .run_with_stdin(&["apply", "-f", "-"], Some(yaml))
            .await?;
        if out.success {
            bail!(
                "`{}` was expected to be rejected but succeeded: {}\nmanifest:\n{yaml}",
                out.command,
                out.stdout.trim()
            );
        }
        Ok(out.stderr)
    }

    /// `kubectl delete -f -` of `yaml`.
    pub async fn delete(&self, yaml: &str) -> Result<String> {
        self.run_with_stdin(&["delete", "-f", "-"], Some(yaml))
            .await?
            .ok()
    }

    /// `kubectl get <args> -o json`, parsed.
    pub async fn get_json(&self, args: &[&str]) -> Result<Value> {
        let mut all: Vec<&str> = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let text = self.ok(&all).await?;
        serde_json::from_str(&text).with_context(|| format!("kubectl {all:?}: not JSON: {text}"))
    }

    /// `kubectl get <args> -o json`, or `None` when the object does not exist.
    pub async fn get_json_opt(&self, args: &[&str]) -> Result<Option<Value>> {
        let mut all: Vec<&str> = vec!["get", "--ignore-not-found"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let text = self.ok(&all).await?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("kubectl {all:?}: not JSON: {text}"))
    }

    /// `kubectl create token <sa> -n <namespace> --duration <duration>`: a bound ServiceAccount
    /// token from the TokenRequest API.
    pub async fn create_token(&self, namespace: &str, sa: &str, duration: &str) -> Result<String> {
        let token = self
            .ok(&[
                "create",
                "token",
                sa,
                "-n",
                namespace,
                &format!("--duration={duration}"),
            ])
            .await?;
        let token = token.trim().to_string();
        if token.split('.').count() != 3 {
            bail!("kubectl create token {sa}: not a JWT: {token:?}");
        }
        Ok(token)
    }
}

fn run_blocking(
    binary: &Path,
    kubeconfig: &Path,
    args: &[String],
    stdin: Option<String>,
) -> Result<KubectlOutput> {
    let mut cmd = Command::new(binary);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let command = format!("kubectl {}", args.join(" "));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    if let Some(text) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        pipe.write_all(text.as_bytes())
            .with_context(|| format!("writing stdin of `{command}`"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for `{command}`"))?;
    Ok(KubectlOutput {
        command,
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A printed table (`kubectl get` without `-o`): the header cells and each row's cells, split on
/// runs of two or more spaces (cells such as `AGE` never contain two spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Column names, e.g. `["NAMESPACE", "NAME", "ISSUERS", "ACCEPTED", "JWKS", "AGE"]`.
    pub header: Vec<String>,
    /// Rows, one cell per column.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Parses kubectl's table output. Column boundaries come from the header's positions, so
    /// empty cells (`<none>` is printed for missing values anyway) do not shift columns.
    pub fn parse(text: &str) -> Result<Self> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header_line = lines.next().ok_or_else(|| anyhow!("empty kubectl table"))?;
        let mut starts = Vec::new();
        let mut header = Vec::new();
        let bytes = header_line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b' ' && (i == 0 || bytes[i - 1] == b' ') {
                starts.push(i);
                let end = header_line[i..]
                    .find(' ')
                    .map_or(header_line.len(), |e| i + e);
                header.push(header_line[i..end].to_string());
                i = end;
            } else {
                i += 1;
            }
        }
        let rows = lines
            .map(|line| {
                starts
                    .iter()
                    .enumerate()
                    .map(|(n, &start)| {
                        let end = starts.get(n + 1).copied().unwrap_or(line.len());
                        line.get(start.min(line.len())..end.min(line.len()))
                            .unwrap_or_default()
                            .trim()
                            .to_string()
                    })
                    .collect()
            })
            .collect();
        Ok(Self { header, rows })
    }

    /// The cell of `column` in the row whose `key_column` is `key`.
    pub fn cell(&self, key_column: &str, key: &str, column: &str) -> Option<&str> {
        let k = self.header.iter().position(|h| h == key_column)?;
        let c = self.header.iter().position(|h| h == column)?;
        self.rows
            .iter()
            .find(|r| r.get(k).map(String::as_str) == Some(key))
            .and_then(|r| r.get(c))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_follow_header_positions() {
        let text = "NAMESPACE       NAME           ISSUERS                  ACCEPTED   JWKS   AGE\n\
                    payments-prod   payments-jwt   http://127.0.0.1:1/x     True       True   5s\n\
                    other           pending                                 False             1m\n";
        let t = Table::parse(text).expect("parse");
        assert_eq!(
            t.header,
            ["NAMESPACE", "NAME", "ISSUERS", "ACCEPTED", "JWKS", "AGE"]
        );
        assert_eq!(
            t.cell("NAME", "payments-jwt", "ISSUERS"),
            Some("http://127.0.0.1:1/x")
        );
        assert_eq!(t.cell("NAME", "payments-jwt", "JWKS"), Some("True"));
        assert_eq!(t.cell("NAME", "pending", "ISSUERS"), Some(""));
        assert_eq!(t.cell("NAME", "pending", "ACCEPTED"), Some("False"));
        assert_eq!(t.cell("NAME", "pending", "AGE"), Some("1m"));
        assert_eq!(t.cell("NAME", "missing", "AGE"), None);
    }
}
