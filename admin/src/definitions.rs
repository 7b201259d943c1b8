//! What a package declares (record types, workflows, automations), as a host shows it.

use std::path::Path;

use objectos_declarative::{Action, Definitions, FieldDef, FieldKind, Trigger};
use objectos_kernel::Kernel;
use serde::Serialize;

use crate::{AdminError, Result};

/// A field of a record type, for display.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct FieldView {
    pub name: String,
    pub label: String,
    /// text, number, boolean, date, enum or reference.
    pub kind: String,
    /// Bounds, enum values or the referenced type, in words.
    pub detail: String,
    pub required: bool,
}

/// A record type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ObjectView {
    pub name: String,
    pub label: String,
    pub fields: Vec<FieldView>,
}

/// A state of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct StateView {
    pub name: String,
    /// Entry actions, in words.
    pub entry: Vec<String>,
    /// Exit actions, in words.
    pub exit: Vec<String>,
}

/// A transition of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct TransitionView {
    pub from: String,
    pub to: String,
    pub event: String,
    pub guard: Option<String>,
}

/// A workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct WorkflowView {
    pub name: String,
    pub object: String,
    pub field: String,
    pub initial: String,
    pub states: Vec<StateView>,
    pub transitions: Vec<TransitionView>,
}

/// An automation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct AutomationView {
    pub name: String,
    /// What starts it, in words.
    pub trigger: String,
    pub condition: Option<String>,
    /// Its actions, in words.
    pub actions: Vec<String>,
}

/// What a package declares (nothing, for a built-in).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct DefinitionsView {
    pub objects: Vec<ObjectView>,
    pub workflows: Vec<WorkflowView>,
    pub automations: Vec<AutomationView>,
}

/// What the installed package `id` declares, read from its files (nothing for a built-in).
pub fn package_definitions(kernel: &Kernel, id: &str) -> Result<DefinitionsView> {
    let info = kernel.plugin(id)?;
    let Some(dir) = info.package_dir else { return Ok(DefinitionsView::default()) };
    let defs = objectos_declarative::read_definitions(&info.manifest, Path::new(&dir))
        .map_err(|problems| AdminError::Kernel(objectos_kernel::model::manifest::ManifestErrors { file: format!("{dir}/plugin.json"), problems }.into()))?;
    Ok(definitions(defs))
}

/// A package's record types, workflows and automations, in words where a host shows words.
pub fn definitions(defs: Definitions) -> DefinitionsView {
    let objects = defs
        .objects
        .into_iter()
        .map(|o| ObjectView { name: o.name, label: o.label, fields: o.fields.into_iter().map(field).collect() })
        .collect();
    let workflows = defs
        .workflows
        .into_iter()
        .map(|w| WorkflowView {
            transitions: transitions(&w),
            states: w
                .states
                .iter()
                .map(|s| StateView { name: s.name.clone(), entry: s.entry.iter().map(action).collect(), exit: s.exit.iter().map(action).collect() })
                .collect(),
            name: w.name,
            object: w.object,
            field: w.field,
            initial: w.initial,
        })
        .collect();
    let automations = defs
        .automations
        .into_iter()
        .map(|a| AutomationView {
            trigger: trigger(&a.when),
            condition: a.condition.clone(),
            actions: a.actions.iter().map(action).collect(),
            name: a.name,
        })
        .collect();
    DefinitionsView { objects, workflows, automations }
}

/// Every transition of workflow `w`, state by state.
pub(crate) fn transitions(w: &objectos_declarative::defs::WorkflowDef) -> Vec<TransitionView> {
    w.states
        .iter()
        .flat_map(|s| s.transitions.iter().map(|t| TransitionView { from: s.name.clone(), to: t.to.clone(), event: t.event.clone(), guard: t.guard.clone() }))
        .collect()
}

/// A field, with its type's bounds or values in words.
pub(crate) fn field(f: FieldDef) -> FieldView {
    let (kind, detail) = match &f.kind {
        FieldKind::Text { max_length } => ("text", format!("up to {max_length} characters")),
        FieldKind::Number { min, max } => (
            "number",
            match (min, max) {
                (Some(a), Some(b)) => format!("{a} to {b}"),
                (Some(a), None) => format!("at least {a}"),
                (None, Some(b)) => format!("at most {b}"),
                (None, None) => String::new(),
            },
        ),
        FieldKind::Boolean => ("boolean", String::new()),
        FieldKind::Date => ("date", String::new()),
        FieldKind::Enum { values } => ("enum", values.join(", ")),
        FieldKind::Reference { object } => (
            "reference",
            match object.split_once('/') {
                Some((owner, short)) => format!("→ {short} record of {owner}"),
                None => format!("→ {object} record"),
            },
        ),
    };
    FieldView { name: f.name, label: f.label, kind: kind.into(), detail, required: f.required }
}

