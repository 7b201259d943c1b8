//! The kernel: plugin records, lifecycle transitions, grants, and the queries hosts show.
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
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::audit::{Actor, AuditDetail, AuditQuery, AuditRecord, Verification};
use crate::bus::Bus;
use crate::context::{CtxInner, PluginContext, PluginShared};
use crate::error::{KernelError, Result};
use crate::kernel_event::KernelEvent;
use crate::lifecycle::{Action, Hook, State};
use crate::logging::{register_sink, LogRecord, PluginLogger};
use crate::manifest::Manifest;
use crate::package;
use crate::permission::{GrantSet, Permission, Risk};
use crate::plugin::{DeclarativeRuntime, PackageRuntime, Plugin};
use crate::registry::{Registry, ServiceInfo};
use crate::resolve::{self, ManifestSet, ResolveError};
use crate::storage::{MemoryStorage, SqliteStorage, StorageBackend};
use crate::store::{GrantRow, LogQuery, PluginRow, Store, Writer};
use crate::telemetry::{Counters, PluginStats};
use crate::util::{now_ms, panic_message};

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
}

impl KernelConfig {
    /// A kernel on `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        KernelConfig { data_dir: Some(data_dir.into()), ..Self::in_memory() }
    }

    /// A kernel with an in-memory database and storage.
    pub fn in_memory() -> Self {
        KernelConfig { data_dir: None, storage: StorageKind::Memory, hook_timeout: Duration::from_secs(30), runtime: Arc::new(DeclarativeRuntime) }
    }

    /// Use the given storage backend.
    pub fn storage(mut self, kind: StorageKind) -> Self {
        self.storage = kind;
        self
    }

    /// Bound hooks by `t`.
    pub fn hook_timeout(mut self, t: Duration) -> Self {
        self.hook_timeout = t;
        self
    }

    /// Interpret packages with `runtime` (the default gives them no code).
    pub fn runtime(mut self, runtime: Arc<dyn PackageRuntime>) -> Self {
        self.runtime = runtime;
        self
    }
}

/// Is the plugin compiled in or installed from a package?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum PluginKind {
    /// Compiled in and registered at start.
    Builtin,
    /// Installed from a folder or `.zip`.
    Package,
}

impl PluginKind {
    fn as_str(self) -> &'static str {
        match self {
            PluginKind::Builtin => "builtin",
            PluginKind::Package => "package",
        }
    }
}

/// Whether built-in plugins' permissions are granted on their first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum BuiltinPolicy {
    /// Granted, recorded as granted by `system:policy` (default).
    #[default]
    Grant,
    /// Built-ins wait for an admin like packages.
    Ask,
}

/// The error that put a plugin in ERROR, kept for display.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct LastError {
    /// The hook that failed, if a hook did.
    pub hook: Option<String>,
    /// What went wrong.
    pub message: String,
    /// When (ms since epoch).
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub at: i64,
}

/// One requested permission and its approval.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct PermissionStatus {
    /// The permission text.
    pub permission: String,
    /// Required (else optional).
    pub required: bool,
    /// Risk level.
    pub risk: Risk,
    /// Plain description.
    pub description: String,
    /// Whether this kernel enforces it (network/fs need the sandboxed runtime).
    pub enforced: bool,
    /// The grant, if approved.
    pub grant: Option<GrantRow>,
    /// Asked for by the latest upgrade and not requested before.
    pub new: bool,
}

/// One dependency as the detail view shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct DependencyStatus {
    /// Dependency id.
    pub id: String,
    /// Required range.
    pub range: String,
    /// Optional dependency?
    pub optional: bool,
    /// Installed version, if installed.
    pub installed: Option<String>,
    /// Its state, if installed.
    pub state: Option<State>,
    /// Installed and in range.
    pub satisfied: bool,
}

/// Everything known about one plugin.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct PluginInfo {
    /// The manifest.
    pub manifest: Manifest,
    /// Built-in or package.
    pub kind: PluginKind,
    /// Current state.
    pub state: State,
    /// State the admin asked for (restored at start).
    pub desired: State,
    /// The error of an ERROR plugin.
    pub last_error: Option<LastError>,
    /// Requested permissions with their grants.
    pub permissions: Vec<PermissionStatus>,
    /// Required permissions not yet granted.
    pub pending: Vec<String>,
    /// Dependencies.
    pub dependencies: Vec<DependencyStatus>,
    /// Installed plugins that require this one.
    pub dependents: Vec<String>,
    /// Why dependencies cannot be satisfied, if they cannot.
    pub resolve_error: Option<String>,
    /// Services it has registered now.
    pub services: Vec<String>,
    /// Lifecycle actions legal now.
    pub actions: Vec<Action>,
    /// Where the package's files are.
    pub package_dir: Option<String>,
    /// First installed (ms).
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub installed_at: i64,
    /// Last changed (ms).
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub updated_at: i64,
}

/// A node of the dependency graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct GraphNode {
    /// Plugin id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Version.
    pub version: String,
    /// State.
    pub state: State,
    /// Kind.
    pub kind: PluginKind,
}

/// An edge `from` requires `to`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct GraphEdge {
    /// The requiring plugin.
    pub from: String,
    /// The required plugin (may be missing from `nodes`).
    pub to: String,
    /// The range.
    pub range: String,
    /// Optional dependency?
    pub optional: bool,
    /// Installed and in range (an absent optional dependency counts as satisfied).
    pub satisfied: bool,
    /// Part of a cycle.
    pub in_cycle: bool,
}

/// The dependency graph of every installed plugin.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Graph {
    /// Installed plugins.
    pub nodes: Vec<GraphNode>,
    /// Dependencies.
    pub edges: Vec<GraphEdge>,
    /// A load order of everything that resolves.
    pub order: Vec<String>,
    /// Plugins that do not resolve, with why.
    pub errors: BTreeMap<String, ResolveError>,
}

/// Counters and state of one plugin (for `kernel.inspect` and the metrics plugin).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginActivity {
    /// Plugin id.
    pub id: String,
    /// State.
    pub state: State,
    /// Counters.
    pub stats: PluginStats,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct InstallOutcome {
    /// Plugin id.
    pub id: String,
    /// Installed version.
    pub version: String,
    /// The version it replaced, for an upgrade.
    pub upgraded_from: Option<String>,
    /// Required permissions awaiting approval.
    pub pending: Vec<String>,
    /// State after the install.
    pub state: State,
}

/// What start-up restored.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartReport {
    /// Plugins enabled.
    pub enabled: Vec<String>,
    /// Plugins that could not be restored, with why.
    pub failed: Vec<(String, String)>,
}

/// Which permissions to grant.
#[derive(Debug, Clone)]
pub enum GrantRequest {
    /// Everything the plugin requests.
    All,
    /// These (each must be requested by the plugin).
    Some(Vec<String>),
}

struct Slot {
    manifest: Arc<Manifest>,
    kind: PluginKind,
    state: State,
    desired: State,
    last_error: Option<LastError>,
    package_dir: Option<PathBuf>,
    new_permissions: Vec<String>,
    installed_at: i64,
    updated_at: i64,
    code: Arc<dyn Plugin>,
    shared: Arc<PluginShared>,
    gate: Arc<tokio::sync::Mutex<()>>,
    ctx: PluginContext,
}

/// A plugin about to be installed: manifest, code, package folder (none for a built-in).
type NewPlugin = (Arc<Manifest>, Arc<dyn Plugin>, Option<PathBuf>);

struct Builtin {
    manifest: Arc<Manifest>,
    code: Arc<dyn Plugin>,
    /// Declared files (translations...) embedded in the binary, by relative path.
    files: BTreeMap<String, &'static str>,
}

pub(crate) struct KernelInner {
    id: u64,
    config: KernelConfig,
    pub(crate) store: Arc<Store>,
    writer: Writer,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    bus: Arc<Bus>,
    registry: Arc<Registry>,
    storage: Arc<dyn StorageBackend>,
    plugins: Mutex<BTreeMap<String, Slot>>,
    /// The installed manifests, rebuilt only when a plugin is added, removed or replaced.
    manifest_cache: Mutex<Option<Arc<ManifestSet>>>,
    /// Every installed plugin's resolution error, for the cached manifest set.
    resolve_cache: Mutex<Option<Arc<BTreeMap<String, ResolveError>>>>,
    /// True once `start` has restored plugins: before that, recorded states describe the last
    /// process, and nothing of this process runs.
    running: std::sync::atomic::AtomicBool,
    builtins: Mutex<BTreeMap<String, Builtin>>,
    kernel_counters: Arc<Counters>,
    packages_dir: PathBuf,
    temp_dir: Option<PathBuf>,
}

