//! The [`Kernel`] handle hosts hold: opening a data directory, the slot table (`slots`),
//! lifecycle transitions (`transitions`), install, upgrade and uninstall (`install`), grants
//! (`grants`), the queries hosts show (`queries`), start-up and following another process
//! (`restore`), and what a plugin reaches of the kernel (`handle`).
//!
//! Locking: `plugins` (a std mutex) is held only for short, synchronous reads and updates,
//! never across an `.await`. Each plugin has its own async `gate`, held for the whole of one
//! transition, so transitions of one plugin are serialized while hooks of different plugins
//! may call back into the kernel. A task-local stack of the plugins whose hooks are running
//! turns a hook's attempt to change its own plugin into [`KernelError::Reentrant`] instead
//! of a deadlock.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::FutureExt;
use semver::Version;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::context::{CtxInner, PluginContext, PluginShared};
use crate::db::{PluginRow, Store, Writer};
use crate::error::{KernelError, Result};
use crate::model::audit::{Actor, AuditAction, AuditDetail, AuditQuery, AuditRecord, Verification};
use crate::model::lifecycle::{Action, Hook, State};
use crate::model::log::{Level, LogQuery, LogRecord};
use crate::model::manifest::{DeclaredKind, Manifest};
use crate::model::permission::{GrantSet, Permission};
use crate::model::resolve::{self, ManifestSet, ResolveError};
use crate::model::views::{
AuthorChange, DependencyStatus, GrantRow, Graph, GraphEdge, GraphNode, FailureKind, LastError, PermissionStatus, PluginInfo, PluginKind, RunnerInfo};
use crate::notices::Notices;
use crate::package;
use crate::plugin::{DeclarativeRuntime, PackageRuntime, Plugin};
use crate::runtime::bus::{Bus, EmitReport};
use crate::runtime::log::{register_sink, PluginLogger};
use crate::runtime::registry::{Registry, ServiceInfo};
use crate::runtime::storage::{MemoryStorage, SqliteStorage, StorageBackend};
use crate::runtime::telemetry::{Counters, PluginActivity};
use crate::runtime::Core;
use crate::util::{now_ms, panic_message};
use slots::{Builtin, NewPlugin, Slot, Slots};

pub use crate::db::{LOG_RETENTION, SCHEMA_VERSION};
pub use crate::model::views::{BuiltinPolicy, GrantRequest, InstallOutcome, StartReport};
pub use crate::notices::KernelEvent;
pub use crate::runtime::log::PluginLogLayer;
pub use install::Uninstall;
pub use requests::{Request, Requested};
pub use runner::{RunnerLease, RUNNER_LEASE};

mod deliveries;
mod grants;
mod handle;
mod install;
mod queries;
mod requests;
mod restore;
mod runner;
mod slots;
mod transitions;

/// Which storage backend plugins get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageKind {
    /// The `storage` table of the kernel's database (default).
    #[default]
    Sqlite,
    /// A hash map per plugin, lost at exit (tests and benchmarks).
    Memory,
}

/// How the kernel starts.
#[derive(Clone)]
pub struct KernelConfig {
    /// Data directory (`objectos.db`, `packages/`); `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Storage backend for plugins.
    pub storage: StorageKind,
    /// Longest a hook may run before it is failed.
    pub hook_timeout: Duration,
    /// Code runtime for packages.
    pub runtime: Arc<dyn PackageRuntime>,
    /// Largest size the database may grow to, in bytes (`None`: as large as the disk allows).
    /// Past it, writes fail as they would on a full disk: a bound on what plugins can store.
    pub max_database_bytes: Option<u64>,
    /// What runs this kernel, as the runner lease it takes at start names it (`ObjectOS`).
    pub name: String,
}

