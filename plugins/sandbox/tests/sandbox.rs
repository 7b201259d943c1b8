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
use objectos_kernel::serde_json::{self as serde_json, json, Value};
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
    kernel_in(&root.join("data")).await
}

/// A kernel on data directory `data`, with the shared cache.
async fn kernel_in(data: &Path) -> Kernel {
    let config = KernelConfig::new(data).runtime(Arc::new(Runtime::new(cache())));
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

    let enabled = logs(&k, &id).into_iter().find(|l| l.starts_with("echo enabled")).expect("the guest's line");
    assert!(enabled.contains("\"starts\":1"), "{enabled}");
    // Clocks and random work (WASI, with nothing else in its context).
    let fields: Value = serde_json::from_str(enabled.trim_start_matches("echo enabled ")).unwrap();
    let now = fields["now"].as_f64().unwrap();
    assert!((now - objectos_kernel::util::now_ms() as f64).abs() < 600_000.0, "Date.now() is the time: {fields}");
    assert!(fields["iso"].as_str().unwrap().starts_with("20"), "{fields}");
    assert!((0.0..1.0).contains(&fields["random"].as_f64().unwrap()), "{fields}");

    // Disable and enable again: a new instance, the same storage.
    k.disable(&id, false).await.unwrap();
    k.enable(&id, false).await.unwrap();
    assert_eq!(k.context(&id).unwrap().storage().get("starts").unwrap(), Some(json!(2)));
}

const HOSTILE_PERMS: [&str; 6] = ["storage.read", "storage.write", "events.subscribe:t.hostile.*", "services.provide:hostile", "services.use:hostile", "events.emit:t.victim.*"];

/// The hostile guest installed as `t.<name>`, configured with `config`, under tight bounds.
/// Tight is safe for what the corpus asserts: each case that must fit (registering, echoing)
/// does microseconds of work, and each that must not (a loop) never ends.
async fn hostile(k: &Kernel, root: &Path, name: &str, perms: &[&str], config: Value) -> String {
    hostile_within(k, root, name, perms, config, json!({ "hookMs": 300, "callMs": 100, "memoryMiB": 32 })).await
}

/// The hostile guest under `bounds` (the manifest's `sandbox`).
async fn hostile_within(k: &Kernel, root: &Path, name: &str, perms: &[&str], config: Value, bounds: Value) -> String {
    // The modes that register the `hostile` service declare it (a service name has one
    // owner, so only one such package is installed at a time).
    let registers = ["service-loop", "handler", "huge-return"].contains(&config["mode"].as_str().unwrap_or_default());
    let services = if registers { json!(["hostile"]) } else { json!([]) };
    let id = install(k, root, name, HOSTILE, perms, json!({ "services": services }), json!({ "sandbox": bounds })).await;
    k.set_config(&id, config).unwrap();
    id
}

/// The well-behaved echo guest, enabled: proof that the kernel still serves others.
async fn echo(k: &Kernel, root: &Path) -> String {
    let perms = ["storage.read", "storage.write", "events.subscribe:t.echo.ping", "events.emit:t.echo.pong", "services.provide:echo"];
    let id = install(k, root, "echo", ECHO, &perms, json!({ "events": ["t.echo.pong"], "services": ["echo"] }), json!({})).await;
    k.enable(&id, false).await.unwrap();
    id
}

