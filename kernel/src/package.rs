//! Packages from disk: a folder or a `.zip` holding `plugin.json` plus declared `objects/` and
//! `workflows/` files. Everything read here is untrusted: entries that escape the package,
//! links, absurd entry counts and sizes (zip bombs) are refused, and a package is copied into
//! a staging folder inside the data directory, so a failed install leaves nothing behind.

use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::{KernelError, Result};
use crate::model::manifest::{DeclaredKind, Manifest, ManifestErrors, Problem, MAX_MANIFEST_BYTES};

/// Most entries a package may hold.
pub const MAX_ENTRIES: usize = 10_000;
/// Largest single file, bytes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Largest total size, bytes.
pub const MAX_TOTAL_BYTES: u64 = 256 << 20;
const MAX_DEPTH: usize = 16;

pub(crate) struct Staged {
    pub(crate) manifest: Manifest,
    /// The manifest as the admin named it (`<path>/plugin.json`), for messages.
    pub(crate) source: String,
    /// The package root inside the staging folder.
    pub(crate) dir: PathBuf,
    /// The staging folder itself, removed when this is dropped (whatever the install did).
    _folder: StagingFolder,
}

/// A staging folder that removes itself when dropped, so no path out of an install (an
/// error, a panic, an early return) leaves it behind. A process killed mid-install leaves
/// it; [`sweep_staging`] removes those at the next start.
struct StagingFolder(PathBuf);

impl Drop for StagingFolder {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Where installs stage packages, inside the packages folder of a data directory.
pub(crate) fn staging_root(packages_dir: &Path) -> PathBuf {
    packages_dir.join(".staging")
}

/// The prefix of staging folder names: `stage-<pid>-<ms>`.
const STAGE_PREFIX: &str = "stage-";

/// Remove staging folders under `staging_root` left by processes that are gone (killed
/// mid-install). Folders of live processes (another host on the same data directory may be
/// installing now) are kept; where liveness cannot be told (no `/proc`), folders older than a
/// day go. Returns how many were removed.
pub(crate) fn sweep_staging(staging_root: &Path) -> usize {
    let Ok(entries) = fs::read_dir(staging_root) else { return 0 };
    let me = std::process::id();
    let proc_fs = Path::new("/proc/self").exists();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(STAGE_PREFIX)).and_then(|rest| rest.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let gone = if pid == me {
            false
        } else if proc_fs {
            !Path::new("/proc").join(pid.to_string()).exists()
        } else {
            entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age.as_secs() > 24 * 3600)
        };
        if gone && fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

struct Budget {
    src: PathBuf,
    entries: usize,
    total: u64,
}

impl Budget {
    fn fail(&self, message: impl Into<String>) -> KernelError {
        KernelError::Package { path: self.src.clone(), message: message.into() }
    }

    fn entry(&mut self, name: &Path) -> Result<()> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(self.fail(format!("holds more than {MAX_ENTRIES} entries")));
        }
        if name.components().count() > MAX_DEPTH {
            return Err(self.fail(format!("{} is nested more than {MAX_DEPTH} folders deep", name.display())));
        }
        Ok(())
    }

    /// Copy at most the remaining budget; refuse when a file or the total is too large,
    /// whatever the archive's headers claim.
    fn copy(&mut self, name: &Path, from: &mut dyn Read, to: &Path) -> Result<()> {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(|e| KernelError::io(parent, e))?;
        }
        let mut out = fs::File::create(to).map_err(|e| KernelError::io(to, e))?;
        let limit = MAX_FILE_BYTES.min(MAX_TOTAL_BYTES - self.total) + 1;
        let n = std::io::copy(&mut from.take(limit), &mut out).map_err(|e| self.fail(format!("reading {}: {e}", name.display())))?;
        if n >= limit {
            return Err(self.fail(format!(
                "{} is too large (a file may hold {} MiB, a package {} MiB)",
                name.display(),
                MAX_FILE_BYTES >> 20,
                MAX_TOTAL_BYTES >> 20
            )));
        }
        out.flush().map_err(|e| KernelError::io(to, e))?;
        self.total += n;
        Ok(())
    }
}