impl KernelConfig {
    /// A kernel on `data_dir`, with plugin storage in its database.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        KernelConfig { data_dir: Some(data_dir.into()), storage: StorageKind::Sqlite, ..Self::in_memory() }
    }

    /// A kernel with an in-memory database and storage.
    pub fn in_memory() -> Self {
        KernelConfig { data_dir: None, storage: StorageKind::Memory, hook_timeout: Duration::from_secs(30), runtime: Arc::new(DeclarativeRuntime), max_database_bytes: None, name: "ObjectOS".into() }
    }

    /// Use the given storage backend.
    pub fn storage(mut self, kind: StorageKind) -> Self {
        self.storage = kind;
        self
    }

    /// Name what runs this kernel, for the runner lease (`objectos serve`...).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Bound hooks by `t`.
    pub fn hook_timeout(mut self, t: Duration) -> Self {
        self.hook_timeout = t;
        self
    }

    /// Let the database grow to at most `bytes` (rounded down to whole pages, and never below
    /// its size now).
    pub fn max_database_bytes(mut self, bytes: u64) -> Self {
        self.max_database_bytes = Some(bytes);
        self
    }

    /// Interpret packages with `runtime` (the default gives them no code).
    pub fn runtime(mut self, runtime: Arc<dyn PackageRuntime>) -> Self {
        self.runtime = runtime;
        self
    }
}

pub(crate) struct KernelInner {
    config: KernelConfig,
    /// What plugins' contexts share with the kernel.
    core: Arc<Core>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Every installed plugin, with the caches derived from the table.
    plugins: Mutex<Slots>,
    /// True once `start` has restored plugins: before that, recorded states describe the last
    /// process, and nothing of this process runs.
    running: std::sync::atomic::AtomicBool,
    builtins: Mutex<BTreeMap<String, Builtin>>,
    packages_dir: PathBuf,
    temp_dir: Option<PathBuf>,
    /// Held for the whole of one package install (see `install_staged`).
    installing: tokio::sync::Mutex<()>,
    /// Subscriptions whose deliveries the delivery loop is handing out now.
    delivering: Arc<deliveries::Busy>,
    /// The lease `start` took for the kernel itself, given up at shutdown.
    own_lease: Mutex<Option<RunnerLease>>,
}

impl Drop for KernelInner {
    fn drop(&mut self) {
        self.core.writer.close();
        if let Some(t) = self.writer_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            drop(t);
        }
        if let Some(t) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(t);
        }
    }
}

/// The ObjectOS kernel. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct Kernel(Arc<KernelInner>, Actor);

tokio::task_local! {
    static IN_HOOK: Vec<String>;
}

static NEXT_KERNEL: AtomicU64 = AtomicU64::new(1);

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn in_hook(id: &str) -> bool {
    IN_HOOK.try_with(|s| s.iter().any(|p| p == id)).unwrap_or(false)
}

impl Kernel {
    pub(crate) fn from_inner(inner: Arc<KernelInner>) -> Kernel {
        Kernel(inner, Actor::Admin)
    }

    /// The same kernel, acting for `actor` in the audit trail (a plugin's `kernel.manage`
    /// handle acts as `plugin:<id>`).
    pub(crate) fn acting_as(&self, actor: Actor) -> Kernel {
        Kernel(self.0.clone(), actor)
    }

