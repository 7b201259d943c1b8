//! Thin commands: each takes the app state, makes one kernel call, converts the error. What a
//! command shows in words is built in [`crate::views`].

use objectos_kernel::model::audit::{AuditDetail, AuditQuery, AuditRecord, Verification, to_csv as audit_to_csv};
use objectos_kernel::model::lifecycle::{Action, State as PluginState};
use objectos_kernel::model::log::{Level, LogQuery, LogRecord};
use objectos_kernel::model::views::{BuiltinPolicy, GrantRequest, Graph, InstallOutcome, PluginInfo};
use serde::Serialize;
use tauri::State;

use crate::error::{CmdResult, CommandError};
use crate::views::{self, Sample, UpdateStatus};
use objectos_admin::inbox::InboxView;
use objectos_admin::translations::PluginTexts;
use objectos_admin::definitions::DefinitionsView;
use objectos_admin::records::{HistoryStep, Imported, ListQuery, RecordType, Records, RejectedRow, Transitioned};
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

/// Run a lifecycle action; returns the plugin afterwards, or nothing (`null`) once it is
/// uninstalled. `delete_records` (uninstall only) deletes the records of its types instead of
/// keeping them for a reinstall.
#[tauri::command]
#[specta::specta]
pub async fn plugin_action(state: State<'_, AppState>, id: String, action: Action, with_deps: bool, cascade: bool, delete_records: bool) -> CmdResult<Option<PluginInfo>> {
    let k = &state.kernel;
    if !k.started() && action != Action::Uninstall {
        // Another process runs the plugins: it carries the action out; this waits for it.
        let desired = action.target().unwrap_or(PluginState::Installed);
        objectos_admin::lifecycle::ask_runner(k, &id, desired, with_deps || cascade).await?;
        return Ok(Some(k.plugin(&id)?));
    }
    match action {
        Action::Load => k.load(&id).await?,
        Action::Enable => k.enable(&id, with_deps).await?,
        Action::Disable => k.disable(&id, cascade).await?,
        Action::Unload => k.unload(&id).await?,
        Action::Uninstall => {
            k.uninstall_with(&id, objectos_kernel::host::Uninstall { keep_records: !delete_records }).await?;
            return Ok(None);
        }
    }
    Ok(Some(k.plugin(&id)?))
}

/// Where a package to install comes from. The webview never names a path: a folder or an
/// archive is chosen in the native dialog this command opens, a sample by its id.
#[derive(Debug, Clone, serde::Deserialize, specta::Type)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum PackageSource {
    /// A package folder, chosen in a folder dialog.
    Folder,
    /// A `.zip`, chosen in a file dialog.
    Archive,
    /// One of the samples shipped with the app, by plugin id.
    Sample { id: String },
}

/// Install or upgrade a package; `null` when the admin closed the dialog without choosing.
#[tauri::command]
#[specta::specta]
pub async fn install_package(app: tauri::AppHandle, state: State<'_, AppState>, source: PackageSource, force: bool) -> CmdResult<Option<InstallOutcome>> {
    let path = match source {
        PackageSource::Sample { id } => {
            let found = state.samples.iter().find(|dir| objectos_kernel::package::read_manifest(dir).is_ok_and(|m| m.id == id));
            found.cloned().ok_or_else(|| CommandError::other("notFound", format!("no sample package {id} ships with this console")))?
        }
        PackageSource::Folder | PackageSource::Archive => {
            let folder = matches!(source, PackageSource::Folder);
            match crate::dialogs::pick_package(&app, folder).await? {
                Some(p) => p,
                None => return Ok(None),
            }
        }
    };
    Ok(Some(state.kernel.install_package(&path, force).await?))
}

