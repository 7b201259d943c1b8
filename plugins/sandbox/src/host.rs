//! The host side of the world's imports. Each is a call on the plugin's own
//! [`PluginContext`], so a sandboxed plugin gets exactly the checks a built-in's calls get:
//! grants (audited as `permission.denied`), owned names, sizes, depths and quotas.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use objectos_kernel::plugin::{Level, SubscriptionId};
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
use bindings::objectos::plugin::{config, events, files, http, log, services, storage, types};

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

/// WASI as a plugin gets it: clocks, random, and the folders it was granted, each at its own
/// absolute path (read-only for `fs.read`). No environment variables, no arguments, stdin
/// empty, stdout and stderr discarded (a plugin writes to its log). Sockets are not linked at
/// all ([`link_wasi`]): web requests go through the `http` import, which checks each. The
/// folders are those granted when the instance starts; the `files` import reads the grants at
/// each call.
fn plugin_wasi(ctx: &PluginContext) -> wasmtime_wasi::WasiCtx {
    use wasmtime_wasi::{DirPerms, FilePerms};
    let mut b = wasmtime_wasi::WasiCtxBuilder::new();
    let host = ctx.host_folders();
    for f in ctx.folders() {
        // WASI's file calls are not checked one by one as the `files` import's are, so a
        // folder is not preopened at all when it holds the host's own data or lies in it,
        // or when it is no longer the folder the admin approved.
        if !objectos_kernel::model::views::host_folders_meeting(&f.path, &host).is_empty() {
            ctx.logger().warn(format!("the granted folder {} holds ObjectOS's own data, so the plugin's WASI file system does not get it (the files interface does, without that data)", f.path.display()));
            continue;
        }
        if let Err(why) = crate::files::open_granted(&f) {
            ctx.logger().warn(format!("{why}; the plugin's WASI file system does not get it"));
            continue;
        }
        let (dirs, files) = if f.write { (DirPerms::all(), FilePerms::all()) } else { (DirPerms::READ, FilePerms::READ) };
        if let Err(e) = b.preopened_dir(&f.path, f.path.to_string_lossy(), dirs, files) {
            ctx.logger().warn(format!("the granted folder {} is not available to the plugin's WASI file system: {e}", f.path.display()));
        }
    }
    b.build()
}

/// The WASI 0.2 packages a component may import, each linked interface by interface by
/// [`link_wasi`]: `wasi:sockets` is not among them, so a component importing it is refused at
/// install with its name, and nothing of it exists in an instance.
pub(crate) const WASI_LINKED: [&str; 5] = ["wasi:cli/", "wasi:clocks/", "wasi:filesystem/", "wasi:io/", "wasi:random/"];

/// The resource table, for WASI's io interfaces.
struct WasiIo;

impl wasmtime::component::HasData for WasiIo {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
}

/// Link the WASI interfaces of [`WASI_LINKED`], one by one (as wasmtime-wasi's own
/// `add_to_linker_sync` does, without sockets): the context each reaches is [`plugin_wasi`]'s.
pub(crate) fn link_wasi(l: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sync};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
    type S = HostState;
    clocks::wall_clock::add_to_linker::<S, WasiClocks>(l, S::clocks)?;
    clocks::monotonic_clock::add_to_linker::<S, WasiClocks>(l, S::clocks)?;
    random::random::add_to_linker::<S, WasiRandom>(l, S::random)?;
    random::insecure::add_to_linker::<S, WasiRandom>(l, S::random)?;
    random::insecure_seed::add_to_linker::<S, WasiRandom>(l, S::random)?;
    // The command world's interfaces that guest toolchains import: the environment and the
    // arguments are empty, stdin is empty, what is written out goes nowhere, exit ends the call.
    cli::exit::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::environment::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stdin::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stdout::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stderr::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_input::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_output::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stdin::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stdout::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stderr::add_to_linker::<S, WasiCli>(l, S::cli)?;
    filesystem::preopens::add_to_linker::<S, WasiFilesystem>(l, S::filesystem)?;
    sync::filesystem::types::add_to_linker::<S, WasiFilesystem>(l, S::filesystem)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<S, WasiIo>(l, |s| &mut s.table)?;
    sync::io::poll::add_to_linker::<S, WasiIo>(l, |s| &mut s.table)?;
    sync::io::streams::add_to_linker::<S, WasiIo>(l, |s| &mut s.table)?;
    Ok(())
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
        let wasi = plugin_wasi(&ctx);
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

