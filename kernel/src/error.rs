//! The kernel's error type: one enum, each variant data a caller can act on.

use std::path::PathBuf;

use crate::model::lifecycle::{Action, State};
use crate::model::manifest::ManifestErrors;
use crate::model::resolve::ResolveError;

/// Everything the kernel can refuse or fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// A manifest (or a package's declared files) failed validation; every problem is listed.
    #[error(transparent)]
    Manifest(#[from] ManifestErrors),
    /// Dependencies or the kernel version cannot be satisfied.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// No plugin with this id is installed.
    #[error("no plugin with id `{plugin}` is installed (see `objectos plugins list`)")]
    NotFound {
        /// The id asked for.
        plugin: String,
    },
    /// The same version is already installed.
    #[error("{plugin} {version} is already installed")]
    AlreadyInstalled {
        /// Plugin id.
        plugin: String,
        /// The installed (and offered) version.
        version: String,
    },
    /// An older version was offered for an installed plugin.
    #[error("{plugin} {installed} is installed; refusing to downgrade to {offered} (force it if you mean it)")]
    Downgrade {
        /// Plugin id.
        plugin: String,
        /// Installed version.
        installed: String,
        /// Offered version.
        offered: String,
    },
    /// A lifecycle action is not legal in the plugin's current state.
    #[error("cannot {action} {plugin}: it is {state}{}", hint_for(*.action, *.state))]
    IllegalTransition {
        /// Plugin id.
        plugin: String,
        /// Its current state.
        state: State,
        /// The refused action.
        action: Action,
    },
    /// Enabling needs every dependency enabled first.
    #[error("cannot enable {plugin}: it needs {dependency} enabled, which is {state}; enable it first or ask for dependencies too (--with-deps)")]
    DependencyNotEnabled {
        /// Plugin id.
        plugin: String,
        /// The dependency that is not enabled.
        dependency: String,
        /// The dependency's state.
        state: State,
    },
    /// Disabling (or revoking, or upgrading) would break enabled dependents.
    #[error("cannot disable {plugin}: enabled plugins depend on it ({}); disable them first or cascade (--cascade)", .dependents.join(", "))]
    DependentsEnabled {
        /// Plugin id.
        plugin: String,
        /// Enabled dependents, nearest first.
        dependents: Vec<String>,
    },
    /// Required permissions have not been granted yet.
    #[error("cannot enable {plugin}: {} required permission(s) await approval: {} (see `objectos permissions list {plugin}`)", .pending.len(), .pending.join(", "))]
    PermissionsPending {
        /// Plugin id.
        plugin: String,
        /// Required permissions without a grant.
        pending: Vec<String>,
    },
    /// A plugin called something its grants do not cover. The denial is audited.
    #[error("permission denied: {plugin} lacks `{permission}`")]
    PermissionDenied {
        /// The calling plugin.
        plugin: String,
        /// The permission the call needs.
        permission: String,
    },
    /// A lifecycle hook returned an error, panicked or timed out.
    #[error("{plugin}: {hook} failed: {message}")]
    Hook {
        /// Plugin id.
        plugin: String,
        /// Hook name (`onEnable`, ...).
        hook: String,
        /// What went wrong.
        message: String,
    },
    /// A hook of this plugin asked for a transition of the same plugin.
    #[error("{plugin} is already in the middle of a transition; a hook cannot change its own plugin's state")]
    Reentrant {
        /// Plugin id.
        plugin: String,
    },
    /// Built-in plugins are compiled in and cannot be removed.
    #[error("{plugin} is built in and cannot be uninstalled; disable it instead")]
    BuiltinUninstall {
        /// Plugin id.
        plugin: String,
    },
    /// A built-in plugin was registered twice, or under an id that a package already uses.
    #[error("{plugin} is registered twice")]
    DuplicateBuiltin {
        /// Plugin id.
        plugin: String,
    },
    /// No service is registered under this name.
    #[error("no service named `{name}` is registered")]
    ServiceNotFound {
        /// Service name.
        name: String,
    },
    /// A service with this name exists already.
    #[error("service `{name}` is already registered by {owner}")]
    ServiceExists {
        /// Service name.
        name: String,
        /// Its owner.
        owner: String,
    },
    /// The service exists but is not of the asked type.
    #[error("service `{name}` is a {actual}, not a {expected}")]
    ServiceType {
        /// Service name.
        name: String,
        /// The type asked for.
        expected: String,
        /// The registered type.
        actual: String,
    },
    /// Topics under `kernel.` and `plugin.` are emitted by the kernel only.
    #[error("topic `{topic}` is reserved for the kernel (kernel.* and plugin.*)")]
    ReservedTopic {
        /// The topic.
        topic: String,
    },
    /// An upgrade changed the plugin's author: it waits for an admin to approve it again.
    #[error("{plugin}'s author changed from {from} to {to} in this version: approve its permissions again to enable it")]
    AuthorChanged {
        /// The plugin.
        plugin: String,
        /// The installed version's author.
        from: String,
        /// The new version's author.
        to: String,
    },
    /// A package emitted a topic outside its own `provides.events` (every topic has one owner).
    #[error("{plugin} may not emit `{topic}`: a package emits only the topics it declares in provides.events (it declares: {})", if .declared.is_empty() { "none" } else { .declared.as_str() })]
    TopicNotOwned {
        /// The package.
        plugin: String,
        /// The topic.
        topic: String,
        /// Its declared topic patterns, comma-separated.
        declared: String,
    },
    /// A plugin registered a service name it does not own: another plugin declares it in
    /// `provides.services` (the built-ins' names are theirs), or, for a package, its own
    /// manifest does not declare it.
    #[error("{plugin} may not provide service `{service}`: {}", match .owner { Some(o) => format!("it is {o}'s (a service name has one owner)"), None => "a package provides only the services it declares in provides.services".to_string() })]
    ServiceNotOwned {
        /// The plugin.
        plugin: String,
        /// The service name.
        service: String,
        /// The plugin that owns the name, if another does.
        owner: Option<String>,
    },
    /// A value, payload or use of a shared resource is over one of the kernel's bounds (JSON
    /// depth or size) or a quota; nothing was written.
    #[error("{plugin}: {what} refused: {reason}")]
    OverLimit {
        /// The plugin whose call was refused.
        plugin: String,
        /// What was refused, e.g. "storage value `k`" or "event `crm.deal.won`".
        what: String,
        /// Which bound, and by how much.
        reason: String,
    },
    /// A permission cannot be granted as it stands (a folder that is not there).
    #[error("cannot grant `{permission}` to {plugin}: {reason}")]
    GrantRefused {
        /// The plugin.
        plugin: String,
        /// The permission.
        permission: String,
        /// Why.
        reason: String,
    },
    /// A setting's value is refused.
    #[error("setting `{key}` of {plugin}: {reason}")]
    Setting {
        /// The plugin.
        plugin: String,
        /// The setting's key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A topic, topic pattern or service name is malformed.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The offending text.
        name: String,
        /// Why.
        reason: String,
    },
    /// A package on disk could not be read or is unsafe.
    #[error("package {}: {message}", .path.display())]
    Package {
        /// The package path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Another process holds the database for longer than the busy timeout.
    #[error("data directory {} is busy: another ObjectOS process is writing; try again", .path.display())]
    Busy {
        /// The data directory.
        path: PathBuf,
    },
    /// Another process runs plugins on this data directory (it holds the runner lease).
    #[error("{} is run by `{}` (process {} on {}): stop it first, or start this one with --standby to take over when it stops", .path.display(), .holder.what, .holder.pid, .holder.host)]
    RunnerHeld {
        /// The data directory.
        path: PathBuf,
        /// Who holds the lease.
        holder: crate::model::views::RunnerInfo,
    },
    /// The database was written by a newer ObjectOS.
    #[error("database {} has schema version {found}, newer than this ObjectOS supports ({supported}); upgrade ObjectOS", .path.display())]
    SchemaTooNew {
        /// Database path.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Highest version this build knows.
        supported: u32,
    },
    /// A stored value is not what the kernel wrote (hand-edited database).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// SQLite failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A file-system operation failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Audit records could not be written (disk full, the database's size limit reached, an
    /// I/O error). The action was taken; its records are kept and written when writes work again.
    #[error("the audit trail in {path} cannot be written ({reason}); the action was taken but is not recorded yet: its records are kept and written as soon as the database accepts writes again. Free disk space and try again")]
    AuditUnwritable {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// The kernel is shutting down.
    #[error("the kernel has shut down")]
    ShutDown,
    /// A plugin's service refused a call (a bad argument, an unknown handler, a full queue).
    #[error("{service} service: {message}")]
    Service {
        /// The service name.
        service: String,
        /// What was wrong, naming the offending value.
        message: String,
    },
}

fn hint_for(action: Action, state: State) -> &'static str {
    match (action, state) {
        (Action::Unload | Action::Uninstall, State::Enabled) => "; disable it first",
        (Action::Disable, State::Loaded) => "; it was never enabled",
        (Action::Load, State::Enabled | State::Disabled | State::Loaded) => "; it is already loaded",
        (Action::Enable, State::Enabled) => "; nothing to do",
        _ => "",
    }
}

impl KernelError {
    /// An error a service returns to its caller.
    pub fn service(service: &str, message: impl Into<String>) -> Self {
        KernelError::Service { service: service.to_string(), message: message.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        KernelError::Io { path: path.into(), source }
    }

    /// A stable machine-readable name for the variant (used in JSON output and by the console).
    pub fn kind(&self) -> &'static str {
        match self {
            KernelError::Manifest(_) => "manifest",
            KernelError::Resolve(_) => "resolve",
            KernelError::NotFound { .. } => "notFound",
            KernelError::AlreadyInstalled { .. } => "alreadyInstalled",
            KernelError::Downgrade { .. } => "downgrade",
            KernelError::IllegalTransition { .. } => "illegalTransition",
            KernelError::DependencyNotEnabled { .. } => "dependencyNotEnabled",
            KernelError::DependentsEnabled { .. } => "dependentsEnabled",
            KernelError::PermissionsPending { .. } => "permissionsPending",
            KernelError::PermissionDenied { .. } => "permissionDenied",
            KernelError::Hook { .. } => "hook",
            KernelError::Reentrant { .. } => "reentrant",
            KernelError::BuiltinUninstall { .. } => "builtinUninstall",
            KernelError::DuplicateBuiltin { .. } => "duplicateBuiltin",
            KernelError::ServiceNotFound { .. } => "serviceNotFound",
            KernelError::ServiceExists { .. } => "serviceExists",
            KernelError::ServiceType { .. } => "serviceType",
            KernelError::ReservedTopic { .. } => "reservedTopic",
            KernelError::InvalidName { .. } => "invalidName",
            KernelError::GrantRefused { .. } => "grantRefused",
            KernelError::Setting { .. } => "setting",
            KernelError::OverLimit { .. } => "overLimit",
            KernelError::AuthorChanged { .. } => "authorChanged",
            KernelError::TopicNotOwned { .. } => "topicNotOwned",
            KernelError::ServiceNotOwned { .. } => "serviceNotOwned",
            KernelError::Package { .. } => "package",
            KernelError::Busy { .. } => "busy",
            KernelError::RunnerHeld { .. } => "runnerHeld",
            KernelError::SchemaTooNew { .. } => "schemaTooNew",
            KernelError::Corrupt(_) => "corrupt",
            KernelError::Database(_) => "database",
            KernelError::Io { .. } => "io",
            KernelError::ShutDown => "shutDown",
            KernelError::AuditUnwritable { .. } => "auditUnwritable",
            KernelError::Service { .. } => "service",
        }
    }

    /// True when the error is the caller's input or a refusal (exit code 1), false for
    /// environment failures. Both exit 1 in the CLI today; kept for callers that retry.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, KernelError::Database(_) | KernelError::Io { .. } | KernelError::Busy { .. } | KernelError::AuditUnwritable { .. })
    }
}

/// Shorthand for kernel results.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;
