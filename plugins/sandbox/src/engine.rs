//! The one wasmtime engine, its epoch ticker, and the artifact pipeline: JavaScript to a
//! component (componentize-qjs) and a component to machine code (Cranelift), each cached in
//! the host's own cache folder, keyed by what it was made from.
//!
//! Only artifacts under the cache folder are ever deserialized. A package's folder is written
//! by its author, so nothing in it is trusted as machine code: a `.cwasm` there is just a file.
//!
//! Nor is a file in the cache folder trusted for its name: an artifact is loaded only when
//! its digest is the one recorded when this host made it (in the data directory's database,
//! the [`Ledger`], or by this process), read without following a link, only as a regular
//! file, non-blocking and bounded in size. Anything else is compiled again, and the refusal
//! is audited.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// How often the epoch advances: the precision of the time budgets.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// The wasm stack a guest may use (the same for every plugin: it is a setting of the engine).
pub const MAX_WASM_STACK: usize = 1 << 20;

/// The WIT world plugins are built against, as shipped in `wit/`.
pub const WIT: &str = include_str!("../../../wit/plugin.wit");

/// How long turning JavaScript into a component may take (it runs the module's top level),
/// unless `$OBJECTOS_COMPONENTIZE_TIMEOUT` says otherwise (seconds, 1 to 600). Honest work
/// takes one to three seconds on these machines; the bound only ends a top level that never
/// does, so it is wide enough for a CPU several times slower that is busy with other work.
pub const COMPONENTIZE_TIMEOUT: Duration = Duration::from_secs(120);

fn componentize_timeout() -> Duration {
    std::env::var("OBJECTOS_COMPONENTIZE_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| (1..=600).contains(s))
        .map_or(COMPONENTIZE_TIMEOUT, Duration::from_secs)
}

/// The versions of what turns JavaScript into a component; part of the cache key.
const COMPONENTIZER: &str = "componentize-qjs 0.4.5 DefaultSync, WASI imported";

/// The engine every sandboxed plugin runs on, with its epoch ticker started.
pub(crate) fn engine() -> &'static wasmtime::Engine {
    static ENGINE: OnceLock<wasmtime::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true).max_wasm_stack(MAX_WASM_STACK);
        // Only what plugins need: proposals that bring their own memory or concurrency (shared
        // memories, threads, GC heaps, stack switching, component-model async) stay off, even
        // though the wasmtime build has them for componentizing.
        config.wasm_threads(false).wasm_gc(false).wasm_stack_switching(false).wasm_component_model_async(false).wasm_exceptions(false);
        // A host whose CPU lacks what Cranelift needs cannot run plugins; nothing else works.
        #[allow(clippy::expect_used)]
        let engine = wasmtime::Engine::new(&config).expect("the wasmtime engine's configuration is valid");
        let weak = engine.weak();
        let spawned = std::thread::Builder::new().name("objectos-sandbox-epoch".into()).spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        });
        if let Err(e) = spawned {
            tracing::error!("the sandbox's epoch ticker did not start ({e}): time budgets cannot interrupt guests");
        }
        engine
    })
}

fn engine_key() -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine().precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Where compiled artifacts go: the host's folder (inside its data directory), or `None` to
/// compile every time (a check without a data directory).
#[derive(Debug, Clone)]
pub struct Cache {
    dir: Option<PathBuf>,
    /// The program to run JavaScript's first evaluation in, as a child process that is
    /// killed past [`COMPONENTIZE_TIMEOUT`] (`None`: a thread of this process).
    child: Option<PathBuf>,
}

/// The argument that makes a host program componentize one package and exit (see
/// [`componentize_child_main`]).
pub const COMPONENTIZE_FLAG: &str = "--objectos-componentize";

/// The largest component JavaScript may become (a top level that fills its memory makes a
/// snapshot as large).
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// What a package's code is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Component,
    JavaScript,
}

pub(crate) fn kind(main: &str) -> Kind {
    if main.ends_with(".wasm") {
        Kind::Component
    } else {
        Kind::JavaScript
    }
}

/// The most files of a package hashed for the cache key (a package is bounded when staged).
const MAX_FILES: usize = 10_000;

/// The largest compiled artifact read back (machine code is a few times its component).
const MAX_ARTIFACT_BYTES: u64 = 4 * MAX_COMPONENT_BYTES;

/// What vouches for cached artifacts: the database of the data directory they serve, which
/// records each artifact's digest when the host makes it.
pub(crate) trait Ledger {
    /// The digest recorded for artifact `key` (its file name in the cache).
    fn recorded(&self, key: &str) -> Option<String>;
    /// Record that the host made artifact `key` with `digest`.
    fn record(&self, key: &str, digest: &str);
    /// A cached file was not loaded: audit it.
    fn refused(&self, file: &str, reason: &str);
}

