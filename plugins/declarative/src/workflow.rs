//! `com.objectos.workflow`: the state machines packages declare, through the `workflow`
//! service. A transition needs the caller's `data.<type>.write` grant (it writes the state
//! field); entry and exit actions run with the declaring package's grants. Every record keeps
//! its history, and every transition is audited by the caller.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use objectos_kernel::{HookResult, KernelError, Plugin, PluginContext, async_trait};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::actions::{forget_when_stopped, start_engine, Packages, Runner, Target};
use crate::caller::Caller;
use crate::names::Record;
use crate::defs::WorkflowDef;
use crate::util::now_ms;

/// The plugin's id.
pub const ID: &str = crate::names::WORKFLOW_ID;
/// The service name.
pub const SERVICE: &str = crate::names::WORKFLOW_SERVICE;
/// The embedded manifest.
pub const MANIFEST: &str = include_str!("../manifests/workflow.json");
/// The plugin's translations.
pub const TRANSLATIONS: &[(&str, &str)] = &[("translations/en.json", include_str!("../translations/workflow.en.json")), ("translations/zh-CN.json", include_str!("../translations/workflow.zh-CN.json"))];
/// History entries kept per record.
pub const MAX_HISTORY: usize = 1_000;

/// Why a transition did not happen.
#[derive(Debug)]
pub enum WorkflowError {
    /// The event does not leave the record's state.
    Illegal {
        /// The record type.
        object: String,
        /// The record's state.
        state: String,
        /// The event asked for.
        event: String,
        /// The events that do leave this state.
        allowed: Vec<String>,
    },
    /// The transition exists but its guard does not hold for the record.
    Guard {
        /// The event.
        event: String,
        /// The guard as written.
        guard: String,
        /// Why, when evaluating it failed.
        reason: Option<String>,
    },
    /// Anything else (a missing grant, a record that does not exist, an exit action that failed).
    Kernel(KernelError),
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkflowError::Illegal { object, state, event, allowed } if allowed.is_empty() => {
                write!(f, "`{event}` is not allowed: the {object} is in `{state}`, a final state")
            }
            WorkflowError::Illegal { object, state, event, allowed } => {
                write!(f, "`{event}` is not allowed while the {object} is in `{state}`; allowed: {}", allowed.join(", "))
            }
            WorkflowError::Guard { event, guard, reason: None } => write!(f, "`{event}` is refused: its condition `{guard}` does not hold for this record"),
            WorkflowError::Guard { event, guard, reason: Some(r) } => write!(f, "`{event}` is refused: its condition `{guard}` cannot be checked ({r})"),
            WorkflowError::Kernel(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for WorkflowError {}

impl From<KernelError> for WorkflowError {
    fn from(e: KernelError) -> Self {
        WorkflowError::Kernel(e)
    }
}

/// One step of a record's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The state left.
    pub from: String,
    /// The state entered.
    pub to: String,
    /// The event.
    pub event: String,
    /// The plugin that asked.
    pub by: String,
    /// When (ms).
    pub at: i64,
}

/// What a transition did.
#[derive(Debug, Clone, PartialEq)]
pub struct Transitioned {
    /// The state left.
    pub from: String,
    /// The state entered.
    pub to: String,
    /// The record afterwards (entry actions included).
    pub record: Record,
    /// Entry actions that failed (the transition stands; they are logged to the package).
    pub warnings: Vec<String>,
}

/// The plugin's code.
#[derive(Default)]
pub struct WorkflowPlugin;

#[async_trait]
impl Plugin for WorkflowPlugin {
    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        let (runner, packages) = start_engine(ctx)?;
        let inner = Arc::new(Inner { ctx: ctx.clone(), runner, defs: RwLock::default(), packages, locks: tokio::sync::Mutex::default() });
        forget_when_stopped(ctx, &inner, Inner::forget)?;
        crate::util::delete_when_uninstalled(ctx, "h", |_| {})?;
        let workflow = Arc::new(Workflow { inner });
        ctx.services().register_arc(SERVICE, workflow.clone())?;
        ctx.services().expose(SERVICE, workflow)?;
        Ok(())
    }
}

