//! What the kernel layout promises beyond moving code: every kernel-managing call made through
//! a plugin's handle is recorded as that plugin, no action succeeds unrecorded (a full
//! database fails it and the chain stays whole), plugin storage is durable by default, and a
//! killed install leaves no staging folder behind.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use objectos_kernel::model::audit::{AuditDetail, AuditQuery, Verification};
use objectos_kernel::model::lifecycle::State;
use objectos_kernel::model::views::{BuiltinPolicy, GrantRequest};
use objectos_kernel::notices::KernelEvent;
use objectos_kernel::{Kernel, KernelConfig, KernelError};
use objectos_tests::{manifest, memory_kernel, package_dir, Probe};
use serde_json::json;

/// The newest audit record's id (0 when there is none).
fn last_audit_id(k: &Kernel) -> i64 {
    k.audit(&AuditQuery { limit: Some(1), ..Default::default() }).unwrap().last().map_or(0, |r| r.id)
}

#[tokio::test]
async fn every_kernel_managing_call_through_a_plugin_handle_is_recorded_as_that_plugin() {
    let k = memory_kernel();
    k.register_builtin(&manifest("t.mgr", "1.0.0", &[], &["kernel.manage"]), Arc::new(Probe::default())).unwrap();
    let worker = r#"{"id":"t.worker","name":"W","version":"1.0.0","optionalPermissions":["storage.read","events.subscribe:x.*"]}"#;
    k.register_builtin(worker, Arc::new(Probe::default())).unwrap();
    k.start().await.unwrap();
    k.enable("t.mgr", false).await.unwrap();
    k.enable("t.worker", false).await.unwrap();
    k.grant("t.worker", GrantRequest::All).unwrap();
    k.disable("t.worker", false).await.unwrap();
    k.unload("t.worker").await.unwrap();
    let from = last_audit_id(&k);

    let handle = k.context("t.mgr").unwrap().kernel().unwrap();
    handle.load("t.worker").await.unwrap();
    handle.enable("t.worker", false).await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    k.context("t.worker").unwrap().events().on("x.*", move |e| {
        s2.lock().unwrap().push(e.source.to_string());
        Ok(())
    })
    .unwrap();
    handle.emit("x.ping", json!({})).unwrap();
    handle.revoke("t.worker", &["storage.read".to_string()], false).await.unwrap();
    handle.grant("t.worker", GrantRequest::Some(vec!["storage.read".into()])).unwrap();
    handle.set_config("t.worker", json!({ "level": 2 })).unwrap();
    handle.set_audit_detail(AuditDetail::Lifecycle).unwrap();
    handle.set_builtin_policy(BuiltinPolicy::Grant).unwrap();
    handle.disable("t.worker", false).await.unwrap();
    handle.unload("t.worker").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pkg = package_dir(dir.path(), "pkg", &manifest("com.acme.pkg", "1.0.0", &[], &[]), &[]);
    handle.install_package(&pkg, false).await.unwrap();
    handle.uninstall("com.acme.pkg").await.unwrap();
    handle.trim_audit(from).unwrap();

    let records = k.audit(&AuditQuery { after_id: Some(from), ..Default::default() }).unwrap();
    let mut actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    actions.sort_unstable();
    actions.dedup();
    for wanted in [
        "plugin.loaded",
        "plugin.enabled",
        "permission.revoked",
        "permission.granted",
        "plugin.configured",
        "settings.changed",
        "plugin.disabled",
        "plugin.unloaded",
        "plugin.installed",
        "plugin.uninstalled",
        "audit.trimmed",
    ] {
        assert!(actions.contains(&wanted), "no {wanted} record among {actions:?}");
    }
    for r in &records {
        assert_eq!(r.actor, "plugin:t.mgr", "{} {:?} was recorded as {}", r.action, r.plugin, r.actor);
    }
    assert_eq!(*seen.lock().unwrap(), ["t.mgr"], "an event emitted through the handle names the plugin, not the host");
}

/// A filler plugin's storage grows until the database's size limit is reached, down to the
/// last few bytes (smaller and smaller values). Returns how many keys it wrote.
fn fill(k: &Kernel, id: &str) -> usize {
    let ctx = k.context(id).unwrap();
    let mut written = 0;
    for size in [64 * 1024, 4096, 512, 64, 8] {
        let chunk = "x".repeat(size);
        loop {
            match ctx.storage().set(&format!("fill{written}"), json!(chunk)) {
                Ok(()) => written += 1,
                Err(e) => {
                    assert!(e.to_string().contains("full"), "{e}");
                    break;
                }
            }
            assert!(written < 100_000, "the database never filled up");
        }
    }
    written
}

