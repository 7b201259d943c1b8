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
    /// Handler failures audited in the current minute (see [`crate::runtime::bus`]).
    pub(crate) failure_audits: crate::model::quota::Window,
    hooks: Mutex<BTreeMap<&'static str, HookStats>>,
    code: Mutex<Option<CodeStats>>,
    recent: Mutex<std::collections::VecDeque<Recent>>,
}

/// Seconds one [`Recent`] bucket covers.
pub const RECENT_SECONDS: i64 = 20;
/// Buckets kept: the last ten minutes.
pub const RECENT_BUCKETS: usize = 30;
/// Hosts counted one by one; requests to more are counted under `other hosts`.
pub const MAX_COUNTED_HOSTS: usize = 64;

/// The start (Unix seconds) of the [`RECENT_SECONDS`] window now is in.
fn bucket_now() -> i64 {
    crate::util::now_ms().div_euclid(1000).div_euclid(RECENT_SECONDS) * RECENT_SECONDS
}

/// What a plugin did in one [`RECENT_SECONDS`] window, for the console's chart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Recent {
    /// When the window starts, Unix seconds.
    pub start: i64,
    /// Calls into the plugin's code (hooks, events, service calls).
    pub calls: u32,
    /// CPU time its code used, microseconds.
    pub cpu_micros: u32,
    /// Web requests it made.
    pub requests: u32,
    /// Calls refused (a missing grant, a bound).
    pub denials: u32,
    /// Traps and overruns of its code.
    pub traps: u32,
}

/// Requests to one host (`name:port`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct HostUse {
    pub requests: u32,
    /// Requests that got no response (refused, unreachable, timed out).
    pub failed: u32,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u32>,
    pub bytes_sent: u32,
    pub bytes_received: u32,
}

/// What a plugin's code used, as its runtime reports it (sandboxed packages only).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct CodeStats {
    /// Calls into its code.
    pub calls: u32,
    /// CPU time its code used, milliseconds.
    pub cpu_millis: u32,
    /// Traps and overruns (a bound hit, a crash).
    pub traps: u32,
    /// Linear memory its instance holds now, bytes.
    pub memory_bytes: u32,
    /// The most it held, bytes.
    pub memory_peak_bytes: u32,
    /// Web requests by host (`name:port`).
    pub requests: BTreeMap<String, HostUse>,
}

/// Timing of one hook of one plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct HookStats {
    /// Times it ran.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub count: u64,
    /// Times it failed, panicked or timed out.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub failures: u64,
    /// Total run time, microseconds.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub total_micros: u64,
    /// Longest run, microseconds.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub max_micros: u64,
}

/// A snapshot of one plugin's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct PluginStats {
    /// Events it emitted.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub events_emitted: u64,
    /// Events delivered to its handlers.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub events_received: u64,
    /// Handler errors and panics.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub handler_errors: u64,
    /// Storage reads (get, has, keys).
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub storage_reads: u64,
    /// Storage writes (set, delete, clear).
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub storage_writes: u64,
    /// Service lookups.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub service_lookups: u64,
    /// Calls refused for a missing grant.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub permission_denials: u64,
    /// Hook timings by hook name.
    pub hooks: BTreeMap<String, HookStats>,
    /// What its code used (a sandboxed package's), if it has code.
    pub code: Option<CodeStats>,
    /// The last ten minutes, oldest first, one bucket per [`RECENT_SECONDS`].
    pub recent: Vec<Recent>,
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

    /// Count a refusal.
    pub(crate) fn denied(&self) {
        self.denials.fetch_add(1, Relaxed);
        self.bump(|b| b.denials = b.denials.saturating_add(1));
    }

    fn bump(&self, f: impl FnOnce(&mut Recent)) {
        let start = bucket_now();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.back().is_none_or(|b| b.start != start) {
            recent.push_back(Recent { start, ..Recent::default() });
            while recent.len() > RECENT_BUCKETS {
                recent.pop_front();
            }
        }
        if let Some(b) = recent.back_mut() {
            f(b);
        }
    }

    /// Count one call into the plugin's code.
    pub(crate) fn code_run(&self, cpu: std::time::Duration, trapped: bool, memory: usize) {
        let cpu_micros = u32::try_from(cpu.as_micros()).unwrap_or(u32::MAX);
        let memory = u32::try_from(memory).unwrap_or(u32::MAX);
        {
            let mut code = self.code.lock().unwrap_or_else(|p| p.into_inner());
            let c = code.get_or_insert_with(CodeStats::default);
            c.calls = c.calls.saturating_add(1);
            c.cpu_millis = u32::try_from(cpu.as_millis()).unwrap_or(u32::MAX).saturating_add(c.cpu_millis);
            c.traps = c.traps.saturating_add(u32::from(trapped));
            c.memory_bytes = memory;
            c.memory_peak_bytes = c.memory_peak_bytes.max(memory);
        }
        self.bump(|b| {
            b.calls = b.calls.saturating_add(1);
            b.cpu_micros = b.cpu_micros.saturating_add(cpu_micros);
            b.traps = b.traps.saturating_add(u32::from(trapped));
        });
    }

    /// Count one web request to `host` (`name:port`): its status, if a response came.
    pub(crate) fn request(&self, host: &str, status: Option<u16>, sent: u64, received: u64) {
        {
            let mut code = self.code.lock().unwrap_or_else(|p| p.into_inner());
            let c = code.get_or_insert_with(CodeStats::default);
            let key = if c.requests.contains_key(host) || c.requests.len() < MAX_COUNTED_HOSTS { crate::util::clip(host.to_string(), 300) } else { "other hosts".to_string() };
            let h = c.requests.entry(key).or_default();
            h.requests = h.requests.saturating_add(1);
            match status {
                Some(s) => {
                    let n = h.statuses.entry(s).or_default();
                    *n = n.saturating_add(1);
                }
                None => h.failed = h.failed.saturating_add(1),
            }
            h.bytes_sent = h.bytes_sent.saturating_add(u32::try_from(sent).unwrap_or(u32::MAX));
            h.bytes_received = h.bytes_received.saturating_add(u32::try_from(received).unwrap_or(u32::MAX));
        }
        self.bump(|b| b.requests = b.requests.saturating_add(1));
    }

    /// The recent buckets up to now, with the windows nothing happened in filled in.
    fn recent(&self) -> Vec<Recent> {
        let now = bucket_now();
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        (0..RECENT_BUCKETS as i64)
            .rev()
            .map(|back| {
                let start = now - back * RECENT_SECONDS;
                recent.iter().find(|b| b.start == start).copied().unwrap_or(Recent { start, ..Recent::default() })
            })
            .collect()
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
            code: self.code.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            recent: self.recent(),
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