    /// Open the data directory (creating it) without running any plugin code. Register the
    /// built-in plugins, then call [`Kernel::start`].
    pub fn open(config: KernelConfig) -> Result<Kernel> {
        let store = Arc::new(Store::open(config.data_dir.as_deref(), config.max_database_bytes)?);
        let notices = Notices::new();
        let (writer, thread) = Writer::start(&store, notices.clone());
        let detail = store.setting("audit.detail")?.and_then(|d| d.parse().ok()).unwrap_or_default();
        // An unreadable setting (a hand edit) falls back to the defaults rather than failing.
        let quotas = crate::model::quota::Quotas::from_setting(store.setting("quotas")?.as_deref());
        writer.set_detail(detail);
        let id = NEXT_KERNEL.fetch_add(1, Ordering::Relaxed);
        register_sink(id, &writer);
        let storage: Arc<dyn StorageBackend> = match config.storage {
            StorageKind::Sqlite => Arc::new(SqliteStorage { store: store.clone(), writer: writer.clone() }),
            StorageKind::Memory => Arc::new(MemoryStorage::new()),
        };
        let (packages_dir, temp_dir) = match &config.data_dir {
            Some(d) => (d.join("packages"), None),
            None => {
                let t = std::env::temp_dir().join(format!("objectos-mem-{}-{id}-{}", std::process::id(), now_ms()));
                (t.join("packages"), Some(t))
            }
        };
        // Staging folders of installs killed mid-way (their process is gone) are removed.
        package::sweep_staging(&package::staging_root(&packages_dir));
        // The host's own folders, as they resolve (a grant of a folder holding them, or a link
        // into them, is found by the resolved path).
        let host_folders: Arc<[PathBuf]> = config
            .data_dir
            .iter()
            .chain(temp_dir.iter())
            .cloned()
            .chain(config.runtime.own_folders())
            .flat_map(|f| {
                let resolved = std::fs::canonicalize(&f).ok();
                std::iter::once(f).chain(resolved)
            })
            .collect();
        let outbox = crate::runtime::outbox::Outbox::new(store.clone(), writer.clone());
        let core = Arc::new(Core {
            id,
            host_folders,
            bus: Arc::new(Bus::new(id, writer.clone())),
            registry: Arc::new(Registry::default()),
            storage,
            writer,
            notices,
            store,
            counters: Arc::new(Counters::default()),
            quotas: Arc::new(ArcSwap::from_pointee(quotas)),
            quiet: Mutex::default(),
            outbox,
            stopping: Default::default(),
            runner: Arc::default(),
        });
        let plugins = Mutex::new(Slots::claiming_for(core.registry.clone()));
        let inner = Arc::new(KernelInner {
            core,
            writer_thread: Mutex::new(Some(thread)),
            plugins,
            running: false.into(),
            builtins: Mutex::new(BTreeMap::new()),
            packages_dir,
            temp_dir,
            installing: tokio::sync::Mutex::new(()),
            delivering: Arc::default(),
            own_lease: Mutex::default(),
            config,
        });
        let kernel = Kernel(inner, Actor::Admin);
        kernel.identify_folders()?;
        kernel.load_rows()?;
        Ok(kernel)
    }

    /// Wait until every queued audit record and log line is in the database.
    pub fn flush(&self) {
        self.0.core.writer.flush();
    }

    /// Subscribe to typed notifications (state changes, logs, audit records...).
    pub fn subscribe(&self) -> broadcast::Receiver<KernelEvent> {
        self.0.core.notices.subscribe()
    }

    /// The data directory, if on disk.
    pub fn data_dir(&self) -> Option<&Path> {
        self.0.config.data_dir.as_deref()
    }

    /// True when another process wrote to the data directory since the last call.
    pub fn changed_externally(&self) -> bool {
        self.0.core.store.changed_externally()
    }

    /// An action's result once its records are written: the action's own error, or, when it
    /// succeeded but its audit records cannot be written, [`KernelError::AuditUnwritable`].
    /// Public actions end here, so none succeeds unrecorded.
    pub(super) fn recorded<T>(&self, result: Result<T>) -> Result<T> {
        let value = result?;
        self.0.core.writer.confirm()?;
        Ok(value)
    }

    /// `NotFound` unless `id` is installed.
    pub(super) fn require(&self, id: &str) -> Result<()> {
        if lock(&self.0.plugins).contains_key(id) { Ok(()) } else { Err(KernelError::NotFound { plugin: id.into() }) }
    }

    /// Emit an event as the host (trusted: no grant check; `kernel.*` and `plugin.*` stay
    /// reserved). Plugins' handlers see `source == "host"`, or the plugin's id when this is a
    /// plugin's `kernel.manage` handle (a plugin never emits as the host).
    pub fn emit(&self, topic: &str, payload: Value) -> Result<EmitReport> {
        crate::model::permission::validate_name(topic).map_err(|reason| KernelError::InvalidName { name: topic.into(), reason })?;
        if crate::context::reserved(topic) {
            return Err(KernelError::ReservedTopic { topic: topic.into() });
        }
        let bus = &self.0.core.bus;
        let depth = crate::runtime::bus::ambient_depth().map_or(0, |d| d.saturating_add(1));
        if depth > crate::runtime::bus::MAX_EVENT_DEPTH {
            return Err(KernelError::OverLimit {
                plugin: self.1.to_string(),
                what: format!("event `{topic}`"),
                reason: format!("chains of events are cut at {}", crate::runtime::bus::MAX_EVENT_DEPTH),
            });
        }
        let source = match &self.1 {
            Actor::Plugin(id) => id.clone(),
            _ => bus.host.clone(),
        };
        self.0.core.queue(topic, &source, &payload, depth)?;
        Ok(bus.emit(topic, &source, payload, depth))
    }
}
