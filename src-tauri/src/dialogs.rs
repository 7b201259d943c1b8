//! The native file dialogs, opened by the commands that need a path. The webview never hands
//! the backend a path: what it could name, a script injected into it could name too, so the
//! file commands act only on what the admin chose here.

use std::path::PathBuf;

use tauri::AppHandle;
use tauri_plugin_dialog::DialogExt;

use crate::error::{CmdResult, CommandError};

/// Ask for a package folder (`folder`) or `.zip`; `None` when the dialog is closed.
pub(crate) async fn pick_package(app: &AppHandle, folder: bool) -> CmdResult<Option<PathBuf>> {
    let app = app.clone();
    let chosen = tauri::async_runtime::spawn_blocking(move || {
        let dialog = app.dialog().file();
        if folder {
            dialog.set_title("Install a package folder").blocking_pick_folder()
        } else {
            dialog.set_title("Install a package archive").add_filter("ObjectOS package", &["zip"]).blocking_pick_file()
        }
    })
    .await
    .map_err(|e| CommandError::other("dialog", e.to_string()))?;
    path(chosen)
}

/// Ask for a CSV file to read; `None` when the dialog is closed.
pub(crate) async fn pick_csv(app: &AppHandle, title: String) -> CmdResult<Option<PathBuf>> {
    if let Some(p) = scripted() {
        return Ok(Some(p));
    }
    let app = app.clone();
    let chosen = tauri::async_runtime::spawn_blocking(move || app.dialog().file().set_title(title).add_filter("CSV", &["csv"]).blocking_pick_file())
        .await
        .map_err(|e| CommandError::other("dialog", e.to_string()))?;
    path(chosen)
}

/// Ask where to save an export named `file_name` with extension `ext`; `None` when the
/// dialog is closed.
pub(crate) async fn pick_export(app: &AppHandle, title: String, file_name: String, ext: &'static str) -> CmdResult<Option<PathBuf>> {
    let app = app.clone();
    let chosen = tauri::async_runtime::spawn_blocking(move || {
        app.dialog().file().set_title(title).set_file_name(format!("{file_name}.{ext}")).add_filter(ext.to_uppercase(), &[ext]).blocking_save_file()
    })
    .await
    .map_err(|e| CommandError::other("dialog", e.to_string()))?;
    path(chosen)
}

/// For automated tests of the real app (which cannot click a native dialog): a debug build
/// started with `OBJECTOS_DIALOG_FILE` answers the CSV dialog with that path. Only whoever
/// starts the process can set it, never the webview, and release builds ignore it.
fn scripted() -> Option<PathBuf> {
    if cfg!(debug_assertions) {
        std::env::var_os("OBJECTOS_DIALOG_FILE").map(PathBuf::from)
    } else {
        None
    }
}

fn path(chosen: Option<tauri_plugin_dialog::FilePath>) -> CmdResult<Option<PathBuf>> {
    chosen.map(|p| p.into_path().map_err(|e| CommandError::other("dialog", format!("the dialog returned a path that is not a local file: {e}")))).transpose()
}
