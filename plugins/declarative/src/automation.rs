//! `com.objectos.automation`: the automations packages declare, run with the declaring
//! package's own context. The package's grants decide what it may hear (an event trigger is the
//! package's own subscription) and what it may do. A chain of automations re-triggering each
//! other stops at [`MAX_DEPTH`]; a failed run is logged to the package and retried through the
//! jobs service.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use objectos_jobs::{JobSpec, Retry};
use objectos_kernel::{HookResult, Plugin, PluginContext, async_trait};
use objectos_kernel::plugin::{Delivery, SubscriptionId};
use serde_json::{json, Value};

use crate::actions::{forget_when_stopped, start_engine, Packages, Runner, Target, MAX_DEPTH};
use crate::defs::{AutomationDef, Trigger};

/// The plugin's id.
pub const ID: &str = crate::names::AUTOMATION_ID;
/// The service name.
pub const SERVICE: &str = crate::names::AUTOMATION_SERVICE;
/// The embedded manifest.
pub const MANIFEST: &str = include_str!("../manifests/automation.json");
/// The plugin's translations.
pub const TRANSLATIONS: &[(&str, &str)] = &[("translations/en.json", include_str!("../translations/automation.en.json")), ("translations/zh-CN.json", include_str!("../translations/automation.zh-CN.json"))];
const RETRY: &str = "retry";
/// How long a trigger's delivery waits for its run (the kernel counts a handler over two
/// minutes as failed, and delivers it again).
const RUN_WAIT: Duration = Duration::from_secs(90);
const SCHEDULED: &str = "scheduled";

/// The plugin's code.
#[derive(Default)]
pub struct AutomationPlugin;

#[async_trait]
impl Plugin for AutomationPlugin {
    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        let (runner, packages) = start_engine(ctx)?;
        let jobs = runner.jobs.clone();
        let inner = Arc::new(Inner { runner, automations: RwLock::default(), packages, in_flight: tokio::sync::watch::channel(0).0 });
        for handler in [RETRY, SCHEDULED] {
            let weak = Arc::downgrade(&inner);
            jobs.handle(ctx, handler, move |run| {
                let weak = weak.clone();
                async move {
                    let inner = weak.upgrade().ok_or("the automation plugin is not enabled")?;
                    let key = (run.payload["package"].as_str().unwrap_or_default().to_string(), run.payload["automation"].as_str().unwrap_or_default().to_string());
                    let found = inner.automations.read().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
                    let a = found.ok_or_else(|| format!("automation {} of {} is not enabled; the run waits for a retry", key.1, key.0))?;
                    // The job is the engine's own record (a package cannot write it).
                    let vars = run.payload.get("vars").cloned().unwrap_or_else(|| json!({}));
                    let target = run.payload["target"]["object"].as_str().zip(run.payload["target"]["id"].as_str()).map(|(o, i)| (o.to_string(), i.to_string()));
                    let depth = run.payload["depth"].as_u64().map_or(0, |d| d.min(u64::from(MAX_DEPTH)) as u32);
                    a.execute(&inner, vars, target.as_ref(), depth).await.map_err(Into::into)
                }
            })?;
        }
        forget_when_stopped(ctx, &inner, Inner::forget)?;
        ctx.services().register(SERVICE, Automations { inner })?;
        Ok(())
    }
}

/// One defined automation.
pub(crate) struct Running {
    pkg: PluginContext,
    def: Arc<AutomationDef>,
    sub: Option<SubscriptionId>,
    runs: AtomicU64,
    failures: AtomicU64,
    skipped: AtomicU64,
}

type Key = (String, String);

struct Inner {
    runner: Runner,
    automations: RwLock<HashMap<Key, Arc<Running>>>,
    packages: Arc<Packages>,
    /// Runs started and not finished, and a signal each time one finishes.
    in_flight: tokio::sync::watch::Sender<usize>,
}

impl Inner {
    /// Drop a trigger's subscription (the package's, made by it or by the engine for it).
    fn unsubscribe(&self, pkg: &PluginContext, sub: SubscriptionId) {
        pkg.events().off(sub);
    }

