//! What a package's files need from its manifest: the engines as dependencies and the
//! permissions the engines will use for it. Enable refuses a package that lacks one; the
//! install check (and `objectos manifest check`) says so first, naming what to add.

use objectos_kernel::model::manifest::{Manifest, Problem};
use objectos_kernel::model::permission::{Pattern, Permission};

use crate::defs::{Action, Definitions, Trigger};

/// Something a package's files need that its manifest lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// An engine, as a dependency (`"<id>": "^0.1"`).
    Dependency { id: String, why: String },
    /// A permission (required).
    Permission { permission: String, why: String },
    /// A topic the package emits, in `provides.events`.
    ProvidedEvent { topic: String, why: String },
}

impl Need {
    /// The problem the check reports for it, with the manifest path to change.
    pub fn problem(&self) -> Problem {
        match self {
            Need::Dependency { id, why } => Problem { path: "dependencies".into(), message: format!("{why} need {id}: add \"{id}\": \"{ENGINE_RANGE}\"") },
            Need::Permission { permission, why } => Problem { path: "permissions".into(), message: format!("{why} need `{permission}`: add it") },
            Need::ProvidedEvent { topic, why } => {
                Problem { path: "provides.events".into(), message: format!("{why} emit `{topic}`, which `provides.events` does not declare: add it (or a pattern covering it)") }
            }
        }
    }

    fn same(&self, other: &Need) -> bool {
        match (self, other) {
            (Need::Dependency { id: a, .. }, Need::Dependency { id: b, .. }) => a == b,
            (Need::Permission { permission: a, .. }, Need::Permission { permission: b, .. }) => a == b,
            (Need::ProvidedEvent { topic: a, .. }, Need::ProvidedEvent { topic: b, .. }) => a == b,
            _ => false,
        }
    }
}

/// The range a package gives the engines it needs.
pub const ENGINE_RANGE: &str = "^0.1";

/// Every dependency and permission `defs` need that `m` does not have (required or optional),
/// as the check reports them.
pub fn missing(m: &Manifest, defs: &Definitions) -> Vec<Problem> {
    needed(m, defs).iter().map(Need::problem).collect()
}

/// Write `needs` into the manifest `json` (a `plugin.json` read as it is, key order kept):
/// dependencies, required permissions and `provides.events`. Returns what it added, as the
/// problems it fixes.
pub fn apply(json: &mut serde_json::Value, needs: &[Need]) -> Vec<Problem> {
    use serde_json::{json, Value};
    let Value::Object(root) = json else { return Vec::new() };
    let mut added = Vec::new();
    for need in needs {
        let done = match need {
            Need::Dependency { id, .. } => {
                let deps = root.entry("dependencies").or_insert_with(|| json!({}));
                deps.as_object_mut().is_some_and(|d| d.insert(id.clone(), json!(ENGINE_RANGE)).is_none())
            }
            Need::Permission { permission, .. } => push(root.entry("permissions").or_insert_with(|| json!([])), permission),
            Need::ProvidedEvent { topic, .. } => {
                let provides = root.entry("provides").or_insert_with(|| json!({}));
                provides.as_object_mut().is_some_and(|p| push(p.entry("events").or_insert_with(|| json!([])), topic))
            }
        };
        if done {
            added.push(need.problem());
        }
    }
    added
}

fn push(list: &mut serde_json::Value, item: &str) -> bool {
    match list.as_array_mut() {
        Some(a) if !a.iter().any(|x| x == item) => {
            a.push(serde_json::Value::String(item.to_string()));
            true
        }
        _ => false,
    }
}