/// Refuse a storage key longer than the kernel accepts before anything records it.
fn key_ok(key: &str) -> Result<(), HostError> {
    if key.len() > objectos_kernel::plugin::MAX_KEY_LEN {
        return Err(invalid(format!("a storage key is at most {} bytes; this one is {}", objectos_kernel::plugin::MAX_KEY_LEN, key.len())));
    }
    Ok(())
}

impl storage::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<String>, HostError> {
        key_ok(&key)?;
        Ok(self.ctx.storage().get(&key).map_err(host_error)?.map(|v| v.to_string()))
    }

    fn set(&mut self, key: String, value: String) -> Result<(), HostError> {
        key_ok(&key)?;
        let value = json(&format!("the value for `{key}`"), &value)?;
        self.ctx.storage().set(&key, value).map_err(host_error)
    }

    fn delete(&mut self, key: String) -> Result<bool, HostError> {
        key_ok(&key)?;
        self.ctx.storage().delete(&key).map_err(host_error)
    }

    fn scan(&mut self, prefix: String) -> Result<Vec<(String, String)>, HostError> {
        key_ok(&prefix)?;
        Ok(self.ctx.storage().scan(&prefix).map_err(host_error)?.into_iter().map(|(k, v)| (k, v.to_string())).collect())
    }

    fn swap(&mut self, key: String, expected: Option<String>, new: Option<String>) -> Result<bool, HostError> {
        key_ok(&key)?;
        let expected = expected.map(|t| json(&format!("the expected value of `{key}`"), &t)).transpose()?;
        let new = new.map(|t| json(&format!("the new value of `{key}`"), &t)).transpose()?;
        self.ctx.storage().swap(&key, expected.as_ref(), new).map_err(host_error)
    }
}

impl events::Host for HostState {
    fn emit(&mut self, topic: String, payload: String) -> Result<u32, HostError> {
        short("a topic", &topic)?;
        let payload = json(&format!("the payload of `{topic}`"), &payload)?;
        let report = self.ctx.events().emit(&topic, payload).map_err(host_error)?;
        Ok(report.delivered as u32)
    }

    fn subscribe(&mut self, pattern: String) -> Result<u64, HostError> {
        short("a pattern", &pattern)?;
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            let e = self.ctx.over_limit(format!("subscription to `{pattern}`"), format!("a plugin holds at most {MAX_SUBSCRIPTIONS} subscriptions at a time"));
            return Err(host_error(e));
        }
        let id = self.next_subscription;
        let guest = self.guest.clone();
        let sub = self
            .ctx
            .events()
            .on_async(&pattern, move |event| {
                let guest = guest.clone();
                async move {
                    match guest.upgrade() {
                        Some(g) => g.event(id, event).await.map_err(Into::into),
                        None => Ok(()),
                    }
                }
            })
            .map_err(host_error)?;
        self.next_subscription += 1;
        self.subscriptions.insert(id, sub);
        Ok(id)
    }

    fn unsubscribe(&mut self, id: u64) -> bool {
        match self.subscriptions.remove(&id) {
            Some(sub) => self.ctx.events().off(sub),
            None => false,
        }
    }
}

impl services::Host for HostState {
    fn call(&mut self, name: String, method: String, args: String) -> Result<String, HostError> {
        let args = json(&format!("the arguments of `{name}.{method}`"), &args)?;
        let (result, on_guests) = crate::guest::waiting_on_guests(|| self.ctx.services().call(&name, &method, args));
        self.clock.waiting += on_guests;
        Ok(result.map_err(host_error)?.to_string())
    }

