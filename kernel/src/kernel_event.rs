//! Typed notifications for hosts (the console, the CLI's `--follow`).

use serde::Serialize;

use crate::audit::AuditRecord;
use crate::lifecycle::State;
use crate::logging::LogRecord;

/// Something the host may want to show. Delivered through [`crate::Kernel::subscribe`].
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum KernelEvent {
    /// A plugin changed state (`from: None` for a fresh install, `to: None` for an uninstall).
    StateChanged {
        /// Plugin id.
        plugin: String,
        /// Previous state.
        from: Option<State>,
        /// New state.
        to: Option<State>,
    },
    /// Grants of a plugin changed, or its requested permissions did (upgrade).
    PermissionsChanged {
        /// Plugin id.
        plugin: String,
    },
    /// A service was registered.
    ServiceRegistered {
        /// Service name.
        name: String,
        /// Owning plugin.
        owner: String,
    },
    /// A service was removed.
    ServiceUnregistered {
        /// Service name.
        name: String,
        /// Owning plugin.
        owner: String,
    },
    /// A log line was stored.
    Log(LogRecord),
    /// An audit record was appended.
    Audit(AuditRecord),
    /// Another process changed the data directory; hosts should re-read what they show.
    ExternalChange,
}