/// Copy `src` (folder or zip) into a fresh folder under `staging_root` and validate it.
/// On error the staging folder is removed.
pub(crate) fn stage(src: &Path, staging_root: &Path) -> Result<Staged> {
    fs::create_dir_all(staging_root).map_err(|e| KernelError::io(staging_root, e))?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = staging_root.join(format!("{STAGE_PREFIX}{}-{}-{n}", std::process::id(), crate::util::now_ms()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| KernelError::io(&dir, e))?;
    let folder = StagingFolder(dir.clone());
    let root = stage_into(src, &dir)?;
    let manifest = validate(src, &root)?;
    Ok(Staged { manifest, source: src.join("plugin.json").display().to_string(), dir: root, _folder: folder })
}

fn stage_into(src: &Path, dir: &Path) -> Result<PathBuf> {
    let meta = fs::metadata(src).map_err(|e| KernelError::io(src, e))?;
    let mut budget = Budget { src: src.to_path_buf(), entries: 0, total: 0 };
    if meta.is_dir() {
        copy_dir(src, Path::new(""), dir, &mut budget)?;
    } else {
        unzip(src, dir, &mut budget)?;
    }
    // A zip of a folder often holds that folder: accept one top-level folder with plugin.json.
    if !dir.join("plugin.json").exists() {
        let entries: Vec<_> = fs::read_dir(dir).map_err(|e| KernelError::io(dir, e))?.filter_map(|e| e.ok()).collect();
        if let [only] = entries.as_slice() {
            if only.path().is_dir() && only.path().join("plugin.json").is_file() {
                return Ok(only.path());
            }
        }
        return Err(budget.fail("has no plugin.json at its root"));
    }
    Ok(dir.to_path_buf())
}

/// Is `name` in or at a dot-entry (`.git`, `.schema`, `.vscode`)? Those are an author's
/// tooling, not the package: staging leaves them out of folders and archives alike.
fn is_dot_entry(name: &Path) -> bool {
    name.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
}

fn copy_dir(root: &Path, rel: &Path, dest: &Path, budget: &mut Budget) -> Result<()> {
    let here = root.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&here).map_err(|e| KernelError::io(&here, e))?.collect::<std::io::Result<_>>().map_err(|e| KernelError::io(&here, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if is_dot_entry(Path::new(&entry.file_name())) {
            continue;
        }
        let name = rel.join(entry.file_name());
        budget.entry(&name)?;
        let meta = fs::symlink_metadata(entry.path()).map_err(|e| KernelError::io(entry.path(), e))?;
        if meta.file_type().is_symlink() {
            return Err(budget.fail(format!("{} is a symbolic link; packages may not contain links", name.display())));
        }
        if meta.is_dir() {
            fs::create_dir_all(dest.join(&name)).map_err(|e| KernelError::io(dest.join(&name), e))?;
            copy_dir(root, &name, dest, budget)?;
        } else if meta.is_file() {
            let mut f = fs::File::open(entry.path()).map_err(|e| KernelError::io(entry.path(), e))?;
            budget.copy(&name, &mut f, &dest.join(&name))?;
        } else {
            return Err(budget.fail(format!("{} is not a regular file or folder", name.display())));
        }
    }
    Ok(())
}

fn unzip(src: &Path, dest: &Path, budget: &mut Budget) -> Result<()> {
    let file = fs::File::open(src).map_err(|e| KernelError::io(src, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| budget.fail(format!("is neither a folder nor a readable .zip archive ({e})")))?;
    // The central directory may list one name twice; the archive keeps the last, `unzip` the
    // first, so what was reviewed is not what runs. Refuse it.
    if archive.has_duplicate_names() {
        return Err(budget.fail("lists a file name twice; refusing an archive whose contents depend on the tool that reads it".to_string()));
    }
    if archive.len() > MAX_ENTRIES {
        return Err(budget.fail(format!("holds {} entries; at most {MAX_ENTRIES} are accepted", archive.len())));
    }
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| budget.fail(format!("entry {i} is unreadable ({e})")))?;
        let raw = entry.name().map(|n| n.to_string()).unwrap_or_else(|_| format!("#{i}"));
        let Some(name) = entry.enclosed_name() else {
            return Err(budget.fail(format!("entry `{raw}` points outside the package; refusing it")));
        };
        if name.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(budget.fail(format!("entry `{raw}` points outside the package; refusing it")));
        }
        // As from a folder: dot-entries are tooling, not the package (and nothing runs from one).
        if is_dot_entry(&name) {
            continue;
        }
        budget.entry(&name)?;
        if entry.is_symlink() {
            return Err(budget.fail(format!("entry `{raw}` is a symbolic link; packages may not contain links")));
        }
        if entry.is_dir() {
            fs::create_dir_all(dest.join(&name)).map_err(|e| KernelError::io(dest.join(&name), e))?;
            continue;
        }
        let target = dest.join(&name);
        if target.exists() {
            return Err(budget.fail(format!("entry `{raw}` appears twice")));
        }
        budget.copy(&name, &mut entry, &target)?;
    }
    Ok(())
}

