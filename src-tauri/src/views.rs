//! What the console shows, built from the kernel's and the plugins' data: the structs the UI
//! renders, and the words in them (field bounds, triggers, actions, update messages). Plain
//! functions of their inputs, so they are tested here without a window or a kernel; the
//! commands fetch the data and hand it over.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;

use objectos_builtins::declarative::{Action, Definitions, FieldDef, FieldKind, Trigger};
use objectos_builtins::notification::InboxItem;
use objectos_kernel::model::manifest::Manifest;
use serde::Serialize;

// ---- samples ---------------------------------------------------------------------------------

/// A sample package shipped with the app.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub path: String,
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub installed: bool,
}

/// The samples found (each folder with its checked manifest), marked installed where
/// `installed` (plugin ids) has theirs.
pub fn samples<'a>(found: impl IntoIterator<Item = (&'a Path, Manifest)>, installed: &[String]) -> Vec<Sample> {
    found
        .into_iter()
        .map(|(dir, m)| Sample {
            path: dir.display().to_string(),
            installed: installed.contains(&m.id),
            id: m.id,
            name: m.name,
            version: m.version.to_string(),
            description: m.description,
        })
        .collect()
}

// ---- the notification centre -----------------------------------------------------------------

/// One in-app notification.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct InboxEntry {
    pub id: String,
    pub plugin: String,
    pub title: String,
    pub body: String,
    /// info, success, warning or error.
    pub level: String,
    pub created_at: f64,
    pub read: bool,
}

/// The notification centre: whether the notification plugin is enabled, the unread count,
/// and the newest items.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct InboxView {
    pub available: bool,
    pub unread: u32,
    pub items: Vec<InboxEntry>,
}

impl InboxView {
    /// The notification plugin is not enabled.
    pub fn unavailable() -> Self {
        InboxView { available: false, unread: 0, items: Vec::new() }
    }
}

/// The inbox's `items` (newest first, as listed) and its `unread` count.
pub fn inbox(items: Vec<InboxItem>, unread: usize) -> InboxView {
    let items = items
        .into_iter()
        .map(|i| InboxEntry {
            level: serde_json::to_value(i.message.level).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            id: i.message.id,
            plugin: i.message.plugin,
            title: i.message.title,
            body: i.message.body,
            created_at: i.message.created_at as f64,
            read: i.read,
        })
        .collect();
    InboxView { available: true, unread: unread.try_into().unwrap_or(u32::MAX), items }
}

// ---- translated plugin names -----------------------------------------------------------------

/// A plugin's name and description in a locale, where a translation exists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct PluginText {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Translated plugin names and descriptions.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct PluginTexts {
    /// Whether the translations plugin is enabled.
    pub available: bool,
    /// Locales some plugin is translated into.
    pub locales: Vec<String>,
    /// By plugin id; plugins without a translation are absent.
    pub texts: BTreeMap<String, PluginText>,
}

impl PluginTexts {
    /// The translations plugin is not enabled.
    pub fn unavailable() -> Self {
        PluginTexts { available: false, locales: Vec::new(), texts: BTreeMap::new() }
    }
}

/// The keys a plugin's translations name it and describe it by.
pub const NAME_KEY: &str = "plugin.name";
/// See [`NAME_KEY`].
pub const DESCRIPTION_KEY: &str = "plugin.description";

/// The translated name and description of each plugin in `ids`: `translate(plugin id, key)`
/// is the text where one was found. Plugins with neither are left out.
pub fn plugin_texts(ids: impl IntoIterator<Item = String>, locales: Vec<String>, translate: impl Fn(&str, &str) -> Option<String>) -> PluginTexts {
    let texts = ids
        .into_iter()
        .filter_map(|id| {
            let t = PluginText { name: translate(&id, NAME_KEY), description: translate(&id, DESCRIPTION_KEY) };
            (t.name.is_some() || t.description.is_some()).then_some((id, t))
        })
        .collect();
    PluginTexts { available: true, locales, texts }
}

// ---- a package's declarations ----------------------------------------------------------------

/// A field of a record type, for display.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
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
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct ObjectView {
    pub name: String,
    pub label: String,
    pub fields: Vec<FieldView>,
}

