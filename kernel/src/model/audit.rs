//! The tamper-evident audit trail: record types, hashing and chain verification.
//!
//! Each record stores the SHA-256 of the previous record (`prevHash`) and its own hash over
//! `id, ts, actor, plugin, action, details, prevHash`. Editing a row changes its hash; deleting
//! or reordering rows breaks the link of the next one. Retention trims the oldest rows only
//! together with an appended `audit.trimmed` checkpoint that records where the kept chain starts.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The hash that the first record links to.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How much the audit trail records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum AuditDetail {
    /// Installs, lifecycle, grants, denials, service registrations (default).
    #[default]
    Lifecycle,
    /// Also every event emission and storage write.
    Full,
}

impl std::str::FromStr for AuditDetail {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lifecycle" => Ok(AuditDetail::Lifecycle),
            "full" => Ok(AuditDetail::Full),
            other => Err(format!("unknown audit detail `{other}` (use `lifecycle` or `full`)")),
        }
    }
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person at the console or CLI.
    Admin,
    /// The kernel itself (start-up restore, following another process, containing failures).
    System,
    /// The built-in trust policy (grants given to built-ins at their first start).
    Policy,
    /// A plugin, through its context (its own calls, or a `kernel.manage` handle).
    Plugin(std::sync::Arc<str>),
}

impl Actor {
    /// The actor for plugin `id`.
    pub fn plugin(id: &str) -> Actor {
        Actor::Plugin(id.into())
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Admin => f.write_str("admin"),
            Actor::System => f.write_str("system"),
            Actor::Policy => f.write_str("system:policy"),
            Actor::Plugin(id) => write!(f, "plugin:{id}"),
        }
    }
}

/// Defines [`AuditAction`]: the kernel's own actions with their stored names, plus the
/// actions plugins name themselves.
macro_rules! audit_actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What an audit record says happened. The kernel's own actions are variants (their
        /// stored names never change); a plugin's own are [`AuditAction::Plugin`], outside the
        /// kernel's namespaces ([`AuditAction::KERNEL_NAMESPACES`]).
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum AuditAction {
            $($(#[$doc])* $variant,)*
            /// An action a plugin records through `PluginContext::audit` (`data.created`,
            /// `workflow.transitioned`...).
            Plugin(String),
        }

        impl AuditAction {
            /// Every kernel action, for listings and filters.
            pub const KERNEL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            /// The stored name (`plugin.enabled`...).
            pub fn as_str(&self) -> &str {
                match self {
                    $(AuditAction::$variant => $name,)*
                    AuditAction::Plugin(name) => name,
                }
            }
        }
    };
}

/// Handler failures of one plugin recorded in the audit trail per minute; past it they are
/// logged and counted, and one `limit.exceeded` says how many were not recorded.
pub const MAX_AUDITED_FAILURES: u64 = 20;

