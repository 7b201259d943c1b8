//! Thin commands: each takes the app state, makes one kernel call, converts the error.

use std::path::PathBuf;

use objectos_kernel::model::audit::{to_csv as audit_to_csv, AuditDetail, AuditQuery, AuditRecord, Verification};
use objectos_kernel::model::lifecycle::Action;
use objectos_kernel::model::log::{Level, LogQuery, LogRecord};
use objectos_kernel::model::views::{BuiltinPolicy, GrantRequest, Graph, InstallOutcome, PluginInfo};
use serde::Serialize;
use tauri::State;

use crate::error::{CmdResult, CommandError};
use crate::AppState;

/// Every installed plugin.
#[tauri::command]
#[specta::specta]
pub async fn list_plugins(state: State<'_, AppState>) -> CmdResult<Vec<PluginInfo>> {
    Ok(state.kernel.plugins()?)
}

/// One plugin.
#[tauri::command]
#[specta::specta]
pub async fn get_plugin(state: State<'_, AppState>, id: String) -> CmdResult<PluginInfo> {
    Ok(state.kernel.plugin(&id)?)
}

/// Run a lifecycle action; returns the plugin afterwards.
#[tauri::command]
#[specta::specta]
pub async fn plugin_action(state: State<'_, AppState>, id: String, action: Action, with_deps: bool, cascade: bool) -> CmdResult<PluginInfo> {
    let k = &state.kernel;
    match action {
        Action::Load => k.load(&id).await?,
        Action::Enable => k.enable(&id, with_deps).await?,
        Action::Disable => k.disable(&id, cascade).await?,
        Action::Unload => k.unload(&id).await?,
        Action::Uninstall => {
            k.uninstall(&id).await?;
            return Err(CommandError::other("uninstalled", format!("{id} was uninstalled")));
        }
    }
    Ok(k.plugin(&id)?)
}

/// Install or upgrade a package from a folder or `.zip`.
#[tauri::command]
#[specta::specta]
pub async fn install_package(state: State<'_, AppState>, path: String, force: bool) -> CmdResult<InstallOutcome> {
    Ok(state.kernel.install_package(&PathBuf::from(path), force).await?)
}

/// A sample package shipped with the app.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub path: String,
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub installed: bool,
}

/// The sample packages shipped with the app, and whether each is installed.
#[tauri::command]
#[specta::specta]
pub async fn list_samples(state: State<'_, AppState>) -> CmdResult<Vec<Sample>> {
    let installed: Vec<String> = state.kernel.plugins()?.into_iter().map(|p| p.manifest.id).collect();
    Ok(state
        .samples
        .iter()
        .filter_map(|dir| {
            let m = objectos_kernel::package::check_package(dir).ok()?;
            Some(Sample {
                path: dir.display().to_string(),
                installed: installed.contains(&m.id),
                id: m.id,
                name: m.name,
                version: m.version.to_string(),
                description: m.description,
            })
        })
        .collect())
}

/// Approve permissions (`None`: everything the plugin requests).
#[tauri::command]
#[specta::specta]
pub async fn grant_permissions(state: State<'_, AppState>, id: String, permissions: Option<Vec<String>>) -> CmdResult<PluginInfo> {
    let req = permissions.map_or(GrantRequest::All, GrantRequest::Some);
    state.kernel.grant(&id, req)?;
    Ok(state.kernel.plugin(&id)?)
}

/// Withdraw grants; a required one disables the plugin (cascading to dependents if asked).
#[tauri::command]
#[specta::specta]
pub async fn revoke_permissions(state: State<'_, AppState>, id: String, permissions: Vec<String>, cascade: bool) -> CmdResult<PluginInfo> {
    state.kernel.revoke(&id, &permissions, cascade).await?;
    Ok(state.kernel.plugin(&id)?)
}

/// The dependency graph.
#[tauri::command]
#[specta::specta]
pub async fn dependency_graph(state: State<'_, AppState>) -> CmdResult<Graph> {
    Ok(state.kernel.graph())
}

