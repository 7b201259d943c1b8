//! Running actions (set, emit, notify, enqueue) for a package, with the package's own context
//! and therefore only its grants.

use std::sync::Arc;

use objectos_jobs::{JobSpec, Jobs, Retry};
use objectos_kernel::PluginContext;
use serde_json::{json, Value};

use crate::data::Data;
use crate::defs::Action;

/// Deepest chain of actions triggering automations triggering actions.
pub const MAX_DEPTH: u32 = 8;
/// The jobs handler engines register to emit an event later for a package.
pub(crate) const EMIT_LATER: &str = "emit-later";

/// What the actions act on.
pub(crate) struct Target<'a> {
    pub(crate) object: &'a str,
    pub(crate) id: &'a str,
}

pub(crate) struct Runner {
    pub(crate) data: Arc<Data>,
    pub(crate) jobs: Arc<Jobs>,
    /// The engine's own context (for its jobs).
    pub(crate) engine: PluginContext,
}

impl Runner {
    /// Run `actions` in order for `pkg`; `vars` holds `record` and/or `payload` (templates and
    /// conditions read it; `set` updates `record`). Stops at the first failure.
    pub(crate) async fn run(&self, pkg: &PluginContext, actions: &[Action], target: Option<&Target<'_>>, vars: &mut Value, depth: u32) -> Result<(), String> {
        for (i, action) in actions.iter().enumerate() {
            let step = |e: String| format!("action {} ({}): {e}", i + 1, kind(action));
            match action {
                Action::Set(fields) => {
                    let t = target.ok_or_else(|| step("there is no record to set fields on".into()))?;
                    let change = self.data.update_at_depth(pkg, t.object, t.id, Value::Object(fields.clone()), depth + 1).map_err(|e| step(e.to_string()))?;
                    // Writing is not reading: later actions see the record's fields only with
                    // the package's read grant (templates would show them otherwise).
                    vars["record"] = if pkg.holds_data(t.object, false) { Value::Object(change.record) } else { json!({ "id": t.id }) };
                }
                Action::Emit { topic, data } => {
                    // The engine's keys win over `data` (which the check refuses anyway), and the
                    // chain's depth is the kernel's, not a payload field a package could set. The
                    // record goes by reference: a subscriber reads its fields through the data
                    // service, with its own read grant.
                    let mut payload = data.clone();
                    let (object, id) = record_ref(target, vars);
                    payload.insert("record".into(), id.map_or(Value::Null, |id| json!({ "id": id })));
                    payload.insert("object".into(), object.map_or(Value::Null, Value::String));
                    payload.insert("payload".into(), vars.get("payload").cloned().unwrap_or(Value::Null));
                    pkg.events().emit_in_chain(topic, Value::Object(payload), depth + 1).map_err(|e| step(e.to_string()))?;
                }
                Action::Notify { title, body, level, channels } => {
                    use objectos_notification::{Notice, Notifications};
                    let service = pkg.services().get::<Notifications>(objectos_notification::SERVICE).map_err(|e| step(e.to_string()))?;
                    // The notification engine renders the placeholders, once: a record's value
                    // holding `{{` or `}}` is text, never a placeholder of its own.
                    let notice = Notice {
                        title: Some(title.clone()),
                        body: Some(body.clone()),
                        vars: vars.clone(),
                        level: serde_json::from_value(json!(level)).unwrap_or_default(),
                        channels: channels.clone(),
                        data: json!({ "record": vars.get("record").and_then(|r| r.get("id")) }),
                        ..Default::default()
                    };
                    service.send(pkg, notice).await.map_err(|e| step(e.to_string()))?;
                }
                Action::Enqueue { topic, delay_ms } => {
                    // Checked like an emit, now, so a refusal shows here and not in a job.
                    pkg.events().check(topic).map_err(|e| step(e.to_string()))?;
                    let (object, id) = record_ref(target, vars);
                    let payload = json!({ "package": pkg.id(), "topic": topic, "payload": { "record": id.map(|id| json!({ "id": id })), "object": object, "payload": vars.get("payload") }, "depth": depth + 1 });
                    let spec = JobSpec::new(EMIT_LATER, payload).delay(std::time::Duration::from_millis(*delay_ms)).retry(Retry::exponential(3, std::time::Duration::from_secs(2)));
                    self.jobs.enqueue_for(&self.engine, pkg, spec).map_err(|e| step(e.to_string()))?;
                }
            }
        }
        Ok(())
    }
}