/// A state of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct StateView {
    pub name: String,
    /// Entry actions, in words.
    pub entry: Vec<String>,
    /// Exit actions, in words.
    pub exit: Vec<String>,
}

/// A transition of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct TransitionView {
    pub from: String,
    pub to: String,
    pub event: String,
    pub guard: Option<String>,
}

/// A workflow.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct WorkflowView {
    pub name: String,
    pub object: String,
    pub field: String,
    pub initial: String,
    pub states: Vec<StateView>,
    pub transitions: Vec<TransitionView>,
}

/// An automation.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct AutomationView {
    pub name: String,
    /// What starts it, in words.
    pub trigger: String,
    pub condition: Option<String>,
    /// Its actions, in words.
    pub actions: Vec<String>,
}

/// What a package declares (nothing, for a built-in).
#[derive(Debug, Clone, Default, PartialEq, Serialize, specta::Type)]
pub struct DefinitionsView {
    pub objects: Vec<ObjectView>,
    pub workflows: Vec<WorkflowView>,
    pub automations: Vec<AutomationView>,
}

/// A package's record types, workflows and automations, in words where the UI shows words.
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
            transitions: w
                .states
                .iter()
                .flat_map(|s| {
                    s.transitions.iter().map(|t| TransitionView { from: s.name.clone(), to: t.to.clone(), event: t.event.clone(), guard: t.guard.clone() })
                })
                .collect(),
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

/// A field as a form needs it.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct RecordField {
    pub name: String,
    pub label: String,
    /// text, number, boolean, date, enum or reference.
    pub kind: String,
    pub required: bool,
    /// Enum values, in order.
    pub values: Vec<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub max_length: Option<u32>,
    /// The full name of the type a reference field points at.
    pub reference: Option<String>,
    /// What a new record gets when the field is not given.
    pub default: Option<serde_json::Value>,
    /// Bounds, values or the referenced type, in words.
    pub detail: String,
}

/// A record type as the Records view shows it: whose it is, its fields and its workflow.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct RecordType {
    /// The full name, `<owner>/<type>`.
    pub name: String,
    pub label: String,
    pub owner: String,
    pub owner_name: String,
    pub fields: Vec<RecordField>,
    /// The field holding the workflow's state, the initial state, and its transitions.
    pub workflow: Option<RecordWorkflow>,
}

/// A workflow as the Records view needs it.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct RecordWorkflow {
    pub name: String,
    pub field: String,
    pub initial: String,
    pub transitions: Vec<TransitionView>,
}

/// The record types installed now, sorted by owner name then label.
pub fn record_types(types: Vec<(String, String, std::sync::Arc<objectos_builtins::declarative::defs::ObjectDef>)>, workflow: impl Fn(&str) -> Option<std::sync::Arc<objectos_builtins::declarative::defs::WorkflowDef>>, owner_name: impl Fn(&str) -> String) -> Vec<RecordType> {
    let mut out: Vec<RecordType> = types
        .into_iter()
        .map(|(full, owner, def)| {
            let fields = def
                .fields
                .iter()
                .map(|f| {
                    let view = field(f.clone());
                    let (values, min, max, max_length, reference) = match &f.kind {
                        FieldKind::Enum { values } => (values.clone(), None, None, None, None),
                        FieldKind::Number { min, max } => (Vec::new(), *min, *max, None, None),
                        FieldKind::Text { max_length } => (Vec::new(), None, None, Some(*max_length as u32), None),
                        FieldKind::Reference { object } => (Vec::new(), None, None, None, Some(objectos_builtins::declarative::data::full_type(&owner, object))),
                        _ => (Vec::new(), None, None, None, None),
                    };
                    // Another package's type is named by that package's name, as the console shows it.
                    let detail = match (&reference, &f.kind) {
                        (Some(target), FieldKind::Reference { object }) if object.contains('/') => {
                            let (theirs, short) = target.split_once('/').unwrap_or_default();
                            format!("→ {short} record of {}", owner_name(theirs))
                        }
                        _ => view.detail,
                    };
                    RecordField { name: view.name, label: view.label, kind: view.kind, required: view.required, values, min, max, max_length, reference, default: f.default.clone(), detail }
                })
                .collect();
            let workflow = workflow(&full).map(|w| RecordWorkflow {
                name: w.name.clone(),
                field: w.field.clone(),
                initial: w.initial.clone(),
                transitions: w.states.iter().flat_map(|s| s.transitions.iter().map(|t| TransitionView { from: s.name.clone(), to: t.to.clone(), event: t.event.clone(), guard: t.guard.clone() })).collect(),
            });
            RecordType { label: def.label.clone(), owner_name: owner_name(&owner), name: full, owner, fields, workflow }
        })
        .collect();
    out.sort_by(|a, b| (&a.owner_name, &a.label).cmp(&(&b.owner_name, &b.label)));
    out
}

