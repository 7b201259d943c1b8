//! Small helpers shared by the engines.

use objectos_kernel::KernelError;

pub(crate) use objectos_kernel::util::now_ms;

pub(crate) fn service_err(service: &str, message: impl Into<String>) -> KernelError {
    KernelError::service(service, message)
}

/// Have `engine` delete its `<kind>:<package>/...` keys when the package is uninstalled with
/// its records deleted (the kernel's `plugin.uninstalled` event says `keepRecords: false`).
pub(crate) fn delete_when_uninstalled(engine: &objectos_kernel::PluginContext, kind: &'static str, then: impl Fn(&str) + Send + Sync + 'static) -> objectos_kernel::Result<()> {
    let ctx = engine.clone();
    engine.events().on("plugin.uninstalled", move |e| {
        if e.source.as_ref() != "kernel" || e.payload.get("keepRecords") != Some(&serde_json::Value::Bool(false)) {
            return Ok(());
        }
        let Some(id) = e.payload.get("plugin").and_then(serde_json::Value::as_str) else { return Ok(()) };
        let storage = ctx.storage();
        let keys = storage.scan(&format!("{kind}:{id}/"))?;
        for (k, _) in &keys {
            storage.delete(k)?;
        }
        if !keys.is_empty() {
            ctx.logger().info(format!("deleted {} `{kind}` entries of {id}, uninstalled with its records", keys.len()));
        }
        then(id);
        Ok(())
    })?;
    Ok(())
}

/// Keys an engine stored under a bare type name (`<kind>:<short>:<id>`, before record types had
/// owners) move, once, to the full name (`<kind>:<owner>/<short>:<id>`) of the first package to
/// declare that name afterwards. A marker keeps a later package declaring the same name from
/// taking them again, and a lock keeps two enables from both copying them.
pub(crate) fn adopt_unowned(engine: &objectos_kernel::PluginContext, kind: &str, short: &str, full: &str) -> objectos_kernel::Result<()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let storage = engine.storage();
    let marker = format!("adopted:{kind}:{short}");
    if storage.has(&marker)? {
        return Ok(());
    }
    let prefix = format!("{kind}:{short}:");
    let old = storage.scan(&prefix)?;
    if old.is_empty() {
        return Ok(());
    }
    // Records count for their owner's storage; other kinds (workflow history) for the engine.
    let owner = if kind == "r" { crate::names::owner_of(full) } else { engine.id() };
    let charge = objectos_kernel::runtime::storage::Charge { owner, limit: None };
    for (k, v) in &old {
        let id = &k[prefix.len()..];
        if storage.swap_charged(&format!("{kind}:{full}:{id}"), None, Some(v.clone()), charge)? {
            storage.delete(k)?;
        }
    }
    storage.set(&marker, serde_json::json!(full))?;
    engine.logger().info(format!("{} `{kind}` entries of `{short}`, stored before record types had owners, now belong to {full}", old.len()));
    Ok(())
}
