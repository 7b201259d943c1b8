// The console's commands, listed once. `include!`d by `build.rs` (which declares each to
// tauri-build, so each gets an `allow-<command>` permission) and by `lib.rs` (which hands them
// to tauri-specta for the invoke handler and `ui/src/bindings.ts`). The window's capability,
// `capabilities/main.json`, grants them; a unit test in `lib.rs` fails when it does not grant
// exactly these.
//
// `console_commands!(then)` expands to `then! { list_plugins, get_plugin, ... }`: each host of
// the list turns the names into what it needs (strings, or paths into `commands`).
macro_rules! console_commands {
    ($then:ident) => {
        $then! {
            list_plugins,
            get_plugin,
            plugin_action,
            install_package,
            list_samples,
            grant_permissions,
            revoke_permissions,
            dependency_graph,
            query_logs,
            query_audit,
            verify_audit,
            export_audit,
            get_settings,
            set_audit_detail,
            set_builtin_policy,
            set_quotas,
            check_for_updates,
            report_ready,
            inbox,
            mark_notifications_read,
            plugin_texts,
            package_definitions,
            record_types,
            list_records,
            save_record,
            delete_record,
            transition_record,
            record_history,
            import_records,
            commit_import,
            cancel_import,
            export_records,
            plugin_usage,
            plugin_settings,
            set_plugin_settings,
        }
    };
}

/// The names as strings.
macro_rules! command_names {
    ($($command:ident),* $(,)?) => {
        &[$(stringify!($command)),*]
    };
}
