//! tauri-build reads `tauri.conf.json` from the repository root (the product layout keeps it
//! there), so run it from the root. Every app command is declared, from the one list in
//! `src/command_list.rs`, so each gets an `allow-*` permission that
//! `src-tauri/capabilities/main.json` grants to the main window alone.

include!("src/command_list.rs");

const COMMANDS: &[&str] = console_commands!(command_names);

#[allow(clippy::expect_used)] // a build script reports failure by panicking
fn main() {
    // Read at run time, not with `env!`: a target folder shared by several clones reuses this
    // script's binary, and a path baked in at compile time would point at another clone.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = std::path::Path::new(&manifest_dir).join("..");
    std::env::set_current_dir(&root).expect("repository root");
    // Relative paths here would be taken from src-tauri/, not the root. tauri-build itself
    // prints a relative `rerun-if-changed=permissions`, which cargo reads as
    // src-tauri/permissions: that is a link to the root's folder, so the path exists and an
    // unchanged tree does not rebuild the console on every cargo call.
    for watched in ["tauri.conf.json", "src-tauri/capabilities", "src-tauri/src/command_list.rs"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let attrs = tauri_build::Attributes::new()
        .capabilities_path_pattern("src-tauri/capabilities/*.json")
        .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    tauri_build::try_build(attrs).expect("tauri-build");
}
