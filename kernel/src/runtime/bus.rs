//! The event bus: topic patterns, isolated handlers, a lock-free emit path.
//!
//! Subscriptions live in an immutable snapshot swapped on change (`arc-swap`); emitting
//! loads the snapshot without a lock and caches topic -> matching subscriptions in it.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use futures::FutureExt;
use rustc_hash::FxHashMap;
use serde_json::Value;
use tracing::Instrument;

use crate::model::log::{Level, LogRecord};
use crate::model::permission::Pattern;
use crate::db::Writer;
use crate::runtime::telemetry::Counters;
use crate::util::{now_ms, panic_message};

/// An event as handlers see it. Cloning is cheap (shared topic and payload).
#[derive(Debug, Clone)]
pub struct Event {
    /// The topic, e.g. `crm.lead.created`.
    pub topic: Arc<str>,
    /// The payload.
    pub payload: Arc<Value>,
    /// The emitting plugin, or `kernel` (set by the kernel, never by the payload).
    pub source: Arc<str>,
    /// How many events led to this one: 0 for an event nobody's event caused, else one more
    /// than the event whose handling emitted it. Set by the kernel (see [`MAX_EVENT_DEPTH`]).
    pub depth: u32,
}

/// The longest chain of events each emitted while handling the one before (a handler that
/// emits, an automation that triggers another...). An emit that would go deeper is refused: a
/// loop is cut here whatever the plugins do.
pub const MAX_EVENT_DEPTH: u32 = 16;

thread_local! {
    /// The depth of the event a sync handler on this thread is handling now.
    static HANDLING: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

tokio::task_local! {
    /// The depth of the event an async handler (or work an engine started for it) handles.
    static CAUSE: u32;
}

/// The depth of the event being handled where this is called, if any: the deeper of the sync
/// handler running on this thread and the async work this task does for an event (a sync
/// handler inside such work is further down the same chain).
pub fn current_depth() -> Option<u32> {
    let task = CAUSE.try_with(|d| *d).ok();
    let thread = HANDLING.with(std::cell::Cell::get);
    task.max(thread)
}

pub(crate) use current_depth as ambient_depth;

/// Run `fut` as work caused by an event `depth` deep: events it emits are one deeper. For
/// engines that hand an event's work to a task of their own (the kernel does this for the
/// handlers it runs).
pub fn caused_by<F: std::future::Future>(depth: u32, fut: F) -> impl std::future::Future<Output = F::Output> {
    CAUSE.scope(depth, fut)
}

/// Run `f` as work caused by an event `depth` deep, on a thread of the caller's own (code in
/// a sandbox handling an event): events it emits are one deeper.
pub fn caused_by_sync<R>(depth: u32, f: impl FnOnce() -> R) -> R {
    CAUSE.sync_scope(depth, f)
}

/// Identifies a subscription, for `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(pub(crate) u64);

/// What an emit reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmitReport {
    /// Handlers that ran (or, for async handlers under `emit`, were started).
    pub delivered: usize,
    /// Handlers that returned an error or panicked.
    pub failed: usize,
}

/// Error type handlers return.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;
type SyncFn = dyn Fn(&Event) -> Result<(), HandlerError> + Send + Sync;
type AsyncFn = dyn Fn(Event) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync;

pub(crate) type DurableFn = dyn Fn(Delivery) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync;

pub(crate) enum Handler {
    Sync(Box<SyncFn>),
    Async(Box<AsyncFn>),
    /// A durable subscription's handler, under the subscription's name: plugins' events reach
    /// it through the delivery queue, the kernel's own (`plugin.*`, `kernel.*`) directly.
    Durable(Arc<str>, Box<DurableFn>),
}

/// An event handed to a durable subscription's handler.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The delivery's id: the same each time this event is delivered again to this
    /// subscription (after a failure, or after the runner was killed mid-delivery), so a
    /// handler can tell a redelivery from a new event. `None` for the kernel's own events,
    /// which are not queued.
    pub id: Option<i64>,
    /// 1 for the first try, then one more per delivery again.
    pub attempt: u32,
    /// The event.
    pub event: Event,
}

struct Sub {
    id: u64,
    owner: Arc<str>,
    pattern: Pattern,
    handler: Handler,
    once: bool,
    fired: AtomicBool,
    counters: Arc<Counters>,
}

