//! What a package's files need from its manifest: the engines as dependencies and the
//! permissions the engines will use for it. Enable refuses a package that lacks one; the
//! install check (and `objectos manifest check`) says so first, naming what to add.

use objectos_kernel::model::manifest::{Manifest, Problem};
use objectos_kernel::model::permission::{Pattern, Permission};

use crate::defs::{Action, Definitions, Trigger};

/// Every dependency and permission `defs` need that `m` does not have (required or optional).
pub fn missing(m: &Manifest, defs: &Definitions) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::new();
    let dep = |out: &mut Vec<Problem>, id: &str, why: &str| {
        if !m.dependencies.contains_key(id) && !m.optional_dependencies.contains_key(id) && !out.iter().any(|p| p.message.contains(&format!("\"{id}\""))) {
            out.push(Problem { path: "dependencies".into(), message: format!("{why} need {id}: add \"{id}\": \"^0.1\"") });
        }
    };
    let has = |want: &dyn Fn(&Permission) -> bool| m.all_permissions().any(|(p, _)| want(p));
    let perm = |out: &mut Vec<Problem>, ok: bool, needed: String, why: &str| {
        if !ok && !out.iter().any(|p| p.message.contains(&format!("`{needed}`"))) {
            out.push(Problem { path: "permissions".into(), message: format!("{why} need `{needed}`: add it") });
        }
    };
    let uses = |name: &str| has(&|p| matches!(p, Permission::ServicesUse(pat) if pat.matches(name)));
    let emits = |topic: &str| has(&|p| matches!(p, Permission::EventsEmit(pat) if pat.matches(topic)));

    if !defs.objects.is_empty() {
        dep(&mut out, crate::data::ID, "record types");
        perm(&mut out, uses(crate::data::SERVICE), format!("services.use:{}", crate::data::SERVICE), "record types");
    }
    if !defs.workflows.is_empty() {
        dep(&mut out, crate::workflow::ID, "workflows");
        perm(&mut out, uses(crate::workflow::SERVICE), format!("services.use:{}", crate::workflow::SERVICE), "workflows");
    }
    if !defs.automations.is_empty() {
        dep(&mut out, crate::automation::ID, "automations");
        perm(&mut out, uses(crate::automation::SERVICE), format!("services.use:{}", crate::automation::SERVICE), "automations");
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
                    let message = format!("{why} emit `{topic}`, which `provides.events` does not declare: add it (or a pattern covering it)");
                    if !out.iter().any(|p| p.message == message) {
                        out.push(Problem { path: "provides.events".into(), message });
                    }
                }
            }
            Action::Set(_) => {}
        }
    }
    out
}