/// The sample packages shipped with the app, and whether each is installed.
#[tauri::command]
#[specta::specta]
pub async fn list_samples(state: State<'_, AppState>) -> CmdResult<Vec<Sample>> {
    let installed: Vec<String> = state.kernel.plugins()?.into_iter().map(|p| p.manifest.id).collect();
    let found = state.samples.iter().filter_map(|dir| Some((dir.as_path(), objectos_kernel::package::read_manifest(dir).ok()?)));
    Ok(views::samples(found, &installed))
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

/// The records use cases: on this console's running plugins, or, while another process runs
/// them (an `objectos serve`), through the Records and Workflows engines brought up quietly
/// here, with what a change sets off carried out there.
async fn records(state: &AppState) -> CmdResult<Records> {
    if state.kernel.started() {
        return Ok(Records::new(&state.kernel)?);
    }
    Ok(Records::writing_for_runner(&state.kernel).await?)
}

/// The record types installed now, with their owners, fields and workflows (none when the
/// Records plugin is off).
#[tauri::command]
#[specta::specta]
pub async fn record_types(state: State<'_, AppState>) -> CmdResult<Vec<RecordType>> {
    Ok(records(&state).await.map(|r| r.types()).unwrap_or_default())
}

/// Records of a type, oldest first, filtered by an expression when given.
#[tauri::command]
#[specta::specta]
pub async fn list_records(state: State<'_, AppState>, record_type: String, filter: Option<String>, limit: u32) -> CmdResult<Vec<serde_json::Value>> {
    let list = records(&state).await?.list(&record_type, &ListQuery { filter, sort: None, limit: limit as usize })?;
    Ok(list.into_iter().map(serde_json::Value::Object).collect())
}

/// Create a record (`id` none) or change one, as the admin; returns it. Every problem names its
/// field (`$.amount`).
#[tauri::command]
#[specta::specta]
pub async fn save_record(state: State<'_, AppState>, record_type: String, id: Option<String>, fields: serde_json::Value) -> CmdResult<serde_json::Value> {
    Ok(serde_json::Value::Object(records(&state).await?.save(&record_type, id.as_deref(), fields)?.record))
}

/// Delete a record, as the admin.
#[tauri::command]
#[specta::specta]
pub async fn delete_record(state: State<'_, AppState>, record_type: String, id: String) -> CmdResult<bool> {
    records(&state).await?.delete(&record_type, &id)?;
    Ok(true)
}

/// Fire a workflow event on a record, as the admin.
#[tauri::command]
#[specta::specta]
pub async fn transition_record(state: State<'_, AppState>, record_type: String, id: String, event: String) -> CmdResult<Transitioned> {
    Ok(records(&state).await?.transition(&record_type, &id, &event).await?)
}

/// A record's workflow history, oldest first (empty when its type has no workflow).
#[tauri::command]
#[specta::specta]
pub async fn record_history(state: State<'_, AppState>, record_type: String, id: String) -> CmdResult<Vec<HistoryStep>> {
    Ok(records(&state).await?.history(&record_type, &id)?)
}

/// What a CSV file holds for a record type, checked; nothing is written until `commit_import`.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    /// Hands the checked rows to `commit_import`.
    pub token: String,
    /// The file the admin chose.
    pub file: String,
    /// Rows that pass every rule of the type.
    pub valid: u32,
    /// Each other row, with its line and what is wrong.
    pub rejected: Vec<RejectedRow>,
}

/// Check a CSV file (chosen in the dialog this opens) against a record type; `null` when the
/// dialog was closed. Writes nothing.
#[tauri::command]
#[specta::specta]
pub async fn import_records(app: tauri::AppHandle, state: State<'_, AppState>, record_type: String) -> CmdResult<Option<ImportReport>> {
    let records = records(&state).await?;
    let ty = records.resolve(&record_type)?;
    let Some(path) = crate::dialogs::pick_csv(&app, format!("Import {} records", ty.label.to_lowercase())).await? else { return Ok(None) };
    let text = std::fs::read(&path).map_err(|e| CommandError::other("io", format!("{}: {e}", path.display())))?;
    let check = records.check_import(&ty.name, &text).map_err(|e| CommandError::other(e.code(), format!("{}: {e}", path.display())))?;
    let token = import_token();
    let report = ImportReport { token: token.clone(), file: path.display().to_string(), valid: check.valid.len() as u32, rejected: check.rejected.clone() };
    if let Ok(mut m) = state.imports.lock() {
        // One checked import waits per type: choosing a file again replaces it.
        m.retain(|_, c| c.record_type != ty.name);
        m.insert(token, check);
    }
    Ok(Some(report))
}