impl Drop for KernelInner {
    fn drop(&mut self) {
        self.writer.close();
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn in_hook(id: &str) -> bool {
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
        let store = Arc::new(Store::open(config.data_dir.as_deref())?);
        let (events, _) = broadcast::channel(4096);
        let (writer, thread) = Writer::start(&store, events);
        let detail = store.setting("audit.detail")?.and_then(|d| d.parse().ok()).unwrap_or_default();
        writer.set_detail(detail);
        let id = NEXT_KERNEL.fetch_add(1, Ordering::Relaxed);
        register_sink(id, &writer);
        let storage: Arc<dyn StorageBackend> = match config.storage {
            StorageKind::Sqlite => Arc::new(SqliteStorage { store: store.clone() }),
            StorageKind::Memory => Arc::new(MemoryStorage::new()),
        };
        let (packages_dir, temp_dir) = match &config.data_dir {
            Some(d) => (d.join("packages"), None),
            None => {
                let t = std::env::temp_dir().join(format!("objectos-mem-{}-{id}-{}", std::process::id(), now_ms()));
                (t.join("packages"), Some(t))
            }
        };
        let inner = Arc::new(KernelInner {
            id,
            bus: Arc::new(Bus::new(id, writer.clone())),
            registry: Arc::new(Registry::default()),
            storage,
            writer,
            writer_thread: Mutex::new(Some(thread)),
            store,
            plugins: Mutex::new(BTreeMap::new()),
            manifest_cache: Mutex::new(None),
            resolve_cache: Mutex::new(None),
            running: false.into(),
            builtins: Mutex::new(BTreeMap::new()),
            kernel_counters: Arc::new(Counters::default()),
            packages_dir,
            temp_dir,
            config,
        });
        let kernel = Kernel(inner, Actor::Admin);
        kernel.load_rows()?;
        Ok(kernel)
    }

    /// Read installed plugins from the database (states as last recorded).
    fn load_rows(&self) -> Result<()> {
        let rows = self.0.store.plugins()?;
        let mut slots = BTreeMap::new();
        for row in rows {
            let slot = self.slot_from_row(&row)?;
            slots.insert(row.id.clone(), slot);
        }
        *lock(&self.0.plugins) = slots;
        self.manifests_changed();
        Ok(())
    }

    fn parse_row_manifest(row: &PluginRow) -> Result<Manifest> {
        Manifest::parse(row.manifest.as_bytes(), &format!("database record of {}", row.id)).map_err(|e| KernelError::Corrupt(e.to_string()))
    }

    /// A slot for a recorded plugin: a package gets its runtime's code, a built-in the
    /// registered code (or a stand-in that fails to load while it is not registered).
    fn slot_from_row(&self, row: &PluginRow) -> Result<Slot> {
        let manifest = Self::parse_row_manifest(row)?;
        let kind = if row.kind == "builtin" { PluginKind::Builtin } else { PluginKind::Package };
        let code: Arc<dyn Plugin> = match (kind, &row.package_dir) {
            (PluginKind::Package, Some(dir)) => self.0.config.runtime.instantiate(&manifest, Path::new(dir))?,
            _ => lock(&self.0.builtins).get(&row.id).map(|b| b.code.clone()).unwrap_or_else(|| Arc::new(Missing)),
        };
        let grants = self.0.store.grants(&row.id)?;
        self.new_slot(Arc::new(manifest), kind, code, row, grants)
    }

    fn new_slot(&self, manifest: Arc<Manifest>, kind: PluginKind, code: Arc<dyn Plugin>, row: &PluginRow, grants: Vec<GrantRow>) -> Result<Slot> {
        let id: Arc<str> = manifest.id.as_str().into();
        let shared = Arc::new(PluginShared {
            id: id.clone(),
            grants: ArcSwap::from_pointee(compile_grants(&grants)),
            granted: Mutex::new(grants.into_iter().map(|g| g.permission).collect()),
            grants_generation: std::sync::atomic::AtomicU64::new(0),
            counters: Arc::new(Counters::default()),
        });
        let ctx = PluginContext(Arc::new(CtxInner {
            shared: shared.clone(),
            kernel: Arc::downgrade(&self.0),
            bus: self.0.bus.clone(),
            registry: self.0.registry.clone(),
            storage: self.0.storage.clone(),
            writer: self.0.writer.clone(),
            logger: PluginLogger::new(id, self.0.writer.clone()),
        }));
        Ok(Slot {
            manifest,
            kind,
            state: row.state,
            desired: row.desired,
            last_error: row.last_error.as_deref().and_then(|t| serde_json::from_str(t).ok()),
            package_dir: row.package_dir.as_ref().map(PathBuf::from),
            new_permissions: row.new_permissions.clone(),
            installed_at: row.installed_at,
            updated_at: row.updated_at,
            code,
            shared,
            gate: Arc::new(tokio::sync::Mutex::new(())),
            ctx,
        })
    }

    /// Register a built-in plugin: its manifest (usually `include_str!("../plugin.json")`) and
    /// its code. Call before [`Kernel::start`].
    pub fn register_builtin(&self, manifest_json: &str, code: Arc<dyn Plugin>) -> Result<()> {
        self.register_builtin_with_files(manifest_json, code, &[])
    }

    /// Like [`Kernel::register_builtin`], with the files its manifest declares (for example
    /// `("translations/en.json", include_str!("../translations/en.json"))`), which are checked
    /// like a package's.
    pub fn register_builtin_with_files(&self, manifest_json: &str, code: Arc<dyn Plugin>, files: &[(&str, &'static str)]) -> Result<()> {
        let manifest = Manifest::parse(manifest_json.as_bytes(), "built-in plugin.json")?;
        let files: BTreeMap<String, &'static str> = files.iter().map(|(p, t)| (p.to_string(), *t)).collect();
        let mut problems = Vec::new();
        for (i, locale) in manifest.provides.translations.iter().enumerate() {
            let path = format!("translations/{locale}.json");
            let found = files.get(&path).ok_or_else(|| format!("{path} was not registered with the plugin"));
            if let Err(message) = found.and_then(|t| crate::package::check_translations(t.as_bytes()).map(|_| ()).map_err(|e| format!("{path}: {e}"))) {
                problems.push(crate::manifest::Problem { path: format!("provides.translations[{i}]"), message });
            }
        }
        if !problems.is_empty() {
            return Err(crate::manifest::ManifestErrors { file: format!("built-in {} plugin.json", manifest.id), problems }.into());
        }
        let id = manifest.id.clone();
        let mut b = lock(&self.0.builtins);
        if b.contains_key(&id) {
            return Err(KernelError::DuplicateBuiltin { plugin: id });
        }
        if let Some(slot) = lock(&self.0.plugins).get(&id) {
            if slot.kind == PluginKind::Package {
                return Err(KernelError::DuplicateBuiltin { plugin: id });
            }
        }
        b.insert(id, Builtin { manifest: Arc::new(manifest), code, files });
        Ok(())
    }

    /// Install new built-ins, then restore every plugin's desired state in dependency order.
    /// One plugin's failure is recorded on it and does not stop the others.
    pub async fn start(&self) -> Result<StartReport> {
        let mut report = self.sync_builtins().await?;
        self.restore(&mut report).await;
        Ok(report)
    }

    /// Record new built-ins (running `onInstall`, applying the trust policy) and upgrade
    /// changed ones, without starting anything. Read-only tools call this instead of
    /// [`Kernel::start`] so that built-ins show up in listings.
    pub async fn sync_builtins(&self) -> Result<StartReport> {
        let mut report = StartReport::default();
        let builtins: Vec<(String, Arc<Manifest>, Arc<dyn Plugin>)> =
            lock(&self.0.builtins).iter().map(|(k, b)| (k.clone(), b.manifest.clone(), b.code.clone())).collect();
        let policy = self.builtin_policy()?;
        let mut fresh = Vec::new();
        for (id, manifest, code) in builtins {
            let existing = lock(&self.0.plugins).get(&id).map(|s| s.manifest.clone());
            match existing {
                None => fresh.push((manifest, code, None)),
                Some(old) => {
                    if old.version != manifest.version || *old != *manifest {
                        if let Err(e) = self.replace(Actor::System, manifest.clone(), code, None, true).await {
                            report.failed.push((id.clone(), e.to_string()));
                        }
                        if policy == BuiltinPolicy::Grant {
                            self.grant_as(Actor::System, "system:policy", &id, GrantRequest::All)?;
                        }
                    }
                }
            }
        }
        // New built-ins are recorded, with the policy's grants, in one transaction.
        if !fresh.is_empty() {
            let ids: Vec<String> = fresh.iter().map(|(m, _, _)| m.id.clone()).collect();
            let grant_by = (policy == BuiltinPolicy::Grant).then_some("system:policy");
            match self.install_many(Actor::System, fresh, PluginKind::Builtin, grant_by).await {
                Ok(done) => report.failed.extend(done.into_iter().filter_map(|(id, r)| r.err().map(|e| (id, e.to_string())))),
                Err(e) => report.failed.extend(ids.into_iter().map(|id| (id, e.to_string()))),
            }
        }
        // Built-ins recorded in the database get this build's code.
        let registered: Vec<(String, Arc<dyn Plugin>)> = lock(&self.0.builtins).iter().map(|(k, b)| (k.clone(), b.code.clone())).collect();
        for (id, code) in registered {
            if let Some(slot) = lock(&self.0.plugins).get_mut(&id) {
                slot.code = code;
            }
        }
        Ok(report)
    }

    async fn restore(&self, report: &mut StartReport) {
        self.0.running.store(true, Ordering::Relaxed);
        // Nothing runs yet in this process: every plugin starts from INSTALLED, except those in
        // ERROR, whose error stays visible until retried. Built-ins missing from this build fail.
        {
            let registered: BTreeSet<String> = lock(&self.0.builtins).keys().cloned().collect();
            let mut plugins = lock(&self.0.plugins);
            for (id, slot) in plugins.iter_mut() {
                if slot.kind == PluginKind::Builtin && !registered.contains(id) {
                    slot.state = State::Error;
                    slot.last_error = Some(LastError { hook: None, message: format!("{id} is a built-in plugin that this build of ObjectOS does not include"), at: now_ms() });
                } else if slot.state != State::Error || slot.desired != State::Installed {
                    slot.state = State::Installed;
                }
            }
        }
        let (order, errors) = resolve::resolve_all(&self.manifests());
        for (id, err) in &errors {
            let desired = lock(&self.0.plugins).get(id).map(|s| s.desired);
            if matches!(desired, Some(State::Enabled | State::Loaded | State::Disabled)) {
                if let Err(e) = self.set_error(id, None, err.to_string()) {
                    report.failed.push((id.clone(), e.to_string()));
                }
                report.failed.push((id.clone(), err.to_string()));
            }
        }
        for id in order {
            let Some((desired, state)) = lock(&self.0.plugins).get(&id).map(|s| (s.desired, s.state)) else { continue };
            if state == State::Error && desired == State::Installed {
                continue;
            }
            let r = match desired {
                State::Enabled => self.enable_as(Actor::System, &id, false).await,
                State::Loaded => self.transition(Actor::System, &id, Action::Load).await,
                State::Disabled => self.restore_disabled(&id).await,
                State::Installed | State::Error => Ok(()),
            };
            match r {
                Ok(()) if desired == State::Enabled => report.enabled.push(id),
                Ok(()) => {}
                Err(e) => report.failed.push((id, e.to_string())),
            }
        }
        self.0.writer.audit("system", None, "kernel.started", json!({ "enabled": report.enabled.len(), "failed": report.failed.len() }));
        self.emit_kernel("kernel.started", json!({ "enabled": report.enabled, "failed": report.failed.len() }));
    }

    async fn restore_disabled(&self, id: &str) -> Result<()> {
        self.transition(Actor::System, id, Action::Load).await?;
        self.update(id, |s| {
            s.state = State::Disabled;
            s.desired = State::Disabled;
        })
    }

    /// Apply what another process (the `objectos` command, say) changed in the data directory:
    /// plugins installed or removed there, grants, upgrades, and desired states, which this
    /// process then runs. Call it when [`Kernel::changed_externally`] says so.
    pub async fn sync_external(&self) -> Result<()> {
        let rows = self.0.store.plugins()?;
        let ids: BTreeSet<String> = rows.iter().map(|r| r.id.clone()).collect();
        let gone: Vec<String> = lock(&self.0.plugins).keys().filter(|k| !ids.contains(*k)).cloned().collect();
        for id in gone {
            self.drop_runtime(&id);
            let from = lock(&self.0.plugins).remove(&id).map(|s| s.state);
            self.manifests_changed();
            let _ = self.0.writer.events().send(KernelEvent::StateChanged { plugin: id, from, to: None });
        }
        for row in rows {
            let known = lock(&self.0.plugins).get(&row.id).map(|s| (s.desired, s.state, s.manifest.clone(), s.kind));
            let package_dir = row.package_dir.as_ref().map(PathBuf::from);
            match known {
                None => {
                    let mut slot = self.slot_from_row(&row)?;
                    slot.state = State::Installed;
                    lock(&self.0.plugins).insert(row.id.clone(), slot);
                    self.manifests_changed();
                    let _ = self.0.writer.events().send(KernelEvent::StateChanged { plugin: row.id.clone(), from: None, to: Some(State::Installed) });
                    if row.desired == State::Enabled {
                        let _ = self.enable_as(Actor::System, &row.id, false).await;
                    }
                }
                Some((desired, state, old, kind)) => {
                    let manifest = Arc::new(Self::parse_row_manifest(&row)?);
                    self.refresh_grants(&row.id)?;
                    if *old != *manifest && kind == PluginKind::Package {
                        if let Some(dir) = &package_dir {
                            let code = self.0.config.runtime.instantiate(&manifest, dir)?;
                            if let Some(s) = lock(&self.0.plugins).get_mut(&row.id) {
                                s.manifest = manifest.clone();
                                s.code = code;
                                s.package_dir = package_dir.clone();
                                s.new_permissions = row.new_permissions.clone();
                            }
                            self.manifests_changed();
                        }
                    }
                    let _ = self.0.writer.events().send(KernelEvent::PermissionsChanged { plugin: row.id.clone() });
                    if row.desired == desired {
                        continue;
                    }
                    let r = match (row.desired, state) {
                        (State::Enabled, _) => self.enable_as(Actor::System, &row.id, false).await,
                        (State::Disabled | State::Installed | State::Loaded, State::Enabled) => {
                            let r = self.transition(Actor::System, &row.id, Action::Disable).await;
                            match (r, row.desired) {
                                (Ok(()), State::Installed) => self.transition(Actor::System, &row.id, Action::Unload).await,
                                (r, _) => r,
                            }
                        }
                        (State::Installed, State::Loaded | State::Disabled) => self.transition(Actor::System, &row.id, Action::Unload).await,
                        (State::Loaded, State::Installed) => self.transition(Actor::System, &row.id, Action::Load).await,
                        _ => Ok(()),
                    };
                    if let Err(e) = r {
                        tracing::warn!(plugin = %row.id, "could not follow the change made by another process: {e}");
                    }
                }
            }
        }
        self.0.store.changed_externally();
        Ok(())
    }

    /// Stop every running plugin (disable and unload hooks, in reverse dependency order)
    /// without changing the states recorded for the next start, then flush the writer.
    pub async fn shutdown(&self) {
        let (order, _) = resolve::resolve_all(&self.manifests());
        for id in order.iter().rev() {
            let Some((state, code, ctx)) = lock(&self.0.plugins).get(id).map(|s| (s.state, s.code.clone(), s.ctx.clone())) else { continue };
            if state == State::Enabled {
                let _ = self.run_hook(id, &code, &ctx, Hook::Disable, None).await;
                self.drop_runtime(id);
            }
            if matches!(state, State::Enabled | State::Disabled | State::Loaded) {
                let _ = self.run_hook(id, &code, &ctx, Hook::Unload, None).await;
            }
        }
        self.0.registry.clear();
        self.0.writer.flush();
    }

    /// Wait until every queued audit record and log line is in the database.
    pub fn flush(&self) {
        self.0.writer.flush();
    }

    /// Subscribe to typed notifications (state changes, logs, audit records...).
    pub fn subscribe(&self) -> broadcast::Receiver<KernelEvent> {
        self.0.writer.events().subscribe()
    }

    /// The data directory, if on disk.
    pub fn data_dir(&self) -> Option<&Path> {
        self.0.config.data_dir.as_deref()
    }

    /// True when another process wrote to the data directory since the last call.
    pub fn changed_externally(&self) -> bool {
        self.0.store.changed_externally()
    }

    // ---- queries -----------------------------------------------------------------------

    fn manifests(&self) -> Arc<ManifestSet> {
        let mut cache = lock(&self.0.manifest_cache);
        if let Some(set) = cache.as_ref() {
            return set.clone();
        }
        let set: Arc<ManifestSet> = Arc::new(lock(&self.0.plugins).iter().map(|(k, s)| (k.clone(), s.manifest.clone())).collect());
        *cache = Some(set.clone());
        set
    }

    /// Call after adding, removing or replacing a plugin's manifest.
    fn manifests_changed(&self) {
        *lock(&self.0.manifest_cache) = None;
        *lock(&self.0.resolve_cache) = None;
    }

    /// Whether `id`'s dependencies resolve, from one linear walk over every plugin, kept until
    /// the manifests change (a lifecycle action checks it several times, and a chain of n
    /// plugins would otherwise cost n walks of up to n plugins each).
    fn check_resolves(&self, id: &str) -> std::result::Result<(), ResolveError> {
        let cached = lock(&self.0.resolve_cache).clone();
        let errors = match cached {
            Some(e) => e,
            None => {
                let errors = Arc::new(resolve::resolve_all(&self.manifests()).1);
                *lock(&self.0.resolve_cache) = Some(errors.clone());
                errors
            }
        };
        match errors.get(id) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Every installed plugin, sorted by id.
    pub fn plugins(&self) -> Result<Vec<PluginInfo>> {
        let ids: Vec<String> = lock(&self.0.plugins).keys().cloned().collect();
        ids.iter().map(|id| self.plugin(id)).collect()
    }

    /// One plugin.
    pub fn plugin(&self, id: &str) -> Result<PluginInfo> {
        let set = self.manifests();
        let grants = self.0.store.grants(id)?;
        let plugins = lock(&self.0.plugins);
        let slot = plugins.get(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
        let m = &slot.manifest;
        let permissions: Vec<PermissionStatus> = m
            .all_permissions()
            .map(|(p, required)| {
                let text = p.to_string();
                PermissionStatus {
                    grant: grants.iter().find(|g| g.permission == text).cloned(),
                    new: slot.new_permissions.contains(&text),
                    permission: text,
                    required,
                    risk: p.risk(),
                    description: p.describe(),
                    enforced: p.enforced(),
                }
            })
            .collect();
        let pending = permissions.iter().filter(|p| p.required && p.grant.is_none()).map(|p| p.permission.clone()).collect();
        let dependencies = m
            .all_dependencies()
            .map(|(dep, range, optional)| {
                let other = plugins.get(dep);
                DependencyStatus {
                    id: dep.clone(),
                    range: range.to_string(),
                    optional,
                    installed: other.map(|o| o.manifest.version.to_string()),
                    state: other.map(|o| o.state),
                    satisfied: other.map_or(optional, |o| range.matches(&o.manifest.version)),
                }
            })
            .collect();
        let services = self.0.registry.list().into_iter().filter(|s| s.owner == id).map(|s| s.name).collect();
        Ok(PluginInfo {
            manifest: (**m).clone(),
            kind: slot.kind,
            state: slot.state,
            desired: slot.desired,
            last_error: slot.last_error.clone(),
            permissions,
            pending,
            dependencies,
            dependents: resolve::dependents(&set, id),
            resolve_error: self.check_resolves(id).err().map(|e| e.to_string()),
            services,
            // `enable` loads first when needed, so it is offered from INSTALLED and ERROR too.
            actions: Action::ALL
                .into_iter()
                .filter(|a| slot.state.allows(*a) || (*a == Action::Enable && matches!(slot.state, State::Installed | State::Error)))
                .filter(|a| !(slot.kind == PluginKind::Builtin && *a == Action::Uninstall))
                .collect(),
            package_dir: slot.package_dir.as_ref().map(|p| p.display().to_string()),
            installed_at: slot.installed_at,
            updated_at: slot.updated_at,
        })
    }

    /// The dependency graph.
    pub fn graph(&self) -> Graph {
        let set = self.manifests();
        let (order, errors) = resolve::resolve_all(&set);
        let cycle_edges: BTreeSet<(String, String)> = errors
            .values()
            .filter_map(|e| match e {
                ResolveError::Cycle { cycle } => Some(cycle.windows(2).map(|w| (w[0].clone(), w[1].clone())).collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect();
        let plugins = lock(&self.0.plugins);
        let nodes = plugins
            .values()
            .map(|s| GraphNode { id: s.manifest.id.clone(), name: s.manifest.name.clone(), version: s.manifest.version.to_string(), state: s.state, kind: s.kind })
            .collect();
        let mut edges = Vec::new();
        for s in plugins.values() {
            for (dep, range, optional) in s.manifest.all_dependencies() {
                let target = plugins.get(dep);
                edges.push(GraphEdge {
                    from: s.manifest.id.clone(),
                    to: dep.clone(),
                    range: range.to_string(),
                    optional,
                    satisfied: target.map_or(optional, |t| range.matches(&t.manifest.version)),
                    in_cycle: cycle_edges.contains(&(s.manifest.id.clone(), dep.clone())),
                });
            }
        }
        Graph { nodes, edges, order, errors }
    }

    /// Registered services.
    pub fn services(&self) -> Vec<ServiceInfo> {
        self.0.registry.list()
    }

    /// A service, looked up by the host (trusted; no grant check).
    pub fn service<T: std::any::Any + Send + Sync>(&self, name: &str) -> Result<Arc<T>> {
        self.0.registry.get(name)
    }

    /// A plugin's context, for the host and tests. Its calls are checked like the plugin's own.
    pub fn context(&self, id: &str) -> Result<PluginContext> {
        lock(&self.0.plugins).get(id).map(|s| s.ctx.clone()).ok_or_else(|| KernelError::NotFound { plugin: id.into() })
    }

    /// A file a plugin's manifest declares (`translations/<locale>.json`, or an object or
    /// workflow file), as text: from the binary for a built-in, from its folder for a package.
    /// `None` when the plugin does not declare that path.
    pub fn declared_file(&self, id: &str, path: &str) -> Result<Option<String>> {
        let (manifest, dir) = {
            let plugins = lock(&self.0.plugins);
            let slot = plugins.get(id).ok_or_else(|| KernelError::NotFound { plugin: id.to_string() })?;
            (slot.manifest.clone(), slot.package_dir.clone())
        };
        let p = &manifest.provides;
        let declared = p.translations.iter().any(|l| path == format!("translations/{l}.json"))
            || [("objects", &p.objects), ("workflows", &p.workflows), ("automations", &p.automations)].iter().any(|(folder, names)| {
                names.iter().any(|n| ["json", "yml", "yaml"].iter().any(|ext| path == format!("{folder}/{n}.{ext}")))
            });
        if !declared {
            return Ok(None);
        }
        if let Some(text) = lock(&self.0.builtins).get(id).and_then(|b| b.files.get(path).copied()) {
            return Ok(Some(text.to_string()));
        }
        let Some(dir) = dir else { return Ok(None) };
        let file = dir.join(path);
        match std::fs::read_to_string(&file) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KernelError::io(file, e)),
        }
    }

    /// Counters and state of every plugin.
    pub fn activity(&self) -> Vec<PluginActivity> {
        lock(&self.0.plugins)
            .values()
            .map(|s| PluginActivity { id: s.manifest.id.clone(), state: s.state, stats: s.shared.counters.snapshot() })
            .collect()
    }

    /// Stored log lines.
    pub fn logs(&self, q: &LogQuery) -> Result<Vec<LogRecord>> {
        self.0.writer.flush();
        self.0.store.logs(q)
    }

    /// Stored audit records.
    pub fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        self.0.writer.flush();
        self.0.store.audit(q)
    }

    /// Verify the audit chain.
    pub fn verify_audit(&self) -> Result<Verification> {
        self.0.writer.flush();
        self.0.store.verify_audit()
    }

    /// Remove audit records before `keep_from_id`, appending an `audit.trimmed` checkpoint.
    pub fn trim_audit(&self, keep_from_id: i64) -> Result<i64> {
        self.0.writer.flush();
        self.0.writer.trim_audit(keep_from_id)
    }

    /// Audit detail level.
    pub fn audit_detail(&self) -> AuditDetail {
        self.0.writer.detail()
    }

    /// Set the audit detail level (persisted).
    pub fn set_audit_detail(&self, d: AuditDetail) -> Result<()> {
        let text = if d == AuditDetail::Full { "full" } else { "lifecycle" };
        self.0.store.set_setting("audit.detail", text)?;
        self.0.writer.set_detail(d);
        self.0.writer.audit("admin", None, "settings.changed", json!({ "auditDetail": text }));
        Ok(())
    }

    /// Built-in trust policy.
    pub fn builtin_policy(&self) -> Result<BuiltinPolicy> {
        Ok(match self.0.store.setting("builtin.policy")?.as_deref() {
            Some("ask") => BuiltinPolicy::Ask,
            _ => BuiltinPolicy::Grant,
        })
    }

    /// Set the built-in trust policy (applies to built-ins installed from now on).
    pub fn set_builtin_policy(&self, p: BuiltinPolicy) -> Result<()> {
        let text = if p == BuiltinPolicy::Ask { "ask" } else { "grant" };
        self.0.store.set_setting("builtin.policy", text)?;
        self.0.writer.audit("admin", None, "settings.changed", json!({ "builtinPolicy": text }));
        Ok(())
    }

    /// Set a plugin's configuration object (read by the plugin through its context).
    pub fn set_config(&self, id: &str, config: Value) -> Result<()> {
        self.require(id)?;
        if !config.is_object() {
            return Err(KernelError::InvalidName { name: "config".into(), reason: "plugin configuration must be a JSON object".into() });
        }
        self.0.store.set_config(id, &config)?;
        self.0.writer.audit("admin", Some(id), "plugin.configured", json!({ "keys": config.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()) }));
        Ok(())
    }

    fn require(&self, id: &str) -> Result<()> {
        if lock(&self.0.plugins).contains_key(id) { Ok(()) } else { Err(KernelError::NotFound { plugin: id.into() }) }
    }

    // ---- events --------------------------------------------------------------------------

    /// Emit an event as the host (trusted: no grant check; `kernel.*` and `plugin.*` stay
    /// reserved). Plugins' handlers see `source == "host"`.
    pub fn emit(&self, topic: &str, payload: Value) -> Result<crate::bus::EmitReport> {
        crate::permission::validate_name(topic).map_err(|reason| KernelError::InvalidName { name: topic.into(), reason })?;
        if crate::context::reserved(topic) {
            return Err(KernelError::ReservedTopic { topic: topic.into() });
        }
        Ok(self.0.bus.emit(topic, &self.0.bus.host, payload))
    }

    pub(crate) fn emit_kernel(&self, topic: &str, payload: Value) {
        self.0.kernel_counters.events_emitted.fetch_add(1, Ordering::Relaxed);
        self.0.bus.emit(topic, &self.0.bus.kernel, payload);
    }

    fn announce(&self, actor: &Actor, id: &str, from: Option<State>, to: Option<State>, action: &str, details: Value) {
        self.0.writer.audit(&actor.to_string(), Some(id), action, details.clone());
        // Lifecycle changes also go to the plugin's own log, so its tail tells its story.
        let what = action.strip_prefix("plugin.").unwrap_or(action);
        self.0.writer.log(LogRecord {
            id: 0,
            ts: now_ms(),
            plugin: id.into(),
            level: if to == Some(State::Error) { crate::logging::Level::Error } else { crate::logging::Level::Info },
            target: "objectos::kernel".into(),
            message: match (from, to) {
                (Some(f), Some(t)) if f != t => format!("{what} by {actor} ({f} -> {t})"),
                _ => format!("{what} by {actor}"),
            },
            fields: details.clone(),
        });
        let _ = self.0.writer.events().send(KernelEvent::StateChanged { plugin: id.into(), from, to });
        let mut payload = json!({ "plugin": id, "from": from, "to": to });
        if let (Value::Object(p), Value::Object(d)) = (&mut payload, details) {
            p.extend(d);
        }
        self.emit_kernel(action, payload);
    }

    /// Record a service coming (`registered_type` is its Rust type) or going: audit record,
    /// host notification, and the `kernel.service.*` bus event plugins can follow.
    pub(crate) fn announce_service(&self, actor: &str, owner: &str, name: &str, registered_type: Option<&str>) {
        match registered_type {
            Some(ty) => {
                self.0.writer.audit(actor, Some(owner), "service.registered", json!({ "service": name, "type": ty }));
                let _ = self.0.writer.events().send(KernelEvent::ServiceRegistered { name: name.into(), owner: owner.into() });
                self.emit_kernel("kernel.service.registered", json!({ "service": name, "owner": owner }));
            }
            None => {
                self.0.writer.audit(actor, Some(owner), "service.unregistered", json!({ "service": name }));
                let _ = self.0.writer.events().send(KernelEvent::ServiceUnregistered { name: name.into(), owner: owner.into() });
                self.emit_kernel("kernel.service.unregistered", json!({ "service": name, "owner": owner }));
            }
        }
    }

    // ---- hooks ---------------------------------------------------------------------------

    async fn run_hook(&self, id: &str, code: &Arc<dyn Plugin>, ctx: &PluginContext, hook: Hook, upgrade: Option<(Version, Version)>) -> std::result::Result<Duration, String> {
        let span = tracing::info_span!("hook", plugin = %id, kernel = self.0.id, hook = hook.as_str());
        let started = Instant::now();
        let fut = async {
            match hook {
                Hook::Install => code.on_install(ctx).await,
                Hook::Load => code.on_load(ctx).await,
                Hook::Enable => code.on_enable(ctx).await,
                Hook::Disable => code.on_disable(ctx).await,
                Hook::Unload => code.on_unload(ctx).await,
                Hook::Uninstall => code.on_uninstall(ctx).await,
                Hook::Upgrade => {
                    let (from, to) = upgrade.clone().unwrap_or((Version::new(0, 0, 0), Version::new(0, 0, 0)));
                    code.on_upgrade(ctx, &from, &to).await
                }
            }
        };
        let mut stack = IN_HOOK.try_with(Clone::clone).unwrap_or_default();
        stack.push(id.to_string());
        let guarded = IN_HOOK.scope(stack, AssertUnwindSafe(fut).catch_unwind()).instrument(span);
        let outcome = tokio::time::timeout(self.0.config.hook_timeout, guarded).await;
        let took = started.elapsed();
        let result = match outcome {
            Ok(Ok(Ok(()))) => Ok(took),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(panic)) => Err(panic_message(&*panic)),
            Err(_) => Err(format!("did not finish within {:?}", self.0.config.hook_timeout)),
        };
        let counters = lock(&self.0.plugins).get(id).map(|s| s.shared.counters.clone());
        if let Some(c) = counters {
            c.hook(hook, took.as_micros() as u64, result.is_ok());
        }
        if let Err(message) = &result {
            self.0.writer.log(LogRecord {
                id: 0,
                ts: now_ms(),
                plugin: id.into(),
                level: crate::logging::Level::Error,
                target: "objectos::kernel".into(),
                message: format!("{hook} failed: {message}"),
                fields: json!({ "hook": hook.as_str() }),
            });
        }
        result
    }

    /// Remove what an active plugin put into the kernel: services and subscriptions.
    fn drop_runtime(&self, id: &str) {
        self.0.bus.remove_owner(id);
        for name in self.0.registry.remove_owner(id) {
            self.announce_service("system", id, &name, None);
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Slot)) -> Result<()> {
        let (state, desired, err) = {
            let mut plugins = lock(&self.0.plugins);
            let slot = plugins.get_mut(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
            f(slot);
            slot.updated_at = now_ms();
            (slot.state, slot.desired, slot.last_error.as_ref().and_then(|e| serde_json::to_string(e).ok()))
        };
        self.0.store.set_state(id, state, desired, err.as_deref())
    }

    fn set_error(&self, id: &str, hook: Option<Hook>, message: String) -> Result<()> {
        let from = lock(&self.0.plugins).get(id).map(|s| s.state);
        self.update(id, |s| {
            s.state = State::Error;
            s.last_error = Some(LastError { hook: hook.map(|h| h.as_str().to_string()), message: message.clone(), at: now_ms() });
        })?;
        self.announce(&Actor::System, id, from, Some(State::Error), "plugin.error", json!({ "hook": hook.map(Hook::as_str), "message": message }));
        Ok(())
    }

    /// One transition with the plugin's gate held by the caller.
    async fn step(&self, actor: &Actor, id: &str, action: Action) -> Result<()> {
        let (state, code, ctx) = {
            let plugins = lock(&self.0.plugins);
            let s = plugins.get(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
            (s.state, s.code.clone(), s.ctx.clone())
        };
        if !state.allows(action) {
            return Err(KernelError::IllegalTransition { plugin: id.into(), state, action });
        }
        let (hook, to) = match action {
            Action::Load => (Hook::Load, State::Loaded),
            Action::Enable => (Hook::Enable, State::Enabled),
            Action::Disable => (Hook::Disable, State::Disabled),
            Action::Unload => (Hook::Unload, State::Installed),
            Action::Uninstall => (Hook::Uninstall, State::Installed),
        };
        if matches!(action, Action::Load | Action::Enable) {
            self.check_resolves(id)?;
        }
        if action == Action::Enable {
            self.check_enable(id)?;
        }
        let result = self.run_hook(id, &code, &ctx, hook, None).await;
        if matches!(action, Action::Disable | Action::Unload) || (action == Action::Enable && result.is_err()) {
            self.drop_runtime(id);
        }
        match result {
            Ok(took) => {
                self.update(id, |s| {
                    s.state = to;
                    s.desired = to;
                    s.last_error = None;
                })?;
                self.announce(actor, id, Some(state), Some(to), &format!("plugin.{}", past(action)), json!({ "durationMs": took.as_secs_f64() * 1000.0 }));
                Ok(())
            }
            Err(message) => {
                // What the admin asked for stays the desired state: an enable that failed is
                // retried at the next start, a disable that failed is not undone by it.
                self.update(id, |s| s.desired = to)?;
                self.set_error(id, Some(hook), message.clone())?;
                Err(KernelError::Hook { plugin: id.into(), hook: hook.as_str().into(), message })
            }
        }
    }

    fn check_enable(&self, id: &str) -> Result<()> {
        let plugins = lock(&self.0.plugins);
        let slot = plugins.get(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
        for dep in slot.manifest.dependencies.keys() {
            let state = plugins.get(dep).map(|d| d.state).unwrap_or(State::Installed);
            if state != State::Enabled {
                return Err(KernelError::DependencyNotEnabled { plugin: id.into(), dependency: dep.clone(), state });
            }
        }
        drop(plugins);
        let pending = self.pending(id)?;
        if !pending.is_empty() {
            return Err(KernelError::PermissionsPending { plugin: id.into(), pending });
        }
        Ok(())
    }

    fn pending(&self, id: &str) -> Result<Vec<String>> {
        let plugins = lock(&self.0.plugins);
        let slot = plugins.get(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
        let granted = lock(&slot.shared.granted);
        Ok(slot.manifest.permissions.iter().map(|p| p.to_string()).filter(|p| !granted.contains(p)).collect())
    }

    async fn gate(&self, id: &str) -> Result<tokio::sync::OwnedMutexGuard<()>> {
        if in_hook(id) {
            return Err(KernelError::Reentrant { plugin: id.into() });
        }
        let gate = lock(&self.0.plugins).get(id).map(|s| s.gate.clone()).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
        Ok(gate.lock_owned().await)
    }

    async fn transition(&self, actor: Actor, id: &str, action: Action) -> Result<()> {
        let _g = self.gate(id).await?;
        self.step(&actor, id, action).await
    }

    // ---- lifecycle API ---------------------------------------------------------------------

    /// Load a plugin (INSTALLED or ERROR -> LOADED).
    pub async fn load(&self, id: &str) -> Result<()> {
        self.transition(self.1.clone(), id, Action::Load).await
    }

    /// Enable a plugin, loading it first when needed. Every dependency must be enabled;
    /// with `with_deps` they are enabled first, in dependency order.
    pub async fn enable(&self, id: &str, with_deps: bool) -> Result<()> {
        self.enable_as(self.1.clone(), id, with_deps).await
    }

    pub(crate) async fn enable_as(&self, actor: Actor, id: &str, with_deps: bool) -> Result<()> {
        self.require(id)?;
        if with_deps {
            let order = resolve::resolve(&self.manifests(), id)?;
            for dep in order.iter().filter(|d| d.as_str() != id) {
                let state = lock(&self.0.plugins).get(dep).map(|s| s.state);
                if state != Some(State::Enabled) {
                    Box::pin(self.enable_as(actor.clone(), dep, false)).await?;
                }
            }
        }
        let _g = self.gate(id).await?;
        let state = lock(&self.0.plugins).get(id).map(|s| s.state).unwrap_or(State::Installed);
        if state == State::Enabled {
            return Ok(());
        }
        if matches!(state, State::Installed | State::Error) {
            // Check what would block the enable before running onLoad, so a refusal leaves
            // the plugin where it was.
            self.check_resolves(id)?;
            self.check_enable(id)?;
            self.step(&actor, id, Action::Load).await?;
        }
        self.step(&actor, id, Action::Enable).await
    }

    /// Disable a plugin. Refused while enabled plugins depend on it, unless `cascade`, which
    /// disables them first (dependents of dependents first).
    pub async fn disable(&self, id: &str, cascade: bool) -> Result<()> {
        self.disable_as(self.1.clone(), id, cascade).await
    }

    pub(crate) async fn disable_as(&self, actor: Actor, id: &str, cascade: bool) -> Result<()> {
        self.require(id)?;
        let dependents = self.enabled_dependents(id);
        if !dependents.is_empty() {
            if !cascade {
                return Err(KernelError::DependentsEnabled { plugin: id.into(), dependents });
            }
            let (order, _) = resolve::resolve_all(&self.manifests());
            for dep in order.iter().rev().filter(|d| dependents.contains(d)) {
                let still = lock(&self.0.plugins).get(dep).map(|s| s.state) == Some(State::Enabled);
                if still {
                    self.transition(actor.clone(), dep, Action::Disable).await?;
                }
            }
        }
        self.transition(actor, id, Action::Disable).await
    }

    fn enabled_dependents(&self, id: &str) -> Vec<String> {
        let set = self.manifests();
        let plugins = lock(&self.0.plugins);
        resolve::dependents(&set, id).into_iter().filter(|d| plugins.get(d).map(|s| s.state) == Some(State::Enabled)).collect()
    }

    /// Unload a plugin back to INSTALLED.
    pub async fn unload(&self, id: &str) -> Result<()> {
        self.transition(self.1.clone(), id, Action::Unload).await
    }

    /// Uninstall a package: `onUninstall`, then its record, storage, grants and files are
    /// removed (its logs and audit records stay).
    pub async fn uninstall(&self, id: &str) -> Result<()> {
        self.uninstall_as(self.1.clone(), id).await
    }

    pub(crate) async fn uninstall_as(&self, actor: Actor, id: &str) -> Result<()> {
        let _g = self.gate(id).await?;
        let (state, kind, code, ctx, dir, version) = {
            let plugins = lock(&self.0.plugins);
            let s = plugins.get(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
            (s.state, s.kind, s.code.clone(), s.ctx.clone(), s.package_dir.clone(), s.manifest.version.to_string())
        };
        if kind == PluginKind::Builtin {
            return Err(KernelError::BuiltinUninstall { plugin: id.into() });
        }
        if !state.allows(Action::Uninstall) {
            return Err(KernelError::IllegalTransition { plugin: id.into(), state, action: Action::Uninstall });
        }
        if matches!(state, State::Loaded | State::Disabled) {
            let _ = self.run_hook(id, &code, &ctx, Hook::Unload, None).await;
        }
        let hook_error = self.run_hook(id, &code, &ctx, Hook::Uninstall, None).await.err();
        self.drop_runtime(id);
        self.0.storage.clear(id)?;
        self.0.store.delete_plugin(id)?;
        lock(&self.0.plugins).remove(id);
        self.manifests_changed();
        if let Some(d) = dir {
            let _ = std::fs::remove_dir_all(&d);
            if let Some(parent) = d.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        self.announce(&actor, id, Some(state), None, "plugin.uninstalled", json!({ "version": version, "hookError": hook_error }));
        Ok(())
    }

    /// Install a package from a folder or `.zip`. A newer version of an installed plugin
    /// upgrades it (storage kept, `onUpgrade` runs); the same version is refused; an older one
    /// is refused unless `force`.
    pub async fn install_package(&self, path: &Path, force: bool) -> Result<InstallOutcome> {
        self.install_package_as(self.1.clone(), path, force).await
    }

    pub(crate) async fn install_package_as(&self, actor: Actor, path: &Path, force: bool) -> Result<InstallOutcome> {
        let staging = self.0.packages_dir.join(".staging");
        let staged = package::stage(path, &staging)?;
        let problems = self.0.config.runtime.check(&staged.manifest, &staged.dir);
        let result = if problems.is_empty() {
            self.install_staged(actor, &staged, force).await
        } else {
            Err(crate::manifest::ManifestErrors { file: path.join("plugin.json").display().to_string(), problems }.into())
        };
        let _ = std::fs::remove_dir_all(staging.join(staged.dir.strip_prefix(&staging).ok().and_then(|p| p.components().next()).map(|c| c.as_os_str().to_owned()).unwrap_or_default()));
        result
    }

    async fn install_staged(&self, actor: Actor, staged: &package::Staged, force: bool) -> Result<InstallOutcome> {
        let m = Arc::new(staged.manifest.clone());
        if lock(&self.0.builtins).contains_key(&m.id) {
            return Err(KernelError::DuplicateBuiltin { plugin: m.id.clone() });
        }
        let existing = lock(&self.0.plugins).get(&m.id).map(|s| (s.manifest.version.clone(), s.kind));
        if let Some((installed, _)) = &existing {
            if *installed == m.version {
                return Err(KernelError::AlreadyInstalled { plugin: m.id.clone(), version: installed.to_string() });
            }
            if m.version < *installed && !force {
                return Err(KernelError::Downgrade { plugin: m.id.clone(), installed: installed.to_string(), offered: m.version.to_string() });
            }
        }
        let dest = self.0.packages_dir.join(&m.id).join(m.version.to_string());
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| KernelError::io(&dest, e))?;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| KernelError::io(parent, e))?;
        }
        std::fs::rename(&staged.dir, &dest).map_err(|e| KernelError::io(&dest, e))?;
        let code = match self.0.config.runtime.instantiate(&m, &dest) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dest);
                return Err(e);
            }
        };
        let outcome = match existing {
            None => self.install_new(actor, m.clone(), PluginKind::Package, code, Some(dest.clone())).await,
            Some(_) => self.replace(actor, m.clone(), code, Some(dest.clone()), force).await,
        };
        if outcome.is_err() {
            let _ = std::fs::remove_dir_all(&dest);
        }
        outcome
    }

    async fn install_new(&self, actor: Actor, m: Arc<Manifest>, kind: PluginKind, code: Arc<dyn Plugin>, dir: Option<PathBuf>) -> Result<InstallOutcome> {
        let id = m.id.clone();
        let mut done = self.install_many(actor, vec![(m, code, dir)], kind, None).await?;
        done.pop().map(|(_, r)| r).unwrap_or(Err(KernelError::NotFound { plugin: id }))
    }

    /// Record new plugins in one transaction (granting each everything it requests when
    /// `grant_by` is given), then announce each and run its `onInstall`. A failed hook puts
    /// that plugin in ERROR and does not stop the others.
    async fn install_many(
        &self,
        actor: Actor,
        new: Vec<NewPlugin>,
        kind: PluginKind,
        grant_by: Option<&str>,
    ) -> Result<Vec<(String, Result<InstallOutcome>)>> {
        let now = now_ms();
        let rows: Vec<(PluginRow, Vec<String>)> = new
            .iter()
            .map(|(m, _, dir)| {
                let row = PluginRow {
                    id: m.id.clone(),
                    version: m.version.to_string(),
                    kind: kind.as_str().into(),
                    manifest: m.to_json(),
                    state: State::Installed,
                    desired: State::Installed,
                    last_error: None,
                    package_dir: dir.as_ref().map(|d| d.display().to_string()),
                    new_permissions: Vec::new(),
                    installed_at: now,
                    updated_at: now,
                };
                let wanted = if grant_by.is_some() { m.all_permissions().map(|(p, _)| p.to_string()).collect() } else { Vec::new() };
                (row, wanted)
            })
            .collect();
        let grants = self.0.store.insert_plugins(&rows, grant_by.unwrap_or_default())?;
        let mut installed = Vec::with_capacity(new.len());
        for (((m, code, _), (row, _)), grants) in new.into_iter().zip(&rows).zip(grants) {
            let slot = self.new_slot(m.clone(), kind, code.clone(), row, grants)?;
            installed.push((m, code, slot.ctx.clone()));
            lock(&self.0.plugins).insert(row.id.clone(), slot);
        }
        self.manifests_changed();
        let mut out = Vec::with_capacity(installed.len());
        for (m, code, ctx) in installed {
            self.announce(&actor, &m.id, None, Some(State::Installed), "plugin.installed", json!({ "version": m.version.to_string(), "kind": kind.as_str() }));
            if let Some(by) = grant_by {
                let granted = lock(&ctx.0.shared.granted).clone();
                if !granted.is_empty() {
                    self.0.writer.audit(&actor.to_string(), Some(&m.id), "permission.granted", json!({ "permissions": granted, "by": by }));
                    let _ = self.0.writer.events().send(KernelEvent::PermissionsChanged { plugin: m.id.clone() });
                }
            }
            if let Err(message) = self.run_hook(&m.id, &code, &ctx, Hook::Install, None).await {
                if let Err(e) = self.set_error(&m.id, Some(Hook::Install), message) {
                    out.push((m.id.clone(), Err(e)));
                    continue;
                }
            }
            let state = lock(&self.0.plugins).get(&m.id).map(|s| s.state).unwrap_or(State::Installed);
            let outcome = self.pending(&m.id).map(|pending| InstallOutcome { id: m.id.clone(), version: m.version.to_string(), upgraded_from: None, pending, state });
            out.push((m.id.clone(), outcome));
        }
        Ok(out)
    }

    /// Replace an installed plugin's manifest and code (upgrade, or forced downgrade).
    async fn replace(&self, actor: Actor, m: Arc<Manifest>, code: Arc<dyn Plugin>, dir: Option<PathBuf>, _force: bool) -> Result<InstallOutcome> {
        let id = m.id.clone();
        let recorded = lock(&self.0.plugins).get(&id).map(|s| s.state).ok_or_else(|| KernelError::NotFound { plugin: id.clone() })?;
        // Before `start` has restored anything, a recorded ENABLED is the last process's state:
        // nothing runs here to disable; `start` enables the new version afterwards.
        let was = if self.0.running.load(Ordering::Relaxed) { recorded } else { State::Installed };
        if was == State::Enabled {
            let dependents = self.enabled_dependents(&id);
            if !dependents.is_empty() {
                return Err(KernelError::DependentsEnabled { plugin: id, dependents });
            }
        }
        let _g = self.gate(&id).await?;
        if was == State::Enabled {
            self.step(&actor, &id, Action::Disable).await?;
        }
        let (old_manifest, old_dir, new_permissions) = {
            let mut plugins = lock(&self.0.plugins);
            let slot = plugins.get_mut(&id).ok_or_else(|| KernelError::NotFound { plugin: id.clone() })?;
            let before: BTreeSet<String> = slot.manifest.all_permissions().map(|(p, _)| p.to_string()).collect();
            slot.new_permissions = m.all_permissions().map(|(p, _)| p.to_string()).filter(|p| !before.contains(p)).collect();
            let old = std::mem::replace(&mut slot.manifest, m.clone());
            slot.code = code.clone();
            let old_dir = std::mem::replace(&mut slot.package_dir, dir.clone());
            (old, old_dir, slot.new_permissions.clone())
        };
        self.manifests_changed();
        self.persist_slot(&id)?;
        if old_dir != dir {
            if let Some(d) = old_dir {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        // Grants of permissions the new version no longer requests are dropped.
        let requested: BTreeSet<String> = m.all_permissions().map(|(p, _)| p.to_string()).collect();
        let stale: Vec<String> = self.0.store.grants(&id)?.into_iter().map(|g| g.permission).filter(|p| !requested.contains(p)).collect();
        if !stale.is_empty() {
            self.0.store.revoke(&id, &stale)?;
        }
        self.refresh_grants(&id)?;
        let from = old_manifest.version.clone();
        let to = m.version.clone();
        self.0.writer.audit(&actor.to_string(), Some(&id), "plugin.upgraded", json!({ "from": from.to_string(), "to": to.to_string(), "newPermissions": new_permissions }));
        let _ = self.0.writer.events().send(KernelEvent::PermissionsChanged { plugin: id.clone() });
        self.emit_kernel("plugin.upgraded", json!({ "plugin": id, "from": from.to_string(), "to": to.to_string() }));
        let ctx = self.context(&id)?;
        if let Err(message) = self.run_hook(&id, &code, &ctx, Hook::Upgrade, Some((from.clone(), to.clone()))).await {
            self.set_error(&id, Some(Hook::Upgrade), message)?;
        } else if was == State::Enabled {
            // Chrome's rule: a version asking for more than was granted waits for approval.
            // (check_enable covers both enabled dependencies and pending permissions.)
            if self.check_resolves(&id).is_ok() && self.check_enable(&id).is_ok() {
                self.step(&actor, &id, Action::Enable).await?;
            } else {
                self.update(&id, |s| s.desired = State::Enabled)?;
            }
        }
        let state = lock(&self.0.plugins).get(&id).map(|s| s.state).unwrap_or(State::Installed);
        Ok(InstallOutcome { id: id.clone(), version: to.to_string(), upgraded_from: Some(from.to_string()), pending: self.pending(&id)?, state })
    }

    // ---- permissions -----------------------------------------------------------------------

    fn refresh_grants(&self, id: &str) -> Result<()> {
        let grants = self.0.store.grants(id)?;
        if let Some(s) = lock(&self.0.plugins).get(id) {
            s.shared.grants.store(Arc::new(compile_grants(&grants)));
            s.shared.grants_generation.fetch_add(1, Ordering::Release);
            *lock(&s.shared.granted) = grants.into_iter().map(|g| g.permission).collect();
        }
        Ok(())
    }

    /// Approve permissions a plugin requests.
    pub fn grant(&self, id: &str, request: GrantRequest) -> Result<Vec<String>> {
        self.grant_as(self.1.clone(), &self.1.to_string(), id, request)
    }

    pub(crate) fn grant_as(&self, actor: Actor, by: &str, id: &str, request: GrantRequest) -> Result<Vec<String>> {
        let manifest = lock(&self.0.plugins).get(id).map(|s| s.manifest.clone()).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
        let requested: Vec<String> = manifest.all_permissions().map(|(p, _)| p.to_string()).collect();
        let wanted = match request {
            GrantRequest::All => requested.clone(),
            GrantRequest::Some(list) => {
                let mut out = Vec::new();
                for p in list {
                    let canonical = canonical_permission(&p)?;
                    if !requested.contains(&canonical) {
                        return Err(KernelError::InvalidName { name: canonical, reason: format!("{id} does not request this permission; it requests: {}", requested.join(", ")) });
                    }
                    out.push(canonical);
                }
                out
            }
        };
        let added = self.0.store.grant(id, &wanted, by)?;
        self.refresh_grants(id)?;
        // Grants live in their own table; the plugin's row changes only when this approves
        // permissions an upgrade had marked new.
        let approved_new = {
            let mut plugins = lock(&self.0.plugins);
            plugins.get_mut(id).is_some_and(|s| {
                let before = s.new_permissions.len();
                s.new_permissions.retain(|p| !wanted.contains(p));
                s.new_permissions.len() != before
            })
        };
        if !added.is_empty() {
            self.0.writer.audit(&actor.to_string(), Some(id), "permission.granted", json!({ "permissions": added, "by": by }));
            let _ = self.0.writer.events().send(KernelEvent::PermissionsChanged { plugin: id.into() });
        }
        if approved_new {
            self.persist_slot(id)?;
        }
        Ok(added)
    }

    fn persist_slot(&self, id: &str) -> Result<()> {
        let row = {
            let plugins = lock(&self.0.plugins);
            let Some(s) = plugins.get(id) else { return Ok(()) };
            PluginRow {
                id: id.into(),
                version: s.manifest.version.to_string(),
                kind: s.kind.as_str().into(),
                manifest: s.manifest.to_json(),
                state: s.state,
                desired: s.desired,
                last_error: s.last_error.as_ref().and_then(|e| serde_json::to_string(e).ok()),
                package_dir: s.package_dir.as_ref().map(|d| d.display().to_string()),
                new_permissions: s.new_permissions.clone(),
                installed_at: s.installed_at,
                updated_at: now_ms(),
            }
        };
        self.0.store.upsert_plugin(&row)
    }

    /// Withdraw grants. Revoking a required permission of an enabled plugin disables it first
    /// (refused while enabled plugins depend on it, unless `cascade`).
    pub async fn revoke(&self, id: &str, permissions: &[String], cascade: bool) -> Result<Vec<String>> {
        self.revoke_as(self.1.clone(), id, permissions, cascade).await
    }

    pub(crate) async fn revoke_as(&self, actor: Actor, id: &str, permissions: &[String], cascade: bool) -> Result<Vec<String>> {
        let (manifest, state) = lock(&self.0.plugins).get(id).map(|s| (s.manifest.clone(), s.state)).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
        let mut canonical = Vec::new();
        for p in permissions {
            canonical.push(canonical_permission(p)?);
        }
        let required: BTreeSet<String> = manifest.permissions.iter().map(|p| p.to_string()).collect();
        if state == State::Enabled && canonical.iter().any(|p| required.contains(p)) {
            self.disable_as(actor.clone(), id, cascade).await?;
        }
        let removed = self.0.store.revoke(id, &canonical)?;
        self.refresh_grants(id)?;
        if !removed.is_empty() {
            self.0.writer.audit(&actor.to_string(), Some(id), "permission.revoked", json!({ "permissions": removed }));
            let _ = self.0.writer.events().send(KernelEvent::PermissionsChanged { plugin: id.into() });
        }
        Ok(removed)
    }
}

fn past(a: Action) -> &'static str {
    match a {
        Action::Load => "loaded",
        Action::Enable => "enabled",
        Action::Disable => "disabled",
        Action::Unload => "unloaded",
        Action::Uninstall => "uninstalled",
    }
}

/// A permission as the kernel writes it (so `a.*` and its stored grant compare equal), or
/// why it is not one.
fn canonical_permission(text: &str) -> Result<String> {
    text.parse::<Permission>().map(|p| p.to_string()).map_err(|reason| KernelError::InvalidName { name: text.into(), reason })
}

fn compile_grants(rows: &[GrantRow]) -> GrantSet {
    let perms: Vec<Permission> = rows.iter().filter_map(|g| g.permission.parse().ok()).collect();
    GrantSet::new(perms.iter())
}

/// Stand-in code for a built-in recorded in the database but not (yet) registered.
struct Missing;

#[async_trait::async_trait]
impl Plugin for Missing {
    async fn on_load(&self, ctx: &PluginContext) -> crate::plugin::HookResult {
        Err(format!("{} is a built-in plugin that this build of ObjectOS does not include", ctx.id()).into())
    }
}
