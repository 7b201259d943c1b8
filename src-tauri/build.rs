//! tauri-build reads `tauri.conf.json` from the repository root (the product layout keeps it
//! there), so run it from the root. Every app command is declared, so each gets an `allow-*`
//! permission that `src-tauri/capabilities/main.json` grants to the main window alone.
#[allow(clippy::expect_used)] // a build script reports failure by panicking
fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::set_current_dir(&root).expect("repository root");
    println!("cargo:rerun-if-changed=tauri.conf.json");
    println!("cargo:rerun-if-changed=src-tauri/capabilities");
    let attrs = tauri_build::Attributes::new()
        .capabilities_path_pattern("src-tauri/capabilities/*.json")
        .app_manifest(tauri_build::AppManifest::new().commands(&[
            "list_plugins",
            "get_plugin",
            "plugin_action",
            "install_package",
            "list_samples",
            "grant_permissions",
            "revoke_permissions",
            "dependency_graph",
            "query_logs",
            "query_audit",
            "verify_audit",
            "export_audit",
            "get_settings",
            "set_audit_detail",
            "set_builtin_policy",
            "check_for_updates",
            "report_ready",
            "inbox",
            "mark_notifications_read",
            "plugin_texts",
            "package_definitions",
        ]));
    tauri_build::try_build(attrs).expect("tauri-build");
}