/// Topic -> the subscriptions matching it, filled on first emit of each topic. The key is the
/// shared topic text events of that topic carry (no allocation per emit).
type TopicCache = RwLock<FxHashMap<Arc<str>, Arc<[Arc<Sub>]>>>;

#[derive(Default)]
struct Snapshot {
    subs: Vec<Arc<Sub>>,
    cache: TopicCache,
}

impl Snapshot {
    /// The shared topic text and the subscriptions matching it.
    fn matching(&self, topic: &str) -> (Arc<str>, Arc<[Arc<Sub>]>) {
        if let Ok(c) = self.cache.read() {
            if let Some((t, hit)) = c.get_key_value(topic) {
                return (t.clone(), hit.clone());
            }
        }
        let found: Arc<[Arc<Sub>]> = self.subs.iter().filter(|s| s.pattern.matches(topic)).cloned().collect();
        let topic: Arc<str> = topic.into();
        if let Ok(mut c) = self.cache.write() {
            if c.len() > 4096 {
                c.clear();
            }
            c.insert(topic.clone(), found.clone());
        }
        (topic, found)
    }
}

pub(crate) struct Bus {
    /// The source of events the host emits.
    pub(crate) host: Arc<str>,
    /// The source of the kernel's own events.
    pub(crate) kernel: Arc<str>,
    snap: ArcSwap<Snapshot>,
    change: Mutex<()>,
    next: AtomicU64,
    kernel_id: u64,
    writer: Writer,
}

impl Bus {
    pub(crate) fn new(kernel_id: u64, writer: Writer) -> Bus {
        Bus { host: "host".into(), kernel: "kernel".into(), snap: ArcSwap::from_pointee(Snapshot::default()), change: Mutex::new(()), next: AtomicU64::new(1), kernel_id, writer }
    }

    fn update(&self, f: impl FnOnce(&mut Vec<Arc<Sub>>)) {
        let _g = self.change.lock().unwrap_or_else(|p| p.into_inner());
        let mut subs = self.snap.load().subs.clone();
        f(&mut subs);
        self.snap.store(Arc::new(Snapshot { subs, cache: Default::default() }));
    }

    pub(crate) fn subscribe(&self, owner: Arc<str>, counters: Arc<Counters>, pattern: Pattern, handler: Handler, once: bool) -> SubscriptionId {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(Sub { id, owner, pattern, handler, once, fired: AtomicBool::new(false), counters });
        self.update(|subs| subs.push(sub));
        SubscriptionId(id)
    }

    /// Remove one subscription if `owner` holds it: `None` when it does not, else the name of
    /// the durable subscription it was when no other live one of `owner`'s has that name.
    pub(crate) fn unsubscribe(&self, owner: &str, id: SubscriptionId) -> Option<Option<Arc<str>>> {
        let mut removed = None;
        self.update(|subs| {
            let Some(i) = subs.iter().position(|s| s.id == id.0 && &*s.owner == owner) else { return };
            let sub = subs.remove(i);
            let name = match &sub.handler {
                Handler::Durable(name, _) => Some(name.clone()),
                _ => None,
            };
            let ended = name.filter(|n| !subs.iter().any(|s| &*s.owner == owner && matches!(&s.handler, Handler::Durable(m, _) if m == n)));
            removed = Some(ended);
        });
        removed
    }

    pub(crate) fn remove_owner(&self, owner: &str) -> usize {
        let mut n = 0;
        self.update(|subs| {
            let before = subs.len();
            subs.retain(|s| &*s.owner != owner);
            n = before - subs.len();
        });
        n
    }

    #[inline]
    fn claim(&self, sub: &Sub) -> bool {
        if sub.once {
            if sub.fired.swap(true, Ordering::AcqRel) {
                return false;
            }
            self.update(|subs| subs.retain(|s| s.id != sub.id));
        }
        true
    }

    fn report_failure(&self, sub: &Sub, topic: &str, message: String) {
        log_failure(&self.writer, sub, topic, message);
    }