/// Stored log lines, oldest first.
#[tauri::command]
#[specta::specta]
pub async fn query_logs(
    state: State<'_, AppState>,
    plugin: Option<String>,
    min_level: Option<Level>,
    search: Option<String>,
    after_id: Option<f64>,
    limit: Option<u32>,
) -> CmdResult<Vec<LogRecord>> {
    let q = LogQuery { plugin, min_level, search: search.filter(|s| !s.is_empty()), after_id: after_id.map(|v| v as i64), limit };
    Ok(state.kernel.logs(&q)?)
}

fn audit_query(plugin: Option<String>, action: Option<String>, actor: Option<String>, since: Option<f64>, limit: Option<u32>) -> AuditQuery {
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    AuditQuery { plugin: nonempty(plugin), action: nonempty(action), actor: nonempty(actor), since: since.map(|v| v as i64), after_id: None, limit }
}

/// Stored audit records, oldest first.
#[tauri::command]
#[specta::specta]
pub async fn query_audit(
    state: State<'_, AppState>,
    plugin: Option<String>,
    action: Option<String>,
    actor: Option<String>,
    since: Option<f64>,
    limit: Option<u32>,
) -> CmdResult<Vec<AuditRecord>> {
    Ok(state.kernel.audit(&audit_query(plugin, action, actor, since, limit))?)
}

/// Walk the audit chain.
#[tauri::command]
#[specta::specta]
pub async fn verify_audit(state: State<'_, AppState>) -> CmdResult<Verification> {
    Ok(state.kernel.verify_audit()?)
}

/// Export format.
#[derive(Debug, Clone, Copy, serde::Deserialize, specta::Type)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Json,
    Csv,
}

/// Write the (filtered) audit trail to `path`; returns the number of records.
#[tauri::command]
#[specta::specta]
pub async fn export_audit(
    state: State<'_, AppState>,
    path: String,
    format: ExportFormat,
    plugin: Option<String>,
    action: Option<String>,
    actor: Option<String>,
    since: Option<f64>,
) -> CmdResult<u32> {
    let records = state.kernel.audit(&audit_query(plugin, action, actor, since, None))?;
    let text = match format {
        ExportFormat::Json => serde_json::to_string_pretty(&records).unwrap_or_default(),
        ExportFormat::Csv => audit_to_csv(&records),
    };
    std::fs::write(&path, text).map_err(|e| CommandError::other("io", format!("{path}: {e}")))?;
    Ok(records.len() as u32)
}

/// Settings and versions.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub data_dir: String,
    pub audit_detail: AuditDetail,
    pub builtin_policy: BuiltinPolicy,
    pub app_version: String,
    pub kernel_version: String,
}

fn settings(state: &AppState) -> CmdResult<Settings> {
    Ok(Settings {
        data_dir: state.data_dir.display().to_string(),
        audit_detail: state.kernel.audit_detail(),
        builtin_policy: state.kernel.builtin_policy()?,
        app_version: env!("CARGO_PKG_VERSION").into(),
        kernel_version: objectos_kernel::model::resolve::kernel_version().to_string(),
    })
}

/// Current settings.
#[tauri::command]
#[specta::specta]
pub async fn get_settings(state: State<'_, AppState>) -> CmdResult<Settings> {
    settings(&state)
}

/// Audit detail level.
#[tauri::command]
#[specta::specta]
pub async fn set_audit_detail(state: State<'_, AppState>, detail: AuditDetail) -> CmdResult<Settings> {
    state.kernel.set_audit_detail(detail)?;
    settings(&state)
}

/// Built-in trust policy.
#[tauri::command]
#[specta::specta]
pub async fn set_builtin_policy(state: State<'_, AppState>, policy: BuiltinPolicy) -> CmdResult<Settings> {
    state.kernel.set_builtin_policy(policy)?;
    settings(&state)
}

/// What the update check found.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum UpdateStatus {
    UpToDate { current: String },
    Available { current: String, version: String, notes: Option<String> },
    Unreachable { message: String },
}

/// Ask the configured update endpoint (signed with the public key in tauri.conf.json).
#[tauri::command]
#[specta::specta]
pub async fn check_for_updates(app: tauri::AppHandle) -> CmdResult<UpdateStatus> {
    use tauri_plugin_updater::UpdaterExt;
    let current = env!("CARGO_PKG_VERSION").to_string();
    let updater = match app.updater() {
        Ok(u) => u,
        Err(e) => return Ok(UpdateStatus::Unreachable { message: format!("the updater is not configured: {e}") }),
    };
    Ok(match updater.check().await {
        Ok(Some(u)) => UpdateStatus::Available { current, version: u.version.clone(), notes: u.body.clone() },
        Ok(None) => UpdateStatus::UpToDate { current },
        Err(e) => UpdateStatus::Unreachable {
            message: format!("Could not reach the update server ({e}). You may be offline; ObjectOS works fully offline, so check again later."),
        },
    })
}