/// An action in words.
fn action(a: &Action) -> String {
    match a {
        Action::Set(fields) => format!("set {}", fields.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")),
        Action::Emit { topic, .. } => format!("emit {topic}"),
        Action::Notify { title, level, .. } => format!("notify ({level}) \u{201c}{title}\u{201d}"),
        Action::Enqueue { topic, delay_ms } => format!("emit {topic} after {} s (through jobs)", delay_ms / 1000),
    }
}

/// What starts an automation, in words.
fn trigger(t: &Trigger) -> String {
    match t {
        Trigger::Event(p) => format!("event {p}"),
        Trigger::Record { object, on } => format!("{object} record {}", on.join(" or ")),
        Trigger::Schedule(c) => format!("schedule {c}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use objectos_declarative::read_definitions;
    use objectos_kernel::model::manifest::Manifest;
    use std::path::PathBuf;

    pub(crate) fn sample(name: &str) -> (PathBuf, Manifest) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages").join(name);
        let m = Manifest::parse(&std::fs::read(dir.join("plugin.json")).unwrap(), &format!("{name}/plugin.json")).unwrap();
        (dir, m)
    }

    #[test]
    fn the_crm_sample_reads_in_words() {
        let (dir, m) = sample("crm");
        let view = definitions(read_definitions(&m, &dir).unwrap());

        let opportunity = view.objects.iter().find(|o| o.name == "opportunity").unwrap();
        let field = |name: &str| opportunity.fields.iter().find(|f| f.name == name).unwrap();
        assert_eq!((field("title").kind.as_str(), field("title").detail.as_str(), field("title").required), ("text", "up to 200 characters", true));
        assert_eq!((field("amount").kind.as_str(), field("amount").detail.as_str()), ("number", "at least 0"));
        assert_eq!(field("probability").detail, "0 to 100");
        assert_eq!(field("stage").detail, "prospect, qualified, proposal, won, lost");
        assert_eq!(field("account").detail, "→ account record");

        let workflow = &view.workflows[0];
        assert_eq!((workflow.object.as_str(), workflow.field.as_str(), workflow.initial.as_str()), ("opportunity", "stage", "prospect"));
        let win = workflow.transitions.iter().find(|t| t.event == "win").unwrap();
        assert_eq!((win.from.as_str(), win.to.as_str(), win.guard.as_deref()), ("proposal", "won", Some("amount > 0 and account != null")));
        let proposal = workflow.states.iter().find(|s| s.name == "proposal").unwrap();
        assert_eq!(proposal.entry, ["set probability = 50"]);

        let won = view.automations.iter().find(|a| a.name == "notify-won").unwrap();
        assert_eq!(won.trigger, "event crm.opportunity.won");
        assert_eq!(won.condition.as_deref(), Some("record.amount > 0"));
        assert_eq!(won.actions, ["notify (success) \u{201c}Deal won: {{record.title}}\u{201d}"]);
    }

    #[test]
    fn every_kind_of_field_action_and_trigger_has_words() {
        let f = |kind| super::field(FieldDef { name: "n".into(), label: "N".into(), kind, required: false, default: None, workflow: false });
        assert_eq!(f(FieldKind::Number { min: Some(1.0), max: Some(5.0) }).detail, "1 to 5");
        assert_eq!(f(FieldKind::Number { min: None, max: Some(5.5) }).detail, "at most 5.5");
        assert_eq!(f(FieldKind::Number { min: None, max: None }).detail, "");
        assert_eq!((f(FieldKind::Boolean).kind, f(FieldKind::Date).kind), ("boolean".to_string(), "date".to_string()));

        assert_eq!(action(&Action::Emit { topic: "crm.x".into(), data: Default::default() }), "emit crm.x");
        assert_eq!(action(&Action::Enqueue { topic: "crm.later".into(), delay_ms: 90_000 }), "emit crm.later after 90 s (through jobs)");

        assert_eq!(trigger(&Trigger::Record { object: "invoice".into(), on: vec!["created".into(), "updated".into()] }), "invoice record created or updated");
        assert_eq!(trigger(&Trigger::Schedule("0 9 * * 1".into())), "schedule 0 9 * * 1");
    }
}
