//! Thin commands: each takes the app state, makes one kernel call, converts the error.

use std::path::PathBuf;

use objectos_kernel::{
    audit_to_csv, Action, AuditDetail, AuditQuery, AuditRecord, BuiltinPolicy, GrantRequest, Graph, InstallOutcome, Level, LogQuery,
    LogRecord, PluginInfo, Verification,
};
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
            let m = objectos_kernel::check_package(dir).ok()?;
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
        kernel_version: objectos_kernel::kernel_version().to_string(),
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
