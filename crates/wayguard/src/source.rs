//! The file source: a directory of Kubernetes-style YAML, rescanned on change and applied to the
//! index as a diff. A file that fails to parse keeps contributing the objects of its last good
//! parse; an object that fails validation keeps its last valid version (the index does that).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use wayguard_api::Resource;
use wayguard_api::resource::ObjectRef;
use wayguard_index::Index;

use crate::files::{expand, load_file};

/// What one file contributes.
#[derive(Debug, Default)]
struct FileState {
    modified: Option<SystemTime>,
    len: u64,
    objects: BTreeSet<ObjectRef>,
    /// Problems of the newest read (parse errors, undecodable documents).
    problems: Vec<String>,
}

/// A problem with a file, for logs and `/debug/status`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileProblem {
    /// The file.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

/// Tracks a directory's files and the objects each defines.
#[derive(Debug)]
pub struct FileSource {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
}

/// The outcome of one scan.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    /// Whether the index changed.
    pub changed: bool,
    /// Files read because they were new or changed.
    pub files_read: usize,
}

impl FileSource {
    /// A source for `root` (nothing loaded yet).
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            files: BTreeMap::new(),
        }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Current problems, sorted by file.
    pub fn problems(&self) -> Vec<FileProblem> {
        self.files
            .iter()
            .flat_map(|(path, state)| {
                state.problems.iter().map(move |p| FileProblem {
                    file: path.display().to_string(),
                    message: p.clone(),
                })
            })
            .collect()
    }

    /// Rescans the directory and applies what changed to `index`.
    pub fn scan(&mut self, index: &mut Index) -> std::io::Result<ScanOutcome> {
        let mut outcome = ScanOutcome::default();
        let present: BTreeSet<PathBuf> = expand(std::slice::from_ref(&self.root))?
            .into_iter()
            .collect();
        // Files that disappeared: their objects go away (unless another file defines them).
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !present.contains(*p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(state) = self.files.remove(&path) {
                for obj in state.objects {
                    if !self.defined_elsewhere(&obj, &path) {
                        outcome.changed |= index.delete(&obj);
                    }
                }
            }
        }
        for path in present {
            let meta = std::fs::metadata(&path).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
            let unchanged = self
                .files
                .get(&path)
                .is_some_and(|s| s.modified == modified && s.len == len && modified.is_some());
            if unchanged {
                continue;
            }
            outcome.files_read += 1;
            outcome.changed |= self.read_file(&path, modified, len, index);
        }
        Ok(outcome)
    }

    fn defined_elsewhere(&self, obj: &ObjectRef, except: &Path) -> bool {
        self.files
            .iter()
            .any(|(p, s)| p != except && s.objects.contains(obj))
    }

    fn read_file(
        &mut self,
        path: &Path,
        modified: Option<SystemTime>,
        len: u64,
        index: &mut Index,
    ) -> bool {
        let loaded = load_file(path);
        let mut changed = false;
        let state = self.files.entry(path.to_path_buf()).or_default();
        state.modified = modified;
        state.len = len;
        let docs = match loaded.documents {
            Ok(docs) => docs,
            Err(e) => {
                // Unparsable: keep the objects of the last good parse in effect.
                tracing::warn!(file = %path.display(), error = %e, "file does not parse; keeping its last good objects");
                state.problems = vec![e];
                return false;
            }
        };
        state.problems.clear();
        let mut resources: Vec<Resource> = Vec::new();
        for doc in docs {
            match doc.result {
                Ok(r) => resources.push(r),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "document skipped");
                    state.problems.push(e.to_string());
                }
            }
        }
        let mut new_objects: BTreeSet<ObjectRef> =
            resources.iter().map(Resource::object_ref).collect();
        if !state.problems.is_empty() {
            // A document that did not decode may be the new version of an object this file
            // defined before: keep every previous object rather than delete it.
            new_objects.extend(state.objects.iter().cloned());
        }
        let removed: Vec<ObjectRef> = state.objects.difference(&new_objects).cloned().collect();
        state.objects = new_objects;
        for obj in removed {
            if !self.defined_elsewhere(&obj, path) {
                changed |= index.delete(&obj);
            }
        }
        for resource in resources {
            let key = resource.object_ref();
            changed |= index.apply(resource);
            if let Some(entry) = index.entry(&key)
                && let Some((_, report)) = &entry.rejected
            {
                tracing::warn!(file = %path.display(), object = %key, errors = %report.error_message(), "rejected; the last valid version (if any) stays in effect");
            }
        }
        changed
    }
}
