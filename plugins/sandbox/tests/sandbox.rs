//! Packages with code, end to end through the kernel: a well-behaved guest, and the hostile
//! corpus (each misbehaviour ends in a clear error, the kernel keeps serving others, and every
//! refusal is audited).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use objectos_kernel::model::audit::AuditQuery;
use objectos_kernel::model::lifecycle::State;
use objectos_kernel::model::log::LogQuery;
use objectos_kernel::model::views::GrantRequest;
use objectos_kernel::serde_json::{json, Value};
use objectos_kernel::{Kernel, KernelConfig};
use objectos_sandbox::{Cache, Runtime};
use objectos_tests::{manifest, package_dir, wait_until, Probe};

const ECHO: &str = include_str!("guests/echo.js");
const HOSTILE: &str = include_str!("guests/hostile.js");

/// The compiled-code cache the tests share, so each guest compiles once per build.
fn cache() -> Cache {
    Cache::at(Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-cache"))
}

async fn kernel(root: &Path) -> Kernel {
    let config = KernelConfig::new(root.join("data")).runtime(Arc::new(Runtime::new(cache())));
    let k = Kernel::open(config).unwrap();
    objectos_jobs::register(&k).unwrap();
    objectos_notification::register(&k).unwrap();
    objectos_declarative::register(&k).unwrap();
    k.start().await.unwrap();
    k
}

/// Install a JS package `t.<name>` with `perms`, approve them all; enabling is the test's.
async fn install(k: &Kernel, root: &Path, name: &str, js: &str, perms: &[&str], provides: Value, extra: Value) -> String {
    let mut m = json!({ "id": format!("t.{name}"), "name": name, "version": "1.0.0", "main": "index.js", "provides": provides, "permissions": perms });
    if let (Value::Object(m), Value::Object(extra)) = (&mut m, extra) {
        m.extend(extra);
    }
    let dir = package_dir(root, name, &m.to_string(), &[("index.js", js)]);
    let id = k.install_package(&dir, false).await.unwrap().id;
    k.grant(&id, GrantRequest::All).unwrap();
    id
}

/// A built-in test plugin with `perms`, enabled.
async fn driver(k: &Kernel, id: &str, perms: &[&str]) -> objectos_kernel::PluginContext {
    k.register_builtin(&manifest(id, "1.0.0", &[], perms), Arc::new(Probe::default())).unwrap();
    k.sync_builtins().await.unwrap();
    k.grant(id, GrantRequest::All).unwrap();
    k.enable(id, true).await.unwrap();
    k.context(id).unwrap()
}

fn state(k: &Kernel, id: &str) -> State {
    k.plugin(id).unwrap().state
}

fn last_error(k: &Kernel, id: &str) -> String {
    k.plugin(id).unwrap().last_error.map(|e| e.message).unwrap_or_default()
}

fn logs(k: &Kernel, id: &str) -> Vec<String> {
    k.flush();
    k.logs(&LogQuery { plugin: Some(id.into()), limit: Some(500), ..Default::default() }).unwrap().into_iter().map(|l| format!("{} {}", l.message, l.fields)).collect()
}

fn audit(k: &Kernel, id: &str, action: &str) -> Vec<Value> {
    k.flush();
    k.audit(&AuditQuery { plugin: Some(id.into()), action: Some(action.into()), limit: Some(500), ..Default::default() }).unwrap().into_iter().map(|r| r.details).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_package_uses_storage_events_services_log_and_config() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let perms = ["storage.read", "storage.write", "events.subscribe:t.echo.ping", "events.emit:t.echo.pong", "services.provide:echo"];
    let id = install(&k, root.path(), "echo", ECHO, &perms, json!({ "events": ["t.echo.pong"], "services": ["echo"] }), json!({})).await;
    k.set_config(&id, json!({ "greeting": "good morning" })).unwrap();
    k.enable(&id, false).await.unwrap();
    assert_eq!(state(&k, &id), State::Enabled);

    let driver = driver(&k, "t.driver", &["events.emit:t.echo.ping", "events.subscribe:t.echo.pong", "services.use:echo"]).await;
    let pongs = Arc::new(std::sync::Mutex::new(Vec::<(Value, u32)>::new()));
    let heard = pongs.clone();
    driver.events().on("t.echo.pong", move |e| {
        heard.lock().unwrap().push(((*e.payload).clone(), e.depth));
        Ok(())
    }).unwrap();
    driver.events().emit("t.echo.ping", json!({ "n": 7 })).unwrap();
    wait_until(20, "the guest's pong", || !pongs.lock().unwrap().is_empty()).await;
    let (payload, depth) = pongs.lock().unwrap()[0].clone();
    assert_eq!(payload, json!({ "got": { "n": 7 }, "depth": 1 }));
    assert_eq!(depth, 1, "emitted while handling the ping: one deeper");
    assert_eq!(k.context(&id).unwrap().storage().get("last").unwrap(), Some(json!({ "n": 7 })));

    // A service the guest provides, called with JSON by a built-in.
    let said = tokio::task::spawn_blocking(move || driver.services().call("echo", "say", json!({ "text": "hi" }))).await.unwrap().unwrap();
    assert_eq!(said, json!({ "said": "hi", "caller": "t.driver", "greeting": "good morning" }));

    assert!(logs(&k, &id).iter().any(|l| l.starts_with("echo enabled") && l.contains("\"starts\":1")), "{:?}", logs(&k, &id));

    // Disable and enable again: a new instance, the same storage.
    k.disable(&id, false).await.unwrap();
    k.enable(&id, false).await.unwrap();
    assert_eq!(k.context(&id).unwrap().storage().get("starts").unwrap(), Some(json!(2)));
}