/// The record the actions are about, by reference: the target's type and id, else what the
/// triggering payload names.
fn record_ref(target: Option<&Target<'_>>, vars: &Value) -> (Option<String>, Option<String>) {
    match target {
        Some(t) => (Some(t.object.to_string()), Some(t.id.to_string())),
        None => (vars.get("object").and_then(Value::as_str).map(String::from), vars.get("record").and_then(|r| r.get("id")).and_then(Value::as_str).map(String::from)),
    }
}

fn kind(a: &Action) -> &'static str {
    match a {
        Action::Set(_) => "set",
        Action::Emit { .. } => "emit",
        Action::Notify { .. } => "notify",
        Action::Enqueue { .. } => "enqueue",
    }
}

/// Have `forget(engine, package)` drop a package's definitions when it stops. The
/// subscription holds the engine weakly, so it does not keep a disabled engine alive.
pub(crate) fn forget_when_stopped<T: Send + Sync + 'static>(ctx: &PluginContext, engine: &Arc<T>, forget: fn(&T, &str)) -> objectos_kernel::Result<()> {
    let weak = Arc::downgrade(engine);
    ctx.events().on_plugin_stopped(move |id, _| {
        if let Some(engine) = weak.upgrade() {
            forget(&engine, id);
        }
        Ok(())
    })?;
    Ok(())
}

/// What the workflow and automation engines start with: the data and jobs services, the
/// package contexts they act for, and their `emit-later` jobs handler.
pub(crate) fn start_engine(ctx: &PluginContext) -> objectos_kernel::Result<(Runner, Arc<Packages>)> {
    let data = ctx.services().get::<Data>(crate::data::SERVICE)?;
    let jobs = ctx.services().get::<Jobs>(objectos_jobs::SERVICE)?;
    let packages: Arc<Packages> = Arc::default();
    handle_emit_later(&jobs, ctx, Arc::downgrade(&packages))?;
    Ok((Runner { data, jobs, engine: ctx.clone() }, packages))
}

/// Package contexts an engine acts for, by id.
pub(crate) type Packages = std::sync::RwLock<std::collections::HashMap<String, PluginContext>>;

/// Register the engine's `emit-later` jobs handler: it emits for the package named in the
/// job, with that package's context, if the package is still defined with the engine.
pub(crate) fn handle_emit_later(jobs: &Jobs, engine: &PluginContext, packages: std::sync::Weak<Packages>) -> objectos_kernel::Result<()> {
    jobs.handle(engine, EMIT_LATER, move |run| {
        let packages = packages.clone();
        async move {
            let packages = packages.upgrade().ok_or("the engine is not enabled")?;
            let id = run.payload["package"].as_str().unwrap_or_default().to_string();
            let pkg = packages.read().unwrap_or_else(|p| p.into_inner()).get(&id).cloned();
            let pkg = pkg.ok_or_else(|| format!("{id} is not enabled; its delayed event waits for a retry"))?;
            let topic = run.payload["topic"].as_str().unwrap_or_default();
            let depth = run.payload["depth"].as_u64().map_or(0, |d| d.min(u64::from(objectos_kernel::plugin::MAX_EVENT_DEPTH)) as u32);
            pkg.events().emit_in_chain(topic, run.payload["payload"].clone(), depth)?;
            Ok(())
        }
    })
}