/// The echo guest answers a built-in's call.
async fn echo_answers(k: &Kernel) {
    let caller = match k.context("t.caller") {
        Ok(c) if k.plugin("t.caller").unwrap().state == State::Enabled => c,
        _ => driver(k, "t.caller", &["services.use:echo"]).await,
    };
    let said = tokio::task::spawn_blocking(move || caller.services().call("echo", "say", json!({ "text": "still there?" }))).await.unwrap().unwrap();
    assert_eq!(said["said"], "still there?");
    assert_eq!(k.plugin("t.echo").unwrap().state, State::Enabled, "the well-behaved plugin is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loops_memory_bombs_and_throws_in_hooks_fail_that_hook_with_a_reason() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let echo = echo(&k, root.path()).await;
    let perms = ["storage.read"];
    let cases = [
        ("loop", "load", "exceeded its 300 ms time budget in its load hook"),
        ("loop", "enable", "exceeded its 300 ms time budget in its enable hook"),
        ("memory", "enable", "ran out of its 32 MiB of memory in its enable hook"),
        ("recursion", "enable", "overflowed its stack (a recursion too deep?) in its enable hook"),
        ("throw", "load", "load hook failed: Error: the guest gave up on purpose"),
        ("promise", "enable", "returned a Promise"),
    ];
    for (i, (mode, place, want)) in cases.iter().enumerate() {
        let id = hostile(&k, root.path(), &format!("h{i}"), &perms, json!({ "mode": mode, "in": place })).await;
        let err = match k.enable(&id, false).await {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{mode} in {place} was enabled: {:?}", logs(&k, &id)),
        };
        assert!(err.contains(want), "{mode} in {place}: {err}");
        assert_eq!(state(&k, &id), State::Error, "{mode} in {place}");
        assert!(last_error(&k, &id).contains(want), "{mode} in {place}: {}", last_error(&k, &id));
    }
    // The loops in disable and unload: the plugin ends in ERROR, the kernel goes on.
    for (i, place) in ["disable", "unload"].iter().enumerate() {
        let id = hostile(&k, root.path(), &format!("late{i}"), &perms, json!({ "mode": "loop", "in": place })).await;
        k.enable(&id, false).await.unwrap();
        let err = if *place == "disable" { k.disable(&id, false).await.unwrap_err() } else {
            k.disable(&id, false).await.unwrap();
            k.unload(&id).await.unwrap_err()
        };
        assert!(err.to_string().contains(&format!("exceeded its 300 ms time budget in its {place} hook")), "{err}");
    }
    echo_answers(&k).await;
    assert_eq!(state(&k, &echo), State::Enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_import_without_its_grant_is_refused_handled_by_the_guest_and_audited() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let id = hostile(&k, root.path(), "bare", &[], json!({ "mode": "grants" })).await;
    k.enable(&id, false).await.unwrap();
    let line = logs(&k, &id).into_iter().find(|l| l.starts_with("refusals")).expect("the guest logs what was refused");
    for what in ["storage.get", "storage.set", "events.emit", "events.on", "services.call", "services.register", "kernel"] {
        assert!(line.contains(&format!("{what}: permission-denied")), "{what}: {line}");
    }
    for what in ["long-service", "long-method", "long-pattern", "long-topic"] {
        assert!(line.contains(&format!("{what}: invalid")), "{what}: {line}");
    }
    // Nothing a plugin names reaches the audit trail unbounded.
    k.flush();
    let all = k.audit(&AuditQuery { plugin: Some(id.clone()), limit: Some(1000), ..Default::default() }).unwrap();
    assert!(all.iter().all(|r| r.details.to_string().len() < 1024), "{:?}", all.iter().map(|r| r.details.to_string().len()).max());
    let denied: Vec<String> = audit(&k, &id, "permission.denied").iter().map(|d| d["permission"].as_str().unwrap_or_default().to_string()).collect();
    for p in ["storage.read", "storage.write", "events.emit:t.hostile.ping", "events.subscribe:data.**", "services.use:data", "services.provide:hostile", "services.use:kernel"] {
        assert!(denied.iter().any(|d| d == p), "{p} not audited: {denied:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_topics_and_endless_subscriptions_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let id = hostile(&k, root.path(), "squatter", &HOSTILE_PERMS, json!({ "mode": "foreign-topic" })).await;
    let err = k.enable(&id, false).await.unwrap_err().to_string();
    assert!(err.contains("t.victim.ping"), "{err}");
    assert_eq!(audit(&k, &id, "topic.refused").len(), 1);

    let id = hostile(&k, root.path(), "hoarder", &HOSTILE_PERMS, json!({ "mode": "subscribe-forever" })).await;
    let err = k.enable(&id, false).await.unwrap_err().to_string();
    assert!(err.contains(&format!("at most {} subscriptions", objectos_sandbox::MAX_SUBSCRIPTIONS)), "{err}");
    assert!(!audit(&k, &id, "limit.exceeded").is_empty());
    assert_eq!(state(&k, &id), State::Error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_calls_are_bounded_and_repeated_failures_quarantine_the_plugin() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let echo = echo(&k, root.path()).await;
    let id = hostile(&k, root.path(), "spinner", &HOSTILE_PERMS, json!({ "mode": "service-loop" })).await;
    k.enable(&id, false).await.unwrap();
    k.grant("com.objectos.notification", GrantRequest::All).unwrap();
    k.enable("com.objectos.notification", true).await.unwrap();
    let caller = driver(&k, "t.caller", &["services.use:hostile", "services.use:echo"]).await;
    let call = |method: &'static str| {
        let caller = caller.clone();
        async move { tokio::task::spawn_blocking(move || caller.services().call("hostile", method, json!({}))).await.unwrap() }
    };
    assert_eq!(call("echo").await.unwrap(), json!({ "args": {}, "caller": "t.caller" }));
    let again = call("again").await.unwrap_err().to_string();
    assert!(again.contains("already in this chain of calls"), "{again}");
    // Errors the guest returns (a caller's doing) do not count; its own overruns do.
    for _ in 0..3 {
        assert!(call("again").await.is_err());
    }
    for i in 0..objectos_sandbox::QUARANTINE_FAILURES {
        let spin = call("spin").await.unwrap_err().to_string();
        assert!(spin.contains(&format!("{id} exceeded its 100 ms time budget in its service call hostile.spin (from t.caller)")), "{spin}");
        if i + 1 < objectos_sandbox::QUARANTINE_FAILURES {
            assert_eq!(state(&k, &id), State::Enabled, "after {} overruns", i + 1);
        }
    }
    wait_until(20, "the quarantine", || state(&k, &id) == State::Error).await;
    let why = last_error(&k, &id);
    assert!(why.starts_with("quarantined: its code failed 5 times within 10 minutes"), "{why}");
    assert_eq!(k.plugin(&id).unwrap().last_error.unwrap().kind, objectos_kernel::model::views::FailureKind::Quarantined);
    assert_eq!(audit(&k, &id, "plugin.quarantined").len(), 1);
    let inbox = k.service::<objectos_notification::Inbox>(objectos_notification::INBOX).unwrap();
    let title = format!("{id} was stopped");
    wait_until(20, "the admin's notice", || inbox.list(10, false).unwrap().iter().any(|i| i.message.title == title && i.message.body.contains("failed 5 times"))).await;
    // Kept across a restart: it is not started again until the admin enables it.
    assert_eq!(k.plugin(&id).unwrap().desired, State::Installed);
    assert!(k.services().iter().all(|s| s.name != "hostile"), "its service is gone");
    echo_answers(&k).await;
    assert_eq!(state(&k, &echo), State::Enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_size_bound_is_refused_with_the_bound_named() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    // The most time a host allows a call: the refusal asserted is the size's, whatever the CPU.
    let ceiling = objectos_sandbox::Ceilings::default().call_ms;
    let id = hostile_within(&k, root.path(), "sizer", &HOSTILE_PERMS, json!({ "mode": "service-loop" }), json!({ "callMs": ceiling })).await;
    k.enable(&id, false).await.unwrap();
    let caller = driver(&k, "t.caller", &["services.use:hostile"]).await;
    let big = tokio::task::spawn_blocking(move || caller.services().call("hostile", "big", json!({}))).await.unwrap().unwrap_err().to_string();
    // One byte over the bound: the string's characters and its two quotes.
    let bound = objectos_sandbox::MAX_TEXT_BYTES;
    assert!(big.contains(&format!("returned {} bytes; at most {bound}", bound + 1)), "{big}");
    assert_eq!(state(&k, &id), State::Enabled, "a refused result is the caller's failure, not a hang");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_over_its_budget_fails_alone_and_the_instance_comes_back() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let id = hostile(&k, root.path(), "listener", &HOSTILE_PERMS, json!({ "mode": "handler" })).await;
    k.enable(&id, false).await.unwrap();
    let emitter = driver(&k, "t.emitter", &["events.emit:t.hostile.*"]).await;
    emitter.events().emit("t.hostile.bad", json!({})).unwrap();
    let want = format!("handler for `t.hostile.bad` failed: {id} exceeded its 100 ms time budget in its handler for t.hostile.bad");
    wait_until(20, "the handler's failure in the log", || logs(&k, &id).iter().any(|l| l.contains(&want))).await;
    wait_until(20, "the instance's restart", || logs(&k, &id).iter().any(|l| l.contains("instance was replaced"))).await;
    emitter.events().emit("t.hostile.good", json!({ "n": 1 })).unwrap();
    let ctx = k.context(&id).unwrap();
    wait_until(20, "the new instance handling events", || ctx.storage().get("heard.t.hostile.good").unwrap().is_some()).await;
    assert_eq!(state(&k, &id), State::Enabled, "one failure is not a quarantine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lead_scoring_sample_scores_new_leads_through_the_data_service() {
    use objectos_declarative::caller::Admin;
    use objectos_declarative::data::Data;
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packages/lead-scoring");
    let id = k.install_package(&sample, false).await.unwrap().id;
    assert_eq!(id, "com.acme.leads");
    let code = k.plugin(&id).unwrap().code.expect("the review shows the code");
    assert_eq!((code.main.as_str(), code.language.as_str()), ("index.js", "JavaScript"));
    assert_eq!((code.bounds.memory_mib, code.bounds.call_ms, code.bounds.hook_ms), (Some(32), Some(250), Some(1_000)), "the manifest's bounds, the defaults for the rest");
    k.grant(&id, GrantRequest::All).unwrap();
    k.grant("com.objectos.notification", GrantRequest::All).unwrap();
    k.enable(&id, true).await.unwrap();

    let data = k.service::<Data>("data").unwrap();
    let admin = Admin(k.clone());
    let hot = data.create(&admin, "com.acme.leads/lead", json!({ "name": "Ada", "company": "Analytical Engines Ltd", "email": "ada@engines.example", "source": "referral", "employees": 120, "budget": 60000 })).unwrap();
    let cold = data.create(&admin, "com.acme.leads/lead", json!({ "name": "Bob", "email": "bob@gmail.com", "source": "cold" })).unwrap();
    let read = |rid: &Value| data.get(&admin, "com.acme.leads/lead", rid.as_str().unwrap()).unwrap().unwrap();
    wait_until(20, "both leads scored", || read(&hot["id"]).contains_key("score") && read(&cold["id"]).contains_key("score")).await;
    assert_eq!((read(&hot["id"])["score"].clone(), read(&hot["id"])["grade"].clone()), (json!(90), json!("hot")));
    assert_eq!((read(&cold["id"])["score"].clone(), read(&cold["id"])["grade"].clone()), (json!(5), json!("cold")));
    // The handler logs after it writes the score: its line may come a moment later.
    wait_until(20, "the hot lead's log line", || logs(&k, &id).iter().any(|l| l.starts_with("scored Ada: 90 (hot)"))).await;

    // The hot lead is in the admin's inbox.
    let inbox = k.service::<objectos_notification::Inbox>(objectos_notification::INBOX).unwrap();
    wait_until(20, "the hot lead's notice", || inbox.list(10, false).unwrap().iter().any(|i| i.message.title == "Hot lead: Ada")).await;

    // Another plugin scores with its service.
    let caller = driver(&k, "t.caller", &["services.use:leads.score"]).await;
    let scored = tokio::task::spawn_blocking(move || caller.services().call("leads.score", "score", json!({ "source": "event", "employees": 12, "budget": 2000 }))).await.unwrap().unwrap();
    assert_eq!(scored, json!({ "score": 40, "grade": "warm" }));
}

/// A component of `world` (in `wit`, beside the objectos world) whose every export traps.
fn trapping_component(wit: Option<&str>, world: &str) -> Vec<u8> {
    use wit_parser::{LiftLowerAbi, ManglingAndAbi};
    let mut resolve = wit_parser::Resolve::default();
    let ours = resolve.push_str("plugin.wit", objectos_sandbox::WIT).unwrap();
    let pkg = match wit {
        Some(text) => resolve.push_str("extra.wit", text).unwrap(),
        None => ours,
    };
    let world = resolve.select_world(&[pkg], Some(world)).unwrap();
    let mut module = wit_component::dummy_module(&resolve, world, ManglingAndAbi::Legacy(LiftLowerAbi::Sync));
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8).unwrap();
    wit_component::ComponentEncoder::default().module(&module).unwrap().validate(true).encode().unwrap()
}

fn wasm_package(root: &Path, name: &str, wasm: &[u8]) -> std::path::PathBuf {
    let m = json!({ "id": format!("t.{name}"), "name": name, "version": "1.0.0", "main": "plugin.wasm" });
    let dir = package_dir(root, name, &m.to_string(), &[]);
    std::fs::write(dir.join("plugin.wasm"), wasm).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_imports_what_the_host_does_not_give_is_refused_at_install() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let evil = "package acme:evil;\ninterface net { connect: func(host: string) -> u32; }\nworld evil { include objectos:plugin/plugin@0.1.0; import net; }\n";
    let dir = wasm_package(root.path(), "netter", &trapping_component(Some(evil), "evil"));
    let err = k.install_package(&dir, false).await.unwrap_err().to_string();
    assert!(err.contains("main: plugin.wasm imports `acme:evil/net`, which ObjectOS does not give plugins"), "{err}");
    // WASI's sockets are not linked: a component that imports them is refused by name.
    let sockets = "package wasi:sockets@0.2.0;\ninterface tcp { connect: func(host: string) -> u32; }\nworld sock { include objectos:plugin/plugin@0.1.0; import tcp; }\n";
    let dir = wasm_package(root.path(), "socketeer", &trapping_component(Some(sockets), "sock"));
    let err = k.install_package(&dir, false).await.unwrap_err().to_string();
    assert!(err.contains("main: plugin.wasm imports `wasi:sockets/tcp@0.2.0`, which ObjectOS does not give plugins"), "{err}");
    assert!(err.contains("there are no sockets"), "{err}");
    let dir = wasm_package(root.path(), "garbage", b"\0asm not really");
    let err = k.install_package(&dir, false).await.unwrap_err().to_string();
    assert!(err.contains("main: not a valid WebAssembly component"), "{err}");
    let empty = "package acme:empty;\nworld empty { import objectos:plugin/log@0.1.0; }\n";
    let dir = wasm_package(root.path(), "hollow", &trapping_component(Some(empty), "empty"));
    let err = k.install_package(&dir, false).await.unwrap_err().to_string();
    assert!(err.contains("does not export the objectos:plugin@0.1.0 world's `guest` interface"), "{err}");
    assert!(k.plugins().unwrap().iter().all(|p| !p.manifest.id.starts_with("t.")), "nothing was installed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_in_every_hook_and_handler_is_reported_and_contained() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let echo = echo(&k, root.path()).await;
    let wasm = trapping_component(None, "plugin");
    // A failed install hook leaves the package installed, in ERROR with the reason.
    let outcome = k.install_package(&wasm_package(root.path(), "trapper", &wasm), false).await.unwrap();
    assert_eq!(outcome.state, State::Error);
    let msg = "t.trapper trapped: it reached code marked unreachable (a panic or abort in the guest) in its";
    assert!(last_error(&k, "t.trapper").contains(&format!("{msg} install hook")), "{}", last_error(&k, "t.trapper"));
    // Each try starts a fresh instance and fails the same way.
    for _ in 0..2 {
        let e = k.enable("t.trapper", false).await.unwrap_err().to_string();
        assert!(e.contains(&format!("{msg} load hook")), "{e}");
    }
    echo_answers(&k).await;
    assert_eq!(state(&k, &echo), State::Enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_that_does_not_load_or_misspells_a_hook_is_refused_with_the_place() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    for (name, js, want) in [
        ("syntax", "export function onEnable(ctx) { ctx.log.info(\"x\" }", "Unexpected token"),
        ("typo", "export function onenable(ctx) {}", "index.js exports onenable, which is not a hook: did you mean onEnable?"),
        ("import", "import x from \"./missing.js\";\nexport function onEnable() { x(); }", "missing.js"),
    ] {
        let m = json!({ "id": format!("t.{name}"), "name": name, "version": "1.0.0", "main": "index.js" });
        let dir = package_dir(root.path(), name, &m.to_string(), &[("index.js", js)]);
        let e = k.install_package(&dir, false).await.unwrap_err().to_string();
        assert!(e.contains("main: index.js does not load as a plugin") && e.contains(want), "{name}: {e}");
        // The check (what `objectos manifest check` runs) says the same.
        let runtime = Runtime::new(cache());
        let e = objectos_kernel::package::check_package_with(&dir, &runtime, &[]).unwrap_err().to_string();
        assert!(e.contains(want), "{name}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_author_kits_example_installs_enables_and_answers() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/example/greeter");
    let id = k.install_package(&example, false).await.unwrap().id;
    k.grant(&id, GrantRequest::All).unwrap();
    k.enable(&id, true).await.unwrap();
    let caller = driver(&k, "t.caller", &["services.use:greeter"]).await;
    let out = tokio::task::spawn_blocking(move || (0..2).map(|_| caller.services().call("greeter", "greet", json!({ "name": "Ada" })).unwrap()).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(out, [json!({ "text": "Hello, Ada!", "count": 1 }), json!({ "text": "Hello, Ada!", "count": 2 })]);
    assert!(logs(&k, &id).iter().any(|l| l.starts_with("greeted Ada for t.caller")), "{:?}", logs(&k, &id));
}

/// A kernel on `root/data` whose compiled code goes to a cache of its own, `cache`, so a
/// test can look at (and tamper with) what the host wrote there.
async fn own_cache_kernel(root: &Path, cache: &Path) -> Kernel {
    let config = KernelConfig::new(root.join("data")).runtime(Arc::new(Runtime::new(Cache::at(cache))));
    let k = Kernel::open(config).unwrap();
    objectos_declarative::register(&k).unwrap();
    k.start().await.unwrap();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_deserializes_the_compiled_code_and_a_bad_artifact_is_compiled_again() {
    let root = tempfile::tempdir().unwrap();
    let cache_dir = root.path().join("cache");
    let open = || own_cache_kernel(root.path(), &cache_dir);
    let compiled = || -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
        let mut v: Vec<_> = std::fs::read_dir(&cache_dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "cwasm")).map(|p| (p.clone(), std::fs::metadata(&p).unwrap().modified().unwrap())).collect();
        v.sort();
        v
    };
    let k = open().await;
    let perms = ["storage.read", "storage.write", "events.subscribe:t.echo.ping", "events.emit:t.echo.pong", "services.provide:echo"];
    let id = install(&k, root.path(), "echo", ECHO, &perms, json!({ "events": ["t.echo.pong"], "services": ["echo"] }), json!({})).await;
    k.enable(&id, false).await.unwrap();
    let first = compiled();
    assert_eq!(first.len(), 1, "compiled once, at install");
    k.shutdown().await;
    drop(k);

    // A restart: the same artifact, read and not written.
    let k = open().await;
    assert_eq!(k.plugin(&id).unwrap().state, State::Enabled);
    assert_eq!(compiled(), first, "a restart never recompiles");
    k.shutdown().await;
    drop(k);

    // An artifact wasmtime refuses (another engine's, or damaged) is compiled again.
    std::fs::write(&first[0].0, b"not machine code").unwrap();
    let k = open().await;
    assert_eq!(k.plugin(&id).unwrap().state, State::Enabled, "{}", last_error(&k, &id));
    assert!(std::fs::metadata(&first[0].0).unwrap().len() > 1_000_000, "the artifact was written again");
}

const REACH: &str = include_str!("guests/reach.js");

/// Install the `reach` guest with `perms` (each approved) and a driver that calls it.
async fn reach(k: &Kernel, root: &Path, perms: &[&str]) -> (String, objectos_kernel::PluginContext) {
    reach_with(k, root, perms, json!({})).await
}

async fn reach_with(k: &Kernel, root: &Path, perms: &[&str], extra: Value) -> (String, objectos_kernel::PluginContext) {
    let mut all = vec!["services.provide:reach"];
    all.extend_from_slice(perms);
    let id = install(k, root, "reach", REACH, &all, json!({ "services": ["reach"] }), extra).await;
    k.enable(&id, true).await.unwrap();
    (id, driver(k, "t.driver", &["services.use:reach"]).await)
}

fn ask(ctx: &objectos_kernel::PluginContext, method: &str, args: Value) -> Value {
    ctx.services().call("reach", method, args).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_requests_reach_granted_hosts_only_at_every_hop_and_every_address() {
    use objectos_tests::LoopbackServer;
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let other = LoopbackServer::start(|_| (200, vec![], b"the local network".to_vec()));
    let other_port = other.port;
    let third = LoopbackServer::start(|_| (200, vec![], b"third".to_vec()));
    let third_port = third.port;
    let server = LoopbackServer::start(move |r| match r.path.as_str() {
        "/ok" => (200, vec![("content-type".into(), "text/plain".into())], format!("hello {}", r.body).into_bytes()),
        "/hop" => (302, vec![("location".into(), "/ok".into())], vec![]),
        "/away" => (307, vec![("location".into(), format!("http://127.0.0.1:{other_port}/secret"))], vec![]),
        "/cross" => (307, vec![("location".into(), format!("http://127.0.0.1:{third_port}/landed"))], vec![]),
        "/big" => (200, vec![], vec![b'x'; 5 << 20]),
        _ => (404, vec![], b"no such page".to_vec()),
    });
    let granted = format!("network.connect:127.0.0.1:{}", server.port);
    let by_name = format!("network.connect:localhost:{}", server.port);
    let third_grant = format!("network.connect:127.0.0.1:{third_port}");
    let (id, ctx) = reach(&k, root.path(), &[&granted, &by_name, &third_grant]).await;

    // A granted literal address: the request goes out, and the body comes back.
    let r = ask(&ctx, "request", json!({ "method": "POST", "url": server.url("/ok"), "body": "there", "headers": { "authorization": "Bearer t" } }));
    assert_eq!(r["ok"]["status"], 200, "{r}");
    assert_eq!(r["ok"]["body"], "hello there");
    assert_eq!(r["ok"]["type"], "text/plain");
    let seen = server.received();
    assert!(seen[0].header("user-agent").unwrap().starts_with("ObjectOS/"), "{seen:?}");
    assert_eq!(seen[0].header("authorization"), Some("Bearer t"));

    // A redirect on the same origin is followed; the final URL is reported.
    let r = ask(&ctx, "request", json!({ "url": server.url("/hop") }));
    assert_eq!(r["ok"]["status"], 200, "{r}");
    assert_eq!(r["ok"]["url"], server.url("/ok"));

    // A redirect to another granted origin: followed, without anything that could be a
    // credential (only a short list of headers goes along).
    let r = ask(&ctx, "request", json!({ "method": "PUT", "url": server.url("/cross"), "body": "b", "headers": { "x-api-key": "k1", "authorization": "Bearer t", "content-type": "text/plain", "accept": "text/plain" } }));
    assert_eq!(r["ok"]["body"], "third", "{r}");
    let landed = third.received();
    assert_eq!((landed[0].method.as_str(), landed[0].body.as_str()), ("PUT", "b"), "a 307 keeps the method and body");
    assert_eq!((landed[0].header("x-api-key"), landed[0].header("authorization")), (None, None), "{landed:?}");
    assert_eq!((landed[0].header("content-type"), landed[0].header("accept")), (Some("text/plain"), Some("text/plain")));

    // An ungranted port: refused before anything connects, and audited.
    let r = ask(&ctx, "request", json!({ "url": other.url("/direct") }));
    assert_eq!(r["code"], "permission-denied", "{r}");
    assert!(r["message"].as_str().unwrap().contains(&format!("network.connect:127.0.0.1:{other_port}")), "{r}");

    // A granted host redirecting to an ungranted one: the hop is refused.
    let r = ask(&ctx, "request", json!({ "method": "POST", "url": server.url("/away"), "body": "x" }));
    assert_eq!(r["code"], "permission-denied", "{r}");
    assert!(r["message"].as_str().unwrap().contains("redirected to"), "{r}");
    assert!(other.received().is_empty(), "the ungranted server was reached: {:?}", other.received());

    // A name granted as a name, resolving to loopback: refused, naming the literal grant.
    let r = ask(&ctx, "request", json!({ "url": format!("http://localhost:{}/ok", server.port) }));
    assert_eq!(r["code"], "permission-denied", "{r}");
    let message = r["message"].as_str().unwrap();
    assert!(message.contains("not a public address") && (message.contains("127.0.0.1") || message.contains("::1")), "{r}");
    let before = server.received().len();

    // A response over the bound: refused, audited as a limit.
    let r = ask(&ctx, "request", json!({ "url": server.url("/big") }));
    assert_eq!(r["code"], "over-limit", "{r}");

    // What the URL itself gets wrong is said.
    for (url, says) in [("ftp://127.0.0.1/x", "only https:// and http://"), ("/relative", "not an absolute URL"), (&format!("http://u:p@127.0.0.1:{}/ok", server.port) as &str, "user name or password")] {
        let r = ask(&ctx, "request", json!({ "url": url }));
        assert_eq!(r["code"], "invalid", "{url}: {r}");
        assert!(r["message"].as_str().unwrap().contains(says), "{url}: {r}");
    }
    let r = ask(&ctx, "request", json!({ "url": server.url("/ok"), "headers": { "host": "evil.example.com" } }));
    assert!(r["message"].as_str().unwrap().contains("host's to set"), "{r}");
    assert_eq!(server.received().len(), before + 1, "only the big response's request reached the server after the refusals");

    let denied: Vec<String> = audit(&k, &id, "permission.denied").iter().map(|d| d["permission"].as_str().unwrap_or_default().to_string()).collect();
    assert!(denied.iter().any(|p| p == &format!("network.connect:127.0.0.1:{other_port}")), "{denied:?}");
    assert!(denied.iter().filter(|p| p.starts_with(&format!("network.connect:127.0.0.1:{other_port}"))).count() >= 2, "the redirect's refusal is audited too: {denied:?}");
    let calls: Vec<String> = audit(&k, &id, "permission.denied").iter().map(|d| d["call"].as_str().unwrap_or_default().to_string()).collect();
    assert!(calls.iter().any(|c| c.contains("localhost resolved to")), "{calls:?}");
    assert!(!audit(&k, &id, "limit.exceeded").is_empty());

    // Requests are counted per host with their statuses.
    let stats = k.activity().into_iter().find(|a| a.id == id).unwrap().stats;
    let code = stats.code.expect("code stats");
    let host = &code.requests[&format!("127.0.0.1:{}", server.port)];
    assert_eq!(host.statuses.get(&200), Some(&3), "{code:?}");
    assert_eq!(host.statuses.get(&302), Some(&1), "{code:?}");
    assert_eq!(host.statuses.get(&307), Some(&2), "{code:?}");
    assert!(host.bytes_received >= 4 << 20, "{code:?}");
    assert!(!code.requests.contains_key(&format!("localhost:{}", server.port)), "a refused request is a denial, not a request: {code:?}");
    assert!(stats.recent.iter().map(|b| b.requests).sum::<u32>() >= 5);
    assert!(stats.permission_denials >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_stay_inside_granted_folders_whatever_the_path_or_link() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let base = root.path().canonicalize().unwrap();
    let (work, shelf) = (base.join("work"), base.join("shelf"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&shelf).unwrap();
    std::fs::write(base.join("secret.txt"), "the admin's").unwrap();
    std::fs::write(shelf.join("price-list.txt"), "apples 3").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(base.join("secret.txt"), work.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(&base, work.join("up")).unwrap();
    }
    let write = format!("fs.write:{}", work.display());
    let read = format!("fs.read:{}", shelf.display());
    let (id, ctx) = reach_with(&k, root.path(), &[&write], json!({ "optionalPermissions": [read] })).await;
    let p = |dir: &Path, name: &str| format!("{}/{name}", dir.display());

    let folders = ask(&ctx, "folders", json!({}));
    assert_eq!(folders, json!([{ "path": shelf.display().to_string(), "writable": false }, { "path": work.display().to_string(), "writable": true }]));
    assert_eq!(ask(&ctx, "write", json!({ "path": p(&work, "notes.txt"), "text": "ok" })), json!({ "ok": null }));
    assert_eq!(ask(&ctx, "read", json!({ "path": p(&work, "notes.txt") }))["ok"], "ok");
    assert_eq!(ask(&ctx, "createFolder", json!({ "path": p(&work, "a/b") })), json!({ "ok": null }));
    let listed = ask(&ctx, "list", json!({ "path": work.display().to_string() }));
    let names: Vec<&str> = listed["ok"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "link.txt", "notes.txt", "up"], "{listed}");
    assert_eq!(ask(&ctx, "read", json!({ "path": p(&shelf, "price-list.txt") }))["ok"], "apples 3");
    assert_eq!(ask(&ctx, "remove", json!({ "path": p(&work, "notes.txt") })), json!({ "ok": true }));

    // Out of the folder by `..`, by a link to a file, by a link to a folder; into a
    // read-only folder; anywhere else: each refused and audited.
    for (method, path, says) in [
        ("read", p(&work, "../secret.txt"), ".."),
        ("read", p(&work, "link.txt"), "link out of"),
        ("read", p(&work, "up/secret.txt"), "link out of"),
        ("write", p(&work, "up/secret.txt"), "link out of"),
        ("write", p(&shelf, "price-list.txt"), "fs.write"),
        ("remove", p(&shelf, "price-list.txt"), "fs.write"),
        ("read", base.join("secret.txt").display().to_string(), "fs.read"),
        ("list", "/etc".to_string(), "fs.read:/etc"),
    ] {
        let r = ask(&ctx, method, json!({ "path": path, "text": "overwritten" }));
        assert_eq!(r["code"], "permission-denied", "{method} {path}: {r}");
        assert!(r["message"].as_str().unwrap().contains(says), "{method} {path}: {r}");
    }
    assert_eq!(std::fs::read_to_string(base.join("secret.txt")).unwrap(), "the admin's");
    assert_eq!(std::fs::read_to_string(shelf.join("price-list.txt")).unwrap(), "apples 3");
    assert_eq!(ask(&ctx, "read", json!({ "path": "relative.txt" }))["code"], "invalid");
    assert!(audit(&k, &id, "permission.denied").len() >= 8);

    // Revoked, a folder is closed at once (the plugin stays enabled: the grant was optional).
    k.revoke(&id, std::slice::from_ref(&read), false).await.unwrap();
    let r = ask(&ctx, "read", json!({ "path": p(&shelf, "price-list.txt") }));
    assert_eq!(r["code"], "permission-denied", "{r}");
    assert_eq!(ask(&ctx, "folders", json!({})), json!([{ "path": work.display().to_string(), "writable": true }]));

    // A grant for a folder that is not there is refused when the admin approves it.
    let missing = format!("fs.read:{}", base.join("nowhere").display());
    let m = json!({ "id": "t.missing", "name": "missing", "version": "1.0.0", "main": "index.js", "permissions": [missing] });
    let dir = objectos_tests::package_dir(root.path(), "missing", &m.to_string(), &[("index.js", "export function onEnable(ctx) {}")]);
    k.install_package(&dir, false).await.unwrap();
    let e = k.grant("t.missing", GrantRequest::All).unwrap_err().to_string();
    assert!(e.contains("does not exist") && e.contains("nowhere"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_setting_reaches_the_code_and_never_the_log_the_audit_or_the_console() {
    use objectos_tests::LoopbackServer;
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let server = LoopbackServer::start(|_| (204, vec![], vec![]));
    let settings = json!({ "settings": {
        "token": { "type": "string", "secret": true, "required": true, "title": "API token" },
        "repo": { "type": "string", "default": "acme/shop" },
        "url": { "type": "string" },
    } });
    let (id, ctx) = reach_with(&k, root.path(), &[&format!("network.connect:127.0.0.1:{}", server.port)], settings).await;
    const TOKEN: &str = "ghp_s3cr3t-t0ken-value";
    k.set_settings(&id, json!({ "token": TOKEN, "url": server.url("/hook") }).as_object().unwrap().clone()).unwrap();

    // The code gets it, with the defaults, at the time of the call.
    let config = ask(&ctx, "config", json!({}));
    assert_eq!(config, json!({ "token": TOKEN, "repo": "acme/shop", "url": server.url("/hook") }));
    assert_eq!(ask(&ctx, "tell", json!({})), json!({ "ok": 204 }));
    assert_eq!(server.received()[0].header("authorization"), Some(&*format!("Bearer {TOKEN}")));

    // The console sees whether it is set, never the value; the log and the audit never hold it.
    let order: Vec<String> = k.settings(&id).unwrap().into_iter().map(|s| s.key).collect();
    assert_eq!(order, ["token", "repo", "url"], "the console's form follows the manifest");
    let shown = serde_json::to_string(&k.settings(&id).unwrap()).unwrap();
    assert!(!shown.contains(TOKEN) && shown.contains(r#""key":"token""#) && shown.contains(r#""set":true"#), "{shown}");
    let lines = logs(&k, &id);
    assert!(lines.iter().any(|l| l.contains("using token [secret token]")), "{lines:?}");
    let c = ctx.clone();
    let e = tokio::task::spawn_blocking(move || c.services().call("reach", "fail", json!({}))).await.unwrap().unwrap_err().to_string();
    assert!(e.contains("refused token [secret token]") && !e.contains(TOKEN), "{e}");
    k.flush();
    let everything = serde_json::to_string(&k.audit(&AuditQuery { limit: Some(10_000), ..Default::default() }).unwrap()).unwrap();
    let logged = serde_json::to_string(&k.logs(&LogQuery { limit: Some(10_000), ..Default::default() }).unwrap()).unwrap();
    assert!(!everything.contains(TOKEN) && !logged.contains(TOKEN), "a secret leaked");
    assert!(everything.contains(r#""secrets":["token"]"#), "the change is audited by key");
    assert!(!serde_json::to_string(&k.plugin(&id).unwrap()).unwrap().contains(TOKEN));

    // A secret is never set through the configuration (which is shown), and values are typed.
    let e = k.set_config(&id, json!({ "token": "x" })).unwrap_err().to_string();
    assert!(e.contains("setting `token`") && e.contains("secret"), "{e}");
    let e = k.set_settings(&id, json!({ "repo": 5 }).as_object().unwrap().clone()).unwrap_err().to_string();
    assert!(e.contains("setting `repo`") && e.contains("must be text"), "{e}");
    let e = k.set_settings(&id, json!({ "tokn": "x" }).as_object().unwrap().clone()).unwrap_err().to_string();
    assert!(e.contains("no such setting") && e.contains("token"), "{e}");

    // Unset, it is gone from the code's configuration too.
    k.set_settings(&id, json!({ "token": null }).as_object().unwrap().clone()).unwrap();
    assert!(ask(&ctx, "config", json!({})).get("token").is_none());
    assert!(k.settings(&id).unwrap().iter().any(|s| s.key == "token" && !s.set));
}

/// A copy of sample package `name`, with `extra` optional permissions (a loopback server's
/// literal address, which the sample cannot know).
fn sample_with(root: &Path, name: &str, extra: &[String]) -> std::path::PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packages").join(name);
    let to = root.join(format!("sample-{name}"));
    for entry in walk(&from) {
        let target = to.join(entry.strip_prefix(&from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    let manifest = to.join("plugin.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let optional = m["optionalPermissions"].as_array().cloned().unwrap_or_default();
    m["optionalPermissions"] = Value::Array(optional.into_iter().chain(extra.iter().map(|p| json!(p))).collect());
    std::fs::write(&manifest, m.to_string()).unwrap();
    to
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

fn settings(values: Value) -> serde_json::Map<String, Value> {
    values.as_object().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_github_connector_brings_issues_in_from_a_granted_api_on_its_schedule() {
    use objectos_tests::LoopbackServer;
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let title = Arc::new(std::sync::Mutex::new("Checkout fails on Safari".to_string()));
    let t = title.clone();
    let api = LoopbackServer::start(move |r| {
        if r.path != "/repos/acme/shop/issues?state=all&per_page=100&page=1" {
            return (404, vec![], br#"{"message":"Not Found"}"#.to_vec());
        }
        if r.header("authorization") != Some("Bearer ghp_test_token") {
            return (401, vec![], br#"{"message":"Bad credentials"}"#.to_vec());
        }
        let issues = json!([
            { "number": 7, "title": *t.lock().unwrap(), "state": "open", "html_url": "https://github.com/acme/shop/issues/7", "updated_at": "2026-12-01T10:00:00Z", "user": { "login": "ada" }, "labels": [{ "name": "bug" }] },
            { "number": 8, "title": "Add invoices export", "state": "closed", "html_url": "https://github.com/acme/shop/issues/8", "updated_at": "2026-11-30T09:00:00Z", "user": { "login": "bob" }, "labels": [] },
            { "number": 9, "title": "A pull request", "state": "open", "html_url": "https://github.com/acme/shop/pull/9", "updated_at": "2026-11-30T09:00:00Z", "pull_request": {} },
        ]);
        (200, vec![("content-type".into(), "application/json".into())], issues.to_string().into_bytes())
    });
    let grant = format!("network.connect:127.0.0.1:{}", api.port);
    let id = k.install_package(&sample_with(root.path(), "github-issues", std::slice::from_ref(&grant)), false).await.unwrap().id;
    assert_eq!(id, "com.acme.github");
    k.grant(&id, GrantRequest::All).unwrap();
    k.set_settings(&id, settings(json!({ "repository": "acme/shop", "token": "ghp_test_token", "apiUrl": api.url(""), "schedule": "* * * * * *" }))).unwrap();
    k.enable(&id, true).await.unwrap();

    // The schedule runs the job (every second here), which creates one record per issue.
    let caller = driver(&k, "t.caller", &["services.use:github.issues"]).await;
    let status = |c: &objectos_kernel::PluginContext| c.services().call("github.issues", "status", json!({})).unwrap();
    let c = caller.clone();
    wait_until(30, "a scheduled sync", move || status(&c).get("created") == Some(&json!(2))).await;
    let data = k.service::<objectos_declarative::data::Data>("data").unwrap();
    let admin = objectos_declarative::caller::Admin(k.clone());
    let records = data.list(&admin, "com.acme.github/issue", None, 10).unwrap();
    let mut titles: Vec<String> = records.iter().map(|r| format!("#{} {} ({}, {})", r["number"], r["title"].as_str().unwrap(), r["state"].as_str().unwrap(), r["labels"].as_str().unwrap())).collect();
    titles.sort();
    assert_eq!(titles, ["#7 Checkout fails on Safari (open, bug)", "#8 Add invoices export (closed, )"]);

    // A change on GitHub updates the record, not a new one.
    *title.lock().unwrap() = "Checkout fails on Safari 17".to_string();
    let c = caller.clone();
    let synced = tokio::task::spawn_blocking(move || c.services().call("github.issues", "sync", json!({}))).await.unwrap().unwrap();
    assert_eq!(synced, json!({ "created": 0, "updated": 2, "repository": "acme/shop" }));
    assert!(data.list(&admin, "com.acme.github/issue", None, 10).unwrap().iter().any(|r| r["title"] == "Checkout fails on Safari 17"));
    assert_eq!(data.list(&admin, "com.acme.github/issue", None, 10).unwrap().len(), 2);
    assert!(api.received().iter().all(|r| r.header("authorization") == Some("Bearer ghp_test_token")));

    // Without the loopback grant, the same sync is refused before any request.
    let before = api.received().len();
    k.revoke(&id, &[grant], false).await.unwrap();
    let c = caller.clone();
    let e = tokio::task::spawn_blocking(move || c.services().call("github.issues", "sync", json!({}))).await.unwrap().unwrap_err().to_string();
    assert!(e.contains("network.connect:127.0.0.1"), "{e}");
    k.set_settings(&id, settings(json!({ "schedule": "0 0 1 1 *" }))).unwrap();
    assert!(api.received().len() <= before + 1, "at most a scheduled run that was already under way reached the API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_channel_posts_notices_to_the_granted_chat_and_nowhere_else() {
    use objectos_notification::{DeliveryStatus, Notice, Notifications};
    use objectos_tests::LoopbackServer;
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let chat = LoopbackServer::start(|_| (200, vec![], b"ok".to_vec()));
    let elsewhere = LoopbackServer::start(|_| (200, vec![], b"ok".to_vec()));
    let grant = format!("network.connect:127.0.0.1:{}", chat.port);
    let id = k.install_package(&sample_with(root.path(), "webhook-channel", &[grant]), false).await.unwrap().id;
    k.grant(&id, GrantRequest::All).unwrap();
    k.set_settings(&id, settings(json!({ "url": chat.url("/hooks/team"), "token": "whk-secret-42" }))).unwrap();
    k.enable(&id, true).await.unwrap();

    let sender = driver(&k, "t.sender", &["services.use:notification"]).await;
    let notifications = k.service::<Notifications>("notification").unwrap();
    let report = notifications.send(&sender, Notice::new("Invoice paid", "Acme Ltd paid invoice 2026-0042").via(&["com.acme.webhook"])).await.unwrap();
    assert_eq!(report.deliveries["com.acme.webhook"].status, DeliveryStatus::Delivered, "{report:?}");
    let posted = chat.received();
    assert_eq!(posted.len(), 1);
    assert_eq!((posted[0].method.as_str(), posted[0].path.as_str()), ("POST", "/hooks/team"));
    assert_eq!(posted[0].header("authorization"), Some("Bearer whk-secret-42"));
    assert_eq!(posted[0].header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&posted[0].body).unwrap();
    assert_eq!(body, json!({ "text": "ℹ️ *Invoice paid*\nAcme Ltd paid invoice 2026-0042" }));

    // A URL on a host (here: a port) the admin did not approve: refused, and said.
    k.set_settings(&id, settings(json!({ "url": elsewhere.url("/steal") }))).unwrap();
    let report = notifications.send(&sender, Notice::new("Second", "x").via(&["com.acme.webhook"])).await.unwrap();
    let d = &report.deliveries["com.acme.webhook"];
    assert_ne!(d.status, DeliveryStatus::Delivered);
    assert!(d.error.as_deref().unwrap_or_default().contains("network.connect:127.0.0.1"), "{d:?}");
    assert!(elsewhere.received().is_empty());
    assert!(!audit(&k, &id, "permission.denied").is_empty());

    // A channel is named after its plugin: no package takes `email`, or another's channel.
    for name in ["email", "com.acme.webhook", "t.senderx"] {
        let s = sender.clone();
        let e = tokio::task::spawn_blocking(move || s.services().call("notification", "registerChannel", json!({ "name": name, "service": "x" }))).await.unwrap().unwrap_err().to_string();
        assert!(e.contains("is named `t.sender` or `t.sender.<name>`"), "{name}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builtin_service_name_cannot_be_taken_at_install_or_at_run_time() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    // Declared: refused at install, with the owner named.
    let m = json!({ "id": "t.claimer", "name": "claimer", "version": "1.0.0", "provides": { "services": ["records", "data"] }, "permissions": ["services.provide:data"] });
    let dir = package_dir(root.path(), "claimer", &m.to_string(), &[]);
    let e = k.install_package(&dir, false).await.unwrap_err().to_string();
    assert!(e.contains("provides.services[1]") && e.contains("service `data` is com.objectos.objects's"), "{e}");
    assert!(!e.contains("provides.services[0]"), "an unclaimed name is the package's to take: {e}");

    // Not declared, but granted: refused when registered (the built-in is installed, not
    // yet enabled), audited, and the built-in enables afterwards.
    let perms = ["services.provide:data", "services.provide:hostile"];
    let id = hostile(&k, root.path(), "squatter", &perms, json!({ "mode": "squat", "service": "data" })).await;
    let e = k.enable(&id, false).await.unwrap_err().to_string();
    assert!(e.contains("may not provide service `data`: it is com.objectos.objects's"), "{e}");
    let refused = audit(&k, &id, "service.refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["owner"], "com.objectos.objects");
    k.grant("com.objectos.objects", GrantRequest::All).unwrap();
    k.enable("com.objectos.objects", false).await.unwrap();
    assert_eq!(k.services().iter().find(|s| s.name == "data").map(|s| s.owner.clone()).as_deref(), Some("com.objectos.objects"));

    // A name no one declares is not a package's either, unless it declares it.
    let id = hostile(&k, root.path(), "stray", &["services.provide:unclaimed"], json!({ "mode": "squat", "service": "unclaimed" })).await;
    let e = k.enable(&id, false).await.unwrap_err().to_string();
    assert!(e.contains("a package provides only the services it declares in provides.services"), "{e}");
}

/// `mkfifo path`.
fn fifo(path: &Path) {
    assert!(std::process::Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_grant_never_reaches_the_hosts_data_nor_blocks_nor_follows_a_swapped_folder() {
    let root = tempfile::tempdir().unwrap();
    let base = root.path().canonicalize().unwrap();
    // The data directory lies in the granted folder, as it does under a home folder.
    let (home, shelf, elsewhere) = (base.join("home"), base.join("shelf"), base.join("elsewhere"));
    let data = home.join(".objectos");
    for d in [&home, &shelf, &elsewhere] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(shelf.join("list.txt"), "approved").unwrap();
    std::fs::write(elsewhere.join("list.txt"), "never approved").unwrap();
    let k = kernel_in(&data).await;
    let write = format!("fs.write:{}", home.display());
    let read = format!("fs.read:{}", shelf.display());
    let (id, ctx) = reach(&k, root.path(), &[&write, &read]).await;
    let p = |dir: &Path, name: &str| format!("{}/{name}", dir.display());

    // The review says the data directory is inside the grant, and out of reach.
    let review = k.plugin(&id).unwrap().permissions.into_iter().find(|s| s.permission == write).unwrap();
    assert!(review.excludes.iter().any(|e| Path::new(e) == data), "{:?}", review.excludes);

    // By its path, by a link inside the granted folder, by a hard link: refused, audited.
    // A relative link stays inside the granted folder, so only where it leads tells.
    std::os::unix::fs::symlink(".objectos", home.join("shortcut")).unwrap();
    std::fs::write(data.join("host.txt"), "the host's").unwrap();
    std::fs::hard_link(data.join("host.txt"), home.join("copy.db")).unwrap();
    let before = std::fs::read(data.join("objectos.db")).unwrap().len();
    for (method, path, says) in [
        ("read", p(&data, "objectos.db"), "own data"),
        ("write", p(&data, "objectos.db"), "own data"),
        ("write", p(&data, "planted.txt"), "own data"),
        ("list", data.display().to_string(), "own data"),
        ("read", p(&home.join("shortcut"), "objectos.db"), "own data"),
        ("write", p(&home.join("shortcut"), "planted.txt"), "own data"),
        ("list", p(&home, "shortcut"), "own data"),
        ("createFolder", p(&home.join("shortcut"), "new/deeper"), "own data"),
        ("remove", p(&home.join("shortcut"), "objectos.db"), "own data"),
        // What is not there is refused the same: a refusal tells nothing of what the host keeps.
        ("remove", p(&home.join("shortcut"), "nothing-here"), "own data"),
        ("read", p(&home.join("shortcut"), "nothing-here"), "own data"),
        ("list", p(&home.join("shortcut"), "no-folder"), "own data"),
        ("read", p(&home, "copy.db"), "2 names"),
        ("write", p(&home, "copy.db"), "2 names"),
    ] {
        let r = ask(&ctx, method, json!({ "path": path, "text": "overwritten" }));
        assert_eq!(r["code"], "permission-denied", "{method} {path}: {r}");
        assert!(r["message"].as_str().unwrap().contains(says), "{method} {path}: {r}");
    }
    assert!(!data.join("planted.txt").exists() && !data.join("new").exists());
    assert!(std::fs::read(data.join("objectos.db")).unwrap().len() >= before, "the database was not truncated");
    assert_eq!(k.plugin(&id).unwrap().state, State::Enabled, "the kernel's database still works");
    // Elsewhere in the folder, files work as before.
    assert_eq!(ask(&ctx, "write", json!({ "path": p(&home, "notes.txt"), "text": "ok" })), json!({ "ok": null }));

    // A pipe is refused at once, read or written, and so is a link in a write's last step.
    fifo(&home.join("pipe"));
    let r = ask(&ctx, "read", json!({ "path": p(&home, "pipe") }));
    assert_eq!(r["code"], "invalid", "{r}");
    assert!(r["message"].as_str().unwrap().contains("not a regular file"), "{r}");
    let r = ask(&ctx, "write", json!({ "path": p(&home, "pipe"), "text": "x" }));
    assert!(r["code"] == "invalid" || r["code"] == "failed", "{r}");
    std::os::unix::fs::symlink(home.join("notes.txt"), home.join("notes-link")).unwrap();
    let r = ask(&ctx, "write", json!({ "path": p(&home, "notes-link"), "text": "x" }));
    assert!(r["message"].as_str().unwrap().contains("a write does not follow links"), "{r}");

    // The approved folder replaced by a link to another: refused until approved again.
    assert_eq!(ask(&ctx, "read", json!({ "path": p(&shelf, "list.txt") }))["ok"], "approved");
    std::fs::rename(&shelf, base.join("shelf-old")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &shelf).unwrap();
    let r = ask(&ctx, "read", json!({ "path": p(&shelf, "list.txt") }));
    assert_eq!(r["code"], "permission-denied", "{r}");
    assert!(r["message"].as_str().unwrap().contains("no longer the folder that was approved"), "{r}");
    k.grant(&id, GrantRequest::Some(vec![read.clone()])).unwrap();
    assert_eq!(ask(&ctx, "read", json!({ "path": p(&shelf, "list.txt") }))["ok"], "never approved", "approved again, as it is now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_that_quarantine_are_counted_across_processes() {
    let root = tempfile::tempdir().unwrap();
    let spin = |k: Kernel| async move {
        let caller = match k.context("t.caller") {
            Ok(c) if k.plugin("t.caller").unwrap().state == State::Enabled => c,
            _ => driver(&k, "t.caller", &["services.use:hostile"]).await,
        };
        tokio::task::spawn_blocking(move || caller.services().call("hostile", "spin", json!({}))).await.unwrap().unwrap_err().to_string()
    };
    let k = kernel(root.path()).await;
    let id = hostile(&k, root.path(), "spinner", &HOSTILE_PERMS, json!({ "mode": "service-loop" })).await;
    k.enable(&id, false).await.unwrap();
    let first = objectos_sandbox::QUARANTINE_FAILURES - 2;
    for _ in 0..first {
        assert!(spin(k.clone()).await.contains("time budget"));
    }
    k.shutdown().await;
    drop(k);
    // Another kernel on the same data directory (as another `objectos` process would be).
    let k = kernel(root.path()).await;
    assert_eq!(state(&k, &id), State::Enabled, "{}", last_error(&k, &id));
    for _ in first..objectos_sandbox::QUARANTINE_FAILURES {
        assert!(spin(k.clone()).await.contains("time budget"));
    }
    wait_until(20, "the quarantine", || state(&k, &id) == State::Error).await;
    assert!(last_error(&k, &id).contains(&format!("failed {} times", objectos_sandbox::QUARANTINE_FAILURES)), "{}", last_error(&k, &id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_artifact_swapped_for_another_packages_or_a_pipe_is_compiled_again() {
    let root = tempfile::tempdir().unwrap();
    let cache_dir = root.path().join("cache");
    let open = || own_cache_kernel(root.path(), &cache_dir);
    let artifacts = |ext: &str| -> std::collections::BTreeSet<std::path::PathBuf> {
        std::fs::read_dir(&cache_dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == ext)).collect()
    };
    let k = open().await;
    let echo_perms = ["storage.read", "storage.write", "events.subscribe:t.echo.ping", "events.emit:t.echo.pong", "services.provide:echo"];
    let echo = install(&k, root.path(), "echo", ECHO, &echo_perms, json!({ "events": ["t.echo.pong"], "services": ["echo"] }), json!({})).await;
    k.enable(&echo, false).await.unwrap();
    let (echo_wasm, echo_cwasm) = (artifacts("wasm"), artifacts("cwasm"));
    let other = hostile(&k, root.path(), "other", &HOSTILE_PERMS, json!({ "mode": "service-loop" })).await;
    k.enable(&other, false).await.unwrap();
    let other_wasm = artifacts("wasm").difference(&echo_wasm).next().cloned().unwrap();
    let other_cwasm = artifacts("cwasm").difference(&echo_cwasm).next().cloned().unwrap();
    let (echo_wasm, echo_cwasm) = (echo_wasm.into_iter().next().unwrap(), echo_cwasm.into_iter().next().unwrap());
    k.shutdown().await;
    drop(k);

    let answers_as_echo = |k: Kernel| async move {
        assert_eq!(state(&k, "t.echo"), State::Enabled, "{}", last_error(&k, "t.echo"));
        let caller = driver(&k, "t.caller", &["services.use:echo"]).await;
        let said = tokio::task::spawn_blocking(move || caller.services().call("echo", "say", json!({ "text": "who?" }))).await.unwrap().unwrap();
        assert_eq!(said["said"], "who?");
    };
    // The other package's code under echo's names: not loaded, compiled again, audited.
    std::fs::copy(&other_wasm, &echo_wasm).unwrap();
    std::fs::copy(&other_cwasm, &echo_cwasm).unwrap();
    let k = open().await;
    answers_as_echo(k.clone()).await;
    let refused = audit(&k, &echo, "plugin.artifact.refused");
    assert!(refused.iter().any(|r| r["reason"].as_str().unwrap().contains("digest")), "{refused:?}");
    k.shutdown().await;
    drop(k);

    // A link to a pipe in its place: not opened (it would block), compiled again.
    // (Each of echo's compiled artifacts: the one compiled again may have another name.)
    fifo(&root.path().join("pipe"));
    let linked: Vec<_> = artifacts("cwasm").into_iter().filter(|p| *p != other_cwasm).collect();
    for a in &linked {
        std::fs::remove_file(a).unwrap();
        std::os::unix::fs::symlink(root.path().join("pipe"), a).unwrap();
    }
    let k = open().await;
    answers_as_echo(k.clone()).await;
    let refused = audit(&k, &echo, "plugin.artifact.refused");
    assert!(refused.iter().any(|r| r["reason"] == "it is a link"), "{refused:?}");
    assert!(linked.iter().any(|a| std::fs::symlink_metadata(a).unwrap().is_file()), "the link was replaced by the artifact");
}