fn validate(src: &Path, root: &Path) -> Result<Manifest> {
    let mpath = root.join("plugin.json");
    let source = src.join("plugin.json").display().to_string();
    let bytes = fs::read(&mpath).map_err(|e| KernelError::io(&mpath, e))?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestErrors { file: source, problems: vec![Problem { path: "$".into(), message: "the manifest is larger than 1 MiB".into() }] }.into());
    }
    let manifest = Manifest::parse(&bytes, &source)?;
    let mut problems = manifest.package_problems();
    for d in manifest.provides.declared() {
        let path = d.json_path();
        let Some(shown) = d.candidates().find(|c| root.join(c).is_file()) else {
            problems.push(Problem { path, message: d.missing() });
            continue;
        };
        let text = match fs::read(root.join(&shown)).map(String::from_utf8) {
            Ok(Ok(t)) => t,
            _ => {
                problems.push(Problem { path, message: format!("{shown} is not UTF-8 text") });
                continue;
            }
        };
        if d.kind == DeclaredKind::Translation {
            if let Err(message) = check_translations(text.as_bytes()) {
                problems.push(Problem { path, message: format!("{shown}: {message}") });
            }
        } else if text.trim().is_empty() {
            problems.push(Problem { path, message: format!("{shown} is empty") });
        } else if shown.ends_with(".json") {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                problems.push(Problem { path, message: format!("{shown} is not valid JSON: {e}") });
            }
        }
    }
    if problems.is_empty() {
        Ok(manifest)
    } else {
        Err(ManifestErrors { file: source, problems }.into())
    }
}

/// The plural categories a translation may give.
pub const PLURAL_CATEGORIES: [&str; 6] = ["zero", "one", "two", "few", "many", "other"];

/// Check a translation file: a JSON object whose values are strings, or plural forms (an
/// object of [`PLURAL_CATEGORIES`] to strings, with `other`). The error names the key.
pub fn check_translations(bytes: &[u8]) -> std::result::Result<serde_json::Map<String, serde_json::Value>, String> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(map) = v else { return Err("must be a JSON object of keys to texts".into()) };
    for (key, text) in &map {
        match text {
            Value::String(_) => {}
            Value::Object(forms) => {
                if let Some(bad) = forms.keys().find(|k| !PLURAL_CATEGORIES.contains(&k.as_str())) {
                    return Err(format!("$[{key:?}].{bad}: plural forms are {}", PLURAL_CATEGORIES.join(", ")));
                }
                if !forms.contains_key("other") {
                    return Err(format!("$[{key:?}]: plural forms need `other`"));
                }
                if let Some((k, _)) = forms.iter().find(|(_, v)| !v.is_string()) {
                    return Err(format!("$[{key:?}].{k}: must be a string"));
                }
            }
            other => return Err(format!("$[{key:?}]: must be a string or plural forms, not {}", if other.is_array() { "a list" } else { "a number, boolean or null" })),
        }
    }
    Ok(map)
}