    /// Run one sync handler in its plugin's span, isolated; false when it failed.
    fn run_sync(&self, sub: &Sub, f: &SyncFn, event: &Event, traced: bool) -> bool {
        let span = if traced { tracing::info_span!("handler", plugin = %sub.owner, kernel = self.kernel_id, topic = %event.topic) } else { tracing::Span::none() };
        let _e = span.enter();
        let outer = HANDLING.with(|h| h.replace(Some(event.depth)));
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| f(event)));
        HANDLING.with(|h| h.set(outer));
        let msg = match outcome {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => e.to_string(),
            Err(p) => panic_message(&*p),
        };
        self.report_failure(sub, &event.topic, msg);
        false
    }

    /// The event, and the subscriptions to deliver it to.
    fn event(&self, topic: &str, source: &Arc<str>, payload: Value, depth: u32) -> (Event, Arc<[Arc<Sub>]>) {
        let (topic, subs) = self.snap.load().matching(topic);
        (Event { topic, payload: Arc::new(payload), source: source.clone(), depth }, subs)
    }

    /// Deliver to every matching handler. Sync handlers run now; async ones are spawned.
    pub(crate) fn emit(&self, topic: &str, source: &Arc<str>, payload: Value, depth: u32) -> EmitReport {
        let (event, subs) = self.event(topic, source, payload, depth);
        let event = &event;
        let traced = traced();
        let mut report = EmitReport::default();
        for sub in subs.iter() {
            if !self.delivers_live(sub, event) || !self.claim(sub) {
                continue;
            }
            sub.counters.events_received.fetch_add(1, Ordering::Relaxed);
            report.delivered += 1;
            let ok = match (&sub.handler, tokio::runtime::Handle::try_current()) {
                (Handler::Sync(f), _) => self.run_sync(sub, f, event, traced),
                (_, Ok(h)) => {
                    if let Some(fut) = self.live(sub, event) {
                        h.spawn(self.run_async(sub.clone(), fut, event));
                    }
                    true
                }
                (_, Err(_)) => {
                    self.report_failure(sub, &event.topic, "async handler needs a tokio runtime; use emit_async".into());
                    false
                }
            };
            report.failed += usize::from(!ok);
        }
        report
    }

    /// Whether `sub` hears `event` as it is emitted: every handler but a durable one, which
    /// hears only the kernel's own events so (plugins' events come through the delivery queue).
    fn delivers_live(&self, sub: &Sub, event: &Event) -> bool {
        !matches!(sub.handler, Handler::Durable(..)) || *event.source == *self.kernel
    }

    /// The future of an async or durable handler for `event` heard live.
    fn live(&self, sub: &Sub, event: &Event) -> Option<BoxFuture<'static, Result<(), HandlerError>>> {
        match &sub.handler {
            Handler::Sync(_) => None,
            Handler::Async(f) => Some(f(event.clone())),
            Handler::Durable(_, f) => Some(f(Delivery { id: None, attempt: 1, event: event.clone() })),
        }
    }

    /// The durable subscriptions live in this process: (owner, name), each once.
    pub(crate) fn durable_keys(&self) -> Vec<(Arc<str>, Arc<str>)> {
        let mut keys: Vec<(Arc<str>, Arc<str>)> = self
            .snap
            .load()
            .subs
            .iter()
            .filter_map(|s| match &s.handler {
                Handler::Durable(name, _) => Some((s.owner.clone(), name.clone())),
                _ => None,
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Hand a queued delivery to `owner`'s live durable subscription `name` (each, if it
    /// subscribed twice) and wait, each at most `limit`: `None` when it has none here now, else
    /// whether every handler succeeded, with the first failure's message. A failure (a handler
    /// over `limit` is one) is logged and audited as any handler's is.
    pub(crate) async fn deliver(&self, owner: &str, name: &str, delivery: Delivery, limit: std::time::Duration) -> Option<std::result::Result<(), String>> {
        let subs: Vec<Arc<Sub>> = self.snap.load().subs.iter().filter(|s| &*s.owner == owner && matches!(&s.handler, Handler::Durable(n, _) if &**n == name)).cloned().collect();
        if subs.is_empty() {
            return None;
        }
        let mut outcome = Ok(());
        for sub in subs {
            let Handler::Durable(_, f) = &sub.handler else { continue };
            // Queued under an older, wider pattern (the subscription changed since): done,
            // unheard.
            if !sub.pattern.matches(&delivery.event.topic) {
                continue;
            }
            sub.counters.events_received.fetch_add(1, Ordering::Relaxed);
            let event = delivery.event.clone();
            let fut = CAUSE.scope(event.depth, f(delivery.clone()));
            let span = tracing::info_span!("handler", plugin = %sub.owner, kernel = self.kernel_id, topic = %event.topic, delivery = delivery.id);
            let msg = match tokio::time::timeout(limit, AssertUnwindSafe(fut).catch_unwind().instrument(span)).await {
                Ok(Ok(Ok(()))) => continue,
                Ok(Ok(Err(e))) => e.to_string(),
                Ok(Err(p)) => panic_message(&*p),
                Err(_) => format!("did not finish within {} s; it is delivered again later", limit.as_secs()),
            };
            log_failure(&self.writer, &sub, &event.topic, msg.clone());
            if outcome.is_ok() {
                outcome = Err(msg);
            }
        }
        Some(outcome)
    }

    fn run_async(&self, sub: Arc<Sub>, fut: BoxFuture<'static, Result<(), HandlerError>>, event: &Event) -> impl std::future::Future<Output = bool> + Send + 'static {
        let topic = event.topic.clone();
        let span = tracing::info_span!("handler", plugin = %sub.owner, kernel = self.kernel_id, topic = %topic);
        let writer = self.writer.clone();
        let fut = CAUSE.scope(event.depth, fut);
        async move {
            let msg = match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(Ok(())) => return true,
                Ok(Err(e)) => e.to_string(),
                Err(p) => panic_message(&*p),
            };
            log_failure(&writer, &sub, &topic, msg);
            false
        }
        .instrument(span)
    }

    /// Deliver and wait for every handler, async ones included (concurrently).
    pub(crate) async fn emit_async(&self, topic: &str, source: &Arc<str>, payload: Value, depth: u32) -> EmitReport {
        let (event, subs) = self.event(topic, source, payload, depth);
        let event = &event;
        let traced = traced();
        let mut report = EmitReport::default();
        let mut pending = Vec::new();
        for sub in subs.iter() {
            if !self.delivers_live(sub, event) || !self.claim(sub) {
                continue;
            }
            sub.counters.events_received.fetch_add(1, Ordering::Relaxed);
            report.delivered += 1;
            match (&sub.handler, self.live(sub, event)) {
                (Handler::Sync(f), _) => report.failed += usize::from(!self.run_sync(sub, f, event, traced)),
                (_, Some(fut)) => pending.push(self.run_async(sub.clone(), fut, event)),
                (_, None) => {}
            }
        }
        for ok in futures::future::join_all(pending).await {
            report.failed += usize::from(!ok);
        }
        report
    }
}

/// Whether a tracing subscriber wants handler spans (the hosts install one; a bare kernel
/// skips building a span per handler).
fn traced() -> bool {
    tracing::level_enabled!(tracing::Level::INFO)
}

/// A handler failed: every failure goes to the plugin's log, and to the audit trail up to
/// [`MAX_AUDITED_FAILURES`] a minute (then one `limit.exceeded` says the rest are only
/// counted, and when the minute ends, how many were), so none passes silently.
fn log_failure(writer: &Writer, sub: &Sub, topic: &str, message: String) {
    use crate::model::audit::{Actor, AuditAction, MAX_AUDITED_FAILURES};
    use crate::model::quota::Use;
    sub.counters.handler_errors.fetch_add(1, Ordering::Relaxed);
    let message = crate::util::clip(message, 4096);
    let actor = Actor::Plugin(sub.owner.clone());
    let (used, closed) = sub.counters.failure_audits.hit(now_ms(), 60_000, MAX_AUDITED_FAILURES);
    if let Some(n) = closed {
        writer.audit(&actor, Some(&sub.owner), AuditAction::LimitExceeded, serde_json::json!({ "what": "handler failures", "reason": format!("{n} more handler failures in the last minute were logged and counted, not recorded here") }));
    }
    match used {
        Use::Allowed => writer.audit(&actor, Some(&sub.owner), AuditAction::HandlerFailed, serde_json::json!({ "topic": topic, "pattern": sub.pattern.as_str(), "message": message })),
        Use::Refused { first: true } => writer.audit(
            &actor,
            Some(&sub.owner),
            AuditAction::LimitExceeded,
            serde_json::json!({ "what": "handler failures", "reason": format!("more than {MAX_AUDITED_FAILURES} handler failures in a minute: the rest of this minute's are logged and counted, not recorded here") }),
        ),
        Use::Refused { first: false } => {}
    }
    writer.log(LogRecord {
        id: 0,
        ts: now_ms(),
        plugin: sub.owner.to_string(),
        level: Level::Error,
        target: "objectos::bus".into(),
        message: format!("handler for `{topic}` failed: {message}"),
        fields: serde_json::json!({ "topic": topic, "pattern": sub.pattern.as_str() }),
    });
}
