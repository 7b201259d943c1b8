//! Files in the folders a plugin was granted (the world's `files` import).
//!
//! A path is absolute and must lie in a granted folder (`fs.read`, or `fs.write` to change
//! anything); the grants are read at every call, so a revoked folder is closed at once.
//! The file is then opened through a capability on the granted folder (cap-std, as
//! wasmtime-wasi's own preopens), so neither `..` nor a symbolic link can lead out of it,
//! whatever the folder holds. Every refusal is audited like a missing grant.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use cap_std::fs::Dir;
use objectos_kernel::model::permission::Folder;
use objectos_kernel::PluginContext;

use crate::host::bindings::objectos::plugin::files::{Entry, Folder as GuestFolder};
use crate::host::bindings::objectos::plugin::types::{ErrorCode, HostError};
use crate::host::fail;

/// The largest file read or written.
pub(crate) const MAX_FILE_BYTES: usize = 4 << 20;
/// The most entries a listing returns.
pub(crate) const MAX_ENTRIES: usize = 10_000;

/// A path inside a granted folder: the folder, opened, and the path relative to it.
struct Located {
    dir: Dir,
    relative: PathBuf,
}

impl Located {
    fn at(&self) -> &Path {
        if self.relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &self.relative
        }
    }
}

/// Find the granted folder `path` lies in (one granting `fs.write` when `write`).
fn locate(ctx: &PluginContext, path: &str, write: bool, call: &str) -> Result<Located, HostError> {
    let shown = objectos_kernel::util::clip(path.to_string(), 300);
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(fail(ErrorCode::Invalid, format!("`{shown}` is not an absolute path; a path starts at a granted folder (see files.folders())")));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(crate::host::host_error(ctx.refuse_path(&format!("{shown} (a path with `..`)"), write, call)));
    }
    let folders = ctx.folders();
    let covering = |f: &&Folder| p.starts_with(&f.path) && (f.write || !write);
    let Some(folder) = folders.iter().filter(covering).max_by_key(|f| f.path.as_os_str().len()) else {
        return Err(crate::host::host_error(ctx.refuse_path(&shown, write, call)));
    };
    let relative: PathBuf = p.strip_prefix(&folder.path).unwrap_or(Path::new("")).components().filter(|c| matches!(c, Component::Normal(_))).collect();
    let dir = Dir::open_ambient_dir(&folder.path, cap_std::ambient_authority())
        .map_err(|e| fail(ErrorCode::NotFound, format!("the granted folder {} cannot be opened: {e}", folder.path.display())))?;
    Ok(Located { dir, relative })
}

/// What an I/O failure on `path` tells the guest; a path that led out of its folder (a
/// symbolic link) is a refusal, audited.
fn io_error(ctx: &PluginContext, path: &str, write: bool, call: &str, e: io::Error) -> HostError {
    let shown = objectos_kernel::util::clip(path.to_string(), 300);
    if e.kind() == io::ErrorKind::PermissionDenied && e.to_string().contains("outside of the filesystem") {
        return crate::host::host_error(ctx.refuse_path(&format!("{shown} (a link out of the granted folder)"), write, call));
    }
    let code = match e.kind() {
        io::ErrorKind::NotFound => ErrorCode::NotFound,
        io::ErrorKind::AlreadyExists | io::ErrorKind::InvalidInput | io::ErrorKind::IsADirectory | io::ErrorKind::NotADirectory | io::ErrorKind::DirectoryNotEmpty => ErrorCode::Invalid,
        _ => ErrorCode::Failed,
    };
    fail(code, format!("{shown}: {e}"))
}

pub(crate) fn folders(ctx: &PluginContext) -> Vec<GuestFolder> {
    ctx.folders().into_iter().map(|f| GuestFolder { path: f.path.display().to_string(), writable: f.write }).collect()
}

pub(crate) fn read(ctx: &PluginContext, path: &str) -> Result<String, HostError> {
    const CALL: &str = "files.read";
    let at = locate(ctx, path, false, CALL)?;
    // Only a regular file: a pipe or a device in the folder would block the host call.
    let meta = at.dir.metadata(at.at()).map_err(|e| io_error(ctx, path, false, CALL, e))?;
    if !meta.is_file() {
        return Err(fail(ErrorCode::Invalid, format!("{path} is not a regular file")));
    }
    let file = at.dir.open(at.at()).map_err(|e| io_error(ctx, path, false, CALL, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| io_error(ctx, path, false, CALL, e))?;
    if bytes.len() > MAX_FILE_BYTES {
        let e = ctx.over_limit(format!("reading {}", objectos_kernel::util::clip(path.to_string(), 200)), format!("a file read is at most {} MiB", MAX_FILE_BYTES >> 20));
        return Err(crate::host::host_error(e));
    }
    String::from_utf8(bytes).map_err(|_| fail(ErrorCode::Invalid, format!("{path} is not UTF-8 text (objectos:plugin@0.1 reads text files)")))
}

pub(crate) fn write(ctx: &PluginContext, path: &str, text: &str) -> Result<(), HostError> {
    const CALL: &str = "files.write";
    if text.len() > MAX_FILE_BYTES {
        let e = ctx.over_limit(format!("writing {}", objectos_kernel::util::clip(path.to_string(), 200)), format!("a file written is at most {} MiB", MAX_FILE_BYTES >> 20));
        return Err(crate::host::host_error(e));
    }
    let at = locate(ctx, path, true, CALL)?;
    if at.relative.as_os_str().is_empty() {
        return Err(fail(ErrorCode::Invalid, format!("{path} is the granted folder itself, not a file in it")));
    }
    at.dir.write(at.at(), text).map_err(|e| io_error(ctx, path, true, CALL, e))
}

pub(crate) fn entries(ctx: &PluginContext, path: &str) -> Result<Vec<Entry>, HostError> {
    const CALL: &str = "files.entries";
    let at = locate(ctx, path, false, CALL)?;
    let mut out = Vec::new();
    for entry in at.dir.read_dir(at.at()).map_err(|e| io_error(ctx, path, false, CALL, e))? {
        let entry = entry.map_err(|e| io_error(ctx, path, false, CALL, e))?;
        if out.len() >= MAX_ENTRIES {
            return Err(fail(ErrorCode::OverLimit, format!("{path} holds more than {MAX_ENTRIES} entries; list a folder inside it")));
        }
        let meta = entry.metadata().ok();
        let directory = meta.as_ref().is_some_and(|m| m.is_dir());
        out.push(Entry { name: entry.file_name().to_string_lossy().into_owned(), directory, size: if directory { 0 } else { meta.map_or(0, |m| m.len()) } });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub(crate) fn create_folder(ctx: &PluginContext, path: &str) -> Result<(), HostError> {
    const CALL: &str = "files.create-folder";
    let at = locate(ctx, path, true, CALL)?;
    at.dir.create_dir_all(at.at()).map_err(|e| io_error(ctx, path, true, CALL, e))
}

pub(crate) fn remove(ctx: &PluginContext, path: &str) -> Result<bool, HostError> {
    const CALL: &str = "files.remove";
    let at = locate(ctx, path, true, CALL)?;
    if at.relative.as_os_str().is_empty() {
        return Err(fail(ErrorCode::Invalid, format!("{path} is the granted folder itself; it is the admin's to remove")));
    }
    let meta = match at.dir.symlink_metadata(at.at()) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(ctx, path, true, CALL, e)),
    };
    let done = if meta.is_dir() { at.dir.remove_dir(at.at()) } else { at.dir.remove_file(at.at()) };
    done.map(|_| true).map_err(|e| io_error(ctx, path, true, CALL, e))
}