audit_actions! {
    /// A plugin was recorded (a package installed, a built-in seen for the first time).
    PluginInstalled => "plugin.installed",
    /// A newer version replaced the installed one.
    PluginUpgraded => "plugin.upgraded",
    /// An older version replaced the installed one (`install --force`).
    PluginDowngraded => "plugin.downgraded",
    /// The same version replaced the installed one (`install --reinstall`).
    PluginReinstalled => "plugin.reinstalled",
    /// `onLoad` ran.
    PluginLoaded => "plugin.loaded",
    /// `onEnable` ran.
    PluginEnabled => "plugin.enabled",
    /// `onDisable` ran.
    PluginDisabled => "plugin.disabled",
    /// `onUnload` ran.
    PluginUnloaded => "plugin.unloaded",
    /// A package was removed.
    PluginUninstalled => "plugin.uninstalled",
    /// An admin asked, in a process that runs no plugins, for a plugin to be enabled or
    /// disabled; the process that runs them carries it out (and records its own
    /// `plugin.enabled` or `plugin.disabled`).
    PluginRequested => "plugin.requested",
    /// A hook failed, panicked or timed out, or the plugin could not be restored.
    PluginError => "plugin.error",
    /// A plugin's code kept failing and the kernel stopped it (see `PluginContext::quarantine`).
    PluginQuarantined => "plugin.quarantined",
    /// An event handler of the plugin failed or panicked (at most [`MAX_AUDITED_FAILURES`] a
    /// minute per plugin; the rest are counted in a `limit.exceeded`, and every one is in the
    /// plugin's log).
    HandlerFailed => "handler.failed",
    /// A cached artifact of a plugin's compiled code was not what the host made for it (a
    /// digest that differs or was never recorded, a link, not a regular file); it was compiled
    /// again.
    ArtifactRefused => "plugin.artifact.refused",
    /// An admin set a plugin's configuration.
    PluginConfigured => "plugin.configured",
    /// Permissions were approved.
    PermissionGranted => "permission.granted",
    /// Permissions were withdrawn.
    PermissionRevoked => "permission.revoked",
    /// A plugin asked for something its grants do not cover.
    PermissionDenied => "permission.denied",
    /// A plugin's call was over a bound or quota (JSON depth or size, storage, jobs, events,
    /// notifications, log lines) and refused.
    LimitExceeded => "limit.exceeded",
    /// A plugin emitted, or declared, a topic another plugin owns (or one it does not declare).
    TopicRefused => "topic.refused",
    /// A plugin registered a service name another plugin owns (or, a package, one it does not
    /// declare), and was refused.
    ServiceRefused => "service.refused",
    /// A plugin registered a service.
    ServiceRegistered => "service.registered",
    /// A service went away.
    ServiceUnregistered => "service.unregistered",
    /// `start` restored the plugins.
    KernelStarted => "kernel.started",
    /// A kernel setting changed.
    SettingsChanged => "settings.changed",
    /// The oldest records were trimmed (the checkpoint).
    AuditTrimmed => "audit.trimmed",
    /// A plugin emitted an event (`full` detail).
    EventEmitted => "event.emitted",
    /// A plugin wrote a storage key (`full` detail).
    StorageSet => "storage.set",
    /// A plugin deleted a storage key (`full` detail).
    StorageDelete => "storage.delete",
    /// A plugin swapped a storage key (`full` detail).
    StorageSwap => "storage.swap",
    /// A plugin cleared its storage (`full` detail).
    StorageClear => "storage.clear",
}

