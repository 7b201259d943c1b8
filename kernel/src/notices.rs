//! Typed notifications for hosts (the console, the CLI's `--follow`), and their hub.
//!
//! The kernel owns the hub and hands a clone to the database writer, which announces the
//! audit records and log lines it committed. Nothing here knows the kernel or the database.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::model::audit::AuditRecord;
use crate::model::lifecycle::State;
use crate::model::log::LogRecord;

/// Something the host may want to show. Delivered through `Kernel::subscribe` (the host, above this module).
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
    /// Audit records and log lines cannot be written now. They are kept in memory, in order,
    /// and written as soon as the database accepts writes again; until then actions report
    /// that they are not recorded (unless the database is only `busy`, which passes).
    WritesStalled {
        /// The database file.
        path: String,
        /// What SQLite said.
        reason: String,
        /// Another process holds the database (it passes); else a fault such as a full disk.
        busy: bool,
        /// Records waiting to be written.
        #[cfg_attr(feature = "specta", specta(type = f64))]
        waiting: usize,
    },
    /// Writes work again after [`KernelEvent::WritesStalled`]; everything kept is written.
    WritesResumed,
}

/// Capacity of the hub: a subscriber that falls further behind than this misses the oldest
/// notices and is told so (`RecvError::Lagged`); the kernel itself never waits on one.
const CAPACITY: usize = 4096;

/// The hub every [`KernelEvent`] goes through. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Notices(broadcast::Sender<KernelEvent>);

impl Notices {
    pub(crate) fn new() -> Notices {
        Notices(broadcast::channel(CAPACITY).0)
    }

    /// Tell every subscriber (none listening is fine).
    pub(crate) fn send(&self, event: KernelEvent) {
        let _ = self.0.send(event);
    }

    /// Whether anyone listens, so a sender can skip building a notice nobody reads.
    pub(crate) fn listened(&self) -> bool {
        self.0.receiver_count() > 0
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<KernelEvent> {
        self.0.subscribe()
    }
}
