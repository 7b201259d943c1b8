//! Files in the folders a plugin was granted (the world's `files` import).
//!
//! A path is absolute and must lie in a granted folder (`fs.read`, or `fs.write` to change
//! anything); the grants are read at every call, so a revoked folder is closed at once.
//! The file is then opened through a capability on the granted folder (cap-std, as
//! wasmtime-wasi's own preopens), so neither `..` nor a symbolic link can lead out of it,
//! whatever the folder holds. Every refusal is audited like a missing grant.
//!
//! What is opened is checked on the opened handle, so a swap between a check and a use
//! changes nothing:
//! - the granted folder is the one the admin approved (its identity, recorded at approval);
//!   a path that now leads elsewhere (the folder replaced, or a link put in its place) is
//!   refused until it is approved again;
//! - the host's own folders (data directory, compiled-code cache) are never reached, by
//!   their path, by a link inside a granted folder (the handle's resolved path is checked),
//!   or by a hard link (a file with more than one name is refused: its other name may be
//!   anywhere, the host's database included);
//! - only regular files and folders are read or written; a pipe, socket or device is
//!   refused, and everything is opened non-blocking, so nothing can hold the host call;
//! - a write never follows a link in its last step.

use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt, OpenOptionsSyncExt};
use cap_std::fs::{Dir, File, OpenOptions};
use objectos_kernel::model::permission::Folder;
use objectos_kernel::PluginContext;

use super::bindings::objectos::plugin::files::{self, Entry, Folder as GuestFolder};
use super::bindings::objectos::plugin::types::{ErrorCode, HostError};
use super::HostState;
use super::fail;

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

    /// The folder holding the path's last step, opened (links followed inside the granted
    /// folder) and checked to lie outside the host's folders, with that last step's name.
    fn parent(&self, ctx: &PluginContext, path: &str, write: bool, call: &str) -> Result<(Dir, PathBuf), HostError> {
        let name: PathBuf = self.relative.file_name().map(PathBuf::from).unwrap_or_default();
        let parent = self.relative.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = match parent {
            Some(p) => self.dir.open_dir(p),
            None => self.dir.try_clone(),
        }
        .map_err(|e| io_error(ctx, path, write, call, e))?;
        outside_host(ctx, &dir, path, write, call)?;
        Ok((dir, name))
    }
}

/// Whether `real` lies in one of the host's own folders.
fn in_host_folder(ctx: &PluginContext, real: &Path) -> bool {
    ctx.host_folders().iter().any(|h| real.starts_with(h))
}

/// Where an opened file or folder really is (Linux: its `/proc/self/fd` entry).
fn real_path(handle: &impl std::os::fd::AsFd) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", handle.as_fd().as_raw_fd()))
}

/// Refuse (audited) an opened handle that lies in one of the host's own folders.
fn outside_host(ctx: &PluginContext, handle: &impl std::os::fd::AsFd, path: &str, write: bool, call: &str) -> Result<(), HostError> {
    let shown = objectos_kernel::util::clip(path.to_string(), 300);
    match real_path(handle) {
        Ok(real) if in_host_folder(ctx, &real) => Err(super::host_error(ctx.refuse_path(&format!("{shown} (ObjectOS's own data, which no grant reaches)"), write, call))),
        Ok(_) => Ok(()),
        Err(e) => Err(fail(ErrorCode::Failed, format!("{shown}: cannot tell where it leads ({e}), so it is not opened"))),
    }
}

/// Refuse anything but a regular file with one name: a pipe, socket or device could block
/// or feed the host endlessly, and a file with another name (a hard link) may be the
/// host's own data under a harmless-looking path.
fn plain_file(ctx: &PluginContext, file: &File, path: &str, write: bool, call: &str) -> Result<(), HostError> {
    use cap_std::fs::MetadataExt;
    let meta = file.metadata().map_err(|e| io_error(ctx, path, write, call, e))?;
    if !meta.is_file() {
        return Err(fail(ErrorCode::Invalid, format!("{path} is not a regular file (a folder, pipe, socket or device)")));
    }
    if meta.nlink() > 1 {
        let shown = objectos_kernel::util::clip(path.to_string(), 300);
        return Err(super::host_error(ctx.refuse_path(&format!("{shown} (a file with {} names: a hard link may be another folder's file, so it is not opened)", meta.nlink()), write, call)));
    }
    outside_host(ctx, file, path, write, call)
}

