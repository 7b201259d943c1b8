//! The host side of the world's imports. Each is a call on the plugin's own
//! [`PluginContext`], so a sandboxed plugin gets exactly the checks a built-in's calls get:
//! grants (audited as `permission.denied`), owned names, sizes, depths and quotas.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use objectos_kernel::plugin::SubscriptionId;
use objectos_kernel::{KernelError, PluginContext};
use serde_json::Value;

use crate::guest::Guest;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/plugin.wit",
        world: "plugin",
    });
}

use bindings::objectos::plugin::types::{ErrorCode, HostError};
use bindings::objectos::plugin::types;

mod config;
mod events;
pub(crate) mod files;
mod http;
mod log;
mod services;
mod storage;
mod wasi;

pub(crate) use wasi::{link_wasi, WASI_LINKED};

/// The most subscriptions one plugin holds at a time.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// The most services one plugin provides.
pub const MAX_SERVICES: usize = 16;
/// The largest text a guest returns (a service result) or hands the host as one JSON value
/// beyond the kernel's own bounds (those apply first: 1 MiB storage values, 256 KiB events).
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// The CPU time the calling thread has used (its wall time where the platform has no such
/// clock): a guest's budget counts the time its thread runs, not the time it waits to be
/// scheduled on a busy machine.
fn thread_cpu() -> Duration {
    #[cfg(unix)]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
    }
    #[cfg(not(unix))]
    {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed()
    }
}

/// How long the call the guest is in now may run, and what it has used.
pub(crate) struct Clock {
    pub(crate) started: Instant,
    /// The thread's CPU time when the call started.
    pub(crate) cpu_started: Duration,
    /// Time spent waiting on other plugins' code (their services, which have budgets of
    /// their own) and on web requests (which have a timeout of their own): not counted
    /// against the wall-time cap.
    pub(crate) waiting: Duration,
    /// Of that, time spent on web requests (bounded per call).
    pub(crate) on_network: Duration,
    pub(crate) budget: Duration,
    /// Whether the budget ran out (the trap that follows is this).
    pub(crate) overran: bool,
}

impl Clock {
    pub(crate) fn idle() -> Clock {
        Clock::starting(Duration::MAX)
    }

    pub(crate) fn starting(budget: Duration) -> Clock {
        Clock { started: Instant::now(), cpu_started: thread_cpu(), waiting: Duration::ZERO, on_network: Duration::ZERO, budget, overran: false }
    }

    /// Whether the call is over its budget: the CPU time of its thread (the guest's, and the
    /// host calls it made on it), or four times the budget of wall time (plus a second) spent
    /// other than waiting on other plugins' code (which have budgets of their own).
    /// The CPU time the call has used so far.
    pub(crate) fn cpu_used(&self) -> Duration {
        thread_cpu().saturating_sub(self.cpu_started)
    }

    pub(crate) fn over(&self) -> bool {
        let cpu = thread_cpu().saturating_sub(self.cpu_started);
        let wall = self.started.elapsed();
        cpu >= self.budget || wall.saturating_sub(self.waiting) >= self.budget.saturating_mul(4).saturating_add(Duration::from_secs(1))
    }
}

/// Memory, tables and instances, per plugin; records which bound a refusal hit.
pub(crate) struct Limiter {
    pub(crate) memory_bytes: usize,
    pub(crate) table_elements: usize,
    pub(crate) instances: usize,
    /// Bytes of linear memory in use across the instance's memories.
    pub(crate) used: usize,
    pub(crate) hit: Option<String>,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.memory_bytes {
            self.hit = Some(format!("ran out of its {} MiB of memory", self.memory_bytes >> 20));
            return Err(wasmtime::Error::msg("the plugin's memory bound"));
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.hit = Some(format!("needed more than its {} table elements", self.table_elements));
            return Err(wasmtime::Error::msg("the plugin's table bound"));
        }
        // A table's elements take host memory too: they count against the memory bound.
        let bytes = desired.saturating_sub(current).saturating_mul(std::mem::size_of::<usize>());
        let total = self.used.saturating_add(bytes);
        if total > self.memory_bytes {
            self.hit = Some(format!("ran out of its {} MiB of memory", self.memory_bytes >> 20));
            return Err(wasmtime::Error::msg("the plugin's memory bound"));
        }
        self.used = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.instances.saturating_mul(4)
    }

    fn memories(&self) -> usize {
        self.instances
    }
}

