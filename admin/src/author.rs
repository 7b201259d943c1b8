//! What a package's author uses: the JSON Schemas of the files a package holds, and a
//! manifest completed with what its files need.

use std::path::Path;

use objectos_kernel::model::manifest::{Manifest, ManifestErrors, Problem};
use objectos_kernel::KernelError;
use serde_json::Value;

use crate::Result;

/// The schemas there are: the manifest's (the kernel's) and the declarative files' (their
/// engine's).
pub fn schema_names() -> Vec<&'static str> {
    objectos_kernel::model::schema::NAMES.into_iter().chain(objectos_declarative::grammar::NAMES).collect()
}

/// The JSON Schema called `name` (one of [`schema_names`]).
pub fn schema(name: &str) -> Option<Value> {
    objectos_kernel::model::schema::schema(name).or_else(|| objectos_declarative::grammar::schema(name))
}

/// Add to the package's `plugin.json` (`file`, in the package folder `dir`) what its files
/// need (the engines as dependencies, the permissions the engines use for it, the topics it
/// emits), keeping its key order; what was added, as the problems it fixes (nothing written
/// when nothing is missing). `installed` are the manifests of what is installed where the
/// package is meant to go: a reference to a record type of theirs is checked against them.
/// A mistyped reference is refused, not "fixed" with a grant for a type nobody declares.
pub fn fix_manifest(dir: &Path, file: &Path, installed: &[Manifest]) -> Result<Vec<Problem>> {
    let shown = file.display().to_string();
    let io = |e| KernelError::Io { path: file.to_path_buf(), source: e };
    let text = std::fs::read_to_string(file).map_err(io)?;
    let manifest = Manifest::parse(text.as_bytes(), &shown).map_err(KernelError::from)?;
    let declared = objectos_declarative::runtime::declared_by(&manifest, installed);
    let defs = objectos_declarative::runtime::read_definitions_in(&manifest, dir, &declared).map_err(|problems| KernelError::from(ManifestErrors { file: shown.clone(), problems }))?;
    let needs = objectos_declarative::needs::needed(&manifest, &defs);
    if needs.is_empty() {
        return Ok(Vec::new());
    }
    let mut value: Value = serde_json::from_str(&text).map_err(|e| KernelError::from(ManifestErrors { file: shown.clone(), problems: vec![Problem { path: "$".into(), message: e.to_string() }] }))?;
    let added = objectos_declarative::needs::apply(&mut value, &needs);
    let mut out = serde_json::to_string_pretty(&value).map_err(|e| KernelError::Io { path: file.to_path_buf(), source: e.into() })?;
    out.push('\n');
    std::fs::write(file, out).map_err(io)?;
    Ok(added)
}
