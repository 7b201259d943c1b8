//! Per-plugin activity counters, kept by the kernel and read by `kernel.inspect` holders
//! (the metrics plugin renders them).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::Serialize;

use crate::model::lifecycle::{Hook, State};

/// Counters of one plugin. Atomics: updating them costs a few nanoseconds.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) events_emitted: AtomicU64,
    pub(crate) events_received: AtomicU64,
    pub(crate) handler_errors: AtomicU64,
    pub(crate) storage_reads: AtomicU64,
    pub(crate) storage_writes: AtomicU64,
    pub(crate) service_lookups: AtomicU64,
    pub(crate) denials: AtomicU64,
    hooks: Mutex<BTreeMap<&'static str, HookStats>>,
}

/// Timing of one hook of one plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookStats {
    /// Times it ran.
    pub count: u64,
    /// Times it failed, panicked or timed out.
    pub failures: u64,
    /// Total run time, microseconds.
    pub total_micros: u64,
    /// Longest run, microseconds.
    pub max_micros: u64,
}

/// A snapshot of one plugin's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginStats {
    /// Events it emitted.
    pub events_emitted: u64,
    /// Events delivered to its handlers.
    pub events_received: u64,
    /// Handler errors and panics.
    pub handler_errors: u64,
    /// Storage reads (get, has, keys).
    pub storage_reads: u64,
    /// Storage writes (set, delete, clear).
    pub storage_writes: u64,
    /// Service lookups.
    pub service_lookups: u64,
    /// Calls refused for a missing grant.
    pub permission_denials: u64,
    /// Hook timings by hook name.
    pub hooks: BTreeMap<String, HookStats>,
}

impl Counters {
    pub(crate) fn hook(&self, hook: Hook, micros: u64, ok: bool) {
        let mut h = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
        let s = h.entry(hook.as_str()).or_default();
        s.count += 1;
        s.failures += u64::from(!ok);
        s.total_micros += micros;
        s.max_micros = s.max_micros.max(micros);
    }

    pub(crate) fn snapshot(&self) -> PluginStats {
        PluginStats {
            events_emitted: self.events_emitted.load(Relaxed),
            events_received: self.events_received.load(Relaxed),
            handler_errors: self.handler_errors.load(Relaxed),
            storage_reads: self.storage_reads.load(Relaxed),
            storage_writes: self.storage_writes.load(Relaxed),
            service_lookups: self.service_lookups.load(Relaxed),
            permission_denials: self.denials.load(Relaxed),
            hooks: self.hooks.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
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
