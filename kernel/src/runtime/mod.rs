//! What runs while plugins are active: the event bus, the service registry, activity
//! counters, the per-plugin log, and the storage backends. Built on `model` and `db`; the
//! plugin-facing checks are in `context`, on top of this.

pub mod bus;
pub mod log;
pub mod meter;
pub(crate) mod outbox;
pub mod registry;
pub mod storage;
pub mod telemetry;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::db::{Store, Writer};
use crate::model::audit::{Actor, AuditAction};
use crate::notices::{KernelEvent, Notices};
use bus::Bus;
use registry::Registry;
use storage::StorageBackend;
use telemetry::Counters;

/// The parts of one kernel that every plugin's context shares with it. Holding this does not
/// keep the kernel's plugin table alive (contexts hold a weak link to the kernel itself).
pub(crate) struct Core {
    /// This kernel's number in the process (log routing, spans).
    pub(crate) id: u64,
    pub(crate) store: Arc<Store>,
    pub(crate) writer: Writer,
    pub(crate) notices: Notices,
    pub(crate) bus: Arc<Bus>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) storage: Arc<dyn StorageBackend>,
    /// Counters of what the kernel itself does (its `kernel.*` and `plugin.*` events).
    pub(crate) counters: Arc<Counters>,
    /// The quotas packages run under (the admin's setting, else the defaults).
    pub(crate) quotas: Arc<arc_swap::ArcSwap<crate::model::quota::Quotas>>,
    /// The host's own folders (the data directory, the runtime's cache), resolved: no file
    /// grant reaches into them.
    pub(crate) host_folders: Arc<[std::path::PathBuf]>,
    /// Plugins brought up for reading only ([`crate::Kernel::start_quietly`]): their services
    /// coming and going are not a change worth an audit record.
    pub(crate) quiet: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The way into the durable delivery queue.
    pub(crate) outbox: outbox::Outbox,
    /// Set while the kernel shuts down: plugins stop, but their durable subscriptions stay.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    /// Whether this kernel holds the data directory's runner lease now: only the runner runs
    /// jobs, schedules and queued deliveries.
    pub(crate) runner: Arc<std::sync::atomic::AtomicBool>,
}

impl Core {
    /// Emit one of the kernel's own events (`plugin.*`, `kernel.*`) on the bus.
    pub(crate) fn emit_kernel(&self, topic: &str, payload: Value) {
        self.counters.events_emitted.fetch_add(1, Ordering::Relaxed);
        // The kernel's own notices always go out; a handler emitting from one is then refused.
        let depth = bus::ambient_depth().map_or(0, |d| d.saturating_add(1)).min(bus::MAX_EVENT_DEPTH + 1);
        self.bus.emit(topic, &self.bus.kernel, payload, depth);
    }

    /// Queue a plugin's (or the host's) event for the durable subscriptions it matches, in a
    /// transaction of its own (an event a stored change causes is queued with the change).
    pub(crate) fn queue(&self, topic: &str, source: &str, payload: &Value, depth: u32) -> crate::Result<()> {
        if !self.outbox.wanted(topic) {
            return Ok(());
        }
        let payload = payload.to_string();
        self.outbox.queue(&crate::model::outbox::Announcement { topic, payload: &payload, source, depth, now: crate::util::now_ms() })
    }

    /// Record a service coming (`registered_type` is its Rust type) or going: audit record,
    /// host notification, and the `kernel.service.*` bus event plugins can follow.
    pub(crate) fn announce_service(&self, actor: &Actor, owner: &str, name: &str, registered_type: Option<&str>) {
        if self.quiet.lock().unwrap_or_else(|p| p.into_inner()).contains(owner) {
            return;
        }
        match registered_type {
            Some(ty) => {
                self.writer.audit(actor, Some(owner), AuditAction::ServiceRegistered, json!({ "service": name, "type": ty }));
                self.notices.send(KernelEvent::ServiceRegistered { name: name.into(), owner: owner.into() });
                self.emit_kernel("kernel.service.registered", json!({ "service": name, "owner": owner }));
            }
            None => {
                self.writer.audit(actor, Some(owner), AuditAction::ServiceUnregistered, json!({ "service": name }));
                self.notices.send(KernelEvent::ServiceUnregistered { name: name.into(), owner: owner.into() });
                self.emit_kernel("kernel.service.unregistered", json!({ "service": name, "owner": owner }));
            }
        }
    }
}