impl AuditAction {
    /// The first segments the kernel's actions use; a plugin's own action may not start
    /// with one.
    pub const KERNEL_NAMESPACES: &'static [&'static str] = &["plugin", "permission", "service", "kernel", "settings", "audit", "event", "storage", "limit", "topic", "handler"];

    /// A plugin's own action `name`, or why it may not use it (a kernel namespace).
    pub fn plugin(name: &str) -> Result<AuditAction, String> {
        let head = name.split('.').next().unwrap_or_default();
        if Self::KERNEL_NAMESPACES.contains(&head) {
            return Err(format!("`{head}.*` audit actions are the kernel's own"));
        }
        Ok(AuditAction::Plugin(name.to_string()))
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record on its way to the trail.
#[derive(Debug, Clone)]
pub(crate) struct NewAudit {
    pub(crate) ts: i64,
    pub(crate) actor: Actor,
    pub(crate) plugin: Option<String>,
    pub(crate) action: AuditAction,
    pub(crate) details: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_action_is_in_a_kernel_namespace_and_plugins_cannot_take_one() {
        for a in AuditAction::KERNEL {
            let head = a.as_str().split('.').next().unwrap_or_default();
            assert!(AuditAction::KERNEL_NAMESPACES.contains(&head), "{a}");
            assert!(AuditAction::plugin(a.as_str()).is_err(), "{a}");
        }
        assert_eq!(AuditAction::plugin("data.created").map(|a| a.to_string()).as_deref(), Ok("data.created"));
    }
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct AuditRecord {
    /// Position in the chain (1-based, gapless until trimmed).
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub ts: i64,
    /// `admin`, `system` or `plugin:<id>`.
    pub actor: String,
    /// The plugin concerned, if any.
    pub plugin: Option<String>,
    /// What happened, e.g. `plugin.enabled`, `permission.denied`.
    pub action: String,
    /// Details as JSON (never secrets or stored values).
    pub details: Value,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// Hash one record's fields.
pub(crate) fn record_hash(id: i64, ts: i64, actor: &str, plugin: Option<&str>, action: &str, details: &str, prev: &str) -> String {
    let mut h = Sha256::new();
    for part in [id.to_string().as_str(), ts.to_string().as_str(), actor, plugin.unwrap_or(""), action, details, prev] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Filter for audit queries.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this plugin.
    pub plugin: Option<String>,
    /// Only this action (exact, or a prefix ending in `.`, e.g. `permission.`).
    pub action: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only records at or after this time (ms).
    pub since: Option<i64>,
    /// Only records after this id (for tailing).
    pub after_id: Option<i64>,
    /// At most this many (the newest ones), returned oldest first.
    pub limit: Option<u32>,
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum Verification {
    /// Every record links to its predecessor and hashes to its stored hash.
    Intact {
        /// Records checked.
        #[cfg_attr(feature = "specta", specta(type = f64))]
        records: u64,
        /// Where the kept chain starts after trimming (1 when never trimmed).
        #[cfg_attr(feature = "specta", specta(type = f64))]
        first_id: i64,
    },
    /// The first record where the chain breaks.
    Broken {
        /// Record id.
        #[cfg_attr(feature = "specta", specta(type = f64))]
        id: i64,
        /// What is wrong with it.
        reason: String,
    },
}

impl Verification {
    /// True when intact.
    pub fn is_intact(&self) -> bool {
        matches!(self, Verification::Intact { .. })
    }
}

/// Walks records in id order and checks links and hashes.
pub(crate) struct Verifier {
    expected_prev: Option<String>,
    expected_id: Option<i64>,
    checked: u64,
    first: Option<i64>,
}

impl Verifier {
    /// `anchor` is (first kept id, prev hash it must carry) from the newest trim checkpoint.
    pub(crate) fn new(anchor: Option<(i64, String)>) -> Self {
        match anchor {
            Some((id, prev)) => Verifier { expected_prev: Some(prev), expected_id: Some(id), checked: 0, first: None },
            None => Verifier { expected_prev: Some(GENESIS.to_string()), expected_id: Some(1), checked: 0, first: None },
        }
    }

    pub(crate) fn check(&mut self, r: &AuditRecord, details_text: &str) -> Result<(), Verification> {
        let broken = |reason: String| Verification::Broken { id: r.id, reason };
        if let Some(want) = self.expected_id {
            if r.id != want {
                return Err(broken(if r.id > want {
                    format!("record(s) {want}..{} are missing (deleted?)", r.id - 1)
                } else {
                    format!("expected record {want} here")
                }));
            }
        }
        if let Some(prev) = &self.expected_prev {
            if &r.prev_hash != prev {
                return Err(broken("does not link to the record before it (a record was deleted, inserted or reordered)".into()));
            }
        }
        let h = record_hash(r.id, r.ts, &r.actor, r.plugin.as_deref(), &r.action, details_text, &r.prev_hash);
        if h != r.hash {
            return Err(broken("its contents do not match its hash (the record was edited)".into()));
        }
        self.first.get_or_insert(r.id);
        self.expected_prev = Some(r.hash.clone());
        self.expected_id = Some(r.id + 1);
        self.checked += 1;
        Ok(())
    }

    pub(crate) fn finish(self) -> Verification {
        Verification::Intact { records: self.checked, first_id: self.first.unwrap_or(1) }
    }
}

/// Render records as CSV (RFC 4180 quoting).
pub fn to_csv(records: &[AuditRecord]) -> String {
    fn q(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
    let mut out = String::from("id,ts,actor,plugin,action,details,prev_hash,hash\n");
    for r in records {
        let row = [
            r.id.to_string(),
            r.ts.to_string(),
            q(&r.actor),
            q(r.plugin.as_deref().unwrap_or("")),
            q(&r.action),
            q(&r.details.to_string()),
            r.prev_hash.clone(),
            r.hash.clone(),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}
