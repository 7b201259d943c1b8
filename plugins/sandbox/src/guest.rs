//! One running plugin as the rest of the host reaches it: a bounded queue of calls (hooks,
//! events, service calls) into its thread ([`crate::runner`]), and the waits on their answers,
//! so nothing waits on a plugin longer than its budget.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use objectos_kernel::plugin::{current_depth, Event, JsonService};
use objectos_kernel::{KernelError, PluginContext};
use serde_json::Value;

use crate::limits::Bounds;

/// Calls waiting for one plugin at most; past it a caller is told the plugin is busy.
pub const QUEUE: usize = 64;
/// How long an event waits for a plugin's handler to answer, queue included.
const EVENT_WAIT: Duration = Duration::from_secs(60);

/// A lifecycle hook of the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hook {
    Install,
    Load,
    Enable,
    Disable,
    Unload,
    Uninstall,
    Upgrade(String),
}

impl Hook {
    fn name(&self) -> &'static str {
        match self {
            Hook::Install => "install",
            Hook::Load => "load",
            Hook::Enable => "enable",
            Hook::Disable => "disable",
            Hook::Unload => "unload",
            Hook::Uninstall => "uninstall",
            Hook::Upgrade(_) => "upgrade",
        }
    }
}

pub(crate) enum Work {
    Hook(Hook),
    Event { subscription: u64, event: Event },
    Call { name: String, method: String, args: String, caller: String },
}

impl Work {
    /// What the call was, for messages: "enable hook", "handler for data.lead.created".
    pub(crate) fn describe(&self) -> String {
        match self {
            Work::Hook(h) => format!("{} hook", h.name()),
            Work::Event { event, .. } => format!("handler for {}", event.topic),
            Work::Call { name, method, caller, .. } => format!("service call {name}.{method} (from {caller})"),
        }
    }
}

/// Where an answer goes: a thread blocked on a channel (a service call), or a task awaiting
/// (a hook, an event), which holds no thread while it waits.
pub(crate) enum Reply {
    Blocking(SyncSender<Result<String, String>>),
    Awaited(tokio::sync::oneshot::Sender<Result<String, String>>),
}

impl Reply {
    pub(crate) fn send(self, out: Result<String, String>) {
        match self {
            Reply::Blocking(tx) => drop(tx.send(out)),
            Reply::Awaited(tx) => drop(tx.send(out)),
        }
    }
}

pub(crate) struct Request {
    pub(crate) work: Work,
    pub(crate) depth: Option<u32>,
    pub(crate) chain: Vec<Arc<str>>,
    pub(crate) reply: Reply,
}

thread_local! {
    /// The plugins whose calls led to the one this thread runs now (a guest calling a
    /// service of another guest): a call back into one of them is refused, not deadlocked.
    pub(crate) static CHAIN: RefCell<Vec<Arc<str>>> = const { RefCell::new(Vec::new()) };
}

/// One plugin's thread and queue.
pub(crate) struct Guest {
    pub(crate) id: Arc<str>,
    pub(crate) bounds: Bounds,
    tx: Mutex<Option<SyncSender<Request>>>,
    /// Set by `stop`: calls still queued are answered "not running", not run.
    pub(crate) stopping: AtomicBool,
    /// Called with the message of each handler or service call that trapped or overran a
    /// bound, for quarantine. Not for what others cause: a full queue, an error the guest
    /// returned (a caller's bad arguments must not get a plugin stopped).
    pub(crate) on_failure: Box<dyn Fn(&str) + Send + Sync>,
}

impl Guest {
    /// Whether the plugin is being stopped (unloaded or uninstalled).
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// A guest taking calls for plugin `id`, and the queue its thread serves
    /// ([`crate::runner::start`]).
    pub(crate) fn new(id: &str, bounds: Bounds, on_failure: Box<dyn Fn(&str) + Send + Sync>) -> (Arc<Guest>, Receiver<Request>) {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        (Arc::new(Guest { id: id.into(), bounds, tx: Mutex::new(Some(tx)), stopping: AtomicBool::new(false), on_failure }), rx)
    }