/// The next notice that `pick` accepts, within a minute (the writer retries a failed batch
/// after a backoff of up to 2 s, so a notice can take that long; a generous deadline costs
/// nothing when it comes).
async fn next_notice<T>(rx: &mut tokio::sync::broadcast::Receiver<KernelEvent>, what: &str, mut pick: impl FnMut(KernelEvent) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.try_recv() {
            Ok(ev) => {
                if let Some(v) = pick(ev) {
                    return v;
                }
            }
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => {
                assert!(Instant::now() < deadline, "no {what} notice");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_full_database_fails_the_action_and_keeps_the_chain_whole() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kernel::open(KernelConfig::new(dir.path()).max_database_bytes(2 << 20)).unwrap();
    k.register_builtin(&manifest("t.filler", "1.0.0", &[], &["storage.write", "storage.read"]), Arc::new(Probe::default())).unwrap();
    k.register_builtin(&manifest("t.other", "1.0.0", &[], &[]), Arc::new(Probe::default())).unwrap();
    k.start().await.unwrap();
    k.enable("t.filler", false).await.unwrap();
    let mut notices = k.subscribe();
    // Storage takes most of the room, then log lines the rest: the writer cannot commit.
    let written = fill(&k, "t.filler");
    assert!(written > 0);
    let ctx = k.context("t.filler").unwrap();
    let line = "y".repeat(32 * 1024);
    let mut stalled = None;
    for _ in 0..200 {
        ctx.logger().info(line.clone());
        k.flush();
        if let Ok(KernelEvent::WritesStalled { busy, reason, waiting, .. }) = notices.try_recv() {
            stalled = Some((busy, reason, waiting));
            break;
        }
    }
    let (busy, reason, waiting) = stalled.expect("the writer reports that it cannot write");
    assert!(!busy && reason.contains("full") && waiting > 0, "{busy} {reason} {waiting}");

    // The action is refused as unrecorded, not reported as done; the chain stays whole.
    let err = k.enable("t.other", false).await.unwrap_err();
    assert!(matches!(err, KernelError::AuditUnwritable { .. }), "{err:?}");
    assert!(err.to_string().contains("full") && err.to_string().contains("not recorded yet"), "{err}");
    assert!(matches!(k.verify_audit().unwrap(), Verification::Intact { .. }), "the chain is whole while writes fail");

    // Space comes back: what was kept is written, in order, and the chain verifies.
    for i in 0..written {
        ctx.storage().delete(&format!("fill{i}")).unwrap();
    }
    next_notice(&mut notices, "WritesResumed", |ev| matches!(ev, KernelEvent::WritesResumed).then_some(())).await;
    k.disable("t.filler", false).await.unwrap();
    let enabled = k.audit(&AuditQuery { plugin: Some("t.other".into()), action: Some("plugin.enabled".into()), ..Default::default() }).unwrap();
    assert_eq!(enabled.len(), 1, "the record of the enable that ran is kept and written once there is room");
    let logged = k.logs(&objectos_kernel::model::log::LogQuery { plugin: Some("t.filler".into()), search: Some("yyyy".into()), ..Default::default() }).unwrap();
    assert!(!logged.is_empty(), "the log lines that waited are written too");
    assert!(matches!(k.verify_audit().unwrap(), Verification::Intact { .. }));
    assert_eq!(k.plugin("t.other").unwrap().state, State::Enabled);
}

#[tokio::test]
async fn a_data_directory_kernel_keeps_plugin_storage_by_default() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..2 {
        let k = Kernel::open(KernelConfig::new(dir.path())).unwrap();
        k.register_builtin(&manifest("t.keep", "1.0.0", &[], &["storage.write", "storage.read"]), Arc::new(Probe::default())).unwrap();
        k.start().await.unwrap();
        let ctx = k.context("t.keep").unwrap();
        if round == 0 {
            ctx.storage().set("k", json!("kept")).unwrap();
        } else {
            assert_eq!(ctx.storage().get("k").unwrap(), Some(json!("kept")), "KernelConfig::new(dir) stores plugin data in the database");
        }
        k.shutdown().await;
    }
}

#[tokio::test]
async fn a_killed_install_leaves_no_staging_folder_after_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    drop(Kernel::open(KernelConfig::new(dir.path())).unwrap());
    let staging = dir.path().join("packages/.staging");
    // A process that died mid-install (its pid is gone) left its folder with a partial copy;
    // another host on the same data directory is installing right now (its process lives).
    let dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();
    // Killed below; it only has to outlive the start, however slow the machine.
    let mut live = std::process::Command::new("sleep").arg("600").spawn().unwrap();
    let left = staging.join(format!("stage-{dead_pid}-1700000000000-0"));
    let busy = staging.join(format!("stage-{}-1700000000000-0", live.id()));
    for d in [&left, &busy] {
        std::fs::create_dir_all(d.join("objects")).unwrap();
        std::fs::write(d.join("plugin.json"), "{").unwrap();
    }
    let k = Kernel::open(KernelConfig::new(dir.path())).unwrap();
    assert!(!left.exists(), "the dead install's staging folder is removed at the next start");
    assert!(busy.exists(), "a live process's staging folder is left alone");
    live.kill().unwrap();
    live.wait().unwrap();
    // A refused install leaves nothing either (the staging folder drops itself).
    let pkg = package_dir(dir.path(), "bad", r#"{"id":"com.acme.bad","name":"B","version":"1.0.0","provides":{"objects":["missing"]}}"#, &[]);
    assert!(k.install_package(&pkg, false).await.is_err());
    let mut remaining: Vec<_> = std::fs::read_dir(&staging).unwrap().flatten().map(|e| e.file_name()).collect();
    remaining.retain(|n| *n != *busy.file_name().unwrap());
    assert!(remaining.is_empty(), "{remaining:?}");
}

#[tokio::test]
async fn offered_actions_come_from_the_lifecycle_rules() {
    let k = memory_kernel();
    k.register_builtin(&manifest("t.b", "1.0.0", &[], &[]), Arc::new(Probe::default())).unwrap();
    k.start().await.unwrap();
    let info = k.plugin("t.b").unwrap();
    assert_eq!(info.actions, State::Installed.offered(true));
    k.enable("t.b", false).await.unwrap();
    assert_eq!(k.plugin("t.b").unwrap().actions, State::Enabled.offered(true));
}