    fn forget(&self, owner: &str) {
        let gone: Vec<Arc<Running>> = {
            let mut map = self.automations.write().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<Key> = map.keys().filter(|(p, _)| p == owner).cloned().collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for a in gone {
            if let Some(sub) = a.sub {
                self.unsubscribe(&a.pkg, sub);
            }
            if matches!(a.def.when, Trigger::Schedule(_)) {
                let _ = self.runner.jobs.unschedule(&self.runner.engine, &schedule_name(a.pkg.id(), &a.def.name));
            }
        }
        self.packages.write().unwrap_or_else(|p| p.into_inner()).remove(owner);
    }
}

/// The name of an automation's trigger among its package's durable subscriptions.
fn durable_name(automation: &str) -> String {
    format!("automation:{automation}")
}

fn schedule_name(pkg: &str, automation: &str) -> String {
    format!("{pkg}.{automation}")
}

impl Running {
    /// Check the condition and run the actions; on failure, log to the package and queue a
    /// retry (unless this run is the retry).
    async fn execute(&self, inner: &Inner, mut vars: Value, target: Option<&(String, String)>, depth: u32) -> Result<(), String> {
        match self.def.holds(&vars) {
            Ok(true) => {}
            Ok(false) => {
                self.skipped.fetch_add(1, Relaxed);
                return Ok(());
            }
            Err(e) => {
                self.failures.fetch_add(1, Relaxed);
                let msg = format!("automation {}: its condition `{}` cannot be checked: {e}", self.def.name, self.def.condition.as_deref().unwrap_or_default());
                self.pkg.logger().error(&msg);
                return Err(msg);
            }
        }
        self.runs.fetch_add(1, Relaxed);
        // `set` acts on the record that triggered this run (a record trigger, as the data engine
        // announced it), never on a type or id taken from a payload.
        let target = target.map(|(object, id)| Target { object, id });
        let result = inner.runner.run(&self.pkg, &self.def.actions, target.as_ref(), &mut vars, depth).await;
        if let Err(e) = &result {
            self.failures.fetch_add(1, Relaxed);
            self.pkg.logger().error(format!("automation {} failed: {e}", self.def.name));
        }
        result
    }

    /// Run for a trigger, until the run is done or its retry queued (a trigger is a durable
    /// delivery: it is done once this returns).
    async fn fire(self: &Arc<Self>, inner: &Weak<Inner>, vars: Value, target: Option<(String, String)>, depth: u32) {
        if depth >= MAX_DEPTH {
            self.skipped.fetch_add(1, Relaxed);
            self.pkg.logger().warn(format!("automation {} not run: {depth} automations deep, a loop is cut at {MAX_DEPTH}", self.def.name));
            return;
        }
        let (me, inner) = (self.clone(), inner.clone());
        if let Some(i) = inner.upgrade() {
            i.in_flight.send_modify(|n| *n += 1);
        }
        // The run continues the triggering event's chain: what the engines emit for its actions
        // (a notice sent, a job queued) is one deeper, so a loop through them is cut too.
        // Its own task: a delivery cut short (its handler over the time limit) leaves the run
        // to finish, or to queue its retry.
        let run = tokio::spawn(objectos_kernel::plugin::caused_by(depth, async move {
            let Some(inner) = inner.upgrade() else { return };
            let _done = Finished(&inner.in_flight);
            if me.execute(&inner, vars.clone(), target.as_ref(), depth).await.is_err() {
                let target = target.map(|(object, id)| json!({ "object": object, "id": id }));
                let spec = JobSpec::new(RETRY, json!({ "package": me.pkg.id(), "automation": me.def.name, "vars": vars, "target": target, "depth": depth }))
                    .delay(Duration::from_secs(2))
                    .retry(Retry::exponential(3, Duration::from_secs(2)));
                if let Err(e) = inner.runner.jobs.enqueue_for(&inner.runner.engine, &me.pkg, spec) {
                    me.pkg.logger().error(format!("automation {}: could not queue a retry: {e}", me.def.name));
                }
            }
        }));
        // Waited for well within the delivery's time limit: a run longer than that goes on by
        // itself (and queues its own retry if it fails) rather than being delivered again and
        // run twice.
        let _ = tokio::time::timeout(RUN_WAIT, run).await;
    }
}

/// Counts a run as finished when dropped (also when the run panics).
struct Finished<'a>(&'a tokio::sync::watch::Sender<usize>);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Counters of one automation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutomationStats {
    /// The owning package.
    pub package: String,
    /// The automation.
    pub name: String,
    /// Runs whose condition held (retries included).
    pub runs: u64,
    /// Runs that failed.
    pub failures: u64,
    /// Triggers whose condition did not hold, or that a loop cut stopped.
    pub skipped: u64,
}

/// The `automation` service.
pub struct Automations {
    inner: Arc<Inner>,
}

