//! Loading Kubernetes-style YAML from files and directories.

use std::path::{Path, PathBuf};

use wayguard_api::Resource;
use wayguard_api::resource::{DecodeError, decode, parse_documents};

/// One document of one file, decoded or not.
#[derive(Debug)]
pub struct LoadedDocument {
    /// The decoded resource, or why it could not be decoded.
    pub result: Result<Resource, DecodeError>,
}

/// One file: its documents, or why it could not be read or parsed.
#[derive(Debug)]
pub struct LoadedFile {
    /// Path of the file.
    pub path: PathBuf,
    /// The documents, or the I/O or YAML error.
    pub documents: Result<Vec<LoadedDocument>, String>,
}

/// Whether a path looks like a manifest (`.yaml` or `.yml`). Explicitly named files of any
/// extension (JSON included) are read too; only directory walks filter by extension.
pub fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Expands arguments into files: a directory means every manifest below it (sorted, recursive,
/// hidden entries skipped); a file is taken as given.
pub fn expand(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::path);
        for entry in entries {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if entry.file_type()?.is_dir() {
                walk(&path, out)?;
            } else if is_manifest(&path) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut out)?;
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Reads and decodes one file.
pub fn load_file(path: &Path) -> LoadedFile {
    let documents = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| parse_documents(&text).map_err(|e| e.message))
        .map(|docs| {
            docs.iter()
                .enumerate()
                .map(|(i, doc)| LoadedDocument {
                    result: decode(doc, i),
                })
                .collect()
        });
    LoadedFile {
        path: path.to_path_buf(),
        documents,
    }
}

/// Loads every manifest below `dirs` into `index`. Returns one line per problem
/// (`FILE: message`), the same lines `wayguard validate` prints for undecodable documents.
pub fn load_into(
    index: &mut wayguard_index::Index,
    dirs: &[PathBuf],
) -> std::io::Result<Vec<String>> {
    let mut problems = Vec::new();
    for path in expand(dirs)? {
        let file = load_file(&path);
        match file.documents {
            Err(e) => problems.push(format!("{}: {e}", path.display())),
            Ok(docs) => {
                for doc in docs {
                    match doc.result {
                        Ok(resource) => {
                            index.apply(resource);
                        }
                        Err(e) => problems.push(format!("{}: {e}", path.display())),
                    }
                }
            }
        }
    }
    Ok(problems)
}
