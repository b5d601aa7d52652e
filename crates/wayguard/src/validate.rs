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
    Ok(summary)
}

fn display_list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