/// No database (a check without a data directory): only what this process made is trusted.
pub(crate) struct NoLedger;

impl Ledger for NoLedger {
    fn recorded(&self, _key: &str) -> Option<String> {
        None
    }
    fn record(&self, _key: &str, _digest: &str) {}
    fn refused(&self, file: &str, reason: &str) {
        tracing::info!("the cached artifact {file} was not loaded ({reason}); compiling again");
    }
}

impl Ledger for objectos_kernel::PluginContext {
    fn recorded(&self, key: &str) -> Option<String> {
        self.recorded_artifact(key)
    }
    fn record(&self, key: &str, digest: &str) {
        if let Err(e) = self.record_artifact(key, digest) {
            tracing::warn!("cannot record the compiled artifact {key}: {e}");
        }
    }
    fn refused(&self, file: &str, reason: &str) {
        self.artifact_refused(file, reason);
    }
}

/// The artifacts this process made, by path, with their digests: trusted without a record
/// (the install check compiles before the plugin has a database row to record them in).
fn made_here() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, String>> {
    static MADE: OnceLock<std::sync::Mutex<std::collections::HashMap<String, String>>> = OnceLock::new();
    MADE.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// Read `path` as a regular file of at most `max` bytes, without following a link and
/// without blocking: `Ok(None)` when there is nothing there, `Err` with why it was not read.
pub(crate) fn read_plain(path: &Path, max: u64) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC;
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(flags.bits() as i32).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => return Err("it is a link".into()),
        Err(e) => return Err(format!("it cannot be opened: {e}")),
    };
    let meta = file.metadata().map_err(|e| format!("it cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.len() > max {
        return Err(format!("it is {} MiB, over the {} MiB read back", meta.len() >> 20, max >> 20));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| format!("it cannot be read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("it grew over the {} MiB read back", max >> 20));
    }
    Ok(Some(bytes))
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Cache {
    /// Cache under `dir` (created when first written).
    pub fn at(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: Some(dir.into()), child: None }
    }

    /// No cache: compile every time.
    pub fn none() -> Cache {
        Cache { dir: None, child: None }
    }

    /// Turn JavaScript into components in a child process running `program`, which must call
    /// [`componentize_child_main`] first thing: a module whose top level never ends is killed
    /// with its process, and its memory goes with it. (Without this, a thread of this process
    /// does it, and such a thread is only abandoned.)
    pub fn componentize_in(mut self, program: impl Into<PathBuf>) -> Cache {
        self.child = Some(program.into());
        self
    }

    /// The cached artifact `name`, when it is what this host made (see [`Ledger`]); a file
    /// that is not is reported to `ledger` and ignored.
    fn cached(&self, name: &str, ledger: &dyn Ledger) -> Option<Vec<u8>> {
        let path = self.dir.as_ref()?.join(name);
        let bytes = match read_plain(&path, MAX_ARTIFACT_BYTES) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(why) => {
                ledger.refused(&path.display().to_string(), &why);
                return None;
            }
        };
        let found = digest(&bytes);
        let shown = path.display().to_string();
        let recorded = ledger.recorded(name);
        if recorded.as_ref() == Some(&found) {
            return Some(bytes);
        }
        if made_here().get(&shown) == Some(&found) {
            // This process made it (before its record, or after an older one): recorded now.
            ledger.record(name, &found);
            return Some(bytes);
        }
        let why = if recorded.is_some() { "its digest is not the one recorded when this host made it" } else { "this host has no record of making it" };
        ledger.refused(&shown, why);
        None
    }

    /// Cache `bytes` as artifact `name`, recorded as made here.
    fn keep(&self, name: &str, bytes: &[u8], ledger: &dyn Ledger) {
        let Some(dir) = &self.dir else { return };
        let d = digest(bytes);
        ledger.record(name, &d);
        {
            let mut made = made_here();
            // Bounded: a long-running host that compiles many versions keeps the latest.
            if made.len() >= 4096 {
                made.clear();
            }
            made.insert(dir.join(name).display().to_string(), d);
        }
        write_atomically(&dir.join(name), bytes);
    }

    /// The component for the package in `dir` whose code is `main`: read as is, or made from
    /// JavaScript (cached by the hash of the package's scripts).
    pub(crate) fn component_bytes(&self, dir: &Path, main: &str, ledger: &dyn Ledger) -> Result<Vec<u8>, String> {
        let file = dir.join(main);
        if kind(main) == Kind::Component {
            return match read_plain(&file, MAX_COMPONENT_BYTES) {
                Ok(Some(bytes)) => Ok(bytes),
                Ok(None) => Err(format!("the package has no {main}")),
                Err(why) => Err(format!("cannot read {main}: {why}")),
            };
        }
        let name = format!("{}.wasm", scripts_key(dir, main)?);
        if let Some(bytes) = self.cached(&name, ledger) {
            return Ok(bytes);
        }
        let bytes = match &self.child {
            Some(program) => componentize_in_child(program, dir, main)?,
            None => componentize(dir, main)?,
        };
        within_size(main, bytes.len() as u64)?;
        self.keep(&name, &bytes, ledger);
        Ok(bytes)
    }

    /// The compiled component: deserialized from the cache when this host compiled it before
    /// with this engine (and the file is still what it made), else compiled (and cached).
    pub(crate) fn compile(&self, bytes: &[u8], ledger: &dyn Ledger) -> Result<Component, String> {
        let name = format!("{}-{}.cwasm", digest(bytes), engine_key());
        if let Some(art) = self.cached(&name, ledger) {
            // Read into memory, not mapped: a mapped file that something truncates later (a
            // cleanup, a damaged disk) would fault the process on the next page it touches.
            // SAFETY: the bytes are a regular file in the host's cache folder whose digest is
            // the one recorded when this host wrote it from `Component::serialize` for this
            // component and this engine's configuration (`cached`). wasmtime also checks the
            // engine version and settings, and an artifact it refuses is compiled again below.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize(engine(), &art) };
            match loaded {
                Ok(component) => return Ok(component),
                Err(e) => tracing::info!("recompiling {name}: {e}"),
            }
        }
        let component = Component::new(engine(), bytes).map_err(|e| format!("not a valid WebAssembly component: {e:#}"))?;
        match component.serialize() {
            Ok(art) => self.keep(&name, &art, ledger),
            Err(e) => tracing::warn!("cannot cache the compiled component: {e}"),
        }
        Ok(component)
    }

    /// The cache folder, if there is one.
    pub(crate) fn folder(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
}

/// Write `bytes` to `path` through a temporary file, so a reader never sees half of it. A
/// failure only costs a recompile later.
fn write_atomically(path: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    let Some(dir) = path.parent() else { return };
    // A temporary file of its own (two compiles at once never share one), renamed into place.
    let written = std::fs::create_dir_all(dir)
        .and_then(|_| tempfile::NamedTempFile::new_in(dir))
        .and_then(|mut tmp| tmp.write_all(bytes).and_then(|_| tmp.as_file().sync_all()).map(|_| tmp))
        .and_then(|tmp| tmp.persist(path).map(drop).map_err(|e| e.error));
    if let Err(e) = written {
        tracing::warn!("cannot cache {}: {e}", path.display());
    }
}

/// The package's script and JSON files (a module may import any of them), sorted.
fn scripts(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("cannot read {}: {e}", d.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && matches!(path.extension().and_then(|e| e.to_str()), Some("js" | "mjs" | "json")) {
                files.push(path);
                if files.len() > MAX_FILES {
                    return Err(format!("the package has more than {MAX_FILES} script files"));
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The hash of everything that goes into a JavaScript package's component: the world, the
/// componentizer, the entry module, and the package's scripts.
fn scripts_key(dir: &Path, main: &str) -> Result<String, String> {
    let mut h = Sha256::new();
    for part in [WIT, COMPONENTIZER, crate::js::SHIM, main] {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    for f in scripts(dir)? {
        let rel = f.strip_prefix(dir).unwrap_or(&f).to_string_lossy().into_owned();
        let bytes = std::fs::read(&f).map_err(|e| format!("cannot read {rel}: {e}"))?;
        h.update(rel.len().to_le_bytes());
        h.update(rel.as_bytes());
        h.update(bytes.len().to_le_bytes());
        h.update(&bytes);
    }
    Ok(hex::encode(h.finalize()))
}

/// Turn the package's JavaScript into a component of the `plugin` world: the host's entry
/// module (which adapts the author's hooks to the world's exports) imports the author's
/// module, and componentize-qjs snapshots both with QuickJS.
fn componentize(dir: &Path, main: &str) -> Result<Vec<u8>, String> {
    let work = tempfile::tempdir().map_err(|e| format!("cannot create a folder for componentizing: {e}"))?;
    let wit = work.path().join("plugin.wit");
    std::fs::write(&wit, WIT).map_err(|e| format!("cannot write the world for componentizing: {e}"))?;
    // The scripts are copied beside the host's entry module, so the package folder is only
    // read, and modules resolve only inside the copy.
    let root = work.path().join("package");
    for f in scripts(dir)? {
        let rel = f.strip_prefix(dir).unwrap_or(&f);
        let to = root.join(rel);
        std::fs::create_dir_all(to.parent().unwrap_or(&root)).and_then(|_| std::fs::copy(&f, &to)).map_err(|e| format!("cannot copy {}: {e}", rel.display()))?;
    }
    let source = crate::js::entry(main);
    let entry = root.join("__objectos_entry.js");
    std::fs::write(&entry, &source).map_err(|e| format!("cannot write the entry module: {e}"))?;
    // componentize-qjs is async; it gets a runtime of its own on a thread of its own, so this
    // works the same from inside a tokio runtime (a check run by an async command) and outside.
    // It runs the module's top level (to snapshot it) with no time bound of its own: the host
    // stops waiting after COMPONENTIZE_TIMEOUT.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new().name("objectos-componentize".into()).spawn(move || {
        let _work = work;
        let opts = componentize_qjs::ComponentizeOpts {
            wit_path: &wit,
            js_source: &source,
            js_path: Some(&entry),
            module_root: Some(&root),
            world_name: Some("plugin"),
            // WASI stays imported, and the host links it with a context that holds no
            // capability: clocks and random work, files, sockets and the environment do not.
            stub_wasi: false,
            disable_gc: false,
            runtime: componentize_qjs::Runtime::DefaultSync,
        };
        let made = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start componentizing: {e}"))
            .and_then(|rt| rt.block_on(componentize_qjs::componentize(&opts)).map_err(|e| format!("{e:#}")));
        let _ = tx.send(made);
    });
    spawned.map_err(|e| format!("cannot start componentizing: {e}"))?;
    let made = match rx.recv_timeout(componentize_timeout()) {
        Ok(made) => made,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            return Err(format!("{main} did not finish running its top level within {} s (an endless loop outside any hook?)", componentize_timeout().as_secs()));
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err("componentizing panicked".to_string()),
    };
    made.map_err(|e| crate::js::explain(&e, main))
}


/// Refuse a component made from `main` that is larger than [`MAX_COMPONENT_BYTES`].
fn within_size(main: &str, size: u64) -> Result<(), String> {
    if size > MAX_COMPONENT_BYTES {
        return Err(format!("{main} makes a component of {} MiB; at most {} MiB are accepted (does its top level fill memory?)", size >> 20, MAX_COMPONENT_BYTES >> 20));
    }
    Ok(())
}

/// Run `program` as `program --objectos-componentize DIR MAIN OUT` and read OUT: the child is
/// killed past [`COMPONENTIZE_TIMEOUT`]; it gets no environment but a temporary folder.
fn componentize_in_child(program: &Path, dir: &Path, main: &str) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let out = tempfile::NamedTempFile::new().map_err(|e| format!("cannot create a file for the component: {e}"))?;
    let mut child = Command::new(program)
        .arg(COMPONENTIZE_FLAG)
        .arg(dir)
        .arg(main)
        .arg(out.path())
        .env_clear()
        .env("TMPDIR", std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {} to componentize: {e}", program.display()))?;
    // Read what it says while it runs (a bounded amount), so a full pipe never blocks it.
    let stderr = child.stderr.take();
    let said = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(e) = stderr {
            let _ = e.take(64 << 10).read_to_string(&mut text);
        }
        text
    });
    let started = std::time::Instant::now();
    let limit = componentize_timeout();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{main} did not finish running its top level within {} s (an endless loop outside any hook?); it was stopped", limit.as_secs()));
            }
            Err(e) => return Err(format!("waiting for the componentizer failed: {e}")),
        }
    };
    let said = said.join().unwrap_or_default();
    if !status.success() {
        let why = said.trim();
        return Err(if why.is_empty() { format!("componentizing {main} failed ({status})") } else { why.to_string() });
    }
    // Checked before reading, so an oversized file is never loaded.
    within_size(main, std::fs::metadata(out.path()).map(|m| m.len()).unwrap_or(0))?;
    std::fs::read(out.path()).map_err(|e| format!("cannot read the component: {e}"))
}

/// For host programs: when started with [`COMPONENTIZE_FLAG`] (by a [`Cache`] configured with
/// [`Cache::componentize_in`]), turn the package's JavaScript into a component, write it, and
/// return the exit code; otherwise `None`, and the program goes on. Call it first in `main`.
pub fn componentize_child_main() -> Option<std::process::ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != COMPONENTIZE_FLAG {
        return None;
    }
    let (Some(dir), Some(main), Some(out)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: {COMPONENTIZE_FLAG} DIR MAIN OUT");
        return Some(std::process::ExitCode::from(2));
    };
    let main = main.to_string_lossy().into_owned();
    let made = componentize(Path::new(&dir), &main).and_then(|bytes| std::fs::write(&out, bytes).map_err(|e| format!("cannot write the component: {e}")));
    Some(match made {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::from(1)
        }
    })
}