    /// Stop taking calls; what is still queued is answered "not running", and the thread ends.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn send(&self, work: Work, chain: Vec<Arc<str>>, reply: Reply) -> Result<(), String> {
        let what = work.describe();
        let request = Request { work, depth: current_depth(), chain, reply };
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(tx) = tx else { return Err(format!("{} is not running", self.id)) };
        match tx.try_send(request) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(format!("{} is busy: {QUEUE} calls are already waiting for it, so {what} was not run", self.id)),
            Err(TrySendError::Disconnected(_)) => Err(format!("{} is not running", self.id)),
        }
    }

    /// Run a hook and wait for it (the kernel's hook timeout bounds the wait).
    pub(crate) async fn hook(&self, hook: Hook) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Work::Hook(hook), Vec::new(), Reply::Awaited(tx))?;
        rx.await.map_err(|_| format!("{} stopped before answering", self.id))?.map(drop)
    }

    /// Deliver an event to subscription `subscription`.
    pub(crate) async fn event(&self, subscription: u64, event: Event) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Work::Event { subscription, event }, Vec::new(), Reply::Awaited(tx))?;
        match tokio::time::timeout(EVENT_WAIT, rx).await {
            Ok(Ok(out)) => out.map(drop),
            Ok(Err(_)) => Err(format!("{} stopped before answering", self.id)),
            Err(_) => Err(format!("{} did not answer within {} s", self.id, EVENT_WAIT.as_secs())),
        }
    }

    /// Call method `method` of this plugin's service `name`, blocking the calling thread.
    fn call(&self, name: &str, method: &str, args: String, caller: &str) -> Result<String, String> {
        let chain = CHAIN.with(|c| c.borrow().clone());
        if chain.contains(&self.id) {
            let path: Vec<&str> = chain.iter().map(|p| &**p).collect();
            return Err(format!("{} is already in this chain of calls ({} -> {name}): a service cannot be called back into while it is calling out", self.id, path.join(" -> ")));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Work::Call { name: name.into(), method: method.into(), args, caller: caller.into() }, chain, Reply::Blocking(tx))?;
        let limit = self.bounds.call.saturating_mul(4).saturating_add(Duration::from_secs(2));
        let started = Instant::now();
        let recv = move || match rx.recv_timeout(limit) {
            Ok(r) => r,
            Err(_) => Err(format!("{} did not answer within {} ms", self.id, limit.as_millis())),
        };
        let multi = tokio::runtime::Handle::try_current().is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let out = if multi { tokio::task::block_in_place(recv) } else { recv() };
        GUEST_WAIT.with(|w| w.set(w.get() + started.elapsed()));
        out
    }
}

thread_local! {
    /// Time this thread spent waiting on other plugins' code (their service calls).
    static GUEST_WAIT: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// Run `f`, and say how much of its time went to waiting on other plugins' code.
pub(crate) fn waiting_on_guests<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let before = GUEST_WAIT.with(std::cell::Cell::get);
    let out = f();
    let after = GUEST_WAIT.with(std::cell::Cell::get);
    (out, after.saturating_sub(before))
}

/// A service a guest provides, as other plugins see it.
pub(crate) struct Provided {
    pub(crate) guest: std::sync::Weak<Guest>,
    pub(crate) name: String,
}

impl JsonService for Provided {
    fn call(&self, caller: &PluginContext, method: &str, args: Value) -> objectos_kernel::Result<Value> {
        let guest = self.guest.upgrade().ok_or_else(|| KernelError::ServiceNotFound { name: self.name.clone() })?;
        let out = guest.call(&self.name, method, args.to_string(), caller.id()).map_err(|m| KernelError::service(&self.name, m))?;
        serde_json::from_str(&out).map_err(|e| KernelError::service(&self.name, format!("{} returned text that is not JSON: {e}", guest.id)))
    }
}

