//! A plugin's thread: it owns the wasmtime store and instance, takes the calls sent to its
//! [`Guest`] one at a time, runs each under its budget, and answers. A guest that loops, traps
//! or runs out of memory fails the call it is in; the thread replaces the instance and goes on.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};


use objectos_kernel::plugin::caused_by_sync;
use objectos_kernel::PluginContext;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Store, UpdateDeadline};

use crate::guest::{Guest, Hook, Request, Work, CHAIN};
use crate::host::bindings::exports::objectos::plugin::guest as exports;
use crate::host::bindings::{Plugin as World, PluginPre};
use crate::host::{Clock, HostState, Limiter, MAX_TEXT_BYTES};
use crate::limits::Bounds;

/// The host stack of a plugin's thread (above the wasm stack wasmtime allows).
const THREAD_STACK: usize = 8 << 20;

/// The compiled component, ready to instantiate.
pub(crate) struct Prepared {
    pub(crate) pre: PluginPre<HostState>,
}

fn linker() -> Result<&'static Linker<HostState>, String> {
    static LINKER: OnceLock<Result<Linker<HostState>, String>> = OnceLock::new();
    LINKER
        .get_or_init(|| {
            let mut linker = Linker::new(crate::engine::engine());
            crate::host::link_wasi(&mut linker).map_err(|e| format!("{e:#}"))?;
            World::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s).map_err(|e| format!("{e:#}"))?;
            Ok(linker)
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl Prepared {
    /// Check that `component` imports only what the host offers and exports the world.
    pub(crate) fn new(component: &wasmtime::component::Component, main: &str) -> Result<Prepared, String> {
        let engine = crate::engine::engine();
        let offered = |n: &str| n.starts_with("objectos:plugin/") || crate::host::WASI_LINKED.iter().any(|w| n.starts_with(w));
        let foreign: Vec<String> = component.component_type().imports(engine).map(|(name, _)| name.to_string()).filter(|n| !offered(n)).collect();
        if !foreign.is_empty() {
            return Err(format!(
                "{main} imports {}, which ObjectOS does not give plugins: a plugin may import the interfaces of objectos:plugin@0.1.0 (wit/plugin.wit) and WASI 0.2's cli, clocks, filesystem, io and random, which it gets with no files but its granted folders, no environment and no arguments; there are no sockets (web requests go through the world's `http` import)",
                foreign.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        let pre = linker()?.instantiate_pre(component).map_err(|e| format!("{main} does not fit the objectos:plugin@0.1.0 world: {e:#}"))?;
        let pre = PluginPre::new(pre).map_err(|e| format!("{main} does not export the objectos:plugin@0.1.0 world's `guest` interface: {e:#}"))?;
        Ok(Prepared { pre })
    }
}

/// Start the thread for the plugin of `ctx`, which takes the calls sent to the guest returned.
pub(crate) fn start(ctx: PluginContext, prepared: Arc<Prepared>, bounds: Bounds, on_failure: Box<dyn Fn(&str) + Send + Sync>) -> Result<Arc<Guest>, String> {
    let (guest, rx) = Guest::new(ctx.id(), bounds, on_failure);
    let weak = Arc::downgrade(&guest);
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::Builder::new()
        .name(format!("plugin {}", ctx.id()))
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let _entered = runtime.as_ref().map(|r| r.enter());
            Runner { ctx, weak, prepared, bounds, live: None, loaded: false, enabled: false, rate: Default::default() }.serve(rx)
        })
        .map_err(|e| format!("cannot start a thread for the plugin: {e}"))?;
    Ok(guest)
}

struct Live {
    store: Store<HostState>,
    world: World,
    /// The granted folders its WASI file system was opened with.
    folders: Vec<objectos_kernel::model::permission::Folder>,
}

/// The plugin's thread: instantiates on first use and after a trap, runs each call under its
/// budget, and answers.
struct Runner {
    ctx: PluginContext,
    weak: std::sync::Weak<Guest>,
    prepared: Arc<Prepared>,
    bounds: Bounds,
    live: Option<Live>,
    /// Which hooks have succeeded, to bring a replaced instance back to the same point.
    loaded: bool,
    enabled: bool,
    /// The plugin's web request rate, kept across instances (a trap does not reset it).
    rate: Arc<objectos_kernel::model::quota::Window>,
}

impl Runner {
    fn serve(mut self, rx: Receiver<Request>) {
        while let Ok(request) = rx.recv() {
            let Request { work, depth, mut chain, reply } = request;
            if self.weak.upgrade().is_none_or(|g| g.stopping.load(Ordering::SeqCst)) {
                reply.send(Err(format!("{} is not running", self.ctx.id())));
                continue;
            }
            chain.push(self.ctx.id().into());
            CHAIN.with(|c| *c.borrow_mut() = chain);
            let out = match depth {
                Some(d) => caused_by_sync(d, || self.run(&work)),
                None => self.run(&work),
            };
            CHAIN.with(|c| c.borrow_mut().clear());
            // What the code says about a failure goes to logs, the console and callers: none
            // of its secrets with it.
            let out = out.map_err(|f| match f {
                Failed::Trap(m) => Failed::Trap(self.ctx.redact(m)),
                Failed::Returned(m) => Failed::Returned(self.ctx.redact(m)),
            });
            let id = self.ctx.id();
            let out = out.map_err(|f| match f {
                Failed::Trap(why) => {
                    let message = format!("{id} {why} in its {}", work.describe());
                    if !matches!(work, Work::Hook(_)) {
                        if let Some(g) = self.weak.upgrade() {
                            (g.on_failure)(&message);
                        }
                    }
                    message
                }
                Failed::Returned(what) => format!("{id}'s {} {what}", work.describe()),
            });
            reply.send(out);
        }
        // What the last instance registered and subscribed was removed by the kernel when the
        // plugin was disabled; withdrawing it here could remove a newer instance's.
    }

    fn instantiate(&self) -> Result<Live, String> {
        let limiter = Limiter { memory_bytes: self.bounds.memory_bytes, table_elements: self.bounds.table_elements, instances: self.bounds.instances, used: 0, hit: None };
        let mut store = Store::new(crate::engine::engine(), HostState::new(self.ctx.clone(), self.weak.clone(), limiter, self.rate.clone()));
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut s| {
            let state = s.data_mut();
            // Stopped (unloaded, uninstalled): what it is running now ends too.
            if state.stopping() {
                return Err(wasmtime::Error::msg("the plugin was stopped"));
            }
            if state.clock.over() {
                state.clock.overran = true;
                return Err(wasmtime::Error::msg("the call's time budget ran out"));
            }
            Ok(UpdateDeadline::Continue(1))
        });
        store.set_epoch_deadline(1);
        let folders = self.ctx.folders();
        match self.prepared.pre.instantiate(&mut store) {
            Ok(world) => Ok(Live { store, world, folders }),
            Err(e) => Err(match store.data().limiter.hit.clone() {
                Some(hit) => format!("could not start: it {hit}"),
                None => format!("could not start: {e:#}"),
            }),
        }
    }

    fn run(&mut self, work: &Work) -> Result<String, Failed> {
        // Folders granted or revoked since the instance started: its WASI file system holds
        // the old ones, so it is replaced (brought back to where it was) before it runs again.
        if self.live.as_ref().is_some_and(|l| l.folders != self.ctx.folders()) {
            if let Some(mut old) = self.live.take() {
                old.store.data_mut().withdraw();
            }
            if self.loaded {
                self.restart("because its granted folders changed").map_err(Failed::Trap)?;
            }
        }
        if self.live.is_none() {
            self.live = Some(self.instantiate().map_err(Failed::Trap)?);
        }
        let out = self.call(work);
        if let Err(Failed::Trap(why)) = out {
            // The instance is in an unknown state: replace it, and bring the new one to where
            // the old one was, so its subscriptions and services come back.
            if let Some(mut old) = self.live.take() {
                old.store.data_mut().withdraw();
            }
            if !matches!(work, Work::Hook(_)) && self.loaded {
                if let Err(e) = self.restart("after a failed call") {
                    self.ctx.logger().error(format!("restarting after a failed call did not work: {e}"));
                }
            }
            return Err(Failed::Trap(why));
        }
        out
    }

    /// A fresh instance, loaded and (if the plugin was) enabled again.
    fn restart(&mut self, why: &str) -> Result<(), String> {
        self.live = Some(self.instantiate()?);
        let enabled = self.enabled;
        self.call(&Work::Hook(Hook::Load)).map_err(Failed::message)?;
        if enabled {
            self.call(&Work::Hook(Hook::Enable)).map_err(Failed::message)?;
        }
        self.ctx.logger().warn(format!("the plugin's instance was replaced {why}; its load and enable hooks ran again"));
        Ok(())
    }

    fn call(&mut self, work: &Work) -> Result<String, Failed> {
        let Some(live) = self.live.as_mut() else { return Err(Failed::Trap("is not running".into())) };
        let budget = if matches!(work, Work::Hook(_)) { self.bounds.hook } else { self.bounds.call };
        let state = live.store.data_mut();
        state.clock = Clock::starting(budget);
        state.limiter.hit = None;
        live.store.set_epoch_deadline(1);
        let g = live.world.objectos_plugin_guest();
        let store = &mut live.store;
        let result: wasmtime::Result<Result<String, String>> = match work {
            Work::Hook(Hook::Install) => g.call_install(store).map(|r| r.map(|()| String::new())),
            Work::Hook(Hook::Load) => g.call_load(store).map(|r| r.map(|()| String::new())),
            Work::Hook(Hook::Enable) => g.call_enable(store).map(|r| r.map(|()| String::new())),
            Work::Hook(Hook::Disable) => g.call_disable(store).map(|r| r.map(|()| String::new())),
            Work::Hook(Hook::Unload) => g.call_unload(store).map(|r| r.map(|()| String::new())),
            Work::Hook(Hook::Uninstall) => g.call_uninstall(store).map(|r| r.map(|()| String::new())),
            Work::Hook(Hook::Upgrade(from)) => g.call_upgrade(store, from).map(|r| r.map(|()| String::new())),
            Work::Event { subscription, event } => {
                let e = exports::Event { subscription: *subscription, topic: event.topic.to_string(), payload: event.payload.to_string(), source: event.source.to_string() };
                g.call_handle_event(store, &e).map(|r| r.map(|()| String::new()))
            }
            Work::Call { name, method, args, caller } => g.call_call(store, name, method, args, caller),
        };
        let state = live.store.data_mut();
        let (overran, hit, budget) = (state.clock.overran, state.limiter.hit.take(), state.clock.budget);
        self.ctx.record_run(state.clock.cpu_used(), result.is_err(), state.limiter.used);
        state.clock = Clock::idle();
        match result {
            Ok(Ok(out)) if out.len() > MAX_TEXT_BYTES => Err(Failed::Returned(format!("returned {} bytes; at most {MAX_TEXT_BYTES} are accepted", out.len()))),
            Ok(Ok(out)) => {
                match work {
                    Work::Hook(Hook::Load) => self.loaded = true,
                    Work::Hook(Hook::Enable) => self.enabled = true,
                    Work::Hook(Hook::Disable) => self.enabled = false,
                    Work::Hook(Hook::Unload) => (self.loaded, self.enabled) = (false, false),
                    _ => {}
                }
                Ok(out)
            }
            Ok(Err(message)) => Err(Failed::Returned(format!("failed: {}", clip(&message)))),
            Err(trap) => Err(Failed::Trap(if overran {
                format!("exceeded its {} ms time budget", budget.as_millis())
            } else if let Some(hit) = hit {
                hit
            } else {
                explain_trap(&trap)
            })),
        }
    }
}

enum Failed {
    /// The instance trapped: it is replaced.
    Trap(String),
    /// The guest returned an error: the instance is fine.
    Returned(String),
}

impl Failed {
    fn message(self) -> String {
        match self {
            Failed::Trap(m) | Failed::Returned(m) => m,
        }
    }
}

/// A guest's own message, cut to what a person reads.
fn clip(message: &str) -> String {
    objectos_kernel::util::clip(message.to_string(), 2_000)
}

fn explain_trap(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => "overflowed its stack (a recursion too deep?)".into(),
        Some(wasmtime::Trap::UnreachableCodeReached) => "trapped: it reached code marked unreachable (a panic or abort in the guest)".into(),
        Some(wasmtime::Trap::MemoryOutOfBounds) => "trapped: it accessed memory out of bounds".into(),
        Some(wasmtime::Trap::IntegerDivisionByZero) => "trapped: it divided an integer by zero".into(),
        Some(wasmtime::Trap::Interrupt) => "was interrupted".into(),
        Some(t) => format!("trapped: {t}"),
        None => format!("trapped: {}", clip(&format!("{e}"))),
    }
}