/// The manifest of the package folder `dir`, validated, without checking the rest of the
/// package (for listing packages; [`check_package_with`] checks what an install would).
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let file = dir.join("plugin.json");
    let bytes = std::fs::read(&file).map_err(|e| KernelError::io(&file, e))?;
    Ok(Manifest::parse(&bytes, &file.display().to_string())?)
}

/// Validate a package folder or `.zip` (its manifest and declared files) without installing it.
pub fn check_package(path: &Path) -> Result<Manifest> {
    check_package_with(path, &crate::plugin::DeclarativeRuntime, &[])
}

/// Like [`check_package`], also running `runtime`'s check of the declared files, as an
/// install through a kernel with that runtime, and `installed` installed, would.
pub fn check_package_with(path: &Path, runtime: &dyn crate::plugin::PackageRuntime, installed: &[Manifest]) -> Result<Manifest> {
    checked(path, runtime, installed, |s| Ok(s.manifest.clone()))
}

/// Stage and check `path` as an install would, then run `then` on the staged copy.
fn checked<T>(path: &Path, runtime: &dyn crate::plugin::PackageRuntime, installed: &[Manifest], then: impl FnOnce(&Staged) -> Result<T>) -> Result<T> {
    let tmp = std::env::temp_dir().join(format!("objectos-check-{}-{}", std::process::id(), crate::util::now_ms()));
    let result = stage(path, &tmp).and_then(|s| {
        let problems = runtime.check(&s.manifest, &s.dir, installed);
        if problems.is_empty() {
            then(&s)
        } else {
            Err(ManifestErrors { file: path.join("plugin.json").display().to_string(), problems }.into())
        }
    });
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// What [`pack_package`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    /// The package's manifest.
    pub manifest: Manifest,
    /// The files in the archive, in order.
    pub files: Vec<String>,
    /// The archive's size in bytes.
    pub bytes: u64,
}

/// Write the package folder `path` as a `.zip` at `out`, refusing (with every problem) what an
/// install through `runtime` would refuse. The archive holds what install reads: the files the
/// staging copy holds, at its root, so installing the `.zip` is installing the folder.
pub fn pack_package(path: &Path, runtime: &dyn crate::plugin::PackageRuntime, installed: &[Manifest], out: &Path) -> Result<Packed> {
    if !path.is_dir() {
        return Err(KernelError::Package { path: path.to_path_buf(), message: "is not a package folder".into() });
    }
    checked(path, runtime, installed, |s| {
        let mut files = Vec::new();
        let mut stack = vec![s.dir.clone()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).map_err(|e| KernelError::io(&d, e))?.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push(p.strip_prefix(&s.dir).unwrap_or(&p).to_string_lossy().replace('\\', "/"));
                }
            }
        }
        files.sort();
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = parent.join(format!(".{}.{}.part", out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), std::process::id()));
        let write = || -> std::result::Result<(), String> {
            let file = fs::File::create(&tmp).map_err(|e| e.to_string())?;
            let mut zip = zip::ZipWriter::new(file);
            let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            for name in &files {
                zip.start_file(name.as_str(), options).map_err(|e| e.to_string())?;
                let mut f = fs::File::open(s.dir.join(name)).map_err(|e| e.to_string())?;
                std::io::copy(&mut f, &mut zip).map_err(|e| e.to_string())?;
            }
            zip.finish().map_err(|e| e.to_string())?;
            fs::rename(&tmp, out).map_err(|e| e.to_string())
        };
        if let Err(message) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(KernelError::Package { path: out.to_path_buf(), message: format!("cannot write the archive: {message}") });
        }
        let bytes = fs::metadata(out).map(|m| m.len()).unwrap_or(0);
        Ok(Packed { manifest: s.manifest.clone(), files, bytes })
    })
}