/// The UI calls this once the plugin list is interactive; returns ms since process start.
#[tauri::command]
#[specta::specta]
pub async fn report_ready(state: State<'_, AppState>) -> CmdResult<f64> {
    let ms = state.started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(startup_ms = ms, "console interactive");
    Ok(ms)
}

/// One in-app notification.
#[derive(Debug, Clone, Serialize, specta::Type)]
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
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct InboxView {
    pub available: bool,
    pub unread: u32,
    pub items: Vec<InboxEntry>,
}

fn inbox_service(state: &AppState) -> Option<std::sync::Arc<objectos_builtins::notification::Inbox>> {
    state.kernel.service::<objectos_builtins::notification::Inbox>(objectos_builtins::notification::INBOX).ok()
}

/// The newest `limit` in-app notifications (only unread ones when asked).
#[tauri::command]
#[specta::specta]
pub async fn inbox(state: State<'_, AppState>, limit: u32, unread_only: bool) -> CmdResult<InboxView> {
    let Some(inbox) = inbox_service(&state) else { return Ok(InboxView { available: false, unread: 0, items: Vec::new() }) };
    let items = inbox
        .list(limit as usize, unread_only)?
        .into_iter()
        .map(|i| InboxEntry {
            id: i.message.id,
            plugin: i.message.plugin,
            title: i.message.title,
            body: i.message.body,
            level: serde_json::to_value(i.message.level).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            created_at: i.message.created_at as f64,
            read: i.read,
        })
        .collect();
    Ok(InboxView { available: true, unread: inbox.unread()? as u32, items })
}

/// Mark one notification (or, with no id, all of them) read; returns how many changed.
#[tauri::command]
#[specta::specta]
pub async fn mark_notifications_read(state: State<'_, AppState>, id: Option<String>) -> CmdResult<u32> {
    let inbox = inbox_service(&state).ok_or_else(|| CommandError::other("unavailable", "the Notifications plugin (com.objectos.notification) is not enabled"))?;
    Ok(inbox.mark_read(id.as_deref())? as u32)
}

/// A plugin's name and description in a locale, where a translation exists.
#[derive(Debug, Clone, Default, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct PluginText {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Translated plugin names and descriptions.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct PluginTexts {
    /// Whether the translations plugin is enabled.
    pub available: bool,
    /// Locales some plugin is translated into.
    pub locales: Vec<String>,
    /// By plugin id; plugins without a translation are absent.
    pub texts: std::collections::BTreeMap<String, PluginText>,
}

/// Plugin names and descriptions in `locale` (with the i18n plugin's fallbacks).
#[tauri::command]
#[specta::specta]
pub async fn plugin_texts(state: State<'_, AppState>, locale: String) -> CmdResult<PluginTexts> {
    use objectos_builtins::i18n::{I18n, SERVICE};
    let Ok(i18n) = state.kernel.service::<I18n>(SERVICE) else {
        return Ok(PluginTexts { available: false, locales: Vec::new(), texts: Default::default() });
    };
    let none = serde_json::Value::Null;
    let mut texts = std::collections::BTreeMap::new();
    for p in state.kernel.plugins()? {
        let id = p.manifest.id;
        let get = |key: &str| Some(i18n.translate(&id, &locale, key, &none)).filter(|l| l.found()).map(|l| l.text);
        let t = PluginText { name: get("plugin.name"), description: get("plugin.description") };
        if t.name.is_some() || t.description.is_some() {
            texts.insert(id, t);
        }
    }
    Ok(PluginTexts { available: true, locales: i18n.locales(), texts })
}

/// A field of a record type, for display.
#[derive(Debug, Clone, Serialize, specta::Type)]
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
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct ObjectView {
    pub name: String,
    pub label: String,
    pub fields: Vec<FieldView>,
}