impl Automations {
    /// Start the caller's automation `def` (a package's runtime does it when enabled). An event
    /// trigger subscribes with the caller's own grants; a record trigger (on one of the caller's
    /// own types) is the engine's subscription to the data engine's announcements.
    pub fn define(&self, caller: &PluginContext, def: AutomationDef) -> objectos_kernel::Result<()> {
        let key = (caller.id().to_string(), def.name.clone());
        self.inner.packages.write().unwrap_or_else(|p| p.into_inner()).insert(caller.id().to_string(), caller.clone());
        let def = Arc::new(def);
        let weak_inner = Arc::downgrade(&self.inner);
        // The subscription's closure reaches the automation through this slot, filled below.
        let slot: Arc<RwLock<Option<Arc<Running>>>> = Arc::default();
        let s = slot.clone();
        let sub = match &def.when {
            // An event trigger reads its payload; it has no record of its own to `set` on.
            // An event that names a record (`object` and `record.id`, as the engine's emit action
            // writes them) shows its fields only if the package may read that type: the record
            // is read here, as the package.
            Trigger::Event(pattern) => Some(caller.events().on_durable(&durable_name(&def.name), pattern, {
                let (pkg, data) = (caller.clone(), self.inner.runner.data.clone());
                move |d: Delivery| {
                let e = d.event;
                let a = s.read().unwrap_or_else(|p| p.into_inner()).clone();
                let weak_inner = weak_inner.clone();
                let named = e.payload.get("object").and_then(Value::as_str).zip(e.payload.get("record").and_then(|r| r.get("id")).and_then(Value::as_str));
                let record = match named {
                    Some((object, id)) if object.contains('/') && pkg.holds_data(object, false) => data.get(&pkg, object, id).ok().flatten().map(Value::Object),
                    _ => None,
                };
                let record = record.or_else(|| e.payload.get("record").cloned()).unwrap_or(Value::Null);
                let vars = json!({ "event": { "topic": e.topic.as_ref(), "source": e.source.as_ref() }, "payload": *e.payload, "record": record });
                async move {
                    if let Some(a) = a {
                        a.fire(&weak_inner, vars, None, e.depth).await;
                    }
                    Ok(())
                }
            }})?),
            Trigger::Record { object, on } => {
                // A record trigger is on one of the package's own types (the check refuses
                // others'). The engine hears the data engine's announcement (ids only) and reads
                // the record as the package, with the package's read grant.
                let on = on.clone();
                let full = caller.record_type(object);
                let pkg = caller.clone();
                let data = self.inner.runner.data.clone();
                let topic = crate::data::topic(&full, "*");
                Some(self.inner.runner.engine.events().on_durable_for(caller, &durable_name(&def.name), &topic, move |d: Delivery| {
                    let e = d.event;
                    let what = e.topic.rsplit('.').next().unwrap_or_default();
                    // Only the data engine announces records: anything else on the topic is not
                    // a record change, whatever its payload says.
                    let id = e.payload.get("id").and_then(Value::as_str).filter(|_| on.iter().any(|o| o == what) && e.source.as_ref() == crate::data::ID);
                    let run = id.zip(s.read().unwrap_or_else(|p| p.into_inner()).clone()).map(|(id, a)| {
                        let readable = what != "deleted" && pkg.holds_data(&full, false);
                        let record = if readable { data.get(&pkg, &full, id).ok().flatten() } else { None };
                        let record = record.map(Value::Object).unwrap_or_else(|| json!({ "id": id }));
                        let vars = json!({ "event": { "topic": e.topic.as_ref(), "source": e.source.as_ref() }, "payload": *e.payload, "record": record, "changed": e.payload.get("changed"), "object": full });
                        (a, vars, (full.clone(), id.to_string()))
                    });
                    let weak_inner = weak_inner.clone();
                    async move {
                        if let Some((a, vars, target)) = run {
                            a.fire(&weak_inner, vars, Some(target), e.depth).await;
                        }
                        Ok(())
                    }
                })?)
            }
            Trigger::Schedule(cron) => {
                let spec = JobSpec::new(SCHEDULED, json!({ "package": caller.id(), "automation": def.name }));
                self.inner.runner.jobs.schedule_for(&self.inner.runner.engine, caller, &schedule_name(caller.id(), &def.name), cron, spec)?;
                None
            }
        };
        let running = Arc::new(Running { pkg: caller.clone(), def, sub, runs: AtomicU64::new(0), failures: AtomicU64::new(0), skipped: AtomicU64::new(0) });
        *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(running.clone());
        let old = self.inner.automations.write().unwrap_or_else(|p| p.into_inner()).insert(key, running);
        if let Some(old) = old.and_then(|o| o.sub) {
            self.inner.unsubscribe(caller, old);
        }
        Ok(())
    }

    /// Stop the caller's automations.
    pub fn undefine_all(&self, caller: &PluginContext) {
        self.inner.forget(caller.id());
    }

    /// Wait until no automation run is in flight (runs that a run starts included), at most
    /// `limit`; true when none is. For a short-lived host (the `objectos` command) that made a
    /// change, so the automations it triggered finish before the process ends.
    pub async fn settle(&self, limit: std::time::Duration) -> bool {
        let mut rx = self.inner.in_flight.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|n| *n == 0)).await.is_ok_and(|r| r.is_ok())
    }

    /// Every automation's counters, sorted.
    pub fn stats(&self) -> Vec<AutomationStats> {
        let map = self.inner.automations.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<AutomationStats> = map
            .values()
            .map(|a| AutomationStats { package: a.pkg.id().into(), name: a.def.name.clone(), runs: a.runs.load(Relaxed), failures: a.failures.load(Relaxed), skipped: a.skipped.load(Relaxed) })
            .collect();
        out.sort_by(|a, b| (&a.package, &a.name).cmp(&(&b.package, &b.name)));
        out
    }
}