/// `workflow` for code in the sandbox: `transition {object, id, event}` (the record after,
/// `from`, `to` and `warnings`), `allowed {object, id}` (the events allowed now) and
/// `history {object, id}`.
impl objectos_kernel::plugin::JsonService for Workflow {
    fn call(&self, caller: &PluginContext, method: &str, args: Value) -> objectos_kernel::Result<Value> {
        use objectos_kernel::plugin::{no_method, str_arg};
        let arg = |key| str_arg(SERVICE, method, &args, key);
        match method {
            "transition" => {
                let (object, id, event) = (arg("object")?, arg("id")?, arg("event")?);
                let done = objectos_kernel::util::block_on(SERVICE, self.transition(caller, object, id, event))?;
                let t = done.map_err(|e| match e {
                    WorkflowError::Kernel(k) => k,
                    other => KernelError::service(SERVICE, other.to_string()),
                })?;
                Ok(serde_json::json!({ "from": t.from, "to": t.to, "record": t.record, "warnings": t.warnings }))
            }
            "allowed" => {
                let full = caller.record_type(arg("object")?);
                let data = &self.inner.runner.data;
                let record = data.get(caller, &full, arg("id")?)?.ok_or_else(|| KernelError::service(SERVICE, format!("no {full} record `{}`", args["id"])))?;
                Ok(serde_json::json!(self.allowed(&full, &record)))
            }
            "history" => Ok(serde_json::to_value(self.history(caller, arg("object")?, arg("id")?)?).unwrap_or(Value::Null)),
            _ => Err(no_method(SERVICE, method, &["transition", "allowed", "history"])),
        }
    }
}

struct Inner {
    ctx: PluginContext,
    runner: Runner,
    /// By record type: the owning package's context and the workflow.
    defs: RwLock<HashMap<String, (PluginContext, Arc<WorkflowDef>)>>,
    packages: Arc<Packages>,
    /// Records in transition in this process (one at a time per record).
    locks: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Inner {
    fn forget(&self, owner: &str) {
        self.defs.write().unwrap_or_else(|p| p.into_inner()).retain(|_, (ctx, _)| ctx.id() != owner);
        self.packages.write().unwrap_or_else(|p| p.into_inner()).remove(owner);
    }
}

/// The `workflow` service.
pub struct Workflow {
    inner: Arc<Inner>,
}

impl Workflow {
    /// Declare a workflow owned by the caller (a package's runtime does it when enabled). One
    /// workflow per record type.
    pub fn define(&self, caller: &PluginContext, def: WorkflowDef) -> objectos_kernel::Result<()> {
        // A package's workflow is on one of its own types (the check refuses others').
        let full = caller.record_type(&def.object);
        crate::util::adopt_unowned(&self.inner.ctx, "h", &def.object, &full)?;
        let mut defs = self.inner.defs.write().unwrap_or_else(|p| p.into_inner());
        if let Some((owner, existing)) = defs.get(&full) {
            if owner.id() != caller.id() || existing.name != def.name {
                return Err(KernelError::service(SERVICE, format!("{full} records already follow workflow `{}` of {}", existing.name, owner.id())));
            }
        }
        defs.insert(full, (caller.clone(), Arc::new(def)));
        self.inner.packages.write().unwrap_or_else(|p| p.into_inner()).insert(caller.id().to_string(), caller.clone());
        Ok(())
    }

    /// Forget the caller's workflows.
    pub fn undefine_all(&self, caller: &PluginContext) {
        self.inner.forget(caller.id());
    }

    /// The workflow records of `object` (a full type name) follow, if any.
    pub fn definition(&self, object: &str) -> Option<Arc<WorkflowDef>> {
        self.inner.defs.read().unwrap_or_else(|p| p.into_inner()).get(object).map(|(_, d)| d.clone())
    }

    /// The events that leave `record`'s current state now (guards not evaluated).
    pub fn allowed(&self, object: &str, record: &Record) -> Vec<String> {
        let Some(def) = self.definition(object) else { return Vec::new() };
        let state = record.get(&def.field).and_then(Value::as_str).unwrap_or(&def.initial);
        def.state(state).map(|s| s.transitions.iter().map(|t| t.event.clone()).collect()).unwrap_or_default()
    }

    /// Fire `event` on record `id` of `object` (a full type name, or the short name of one of
    /// the caller's own types).
    pub async fn transition(&self, caller: &impl Caller, object: &str, id: &str, event: &str) -> Result<Transitioned, WorkflowError> {
        let full = caller.record_type(object)?;
        let object = full.as_str();
        let inner = &self.inner;
        let (owner, def) = inner
            .defs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(object)
            .cloned()
            .ok_or_else(|| KernelError::service(SERVICE, format!("{object} records follow no workflow")))?;
        let lock_key = format!("{object}:{id}");
        let lock = inner.locks.lock().await.entry(lock_key.clone()).or_default().clone();
        let result = {
            let _one_at_a_time = lock.lock().await;
            self.transition_locked(caller, object, id, event, owner, def).await
        };
        // Drop the record's lock once no other transition waits on it.
        let mut locks = inner.locks.lock().await;
        if Arc::strong_count(&lock) <= 2 {
            locks.remove(&lock_key);
        }
        result
    }