/// A state of a workflow.
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct StateView {
    pub name: String,
    /// Entry actions, in words.
    pub entry: Vec<String>,
    /// Exit actions, in words.
    pub exit: Vec<String>,
}

/// A transition of a workflow.
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct TransitionView {
    pub from: String,
    pub to: String,
    pub event: String,
    pub guard: Option<String>,
}

/// A workflow.
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct WorkflowView {
    pub name: String,
    pub object: String,
    pub field: String,
    pub initial: String,
    pub states: Vec<StateView>,
    pub transitions: Vec<TransitionView>,
}

/// An automation.
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct AutomationView {
    pub name: String,
    /// What starts it, in words.
    pub trigger: String,
    pub condition: Option<String>,
    /// Its actions, in words.
    pub actions: Vec<String>,
}

/// What a package declares.
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct DefinitionsView {
    pub objects: Vec<ObjectView>,
    pub workflows: Vec<WorkflowView>,
    pub automations: Vec<AutomationView>,
}

fn describe_action(a: &objectos_builtins::declarative::Action) -> String {
    use objectos_builtins::declarative::Action;
    match a {
        Action::Set(fields) => format!("set {}", fields.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")),
        Action::Emit { topic, .. } => format!("emit {topic}"),
        Action::Notify { title, level, .. } => format!("notify ({level}) \u{201c}{title}\u{201d}"),
        Action::Enqueue { topic, delay_ms } => format!("emit {topic} after {} s (through jobs)", delay_ms / 1000),
    }
}

/// The record types, workflows and automations a package declares (empty for built-ins).
#[tauri::command]
#[specta::specta]
pub async fn package_definitions(state: State<'_, AppState>, id: String) -> CmdResult<DefinitionsView> {
    use objectos_builtins::declarative::{read_definitions, FieldKind, Trigger};
    let info = state.kernel.plugin(&id)?;
    let empty = DefinitionsView { objects: Vec::new(), workflows: Vec::new(), automations: Vec::new() };
    let Some(dir) = info.package_dir else { return Ok(empty) };
    let defs = read_definitions(&info.manifest, std::path::Path::new(&dir)).map_err(|ps| {
        CommandError::from(objectos_kernel::KernelError::from(objectos_kernel::model::manifest::ManifestErrors { file: format!("{dir}/plugin.json"), problems: ps }))
    })?;
    let objects = defs
        .objects
        .into_iter()
        .map(|o| ObjectView {
            name: o.name,
            label: o.label,
            fields: o
                .fields
                .into_iter()
                .map(|f| {
                    let (kind, detail) = match &f.kind {
                        FieldKind::Text { max_length } => ("text", format!("up to {max_length} characters")),
                        FieldKind::Number { min, max } => ("number", match (min, max) {
                            (Some(a), Some(b)) => format!("{a} to {b}"),
                            (Some(a), None) => format!("at least {a}"),
                            (None, Some(b)) => format!("at most {b}"),
                            (None, None) => String::new(),
                        }),
                        FieldKind::Boolean => ("boolean", String::new()),
                        FieldKind::Date => ("date", String::new()),
                        FieldKind::Enum { values } => ("enum", values.join(", ")),
                        FieldKind::Reference { object } => ("reference", format!("→ {object} record")),
                    };
                    FieldView { name: f.name, label: f.label, kind: kind.into(), detail, required: f.required }
                })
                .collect(),
        })
        .collect();
    let workflows = defs
        .workflows
        .into_iter()
        .map(|w| WorkflowView {
            transitions: w.states.iter().flat_map(|s| s.transitions.iter().map(|t| TransitionView { from: s.name.clone(), to: t.to.clone(), event: t.event.clone(), guard: t.guard.clone() })).collect(),
            states: w.states.iter().map(|s| StateView { name: s.name.clone(), entry: s.entry.iter().map(describe_action).collect(), exit: s.exit.iter().map(describe_action).collect() }).collect(),
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
            trigger: match &a.when {
                Trigger::Event(p) => format!("event {p}"),
                Trigger::Record { object, on } => format!("{object} record {}", on.join(" or ")),
                Trigger::Schedule(c) => format!("schedule {c}"),
            },
            condition: a.condition.clone(),
            actions: a.actions.iter().map(describe_action).collect(),
            name: a.name,
        })
        .collect();
    Ok(DefinitionsView { objects, workflows, automations })
}