/// Find the granted folder `path` lies in (one granting `fs.write` when `write`).
fn locate(ctx: &PluginContext, path: &str, write: bool, call: &str) -> Result<Located, HostError> {
    let shown = objectos_kernel::util::clip(path.to_string(), 300);
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(fail(ErrorCode::Invalid, format!("`{shown}` is not an absolute path; a path starts at a granted folder (see files.folders())")));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(super::host_error(ctx.refuse_path(&format!("{shown} (a path with `..`)"), write, call)));
    }
    if in_host_folder(ctx, p) {
        return Err(super::host_error(ctx.refuse_path(&format!("{shown} (ObjectOS's own data, which no grant reaches)"), write, call)));
    }
    let folders = ctx.folders();
    let covering = |f: &&Folder| p.starts_with(&f.path) && (f.write || !write);
    let Some(folder) = folders.iter().filter(covering).max_by_key(|f| f.path.as_os_str().len()) else {
        return Err(super::host_error(ctx.refuse_path(&shown, write, call)));
    };
    let relative: PathBuf = p.strip_prefix(&folder.path).unwrap_or(Path::new("")).components().filter(|c| matches!(c, Component::Normal(_))).collect();
    let dir = open_granted(folder).map_err(|why| super::host_error(ctx.refuse_path(&format!("{shown} ({why})"), write, call)))?;
    Ok(Located { dir, relative })
}

/// Open granted folder `folder` as the folder the admin approved, or say why not.
pub(crate) fn open_granted(folder: &Folder) -> Result<Dir, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let shown = folder.path.display();
    // Non-blocking and a folder only: whatever is at the path now, opening it cannot hang.
    let flags = rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(flags.bits() as i32).open(&folder.path).map_err(|e| format!("the granted folder {shown} cannot be opened: {e}"))?;
    if let Some(approved) = &folder.identity {
        let now = file.metadata().ok().and_then(|m| objectos_kernel::model::permission::metadata_identity(&m));
        if now.as_ref() != Some(approved) {
            return Err(format!("the granted folder {shown} is no longer the folder that was approved (it was replaced, or a link now stands in its place); an admin must approve it again"));
        }
    }
    Ok(Dir::from_std_file(file))
}

/// What an I/O failure on `path` tells the guest; a path that led out of its folder (a
/// symbolic link) is a refusal, audited.
fn io_error(ctx: &PluginContext, path: &str, write: bool, call: &str, e: io::Error) -> HostError {
    let shown = objectos_kernel::util::clip(path.to_string(), 300);
    if e.kind() == io::ErrorKind::PermissionDenied && e.to_string().contains("outside of the filesystem") {
        return super::host_error(ctx.refuse_path(&format!("{shown} (a link out of the granted folder)"), write, call));
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
    // The folder it is in first: a path into the host's own data is refused whether or not
    // something is there, so a refusal tells nothing.
    at.parent(ctx, path, false, CALL)?;
    // Opened non-blocking, then checked on the handle: a pipe or a device is refused, not
    // waited on.
    let file = at.dir.open_with(at.at(), OpenOptions::new().read(true).nonblock(true)).map_err(|e| io_error(ctx, path, false, CALL, e))?;
    plain_file(ctx, &file, path, false, CALL)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| io_error(ctx, path, false, CALL, e))?;
    if bytes.len() > MAX_FILE_BYTES {
        let e = ctx.over_limit(format!("reading {}", objectos_kernel::util::clip(path.to_string(), 200)), format!("a file read is at most {} MiB", MAX_FILE_BYTES >> 20));
        return Err(super::host_error(e));
    }
    String::from_utf8(bytes).map_err(|_| fail(ErrorCode::Invalid, format!("{path} is not UTF-8 text (objectos:plugin@0.1 reads text files)")))
}