    fn register(&mut self, name: String) -> Result<(), HostError> {
        short("a service name", &name)?;
        if self.services.len() >= MAX_SERVICES && !self.services.contains(&name) {
            let e = self.ctx.over_limit(format!("service `{name}`"), format!("a plugin provides at most {MAX_SERVICES} services"));
            return Err(host_error(e));
        }
        let Some(guest) = self.guest.upgrade() else { return Err(HostError { code: ErrorCode::Failed, message: "the plugin is stopping".into() }) };
        let face = Arc::new(crate::guest::Provided { guest: Arc::downgrade(&guest), name: name.clone() });
        self.ctx.services().register_arc(&name, face.clone()).map_err(host_error)?;
        self.ctx.services().expose(&name, face).map_err(host_error)?;
        self.services.insert(name);
        Ok(())
    }

    fn unregister(&mut self, name: String) -> Result<(), HostError> {
        self.ctx.services().unregister(&name).map_err(host_error)?;
        self.services.remove(&name);
        Ok(())
    }
}

impl log::Host for HostState {
    fn write(&mut self, level: log::Level, message: String, fields: String) {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        // A line and its fields are at most 16 KiB each, so a guest cannot store its memory
        // through the log (its lines a minute are also counted against its quota).
        const MAX_LINE: usize = 16 << 10;
        // A secret the plugin was given does not reach the log (which the console shows).
        let fields = match fields.trim() {
            "" => Value::Null,
            t if t.len() > MAX_LINE => Value::String(format!("fields of {} bytes left out: a line's fields are at most {MAX_LINE} bytes", t.len())),
            t => self.ctx.redact_value(json("the log line's fields", t).unwrap_or_else(|e| Value::String(e.message))),
        };
        self.ctx.logger().log(level, objectos_kernel::util::clip(self.ctx.redact(message), MAX_LINE), fields);
    }
}

impl http::Host for HostState {
    fn send(&mut self, request: http::Request) -> Result<http::Response, HostError> {
        if self.stopping() {
            return Err(HostError { code: ErrorCode::Failed, message: "the plugin is stopping".into() });
        }
        // Waiting on the network is not the guest's CPU, but it is bounded too: a call may
        // spend at most this long in web requests, so a guest cannot idle on slow servers
        // past every budget.
        let left = crate::net::MAX_WAIT_PER_CALL.saturating_sub(self.clock.on_network);
        if left.is_zero() {
            let e = self.ctx.over_limit("web requests".into(), format!("one call may wait at most {} s on web requests", crate::net::MAX_WAIT_PER_CALL.as_secs()));
            return Err(host_error(e));
        }
        let started = Instant::now();
        let out = crate::net::send(&self.ctx, &self.rate, request, left.min(crate::net::TIMEOUT));
        let waited = started.elapsed();
        self.clock.waiting += waited;
        self.clock.on_network += waited;
        out
    }
}

impl files::Host for HostState {
    fn folders(&mut self) -> Vec<files::Folder> {
        crate::files::folders(&self.ctx)
    }

    fn read(&mut self, path: String) -> Result<String, HostError> {
        crate::files::read(&self.ctx, &path)
    }

    fn write(&mut self, path: String, text: String) -> Result<(), HostError> {
        crate::files::write(&self.ctx, &path, &text)
    }

    fn entries(&mut self, path: String) -> Result<Vec<files::Entry>, HostError> {
        crate::files::entries(&self.ctx, &path)
    }

    fn create_folder(&mut self, path: String) -> Result<(), HostError> {
        crate::files::create_folder(&self.ctx, &path)
    }

    fn remove(&mut self, path: String) -> Result<bool, HostError> {
        crate::files::remove(&self.ctx, &path)
    }
}

impl config::Host for HostState {
    fn get(&mut self) -> String {
        self.ctx.config().to_string()
    }
}