/// What a plugin's store holds: its context and what its calls made.
pub(crate) struct HostState {
    pub(crate) ctx: PluginContext,
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
    pub(crate) guest: Weak<Guest>,
    pub(crate) limiter: Limiter,
    pub(crate) clock: Clock,
    /// The guest's subscription ids, and the kernel's.
    pub(crate) subscriptions: HashMap<u64, SubscriptionId>,
    next_subscription: u64,
    /// The services this instance registered.
    pub(crate) services: BTreeSet<String>,
    rate: Arc<objectos_kernel::model::quota::Window>,
}

impl HostState {
    pub(crate) fn new(ctx: PluginContext, guest: Weak<Guest>, limiter: Limiter, rate: Arc<objectos_kernel::model::quota::Window>) -> HostState {
        let wasi = wasi::plugin_wasi(&ctx);
        HostState { ctx, wasi, table: wasmtime::component::ResourceTable::new(), guest, limiter, clock: Clock::idle(), subscriptions: HashMap::new(), next_subscription: 1, services: BTreeSet::new(), rate }
    }

    /// Whether the plugin is being stopped: the running call ends, and no more host calls
    /// that reach out (web requests) are made.
    pub(crate) fn stopping(&self) -> bool {
        self.guest.upgrade().is_none_or(|g| g.is_stopping())
    }

    /// Withdraw what this instance subscribed and registered (it is being replaced).
    pub(crate) fn withdraw(&mut self) {
        for (_, id) in self.subscriptions.drain() {
            self.ctx.events().off(id);
        }
        for name in std::mem::take(&mut self.services) {
            let _ = self.ctx.services().unregister(&name);
        }
    }
}

impl wasmtime_wasi::WasiView for HostState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

fn code(e: &KernelError) -> ErrorCode {
    match e {
        KernelError::PermissionDenied { .. } => ErrorCode::PermissionDenied,
        KernelError::OverLimit { .. } => ErrorCode::OverLimit,
        KernelError::TopicNotOwned { .. } | KernelError::ReservedTopic { .. } | KernelError::ServiceExists { .. } | KernelError::ServiceNotOwned { .. } => ErrorCode::NotOwned,
        KernelError::ServiceNotFound { .. } | KernelError::NotFound { .. } => ErrorCode::NotFound,
        KernelError::InvalidName { .. } => ErrorCode::Invalid,
        _ => ErrorCode::Failed,
    }
}

pub(crate) fn host_error(e: KernelError) -> HostError {
    HostError { code: code(&e), message: e.to_string() }
}

/// A host call's failure with `code`.
pub(crate) fn fail(code: ErrorCode, message: String) -> HostError {
    HostError { code, message }
}

fn invalid(message: String) -> HostError {
    fail(ErrorCode::Invalid, message)
}

/// Refuse a name longer than any the kernel accepts before it reaches a check that records it.
fn short(what: &str, name: &str) -> Result<(), HostError> {
    if name.len() > 256 {
        return Err(invalid(format!("{what} is at most 256 bytes; this one is {}", name.len())));
    }
    Ok(())
}

/// Parse JSON text a guest passed as `what`.
fn json(what: &str, text: &str) -> Result<Value, HostError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(HostError { code: ErrorCode::OverLimit, message: format!("{what} is {} bytes of JSON; at most {MAX_TEXT_BYTES} are accepted", text.len()) });
    }
    serde_json::from_str(text).map_err(|e| invalid(format!("{what} is not valid JSON: {e}")))
}

impl types::Host for HostState {}

