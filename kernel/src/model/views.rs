//! What hosts show: the view of a plugin, the dependency graph, what an install or a start
//! did. Plain data, built by the kernel's queries and serialized as they are for the console
//! and `objectos --json`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::lifecycle::{Action, State};
use crate::model::manifest::Manifest;
use crate::model::permission::Risk;
use crate::model::resolve::ResolveError;

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
    pub(crate) fn as_str(self) -> &'static str {
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

/// What kind of failure put a plugin in ERROR: hosts word it and choose what to offer from
/// this, never from the message's text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum FailureKind {
    /// A hook returned an error.
    #[default]
    Failed,
    /// A hook panicked.
    Panicked,
    /// A hook did not finish in time.
    TimedOut,
    /// The plugin's code kept failing and the kernel stopped it: it stays stopped until an
    /// admin enables it again.
    Quarantined,
    /// Its dependencies do not resolve (missing, a version out of range, a cycle).
    Unresolved,
    /// A built-in recorded in the data directory that this build does not include.
    MissingBuiltin,
}

/// The error that put a plugin in ERROR, kept for display.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct LastError {
    /// What kind of failure it was (`failed` for one recorded before kinds existed).
    #[serde(default)]
    pub kind: FailureKind,
    /// The hook that failed, if a hook did.
    pub hook: Option<String>,
    /// What went wrong.
    pub message: String,
    /// When (ms since epoch).
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub at: i64,
}

/// One setting a plugin declares, with what is set. A secret's value is never here: only
/// whether one is set.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct SettingStatus {
    pub key: String,
    #[serde(flatten)]
    pub setting: crate::model::manifest::Setting,
    /// The value set (not for a secret); `None` when unset (the default applies).
    pub value: Option<serde_json::Value>,
    /// Whether a value is set.
    pub set: bool,
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
    /// Whose names it reaches: the installed plugins that own the topics, services or record
    /// types it covers (the plugin itself included), for the review to say whose they are.
    pub owners: Vec<Owner>,
    /// For a file grant: the host's own folders (its data directory, the compiled-code cache)
    /// that lie in the granted folder, or that hold it; they stay out of reach whatever the
    /// grant, and the review says so.
    pub excludes: Vec<String>,
}

/// The host folders ([`PermissionStatus::excludes`]) that file grant `permission` would
/// cover without the rule that keeps them out of reach.
pub fn excluded_host_folders(permission: &crate::model::permission::Permission, host: &[std::path::PathBuf]) -> Vec<String> {
    use crate::model::permission::Permission as P;
    let (P::FsRead(raw) | P::FsWrite(raw)) = permission else { return Vec::new() };
    let Ok(folder) = crate::model::reach::folder(raw) else { return Vec::new() };
    host_folders_meeting(&folder, host)
}

/// The host's own folders (`host`, as given and as resolved) that `folder` holds or lies in,
/// as it is now (a link followed), each once: what no file grant of `folder` may reach.
pub fn host_folders_meeting(folder: &std::path::Path, host: &[std::path::PathBuf]) -> Vec<String> {
    let resolved = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
    let mut out: Vec<String> = Vec::new();
    for h in host {
        let hit = [folder, resolved.as_path()].iter().any(|f| h.starts_with(f) || f.starts_with(h));
        let shown = h.display().to_string();
        if hit && !out.contains(&shown) {
            out.push(shown);
        }
    }
    // One line per folder: a resolved form that only repeats another is dropped.
    let canon: Vec<Option<std::path::PathBuf>> = out.iter().map(|o| std::fs::canonicalize(o).ok()).collect();
    let mut kept = Vec::new();
    for (i, o) in out.iter().enumerate() {
        if !(0..i).any(|j| canon[j].is_some() && canon[j] == canon[i]) {
            kept.push(o.clone());
        }
    }
    kept
}