/// Every dependency and permission `defs` need that `m` does not have (required or optional).
pub fn needed(m: &Manifest, defs: &Definitions) -> Vec<Need> {
    let mut out: Vec<Need> = Vec::new();
    let add = |out: &mut Vec<Need>, need: Need| {
        if !out.iter().any(|n| n.same(&need)) {
            out.push(need);
        }
    };
    let dep = |out: &mut Vec<Need>, id: &str, why: &str| {
        if !m.dependencies.contains_key(id) && !m.optional_dependencies.contains_key(id) {
            add(out, Need::Dependency { id: id.into(), why: why.into() });
        }
    };
    let has = |want: &dyn Fn(&Permission) -> bool| m.all_permissions().any(|(p, _)| want(p));
    let perm = |out: &mut Vec<Need>, ok: bool, needed: String, why: &str| {
        if !ok {
            add(out, Need::Permission { permission: needed, why: why.into() });
        }
    };
    let uses = |name: &str| has(&|p| matches!(p, Permission::ServicesUse(pat) if pat.matches(name)));
    let emits = |topic: &str| has(&|p| matches!(p, Permission::EventsEmit(pat) if pat.matches(topic)));
    if !defs.objects.is_empty() {
        dep(&mut out, crate::names::OBJECTS_ID, "record types");
        perm(&mut out, uses(crate::names::DATA_SERVICE), format!("services.use:{}", crate::names::DATA_SERVICE), "record types");
    }
    // A reference to another package's type is checked by looking the referenced record up:
    // reading that type.
    for o in &defs.objects {
        for f in &o.fields {
            let crate::defs::FieldKind::Reference { object } = &f.kind else { continue };
            let full = crate::names::full_type(&m.id, object);
            if crate::names::owner_of(&full) != m.id {
                let ok = has(&|p| matches!(p, Permission::Data { object, write: false } if *object == full || object == "*"));
                perm(&mut out, ok, format!("data.{full}.read"), &format!("references to {full} records ({}.{})", o.name, f.name));
            }
        }
    }
    if !defs.workflows.is_empty() {
        dep(&mut out, crate::names::WORKFLOW_ID, "workflows");
        perm(&mut out, uses(crate::names::WORKFLOW_SERVICE), format!("services.use:{}", crate::names::WORKFLOW_SERVICE), "workflows");
    }
    if !defs.automations.is_empty() {
        dep(&mut out, crate::names::AUTOMATION_ID, "automations");
        perm(&mut out, uses(crate::names::AUTOMATION_SERVICE), format!("services.use:{}", crate::names::AUTOMATION_SERVICE), "automations");
    }
    let mut actions: Vec<(&Action, String)> = Vec::new();
    for w in &defs.workflows {
        for s in &w.states {
            actions.extend(s.entry.iter().chain(&s.exit).map(|a| (a, format!("workflow `{}`'s actions", w.name))));
        }
    }
    for a in &defs.automations {
        if let Trigger::Event(topic) = &a.when {
            let heard = topic.parse::<Pattern>().ok();
            let ok = heard.as_ref().is_some_and(|t| has(&|p| matches!(p, Permission::EventsSubscribe(pat) if pat.covers(t))));
            perm(&mut out, ok, format!("events.subscribe:{topic}"), &format!("automation `{}`'s trigger", a.name));
        }
        actions.extend(a.actions.iter().map(|x| (x, format!("automation `{}`'s actions", a.name))));
    }
    for (action, why) in actions {
        match action {
            Action::Notify { .. } => {
                dep(&mut out, objectos_notification::ID, "notify actions");
                perm(&mut out, uses(objectos_notification::SERVICE), format!("services.use:{}", objectos_notification::SERVICE), &why);
            }
            Action::Emit { topic, .. } | Action::Enqueue { topic, .. } => {
                perm(&mut out, emits(topic), format!("events.emit:{topic}"), &why);
                if !m.provides.events.iter().any(|e| e.parse::<Pattern>().is_ok_and(|p| p.matches(topic))) {
                    add(&mut out, Need::ProvidedEvent { topic: topic.clone(), why: why.clone() });
                }
            }
            Action::Set(_) => {}
        }
    }
    out
}