pub(crate) fn write(ctx: &PluginContext, path: &str, text: &str) -> Result<(), HostError> {
    const CALL: &str = "files.write";
    if text.len() > MAX_FILE_BYTES {
        let e = ctx.over_limit(format!("writing {}", objectos_kernel::util::clip(path.to_string(), 200)), format!("a file written is at most {} MiB", MAX_FILE_BYTES >> 20));
        return Err(super::host_error(e));
    }
    let at = locate(ctx, path, true, CALL)?;
    if at.relative.as_os_str().is_empty() {
        return Err(fail(ErrorCode::Invalid, format!("{path} is the granted folder itself, not a file in it")));
    }
    let (dir, name) = at.parent(ctx, path, true, CALL)?;
    // Not truncated until checked: a link in the last step is not followed, and what is
    // there must be a regular file with one name.
    let mut file = dir
        .open_with(&name, OpenOptions::new().write(true).create(true).follow(FollowSymlinks::No).nonblock(true))
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => fail(ErrorCode::Invalid, format!("{path} is a link; a write does not follow links")),
            _ => io_error(ctx, path, true, CALL, e),
        })?;
    plain_file(ctx, &file, path, true, CALL)?;
    file.set_len(0).and_then(|_| file.write_all(text.as_bytes())).map_err(|e| io_error(ctx, path, true, CALL, e))
}

pub(crate) fn entries(ctx: &PluginContext, path: &str) -> Result<Vec<Entry>, HostError> {
    const CALL: &str = "files.entries";
    let at = locate(ctx, path, false, CALL)?;
    if !at.relative.as_os_str().is_empty() {
        at.parent(ctx, path, false, CALL)?;
    }
    let dir = at.dir.open_dir(at.at()).map_err(|e| io_error(ctx, path, false, CALL, e))?;
    outside_host(ctx, &dir, path, false, CALL)?;
    let mut out = Vec::new();
    for entry in dir.entries().map_err(|e| io_error(ctx, path, false, CALL, e))? {
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
    // Checked from the deepest folder that is there already: what is made goes under it.
    let mut existing = at.relative.clone();
    let base = loop {
        let opened = if existing.as_os_str().is_empty() { at.dir.try_clone() } else { at.dir.open_dir(&existing) };
        match opened {
            Ok(d) => break d,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !existing.as_os_str().is_empty() => {
                existing.pop();
            }
            Err(e) => return Err(io_error(ctx, path, true, CALL, e)),
        }
    };
    outside_host(ctx, &base, path, true, CALL)?;
    let rest = at.relative.strip_prefix(&existing).unwrap_or(Path::new(""));
    if rest.as_os_str().is_empty() {
        return Ok(());
    }
    base.create_dir_all(rest).map_err(|e| io_error(ctx, path, true, CALL, e))
}

pub(crate) fn remove(ctx: &PluginContext, path: &str) -> Result<bool, HostError> {
    const CALL: &str = "files.remove";
    let at = locate(ctx, path, true, CALL)?;
    if at.relative.as_os_str().is_empty() {
        return Err(fail(ErrorCode::Invalid, format!("{path} is the granted folder itself; it is the admin's to remove")));
    }
    // A missing parent folder means nothing to remove; a refusal (a parent in the host's own
    // folders) stays a refusal, so the answer says nothing about what is there.
    let (dir, name) = match at.parent(ctx, path, true, CALL) {
        Ok(found) => found,
        Err(e) if matches!(e.code, ErrorCode::NotFound) => return Ok(false),
        Err(e) => return Err(e),
    };
    let meta = match dir.symlink_metadata(&name) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(ctx, path, true, CALL, e)),
    };
    let done = if meta.is_dir() { dir.remove_dir(&name) } else { dir.remove_file(&name) };
    done.map(|_| true).map_err(|e| io_error(ctx, path, true, CALL, e))
}
impl files::Host for HostState {
    fn folders(&mut self) -> Vec<files::Folder> {
        folders(&self.ctx)
    }

    fn read(&mut self, path: String) -> Result<String, HostError> {
        read(&self.ctx, &path)
    }

    fn write(&mut self, path: String, text: String) -> Result<(), HostError> {
        write(&self.ctx, &path, &text)
    }

    fn entries(&mut self, path: String) -> Result<Vec<files::Entry>, HostError> {
        entries(&self.ctx, &path)
    }

    fn create_folder(&mut self, path: String) -> Result<(), HostError> {
        create_folder(&self.ctx, &path)
    }

    fn remove(&mut self, path: String) -> Result<bool, HostError> {
        remove(&self.ctx, &path)
    }
}