/// A plugin whose names a permission reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Owner {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// The plugins in `set` whose declared names `permission`, held by `me`, reaches: topics
/// (`provides.events`, by namespace), services (`provides.services`) and record types
/// (`provides.objects`; a bare type name is `me`'s own).
pub fn owners(permission: &crate::model::permission::Permission, set: &crate::model::resolve::ManifestSet, me: &str) -> Vec<Owner> {
    use crate::model::permission::{Pattern, Permission as P};
    let reaches = |m: &Manifest| -> bool {
        match permission {
            P::EventsEmit(p) | P::EventsSubscribe(p) => m.provides.events.iter().filter_map(|e| e.parse::<Pattern>().ok()).any(|e| p.is_all() || e.claims_collide(p)),
            P::ServicesUse(p) | P::ServicesProvide(p) => m.provides.services.iter().any(|s| p.matches(s)),
            P::Data { object, .. } => {
                let (owner, short) = object.split_once('/').unwrap_or((me, object));
                object == "*" || (m.id == owner && m.provides.objects.iter().any(|o| o == short))
            }
            _ => false,
        }
    };
    set.values().filter(|m| reaches(m)).map(|m| Owner { id: m.id.clone(), name: m.name.clone() }).collect()
}

/// An upgrade whose author differs from the installed version's: the plugin stays disabled,
/// its permissions all pending, until an admin approves it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct AuthorChange {
    /// The installed version's author (none: it named none).
    pub from: Option<String>,
    /// The new version's author.
    pub to: Option<String>,
    /// The version that changed it.
    pub version: String,
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
    /// An upgrade by another author, not approved again yet.
    pub author_change: Option<AuthorChange>,
    /// The package's code and the bounds it runs under, if it has code.
    pub code: Option<CodeInfo>,
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

/// A package's code, as the permission review shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct CodeInfo {
    /// The file, relative to the package folder.
    pub main: String,
    /// "JavaScript" or "WebAssembly component".
    pub language: String,
    /// The bounds it runs under on this host: its manifest's, the host's defaults for the rest.
    pub bounds: crate::model::manifest::SandboxLimits,
    /// The wasm stack every plugin gets, in KiB.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub stack_kib: u64,
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

/// A stored grant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct GrantRow {
    /// The permission text.
    pub permission: String,
    /// `admin`, `system:policy`, ...
    pub granted_by: String,
    /// When (ms since epoch).
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub granted_at: i64,
}


/// Who runs plugins on a data directory: the process holding the runner lease, and until when
/// (renewed while it runs; when it runs out, or the process is gone, another may take it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct RunnerInfo {
    /// The process id.
    pub pid: u32,
    /// The machine's name.
    pub host: String,
    /// Where the pid means something: the host's name, its boot and the pid namespace. A
    /// holder on the same machine is known to be gone only when this matches and the process
    /// is not there; otherwise its lease has to run out.
    #[serde(skip)]
    pub machine: String,
    /// What it is: `objectos serve`, `ObjectOS Console`.
    pub what: String,
    /// Held since (ms).
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub since: i64,
    /// Held until (ms), unless renewed.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub until: i64,
    /// Where it answers, when it listens (`http://127.0.0.1:7878` for `objectos serve`).
    pub address: Option<String>,
}

impl RunnerInfo {
    /// Whether the lease is held by an `objectos` command for the moment it lasts (it names
    /// itself `objectos <command>`), rather than by a service or a console: worth waiting for.
    pub fn is_command(&self) -> bool {
        self.what.starts_with("objectos ") && self.what != "objectos serve"
    }
}

/// A durable event subscription (see `Events::on_durable`) and the deliveries waiting for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct DurableSubscription {
    /// The subscribing plugin.
    pub plugin: String,
    /// Its name among the plugin's subscriptions.
    pub name: String,
    /// The topic pattern.
    pub pattern: String,
    /// Events queued for it and not yet handled.
    pub waiting: u32,
}