/// A field, with its type's bounds or values in words.
fn field(f: FieldDef) -> FieldView {
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

// ---- updates ---------------------------------------------------------------------------------

/// What the update check found.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum UpdateStatus {
    UpToDate { current: String },
    Available { current: String, version: String, notes: Option<String> },
    Unreachable { message: String },
}

/// The update check as it went for the app at version `current`: `Ok(Some((version,
/// notes)))` when a newer version is offered, `Ok(None)` when none is, `Err` when the update
/// server could not be asked.
pub fn update_status(current: &str, checked: Result<Option<(String, Option<String>)>, impl Display>) -> UpdateStatus {
    let current = current.to_string();
    match checked {
        Ok(Some((version, notes))) => UpdateStatus::Available { current, version, notes },
        Ok(None) => UpdateStatus::UpToDate { current },
        Err(e) => UpdateStatus::Unreachable {
            message: format!("Could not reach the update server ({e}). You may be offline; ObjectOS works fully offline, so check again later."),
        },
    }
}

/// The updater itself could not be set up (its configuration is wrong).
pub fn updater_unconfigured(e: impl Display) -> UpdateStatus {
    UpdateStatus::Unreachable { message: format!("the updater is not configured: {e}") }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use objectos_builtins::declarative::read_definitions;
    use objectos_builtins::notification::{Level, Message};
    use std::path::PathBuf;

    fn crm_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages/crm")
    }

    fn crm_manifest() -> Manifest {
        let dir = crm_dir();
        Manifest::parse(&std::fs::read(dir.join("plugin.json")).unwrap(), "crm/plugin.json").unwrap()
    }

    #[test]
    fn a_reference_to_another_packages_type_names_it_and_its_package() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages/invoicing");
        let m = Manifest::parse(&std::fs::read(dir.join("plugin.json")).unwrap(), "invoicing/plugin.json").unwrap();
        let defs = read_definitions(&m, &dir).unwrap();
        let invoice = std::sync::Arc::new(defs.objects[0].clone());
        let names = |id: &str| if id == "com.acme.crm" { "Small CRM".to_string() } else { id.to_string() };
        let types = record_types(vec![("com.acme.invoicing/invoice".into(), "com.acme.invoicing".into(), invoice)], |_| None, names);
        let field = types[0].fields.iter().find(|f| f.name == "opportunity").unwrap();
        assert_eq!(field.reference.as_deref(), Some("com.acme.crm/opportunity"), "the form lists the CRM's deals");
        assert_eq!(field.detail, "→ opportunity record of Small CRM");
    }

    #[test]
    fn a_sample_is_installed_when_a_plugin_of_its_id_is() {
        let dir = crm_dir();
        let fresh = samples([(dir.as_path(), crm_manifest())], &["com.acme.contacts".into()]);
        assert_eq!(fresh.len(), 1);
        assert_eq!((fresh[0].id.as_str(), fresh[0].version.as_str()), ("com.acme.crm", crm_manifest().version.to_string().as_str()));
        assert_eq!(fresh[0].path, dir.display().to_string());
        assert!(!fresh[0].installed);
        assert!(samples([(dir.as_path(), crm_manifest())], &["com.acme.crm".into()])[0].installed);
    }

    #[test]
    fn inbox_items_keep_their_order_and_show_their_level_as_a_word() {
        let item = |id: &str, level: Level, read: bool| InboxItem {
            message: Message {
                id: id.into(),
                plugin: "com.acme.backup".into(),
                title: "Backup finished".into(),
                body: "All good".into(),
                level,
                recipient: None,
                data: serde_json::Value::Null,
                created_at: 1_700_000_000_000,
                from_package: false,
            },
            read,
        };
        let view = inbox(vec![item("2", Level::Warning, false), item("1", Level::Success, true)], 1);
        assert!(view.available);
        assert_eq!(view.unread, 1);
        assert_eq!(view.items.iter().map(|i| (i.id.as_str(), i.level.as_str(), i.read)).collect::<Vec<_>>(), [("2", "warning", false), ("1", "success", true)]);
        assert_eq!(view.items[0].created_at, 1_700_000_000_000.0);
        assert!(!InboxView::unavailable().available);
    }

    #[test]
    fn plugin_texts_leave_out_plugins_without_a_translation() {
        let ids = ["com.objectos.cache", "com.acme.crm", "com.objectos.jobs"].map(String::from);
        let texts = plugin_texts(ids, vec!["zh-CN".into()], |id, key| match (id, key) {
            ("com.objectos.cache", NAME_KEY) => Some("缓存".into()),
            ("com.objectos.jobs", DESCRIPTION_KEY) => Some("后台任务".into()),
            _ => None,
        });
        assert!(texts.available);
        assert_eq!(texts.locales, ["zh-CN"]);
        assert_eq!(texts.texts.keys().collect::<Vec<_>>(), ["com.objectos.cache", "com.objectos.jobs"], "the untranslated crm is left out");
        assert_eq!(texts.texts["com.objectos.cache"], PluginText { name: Some("缓存".into()), description: None });
        assert_eq!(texts.texts["com.objectos.jobs"], PluginText { name: None, description: Some("后台任务".into()) });
        assert!(!PluginTexts::unavailable().available);
    }

    #[test]
    fn the_crm_sample_reads_in_words() {
        let defs = read_definitions(&crm_manifest(), &crm_dir()).unwrap();
        let view = definitions(defs);

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
        let f = |kind| field(FieldDef { name: "n".into(), label: "N".into(), kind, required: false, default: None, workflow: false });
        assert_eq!(f(FieldKind::Number { min: Some(1.0), max: Some(5.0) }).detail, "1 to 5");
        assert_eq!(f(FieldKind::Number { min: None, max: Some(5.5) }).detail, "at most 5.5");
        assert_eq!(f(FieldKind::Number { min: None, max: None }).detail, "");
        assert_eq!((f(FieldKind::Boolean).kind, f(FieldKind::Date).kind), ("boolean".to_string(), "date".to_string()));

        assert_eq!(action(&Action::Emit { topic: "crm.x".into(), data: Default::default() }), "emit crm.x");
        assert_eq!(action(&Action::Enqueue { topic: "crm.later".into(), delay_ms: 90_000 }), "emit crm.later after 90 s (through jobs)");

        assert_eq!(trigger(&Trigger::Record { object: "invoice".into(), on: vec!["created".into(), "updated".into()] }), "invoice record created or updated");
        assert_eq!(trigger(&Trigger::Schedule("0 9 * * 1".into())), "schedule 0 9 * * 1");
    }

    #[test]
    fn the_update_check_says_what_it_found_or_why_not() {
        assert_eq!(update_status("0.1.0", Ok::<_, String>(None)), UpdateStatus::UpToDate { current: "0.1.0".into() });
        assert_eq!(
            update_status("0.1.0", Ok::<_, String>(Some(("0.2.0".into(), Some("Faster".into()))))),
            UpdateStatus::Available { current: "0.1.0".into(), version: "0.2.0".into(), notes: Some("Faster".into()) }
        );
        let UpdateStatus::Unreachable { message } = update_status("0.1.0", Err("dns error")) else { panic!("unreachable expected") };
        assert!(message.starts_with("Could not reach the update server (dns error). You may be offline"), "{message}");
        assert_eq!(updater_unconfigured("no pubkey"), UpdateStatus::Unreachable { message: "the updater is not configured: no pubkey".into() });
    }
}
