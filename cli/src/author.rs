//! `objectos manifest check|fix` and `pack`: a package's manifest and files checked as install
//! would, against what is installed here.

use super::*;

/// The package runtime a check runs: what install would run, code included (compiled into the
/// data directory's cache, so installing it next starts at once; JavaScript componentized in a
/// child process of this program).
pub(crate) fn host_runtime(cli: &Cli) -> impl objectos_kernel::plugin::PackageRuntime {
    objectos_builtins::host_sandbox_runtime(Some(&data_dir(cli)))
}

/// Write what the package's files need into its `plugin.json` (`manifest check --fix`), and
/// say what was added.
pub(crate) fn fix_manifest(cli: &Cli, path: &Path, installed: Option<&[Manifest]>) -> Result<Vec<Problem>, Failure> {
    let (dir, file) = if path.is_dir() {
        (path.to_path_buf(), path.join("plugin.json"))
    } else if path.file_name().is_some_and(|n| n == "plugin.json") {
        (path.parent().map(Path::to_path_buf).unwrap_or_default(), path.to_path_buf())
    } else {
        return Err(anyhow::anyhow!("--fix writes a package's plugin.json: give its folder or its plugin.json, not {}", path.display()).into());
    };
    let shown = file.display().to_string();
    let added = objectos_admin::author::fix_manifest(&dir, &file, installed.unwrap_or_default())?;
    if added.is_empty() {
        if !cli.json {
            println!("{shown}: nothing to add");
        }
        return Ok(added);
    }
    if !cli.json {
        println!("{shown}: added");
        for p in &added {
            println!("  {}: {}", printable(&p.path), printable(&p.message));
        }
    }
    Ok(added)
}

/// The manifests of what is installed in the data folder (built-ins included), for a check
/// that says what a package's dependencies are here; `None` when nothing was ever installed
/// there (the check then does not create a data folder) or it cannot be read (said on
/// stderr: the check goes on without it). Nothing is written.
pub(crate) async fn installed_manifests(cli: &Cli) -> Option<Vec<Manifest>> {
    let dir = data_dir(cli);
    if !dir.join("objectos.db").is_file() {
        return None;
    }
    match host::open(&dir).and_then(|k| Ok(k.plugins()?)) {
        Ok(list) => Some(list.into_iter().map(|p| p.manifest).collect()),
        Err(e) => {
            eprintln!("objectos: warning: the plugins installed in {} could not be read ({}); dependencies are not checked against them", dir.display(), printable(&e.to_string()));
            None
        }
    }
}

/// What a package's dependencies are in this data folder: one that is missing, or installed at
/// a version its range refuses, is a warning (the package may be meant for another machine).
pub(crate) fn dependency_warnings(manifest: &Manifest, installed: &[Manifest]) -> Vec<String> {
    let find = |id: &str| installed.iter().find(|m| m.id == id);
    let mut warnings = Vec::new();
    for (id, range) in &manifest.dependencies {
        match find(id) {
            None => {
                let near = objectos_kernel::util::nearest_above(id, installed.iter().map(|m| m.id.as_str()), 0.9).map(|n| format!("; did you mean `{n}`?")).unwrap_or_default();
                warnings.push(format!("dependency `{id}` is not installed here: install it before this package{near}"));
            }
            Some(m) if !range.matches(&m.version) => warnings.push(format!("dependency `{id}` is installed here at {}, which `{range}` does not accept", m.version)),
            Some(_) => {}
        }
    }
    warnings
}

pub(crate) fn manifest_check(cli: &Cli, path: &Path, fixed: &[Problem], installed: Option<&[Manifest]>) -> Out {
    let is_manifest_file = path.is_file() && path.extension().is_some_and(|e| e == "json");
    let manifest = if is_manifest_file {
        let bytes = std::fs::read(path).map_err(|e| KernelError::Io { path: path.to_path_buf(), source: e })?;
        let m = Manifest::parse(&bytes, &path.display().to_string()).map_err(KernelError::from)?;
        let problems = m.package_problems();
        if !problems.is_empty() {
            return Err(KernelError::from(objectos_kernel::model::manifest::ManifestErrors { file: path.display().to_string(), problems }).into());
        }
        m
    } else {
        objectos_kernel::package::check_package_with(path, &host_runtime(cli), installed.unwrap_or_default())?
    };
    let mut warnings = if path.is_dir() { translation_gaps(path, &manifest) } else { Vec::new() };
    if let (true, Some(installed)) = (path.is_dir(), installed) {
        warnings.extend(dependency_warnings(&manifest, installed));
    }
    if cli.json {
        print_json(&json!({ "valid": true, "manifest": manifest, "fixed": fixed, "warnings": warnings }));
    } else {
        println!("{}: valid ({} {})", path.display(), manifest.id, manifest.version);
        for w in &warnings {
            println!("warning: {}", printable(w));
        }
    }
    Ok(())
}

/// Keys some of a package's locales translate and others lack: not an error (a lookup falls
/// back to the default locale, then to the key), but what a translator should see.
pub(crate) fn translation_gaps(dir: &Path, manifest: &Manifest) -> Vec<String> {
    // Each declared locale's file, where the declaration rule says it is.
    let found: Vec<(String, std::collections::BTreeSet<String>)> = manifest
        .provides
        .declared()
        .filter(|d| d.kind == objectos_kernel::model::manifest::DeclaredKind::Translation)
        .filter_map(|d| {
            let file = d.candidates().find(|c| dir.join(c).is_file())?;
            let text = std::fs::read_to_string(dir.join(&file)).ok()?;
            Some((file, serde_json::from_str::<serde_json::Map<String, Value>>(&text).ok()?.keys().cloned().collect()))
        })
        .collect();
    let all: std::collections::BTreeSet<&String> = found.iter().flat_map(|(_, k)| k.iter()).collect();
    found
        .iter()
        .filter_map(|(file, have)| {
            let lacks: Vec<&str> = all.iter().filter(|k| !have.contains(k.as_str())).map(|k| k.as_str()).collect();
            (!lacks.is_empty()).then(|| {
                let shown = if lacks.len() > 8 { format!("{}, and {} more", lacks[..8].join(", "), lacks.len() - 8) } else { lacks.join(", ") };
                format!("{file} lacks {} key(s) other locales have: {shown} (lookups of them fall back to another locale, or show the key)", lacks.len())
            })
        })
        .collect()
}