    async fn transition_locked(&self, caller: &impl Caller, object: &str, id: &str, event: &str, owner: PluginContext, def: Arc<WorkflowDef>) -> Result<Transitioned, WorkflowError> {
        let inner = &self.inner;
        let data = &inner.runner.data;
        // The caller must be able to write the state field; check before anything runs.
        caller.require_data(object, true, "workflow.transition")?;
        let record = data.get(caller, object, id)?.ok_or_else(|| KernelError::service(SERVICE, format!("no {object} record `{id}`")))?;
        let from = record.get(&def.field).and_then(Value::as_str).unwrap_or(&def.initial).to_string();
        let state = def.state(&from).ok_or_else(|| KernelError::service(SERVICE, format!("the {object} is in `{from}`, which workflow `{}` does not know", def.name)))?;
        let Some(t) = state.transitions.iter().find(|t| t.event == event) else {
            return Err(WorkflowError::Illegal { object: def.object.clone(), state: from, event: event.into(), allowed: state.transitions.iter().map(|t| t.event.clone()).collect() });
        };
        if let (Some(expr), Some(src)) = (&t.guard_expr, &t.guard) {
            match expr.test(&Value::Object(record.clone())) {
                Ok(true) => {}
                Ok(false) => return Err(WorkflowError::Guard { event: event.into(), guard: src.clone(), reason: None }),
                Err(e) => return Err(WorkflowError::Guard { event: event.into(), guard: src.clone(), reason: Some(e.to_string()) }),
            }
        }
        let target = Target { object, id };
        // The actions see the record's fields only if the owning package may read its type.
        let shown = |record: Record| if owner.holds_data(object, false) { Value::Object(record) } else { json!({ "id": id }) };
        let mut vars = json!({ "record": shown(record.clone()) });
        inner.runner.run(&owner, &state.exit, Some(&target), &mut vars, 0).await.map_err(|e| KernelError::service(SERVICE, format!("leaving `{from}`: {e}")))?;
        let to = t.to.clone();
        let change = data.update_state(caller, object, id, json!({ def.field.clone(): to }), 0)?;
        self.append_history(object, id, Step { from: from.clone(), to: to.clone(), event: event.into(), by: caller.who().into(), at: now_ms() })?;
        let _ = caller.audit("workflow.transitioned", json!({ "object": object, "id": id, "workflow": def.name, "event": event, "from": from, "to": to }));
        vars["record"] = shown(change.record.clone());
        let mut warnings = Vec::new();
        if let Some(entered) = def.state(&to) {
            if let Err(e) = inner.runner.run(&owner, &entered.entry, Some(&target), &mut vars, 0).await {
                owner.logger().error(format!("{object} {id}: entering `{to}`: {e}"));
                warnings.push(e);
            }
        }
        // The caller gets the record as it is now (it was checked for the read grant above).
        let record = data.get(caller, object, id)?.unwrap_or(change.record);
        Ok(Transitioned { from, to, record, warnings })
    }

    fn append_history(&self, object: &str, id: &str, step: Step) -> objectos_kernel::Result<()> {
        let storage = self.inner.ctx.storage();
        let key = format!("h:{object}:{id}");
        for _ in 0..8 {
            let old = storage.get(&key)?;
            let mut steps: Vec<Value> = old.as_ref().and_then(Value::as_array).cloned().unwrap_or_default();
            steps.push(serde_json::to_value(&step).unwrap_or_default());
            if steps.len() > MAX_HISTORY {
                steps.drain(..steps.len() - MAX_HISTORY);
            }
            if storage.swap(&key, old.as_ref(), Some(Value::Array(steps)))? {
                return Ok(());
            }
        }
        Err(KernelError::service(SERVICE, format!("the history of {object} `{id}` kept changing")))
    }

    /// A record's transitions, oldest first. Needs `data.<object>.read`.
    pub fn history(&self, caller: &impl Caller, object: &str, id: &str) -> objectos_kernel::Result<Vec<Step>> {
        let object = &caller.record_type(object)?;
        caller.require_data(object, false, "workflow.history")?;
        let steps = self.inner.ctx.storage().get(&format!("h:{object}:{id}"))?;
        Ok(steps.and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default())
    }
}