/// An unguessable token for a checked import (the process's random hasher keys, a counter).
fn import_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_i64(objectos_kernel::util::now_ms());
    format!("{:016x}", h.finish())
}

/// Create the valid rows of a checked import, as the admin. A row that fails now (a referenced
/// record deleted meanwhile) is reported with its line, and the others are still created.
#[tauri::command]
#[specta::specta]
pub async fn commit_import(state: State<'_, AppState>, token: String) -> CmdResult<Imported> {
    let check = state.imports.lock().ok().and_then(|mut m| m.remove(&token)).ok_or_else(|| CommandError::other("notFound", "this import was already done or dropped; choose the file again"))?;
    Ok(records(&state).await?.commit_import(check))
}

/// Drop a checked import without writing anything.
#[tauri::command]
#[specta::specta]
pub async fn cancel_import(state: State<'_, AppState>, token: String) -> CmdResult<()> {
    if let Ok(mut m) = state.imports.lock() {
        m.remove(&token);
    }
    Ok(())
}

/// Write every record of a type as CSV, to a file the admin chooses in the save dialog this
/// opens; `null` when the dialog was closed.
#[tauri::command]
#[specta::specta]
pub async fn export_records(app: tauri::AppHandle, state: State<'_, AppState>, record_type: String) -> CmdResult<Option<Exported>> {
    let records = records(&state).await?;
    let ty = records.resolve(&record_type)?;
    let short = ty.name.rsplit('/').next().unwrap_or_default().to_string();
    let Some(path) = crate::dialogs::pick_export(&app, format!("Export {} records", ty.label.to_lowercase()), short, "csv").await? else { return Ok(None) };
    let (csv, count) = records.export_csv(&ty.name)?;
    std::fs::write(&path, csv).map_err(|e| CommandError::other("io", format!("{}: {e}", path.display())))?;
    Ok(Some(Exported { path: path.display().to_string(), records: count as u32 }))
}

/// Where an export went.
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct Exported {
    /// The file the admin chose.
    pub path: String,
    /// Records written.
    pub records: u32,
}

/// Write the (filtered) audit trail to a file the admin chooses in the native save dialog
/// this command opens; `null` when the dialog was closed without choosing.
#[tauri::command]
#[specta::specta]
pub async fn export_audit(
    app: tauri::AppHandle,
    state: State<'_, AppState>,
    format: ExportFormat,
    plugin: Option<String>,
    action: Option<String>,
    actor: Option<String>,
    since: Option<f64>,
) -> CmdResult<Option<Exported>> {
    let ext = match format {
        ExportFormat::Json => "json",
        ExportFormat::Csv => "csv",
    };
    let Some(path) = crate::dialogs::pick_export(&app, "Export the audit trail".into(), "objectos-audit".into(), ext).await? else { return Ok(None) };
    let records = state.kernel.audit(&audit_query(plugin, action, actor, since, None))?;
    let text = match format {
        ExportFormat::Json => serde_json::to_string_pretty(&records).unwrap_or_default(),
        ExportFormat::Csv => audit_to_csv(&records),
    };
    std::fs::write(&path, text).map_err(|e| CommandError::other("io", format!("{}: {e}", path.display())))?;
    Ok(Some(Exported { path: path.display().to_string(), records: records.len() as u32 }))
}

/// Settings and versions.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub data_dir: String,
    pub audit_detail: AuditDetail,
    pub builtin_policy: BuiltinPolicy,
    /// What each package may take of what every plugin shares.
    pub quotas: objectos_kernel::model::quota::Quotas,
    pub app_version: String,
    pub kernel_version: String,
    /// Which process runs the plugins of this data directory now (`None`: none holds the
    /// runner lease), and whether it is this console.
    pub runner: Option<objectos_kernel::model::views::RunnerInfo>,
    pub runner_is_this_console: bool,
}

fn settings(state: &AppState) -> CmdResult<Settings> {
    Ok(Settings {
        data_dir: state.data_dir.display().to_string(),
        audit_detail: state.kernel.audit_detail(),
        builtin_policy: state.kernel.builtin_policy()?,
        quotas: state.kernel.quotas(),
        app_version: env!("CARGO_PKG_VERSION").into(),
        kernel_version: objectos_kernel::model::resolve::kernel_version().to_string(),
        // Held and not lost (a console that slept past its lease is no longer the runner).
        runner_is_this_console: state.runner.lock().unwrap_or_else(|p| p.into_inner()).is_some() && state.kernel.is_runner(),
        runner: state.kernel.runner()?,
    })
}

/// Current settings.
#[tauri::command]
#[specta::specta]
pub async fn get_settings(state: State<'_, AppState>) -> CmdResult<Settings> {
    settings(&state)
}

/// The quotas packages run under; they apply at once.
#[tauri::command]
#[specta::specta]
pub async fn set_quotas(state: State<'_, AppState>, quotas: objectos_kernel::model::quota::Quotas) -> CmdResult<Settings> {
    state.kernel.set_quotas(quotas)?;
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

/// Ask the configured update endpoint (signed with the public key in tauri.conf.json).
#[tauri::command]
#[specta::specta]
pub async fn check_for_updates(app: tauri::AppHandle) -> CmdResult<UpdateStatus> {
    use tauri_plugin_updater::UpdaterExt;
    let updater = match app.updater() {
        Ok(u) => u,
        Err(e) => return Ok(views::updater_unconfigured(e)),
    };
    let checked = updater.check().await.map(|found| found.map(|u| (u.version.clone(), u.body.clone())));
    Ok(views::update_status(env!("CARGO_PKG_VERSION"), checked))
}

/// The UI calls this once the plugin list is interactive; returns ms since process start.
#[tauri::command]
#[specta::specta]
pub async fn report_ready(state: State<'_, AppState>) -> CmdResult<f64> {
    let ms = state.started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(startup_ms = ms, "console interactive");
    Ok(ms)
}

/// The newest `limit` in-app notifications (only unread ones when asked).
#[tauri::command]
#[specta::specta]
pub async fn inbox(state: State<'_, AppState>, limit: u32, unread_only: bool) -> CmdResult<InboxView> {
    Ok(objectos_admin::inbox::list(&state.kernel, limit as usize, unread_only)?)
}

/// Mark one notification (or, with no id, all of them) read; returns how many changed.
#[tauri::command]
#[specta::specta]
pub async fn mark_notifications_read(state: State<'_, AppState>, id: Option<String>) -> CmdResult<u32> {
    Ok(objectos_admin::inbox::mark_read(&state.kernel, id.as_deref())?)
}

/// Plugin names and descriptions in `locale` (with the i18n plugin's fallbacks).
#[tauri::command]
#[specta::specta]
pub async fn plugin_texts(state: State<'_, AppState>, locale: String) -> CmdResult<PluginTexts> {
    Ok(objectos_admin::translations::plugin_texts(&state.kernel, &locale)?)
}

/// The record types, workflows and automations a package declares (empty for built-ins).
#[tauri::command]
#[specta::specta]
pub async fn package_definitions(state: State<'_, AppState>, id: String) -> CmdResult<DefinitionsView> {
    Ok(objectos_admin::definitions::package_definitions(&state.kernel, &id)?)
}

/// What a plugin did: its counters, its code's use (calls, CPU time, memory, traps, web
/// requests by host) and the last ten minutes in 20-second buckets.
#[tauri::command]
#[specta::specta]
pub async fn plugin_usage(state: State<'_, AppState>, id: String) -> CmdResult<objectos_kernel::runtime::telemetry::PluginStats> {
    Ok(state.kernel.stats(&id)?)
}

/// The settings a plugin declares, with what is set (a secret only as set or not).
#[tauri::command]
#[specta::specta]
pub async fn plugin_settings(state: State<'_, AppState>, id: String) -> CmdResult<Vec<objectos_kernel::model::views::SettingStatus>> {
    Ok(state.kernel.settings(&id)?)
}

/// Set settings (`null` unsets one); returns them afterwards. A secret's value goes in and
/// never comes back out.
#[tauri::command]
#[specta::specta]
pub async fn set_plugin_settings(state: State<'_, AppState>, id: String, values: serde_json::Map<String, serde_json::Value>) -> CmdResult<Vec<objectos_kernel::model::views::SettingStatus>> {
    state.kernel.set_settings(&id, values)?;
    Ok(state.kernel.settings(&id)?)
}
