//! The kernel through its public API: registry, bus, resolver, lifecycle, persistence,
//! storage isolation, packages, permissions and the audit chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use objectos_kernel::{Kernel, KernelConfig, KernelError};
use objectos_kernel::host::StorageKind;
use objectos_kernel::model::audit::{AuditDetail, AuditQuery, Verification};
use objectos_kernel::model::lifecycle::State;
use objectos_kernel::model::log::LogQuery;
use objectos_kernel::model::manifest::Manifest;
use objectos_kernel::model::resolve::{ManifestSet, ResolveError};
use objectos_kernel::model::views::{BuiltinPolicy, GrantRequest};
use objectos_tests::{manifest, memory_kernel, package_dir, wait_until, Probe};
use serde_json::json;

const ALL_PERMS: &[&str] = &["storage.read", "storage.write", "events.emit:*", "events.subscribe:*", "services.provide:*", "services.use:*"];

/// A started in-memory kernel with plugins `a`, `b`, ... (all permissions granted by policy).
async fn kernel_with(plugins: &[(&str, &[(&str, &str)])], calls: &Arc<Mutex<Vec<String>>>) -> Kernel {
    let k = memory_kernel();
    for (id, deps) in plugins {
        k.register_builtin(&manifest(id, "1.0.0", deps, ALL_PERMS), Arc::new(Probe::with_calls(calls))).unwrap();
    }
    k.start().await.unwrap();
    k
}

fn state(k: &Kernel, id: &str) -> State {
    k.plugin(id).unwrap().state
}

// ---- registry (reference cases: register, duplicate, get, missing, has, unregister, list, clear)

#[tokio::test]
async fn registry_register_get_has_list_unregister() {
    let calls = Arc::default();
    let k = kernel_with(&[("t.a", &[]), ("t.b", &[])], &calls).await;
    k.enable("t.a", false).await.unwrap();
    k.enable("t.b", false).await.unwrap();
    let a = k.context("t.a").unwrap();
    let b = k.context("t.b").unwrap();
    a.services().register("cache", 42u32).unwrap();
    // duplicate
    let dup = a.services().register("cache", 7u32).unwrap_err();
    assert!(matches!(dup, KernelError::ServiceExists { ref owner, .. } if owner == "t.a"), "{dup}");
    // get, typed; wrong type fails cleanly
    assert_eq!(*b.services().get::<u32>("cache").unwrap(), 42);
    assert!(matches!(b.services().get::<String>("cache"), Err(KernelError::ServiceType { .. })));
    // missing
    assert!(matches!(b.services().get::<u32>("nope"), Err(KernelError::ServiceNotFound { .. })));
    // has
    assert!(b.services().has("cache").unwrap());
    assert!(!b.services().has("nope").unwrap());
    // list, with owner
    let list = b.services().list();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].name.as_str(), list[0].owner.as_str()), ("cache", "t.a"));
    // only the owner may unregister
    assert!(b.services().unregister("cache").is_err());
    a.services().unregister("cache").unwrap();
    assert!(!b.services().has("cache").unwrap());
    // clear: disabling a plugin removes all its services
    a.services().register("one", 1u8).unwrap();
    a.services().register("two", 2u8).unwrap();
    k.disable("t.a", false).await.unwrap();
    assert!(k.services().is_empty());
}

#[tokio::test]
async fn service_registration_emits_events() {
    let calls = Arc::default();
    let k = kernel_with(&[("t.a", &[]), ("t.watch", &[])], &calls).await;
    k.enable("t.watch", false).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    // kernel.* topics can be subscribed to with a grant covering them (`*` here).
    k.context("t.watch").unwrap().events().on("kernel.service.*", move |e| {
        s2.lock().unwrap().push((e.topic.to_string(), e.payload["service"].as_str().unwrap_or("").to_string()));
        Ok(())
    }).unwrap();
    k.enable("t.a", false).await.unwrap();
    k.context("t.a").unwrap().services().register("svc", ()).unwrap();
    k.disable("t.a", false).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, vec![("kernel.service.registered".into(), "svc".into()), ("kernel.service.unregistered".into(), "svc".into())]);
}

// ---- bus (reference cases: subscribe, multiple handlers, once, off, emit with data, no
// handlers, awaiting async handlers) plus isolation and patterns

#[tokio::test]
async fn bus_subscribe_multiple_once_off_data() {
    let calls = Arc::default();
    let k = kernel_with(&[("t.a", &[])], &calls).await;
    k.enable("t.a", false).await.unwrap();
    let ev = k.context("t.a").unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let (g1, g2, g3) = (got.clone(), got.clone(), got.clone());
    let h1 = ev.events().on("user.created", move |e| { g1.lock().unwrap().push(format!("h1:{}", e.payload["name"])); Ok(()) }).unwrap();
    ev.events().on("user.created", move |e| { g2.lock().unwrap().push(format!("h2:{}", e.payload["name"])); Ok(()) }).unwrap();
    ev.events().once("user.created", move |_| { g3.lock().unwrap().push("once".into()); Ok(()) }).unwrap();
    let r = ev.events().emit("user.created", json!({ "name": "ada" })).unwrap();
    assert_eq!(r.delivered, 3);
    assert!(ev.events().off(h1));
    assert!(!ev.events().off(h1), "off twice");
    ev.events().emit("user.created", json!({ "name": "bob" })).unwrap();
    assert_eq!(*got.lock().unwrap(), vec!["h1:\"ada\"", "h2:\"ada\"", "once", "h2:\"bob\""]);
    // no handlers
    assert_eq!(ev.events().emit("nobody.listens", json!(null)).unwrap().delivered, 0);
}

/// Every handler failure is in the plugin's log, and in the audit trail up to the per-minute
/// bound, past which one record says the rest are only logged and counted.
#[tokio::test]
async fn every_handler_failure_is_logged_and_audited_up_to_a_bound() {
    use objectos_kernel::model::audit::{AuditQuery, MAX_AUDITED_FAILURES};
    let calls = Arc::default();
    let k = kernel_with(&[("t.a", &[]), ("t.bad", &[])], &calls).await;
    k.enable("t.a", false).await.unwrap();
    k.enable("t.bad", false).await.unwrap();
    let bad = k.context("t.bad").unwrap();
    bad.events().on("job.run", |_| Err("plain failure".into())).unwrap();
    let a = k.context("t.a").unwrap();
    let n = MAX_AUDITED_FAILURES + 5;
    for _ in 0..n {
        assert_eq!(a.events().emit("job.run", json!({})).unwrap().failed, 1);
    }
    let audit = |action: &str| k.audit(&AuditQuery { plugin: Some("t.bad".into()), action: Some(action.into()), ..Default::default() }).unwrap();
    let failed = audit("handler.failed");
    assert_eq!(failed.len() as u64, MAX_AUDITED_FAILURES);
    assert_eq!((failed[0].actor.as_str(), failed[0].details["topic"].as_str(), failed[0].details["message"].as_str()), ("plugin:t.bad", Some("job.run"), Some("plain failure")));
    let past = audit("limit.exceeded");
    assert_eq!(past.len(), 1, "one record for the rest of the minute: {past:?}");
    assert!(past[0].details["reason"].as_str().unwrap().contains("handler failures"), "{past:?}");
    let logs = k.logs(&LogQuery { plugin: Some("t.bad".into()), ..Default::default() }).unwrap();
    assert_eq!(logs.iter().filter(|l| l.message.contains("plain failure")).count() as u64, n, "every failure is logged");
}

#[tokio::test]
async fn bus_awaits_async_handlers_and_isolates_failures() {
    let calls = Arc::default();
    let k = kernel_with(&[("t.a", &[]), ("t.bad", &[])], &calls).await;
    k.enable("t.a", false).await.unwrap();
    k.enable("t.bad", false).await.unwrap();
    let a = k.context("t.a").unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let d = done.clone();
        a.events().on_async("job.run", move |_| {
            let d = d.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                d.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }).unwrap();
    }
    let bad = k.context("t.bad").unwrap();
    bad.events().on("job.run", |_| panic!("boom in handler")).unwrap();
    bad.events().on("job.run", |_| Err("plain failure".into())).unwrap();
    let r = a.events().emit_async("job.run", json!({})).await.unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 3, "emit_async returns after async handlers finish");
    assert_eq!((r.delivered, r.failed), (5, 2));
    // the failures are in the failing plugin's log, not the emitter's
    let logs = k.logs(&LogQuery { plugin: Some("t.bad".into()), ..Default::default() }).unwrap();
    assert!(logs.iter().any(|l| l.message.contains("boom in handler")), "{logs:?}");
    assert!(logs.iter().any(|l| l.message.contains("plain failure")));
    // and the kernel still works
    assert_eq!(a.events().emit("job.run", json!({})).unwrap().delivered, 5);
    wait_until(10, "spawned async handlers", || done.load(Ordering::SeqCst) == 6).await;
}

#[tokio::test]
async fn bus_topic_patterns_and_reserved_topics() {
    let calls = Arc::default();
    let k = kernel_with(&[("t.a", &[])], &calls).await;
    k.enable("t.a", false).await.unwrap();
    let a = k.context("t.a").unwrap();
    let hits: Arc<Mutex<BTreeMap<&'static str, Vec<String>>>> = Arc::default();
    for pat in ["a.b.c", "a.*", "a.**", "*"] {
        let h = hits.clone();
        a.events().on(pat, move |e| { h.lock().unwrap().entry(pat).or_default().push(e.topic.to_string()); Ok(()) }).unwrap();
    }
    for t in ["a.b", "a.b.c", "x"] {
        a.events().emit(t, json!(null)).unwrap();
    }
    let h = hits.lock().unwrap();
    assert_eq!(h["a.b.c"], vec!["a.b.c"]);
    assert_eq!(h["a.*"], vec!["a.b"], "a.* matches one segment, not a.b.c");
    assert_eq!(h["a.**"], vec!["a.b", "a.b.c"]);
    assert_eq!(h["*"], vec!["a.b", "a.b.c", "x"]);
    for reserved in ["kernel.started", "plugin.enabled"] {
        assert!(matches!(a.events().emit(reserved, json!(null)), Err(KernelError::ReservedTopic { .. })));
    }
}

// ---- resolver (reference cases) ----------------------------------------------------------

fn set(ms: &[String]) -> ManifestSet {
    ms.iter().map(|m| {
        let m = Manifest::parse(m.as_bytes(), "test").unwrap();
        (m.id.clone(), Arc::new(m))
    }).collect()
}

#[test]
fn resolver_orders_chain_diamond_and_independent() {
    let chain = set(&[manifest("c", "1.0.0", &[("b", "^1")], &[]), manifest("b", "1.0.0", &[("a", "^1")], &[]), manifest("a", "1.0.0", &[], &[])]);
    assert_eq!(objectos_kernel::model::resolve::resolve(&chain, "c").unwrap(), vec!["a", "b", "c"]);
    let diamond = set(&[
        manifest("top", "1.0.0", &[("l", "*"), ("r", "*")], &[]),
        manifest("l", "1.0.0", &[("base", "*")], &[]),
        manifest("r", "1.0.0", &[("base", "*")], &[]),
        manifest("base", "1.0.0", &[], &[]),
    ]);
    let order = objectos_kernel::model::resolve::resolve(&diamond, "top").unwrap();
    assert_eq!(order.first().unwrap(), "base");
    assert_eq!(order.last().unwrap(), "top");
    assert_eq!(order.len(), 4, "base appears once");
    let independent = set(&[manifest("x2", "1.0.0", &[("x1", "*")], &[]), manifest("x1", "1.0.0", &[], &[]), manifest("y2", "1.0.0", &[("y1", "*")], &[]), manifest("y1", "1.0.0", &[], &[])]);
    let (all, errors) = objectos_kernel::model::resolve::resolve_all(&independent);
    assert!(errors.is_empty());
    let pos = |id: &str| all.iter().position(|x| x == id).unwrap();
    assert!(pos("x1") < pos("x2") && pos("y1") < pos("y2"));
    let none = set(&[manifest("solo", "1.0.0", &[], &[])]);
    assert_eq!(objectos_kernel::model::resolve::resolve(&none, "solo").unwrap(), vec!["solo"]);
}

#[test]
fn resolver_errors_name_the_chain() {
    let s = set(&[
        manifest("com.acme.c", "0.3.1", &[("com.acme.b", "~2.0")], &[]),
        manifest("com.acme.b", "2.0.4", &[("com.acme.a", "^1.0")], &[]),
        manifest("com.acme.a", "0.9.1", &[], &[]),
    ]);
    let e = objectos_kernel::model::resolve::resolve(&s, "com.acme.c").unwrap_err();
    assert_eq!(e.to_string(), "com.acme.c 0.3.1 requires com.acme.b ~2.0, which requires com.acme.a ^1.0, but the installed com.acme.a is 0.9.1");
    let missing = set(&[manifest("p", "1.0.0", &[("q", "^1")], &[])]);
    let e = objectos_kernel::model::resolve::resolve(&missing, "p").unwrap_err();
    assert!(matches!(e, ResolveError::Missing { .. }));
    assert_eq!(e.to_string(), "p 1.0.0 requires q ^1, but q is not installed");
    let cycle = set(&[manifest("a", "1.0.0", &[("b", "*")], &[]), manifest("b", "1.0.0", &[("c", "*")], &[]), manifest("c", "1.0.0", &[("a", "*")], &[])]);
    match objectos_kernel::model::resolve::resolve(&cycle, "a").unwrap_err() {
        ResolveError::Cycle { cycle } => assert_eq!(cycle, vec!["a", "b", "c", "a"]),
        other => panic!("{other}"),
    }
    // self-dependency is refused already by the manifest check
    let e = Manifest::parse(manifest("selfish", "1.0.0", &[("selfish", "*")], &[]).as_bytes(), "plugin.json").unwrap_err();
    assert!(e.problems.iter().any(|p| p.path == "dependencies.selfish" && p.message.contains("itself")), "{e}");
    // engine range
    let engine = set(&[r#"{"id":"e","name":"E","version":"1.0.0","engines":{"objectos":"^9"}}"#.to_string()]);
    let e = objectos_kernel::model::resolve::resolve(&engine, "e").unwrap_err();
    assert!(e.to_string().starts_with("e 1.0.0 needs ObjectOS ^9, but this kernel is"), "{e}");
}

#[test]
fn ranges_resolve_with_npm_meaning_and_conflicts_name_the_chain() {
    let s = set(&[
        manifest("com.acme.app", "1.0.0", &[("com.acme.lib", ">=1.0.0 <2.0.0"), ("com.acme.ui", "1.2.x || 2.x")], &[]),
        manifest("com.acme.lib", "1.9.3", &[], &[]),
        manifest("com.acme.ui", "2.4.0", &[], &[]),
    ]);
    assert_eq!(objectos_kernel::model::resolve::resolve(&s, "com.acme.app").unwrap().last().unwrap(), "com.acme.app");
    // A bare version is exactly that version (Cargo's grammar read it as ^1.2.0).
    let exact = set(&[manifest("com.acme.c", "1.0.0", &[("com.acme.b", "1.2.0")], &[]), manifest("com.acme.b", "1.3.0", &[], &[])]);
    let e = objectos_kernel::model::resolve::resolve(&exact, "com.acme.c").unwrap_err();
    assert_eq!(e.to_string(), "com.acme.c 1.0.0 requires com.acme.b 1.2.0, but the installed com.acme.b is 1.3.0");
    let hyphen = set(&[manifest("com.acme.c", "1.0.0", &[("com.acme.b", "1.0.0 - 1.2.0")], &[]), manifest("com.acme.b", "1.3.0", &[], &[])]);
    assert!(objectos_kernel::model::resolve::resolve(&hyphen, "com.acme.c").is_err());
}

#[test]
fn optional_dependencies_order_when_present_and_are_skipped_when_absent() {
    let with = set(&[r#"{"id":"app","name":"App","version":"1.0.0","optionalDependencies":{"extra":"^1"}}"#.into(), manifest("extra", "1.0.0", &[], &[])]);
    assert_eq!(objectos_kernel::model::resolve::resolve(&with, "app").unwrap(), vec!["extra", "app"]);
    let without = set(&[r#"{"id":"app","name":"App","version":"1.0.0","optionalDependencies":{"extra":"^1"}}"#.into()]);
    assert_eq!(objectos_kernel::model::resolve::resolve(&without, "app").unwrap(), vec!["app"]);
}

#[tokio::test]
async fn graph_from_manifests_marks_cycles_and_unsatisfied_edges() {
    let dir = tempfile::tempdir().unwrap();
    let k = memory_kernel();
    for (name, m) in [
        ("a", manifest("g.a", "1.0.0", &[("g.b", "*")], &[])),
        ("b", manifest("g.b", "1.0.0", &[("g.a", "*")], &[])),
        ("c", manifest("g.c", "1.0.0", &[("g.missing", "^2")], &[])),
    ] {
        k.install_package(&package_dir(dir.path(), name, &m, &[]), false).await.unwrap();
    }
    let g = k.graph();
    assert_eq!(g.nodes.len(), 3);
    assert!(g.edges.iter().filter(|e| e.from == "g.a" || e.from == "g.b").all(|e| e.in_cycle));
    let c = g.edges.iter().find(|e| e.from == "g.c").unwrap();
    assert!(!c.satisfied && c.range == "^2");
    assert!(g.errors.contains_key("g.c") && g.errors.contains_key("g.a"));
}

// ---- lifecycle ---------------------------------------------------------------------------

#[tokio::test]
async fn lifecycle_hooks_run_in_order_and_disabled_can_be_enabled_again() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let k = kernel_with(&[("t.a", &[])], &calls).await;
    k.enable("t.a", false).await.unwrap();
    k.disable("t.a", false).await.unwrap();
    assert_eq!(state(&k, "t.a"), State::Disabled);
    k.enable("t.a", false).await.unwrap();
    assert_eq!(state(&k, "t.a"), State::Enabled);
    k.disable("t.a", false).await.unwrap();
    k.unload("t.a").await.unwrap();
    assert_eq!(state(&k, "t.a"), State::Installed);
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls, ["onInstall", "onLoad", "onEnable", "onDisable", "onEnable", "onDisable", "onUnload"].map(|h| format!("t.a:{h}")));
}

#[tokio::test]
async fn illegal_transitions_are_typed_errors_naming_the_state() {
    let calls = Arc::default();
    let k = kernel_with(&[("t.a", &[])], &calls).await;
    match k.disable("t.a", false).await.unwrap_err() {
        KernelError::IllegalTransition { state, .. } => assert_eq!(state, State::Installed),
        e => panic!("{e}"),
    }
    k.enable("t.a", false).await.unwrap();
    let e = k.unload("t.a").await.unwrap_err();
    assert_eq!(e.to_string(), "cannot unload t.a: it is enabled; disable it first");
    assert!(matches!(k.enable("nope", false).await, Err(KernelError::NotFound { .. })));
}

#[tokio::test]
async fn enable_needs_dependencies_and_with_deps_enables_them_in_order() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let k = kernel_with(&[("t.c", &[("t.b", "^1")]), ("t.b", &[("t.a", "^1")]), ("t.a", &[])], &calls).await;
    match k.enable("t.c", false).await.unwrap_err() {
        KernelError::DependencyNotEnabled { dependency, state, .. } => assert_eq!((dependency.as_str(), state), ("t.b", State::Installed)),
        e => panic!("{e}"),
    }
    assert_eq!(state(&k, "t.c"), State::Installed, "a refused enable leaves the plugin where it was");
    calls.lock().unwrap().clear();
    k.enable("t.c", true).await.unwrap();
    let enabled: Vec<String> = calls.lock().unwrap().iter().filter(|c| c.ends_with("onEnable")).cloned().collect();
    assert_eq!(enabled, ["t.a:onEnable", "t.b:onEnable", "t.c:onEnable"]);
}

#[tokio::test]
async fn disable_refuses_with_dependents_and_cascades_in_reverse_order() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let k = kernel_with(&[("t.c", &[("t.b", "^1")]), ("t.b", &[("t.a", "^1")]), ("t.a", &[])], &calls).await;
    k.enable("t.c", true).await.unwrap();
    match k.disable("t.a", false).await.unwrap_err() {
        KernelError::DependentsEnabled { dependents, .. } => assert_eq!(dependents, ["t.b", "t.c"]),
        e => panic!("{e}"),
    }
    assert_eq!(state(&k, "t.a"), State::Enabled);
    calls.lock().unwrap().clear();
    k.disable("t.a", true).await.unwrap();
    assert_eq!(*calls.lock().unwrap(), ["t.c:onDisable", "t.b:onDisable", "t.a:onDisable"]);
    for id in ["t.a", "t.b", "t.c"] {
        assert_eq!(state(&k, id), State::Disabled);
    }
}

#[tokio::test]
async fn a_panicking_hook_is_contained_shown_and_can_be_retried() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let k = memory_kernel();
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f2 = fail.clone();
    let probe = Probe {
        enable: Some(Arc::new(move |_| {
            if f2.load(Ordering::SeqCst) {
                panic!("enable exploded");
            }
            Ok(())
        })),
        ..Probe::with_calls(&calls)
    };
    k.register_builtin(&manifest("t.p", "1.0.0", &[], &[]), Arc::new(probe)).unwrap();
    k.register_builtin(&manifest("t.ok", "1.0.0", &[], &[]), Arc::new(Probe::with_calls(&calls))).unwrap();
    k.start().await.unwrap();
    let e = k.enable("t.p", false).await.unwrap_err();
    assert!(matches!(e, KernelError::Hook { ref hook, .. } if hook == "onEnable"), "{e}");
    let info = k.plugin("t.p").unwrap();
    assert_eq!(info.state, State::Error);
    let err = info.last_error.unwrap();
    assert_eq!(err.hook.as_deref(), Some("onEnable"));
    assert!(err.message.contains("enable exploded"));
    assert_eq!(err.kind, objectos_kernel::model::views::FailureKind::Panicked, "hosts word it by its kind");
    // the kernel and other plugins are unaffected
    k.enable("t.ok", false).await.unwrap();
    // an ERROR plugin can be loaded again and enabled once fixed
    fail.store(false, Ordering::SeqCst);
    k.load("t.p").await.unwrap();
    k.enable("t.p", false).await.unwrap();
    assert_eq!(state(&k, "t.p"), State::Enabled);
    assert!(k.plugin("t.p").unwrap().last_error.is_none());
}

#[tokio::test]
async fn a_hanging_hook_times_out_into_error() {
    let k = Kernel::open(KernelConfig::in_memory().hook_timeout(Duration::from_millis(100))).unwrap();
    let probe = Probe { enable_delay: Some(Duration::from_secs(3600)), ..Default::default() };
    k.register_builtin(&manifest("t.slow", "1.0.0", &[], &[]), Arc::new(probe)).unwrap();
    k.start().await.unwrap();
    let e = k.enable("t.slow", false).await.unwrap_err();
    assert!(e.to_string().contains("did not finish within"), "{e}");
    assert_eq!(state(&k, "t.slow"), State::Error);
    assert_eq!(k.plugin("t.slow").unwrap().last_error.unwrap().kind, objectos_kernel::model::views::FailureKind::TimedOut);
}

/// A manager plugin whose onEnable tries to disable itself (refused: re-entrant) and then
/// enables another plugin (allowed with kernel.manage).
struct Manager(Arc<Mutex<Vec<String>>>);

#[objectos_kernel::async_trait]
impl objectos_kernel::Plugin for Manager {
    async fn on_enable(&self, ctx: &objectos_kernel::PluginContext) -> objectos_kernel::HookResult {
        let kernel = ctx.kernel()?;
        let own = kernel.disable(ctx.id(), false).await;
        self.0.lock().unwrap().push(format!("{own:?}"));
        kernel.enable("t.worker", false).await?;
        self.0.lock().unwrap().push("worker enabled".into());
        Ok(())
    }
}

#[tokio::test]
async fn a_hook_cannot_change_its_own_plugin_but_can_manage_others() {
    let k = memory_kernel();
    let seen = Arc::new(Mutex::new(Vec::new()));
    k.register_builtin(&manifest("t.mgr", "1.0.0", &[], &["kernel.manage"]), Arc::new(Manager(seen.clone()))).unwrap();
    k.register_builtin(&manifest("t.worker", "1.0.0", &[], &[]), Arc::new(Probe::default())).unwrap();
    k.start().await.unwrap();
    k.enable("t.mgr", false).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].contains("Reentrant"), "{seen:?}");
    assert_eq!(seen[1], "worker enabled");
    assert_eq!(state(&k, "t.worker"), State::Enabled);
    let by = k.audit(&AuditQuery { plugin: Some("t.worker".into()), action: Some("plugin.enabled".into()), ..Default::default() }).unwrap();
    assert_eq!(by[0].actor, "plugin:t.mgr", "the audit names the plugin that used kernel.manage");
}

// ---- persistence ---------------------------------------------------------------------------

async fn disk_kernel(dir: &std::path::Path, calls: &Arc<Mutex<Vec<String>>>) -> Kernel {
    let k = Kernel::open(KernelConfig::new(dir).storage(StorageKind::Sqlite)).unwrap();
    k.register_builtin(&manifest("t.base", "1.0.0", &[], ALL_PERMS), Arc::new(Probe::with_calls(calls))).unwrap();
    k.register_builtin(&manifest("t.app", "1.0.0", &[("t.base", "^1")], ALL_PERMS), Arc::new(Probe::with_calls(calls))).unwrap();
    k.register_builtin(&manifest("t.off", "1.0.0", &[], ALL_PERMS), Arc::new(Probe::with_calls(calls))).unwrap();
    k.start().await.unwrap();
    k
}

#[tokio::test]
async fn restart_restores_enabled_plugins_in_order_with_storage_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    {
        let k = disk_kernel(dir.path(), &calls).await;
        k.enable("t.app", true).await.unwrap();
        k.enable("t.off", false).await.unwrap();
        k.disable("t.off", false).await.unwrap();
        let ctx = k.context("t.app").unwrap();
        ctx.storage().set("greeting", json!({ "text": "hello" })).unwrap();
        ctx.logger().info("remember me");
        k.shutdown().await;
    }
    calls.lock().unwrap().clear();
    let k = disk_kernel(dir.path(), &calls).await;
    assert_eq!(state(&k, "t.base"), State::Enabled);
    assert_eq!(state(&k, "t.app"), State::Enabled);
    assert_eq!(state(&k, "t.off"), State::Disabled);
    let enabled: Vec<String> = calls.lock().unwrap().iter().filter(|c| c.ends_with("onEnable")).cloned().collect();
    assert_eq!(enabled, ["t.base:onEnable", "t.app:onEnable"]);
    let ctx = k.context("t.app").unwrap();
    assert_eq!(ctx.storage().get("greeting").unwrap(), Some(json!({ "text": "hello" })));
    let logs = k.logs(&LogQuery { plugin: Some("t.app".into()), ..Default::default() }).unwrap();
    assert!(logs.iter().any(|l| l.message == "remember me"));
}

#[tokio::test]
async fn storage_is_isolated_between_plugins_on_both_backends() {
    for kind in [StorageKind::Memory, StorageKind::Sqlite] {
        let dir = tempfile::tempdir().unwrap();
        let k = Kernel::open(KernelConfig::new(dir.path()).storage(kind)).unwrap();
        let calls = Arc::default();
        for id in ["t.x", "t.y"] {
            k.register_builtin(&manifest(id, "1.0.0", &[], ALL_PERMS), Arc::new(Probe::with_calls(&calls))).unwrap();
        }
        k.start().await.unwrap();
        let (x, y) = (k.context("t.x").unwrap(), k.context("t.y").unwrap());
        x.storage().set("k", json!(1)).unwrap();
        y.storage().set("k", json!(2)).unwrap();
        x.storage().set("only-x", json!([1, 2])).unwrap();
        assert_eq!(x.storage().get("k").unwrap(), Some(json!(1)));
        assert_eq!(y.storage().get("k").unwrap(), Some(json!(2)));
        assert!(!y.storage().has("only-x").unwrap());
        assert_eq!(y.storage().keys().unwrap(), ["k"]);
        assert!(y.storage().delete("k").unwrap());
        assert_eq!(x.storage().get("k").unwrap(), Some(json!(1)), "deleting y's key leaves x's");
        assert_eq!(x.storage().clear().unwrap(), 2);
        assert!(x.storage().keys().unwrap().is_empty());
        assert!(matches!(x.storage().set("", json!(1)), Err(KernelError::InvalidName { .. })));
    }
}

#[tokio::test]
async fn swap_is_a_compare_and_set_and_scan_reads_a_prefix_on_both_backends() {
    for kind in [StorageKind::Memory, StorageKind::Sqlite] {
        let dir = tempfile::tempdir().unwrap();
        let k = Kernel::open(KernelConfig::new(dir.path()).storage(kind)).unwrap();
        for id in ["t.x", "t.y"] {
            k.register_builtin(&manifest(id, "1.0.0", &[], ALL_PERMS), Arc::new(Probe::default())).unwrap();
        }
        k.start().await.unwrap();
        let (x, y) = (k.context("t.x").unwrap(), k.context("t.y").unwrap());
        assert!(x.storage().swap("lock", None, Some(json!("a"))).unwrap(), "absent -> a");
        assert!(!x.storage().swap("lock", None, Some(json!("b"))).unwrap(), "{kind:?}: no longer absent");
        assert!(!x.storage().swap("lock", Some(&json!("z")), Some(json!("b"))).unwrap());
        assert!(y.storage().swap("lock", None, Some(json!("y"))).unwrap(), "another plugin's key is its own");
        assert!(x.storage().swap("lock", Some(&json!("a")), Some(json!("b"))).unwrap());
        assert_eq!(x.storage().get("lock").unwrap(), Some(json!("b")));
        assert!(x.storage().swap("lock", Some(&json!("b")), None).unwrap(), "swap to None deletes");
        assert!(!x.storage().has("lock").unwrap());
        for key in ["job:2", "job:1", "jobs", "jo", "job;", "other"] {
            x.storage().set(key, json!(key)).unwrap();
        }
        let scanned: Vec<String> = x.storage().scan("job:").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(scanned, ["job:1", "job:2"], "{kind:?}");
        assert_eq!(x.storage().scan("").unwrap().len(), 6);
        assert!(y.storage().scan("job:").unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_typed_handle_follows_the_registry_and_the_grants() {
    let k = memory_kernel();
    k.register_builtin(&manifest("t.p", "1.0.0", &[], &["services.provide:svc"]), Arc::new(Probe::default())).unwrap();
    k.register_builtin(&manifest("t.u", "1.0.0", &[], &[]), Arc::new(Probe::default())).unwrap();
    k.register_builtin(r#"{"id":"t.o","name":"o","version":"1.0.0","optionalPermissions":["services.use:svc"]}"#, Arc::new(Probe::default())).unwrap();
    k.start().await.unwrap();
    let p = k.context("t.p").unwrap();
    p.services().register("svc", 1u64).unwrap();
    let o = k.context("t.o").unwrap();
    let handle = o.services().handle::<u64>("svc").unwrap();
    assert_eq!(*handle.get().unwrap(), 1);
    p.services().unregister("svc").unwrap();
    assert!(matches!(handle.get(), Err(KernelError::ServiceNotFound { .. })), "a removed service is noticed");
    p.services().register("svc", 2u64).unwrap();
    assert_eq!(*handle.get().unwrap(), 2, "a replaced service is noticed");
    k.revoke("t.o", &["services.use:svc".to_string()], false).await.unwrap();
    assert!(matches!(handle.get(), Err(KernelError::PermissionDenied { .. })), "a revoked grant is enforced on the next call");
    // The borrowing form follows the same changes.
    k.grant("t.o", GrantRequest::All).unwrap();
    let mut borrowed = o.services().handle::<u64>("svc").unwrap();
    assert_eq!(*borrowed.get_ref().unwrap(), 2);
    assert_eq!(*borrowed.get_ref().unwrap(), 2);
    p.services().unregister("svc").unwrap();
    assert!(matches!(borrowed.get_ref(), Err(KernelError::ServiceNotFound { .. })));
    p.services().register("svc", 3u64).unwrap();
    assert_eq!(*borrowed.get_ref().unwrap(), 3);
    let lookups = |k: &Kernel| k.activity().into_iter().find(|a| a.id == "t.o").map(|a| a.stats.service_lookups).unwrap_or_default();
    let before = lookups(&k);
    for _ in 0..5 {
        assert_eq!(*borrowed.get_ref().unwrap(), 3);
    }
    drop(borrowed);
    assert_eq!(lookups(&k) - before, 5, "every borrowed lookup is counted by the time the handle is dropped");
    k.revoke("t.o", &["services.use:svc".to_string()], false).await.unwrap();
    let u = k.context("t.u").unwrap();
    assert!(matches!(u.services().handle::<u64>("svc"), Err(KernelError::PermissionDenied { .. })));
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_a_busy_database_waits() {
    let dir = tempfile::tempdir().unwrap();
    drop(Kernel::open(KernelConfig::new(dir.path())).unwrap());
    let db = rusqlite::Connection::open(dir.path().join("objectos.db")).unwrap();
    db.pragma_update(None, "user_version", 99).unwrap();
    drop(db);
    let e = Kernel::open(KernelConfig::new(dir.path())).err().unwrap();
    assert!(matches!(e, KernelError::SchemaTooNew { found: 99, .. }), "{e}");
    assert!(e.to_string().contains("upgrade ObjectOS"));
}

/// Two kernels (as two processes would) on one data directory.
async fn two_disk_kernels() -> (tempfile::TempDir, Kernel, Kernel) {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::default();
    let a = disk_kernel(dir.path(), &calls).await;
    let b = disk_kernel(dir.path(), &calls).await;
    (dir, a, b)
}

#[tokio::test]
async fn two_kernels_share_one_data_directory() {
    let (_dir, a, b) = two_disk_kernels().await;
    let (ca, cb) = (a.context("t.base").unwrap(), b.context("t.base").unwrap());
    let writers: Vec<_> = (0..2).map(|n| {
        let c = if n == 0 { ca.clone() } else { cb.clone() };
        std::thread::spawn(move || for i in 0..200 { c.storage().set(&format!("{n}-{i}"), json!(i)).unwrap(); })
    }).collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(ca.storage().keys().unwrap().len(), 400);
    assert!(a.verify_audit().unwrap().is_intact());
}

#[tokio::test]
async fn two_kernels_interleaving_audit_records_keep_one_intact_chain() {
    // Each writer hashes ahead from the last link it committed; when the other process has
    // appended meanwhile, it must notice and chain after the other's records instead.
    let (_dir, a, b) = two_disk_kernels().await;
    let (ca, cb) = (a.context("t.base").unwrap(), b.context("t.base").unwrap());
    let before = a.audit(&AuditQuery { action: Some("test.".into()), ..Default::default() }).unwrap().len();
    for i in 0..20 {
        ca.audit("test.a", json!({ "i": i })).unwrap();
        a.flush();
        cb.audit("test.b", json!({ "i": i })).unwrap();
        cb.audit("test.b", json!({ "i": i, "second": true })).unwrap();
        b.flush();
    }
    let records = a.audit(&AuditQuery { action: Some("test.".into()), ..Default::default() }).unwrap();
    assert_eq!(records.len() - before, 60);
    let order: String = records.iter().take(6).map(|r| if r.action == "test.a" { 'a' } else { 'b' }).collect();
    assert_eq!(order, "abbabb");
    assert!(a.verify_audit().unwrap().is_intact());
    assert!(b.verify_audit().unwrap().is_intact());
}

// ---- manifests -------------------------------------------------------------------------------

#[test]
fn malformed_manifest_corpus_gives_paths_never_panics() {
    let corpus: &[(&str, &str)] = &[
        ("", "$"),
        ("[]", "$"),
        ("{", "$"),
        ("null", "$"),
        (r#"{"name":"x","version":"1.0.0"}"#, "id"),
        (r#"{"id":"UPPER","name":"x","version":"1.0.0"}"#, "id"),
        (r#"{"id":"-dash","name":"x","version":"1.0.0"}"#, "id"),
        (r#"{"id":"ok","name":"x","version":"1.0"}"#, "version"),
        (r#"{"id":"ok","name":"x","version":7}"#, "version"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","dependencies":{"crm":"^1.x.y"}}"#, "dependencies.crm"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","dependencies":["a"]}"#, "dependencies"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","provides":{"services":[1]}}"#, "provides.services[0]"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","permissions":["storage.delete"]}"#, "permissions[0]"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","permissions":["events.emit"]}"#, "permissions[0]"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","optionalPermissions":["fs.read:"]}"#, "optionalPermissions[0]"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","engines":{"objectos":"banana"}}"#, "engines.objectos"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","engines":{"node":">=1"}}"#, "engines.node"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","colour":"red"}"#, "colour"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","permissions":["fs.read:exports"]}"#, "permissions[0]"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","permissions":["network.connect:*.com"]}"#, "permissions[0]"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","settings":[]}"#, "settings"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","settings":{"api token":{"type":"string"}}}"#, "settings[\"api token\"]"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","settings":{"t":{}}}"#, "settings.t.type"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","settings":{"t":{"type":"text"}}}"#, "settings.t.type"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","settings":{"t":{"type":"number","secret":true}}}"#, "settings.t.secret"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","settings":{"t":{"type":"string","secret":true,"default":"x"}}}"#, "settings.t.default"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","settings":{"t":{"type":"integer","default":1.5}}}"#, "settings.t.default"),
        (r#"{"id":"ok","name":"x","version":"1.0.0","settings":{"t":{"type":"string","hidden":true}}}"#, "settings.t.hidden"),
    ];
    for (text, path) in corpus {
        let e = Manifest::parse(text.as_bytes(), "plugin.json").expect_err(text);
        assert!(e.problems.iter().any(|p| p.path == *path), "{text}: expected a problem at {path}, got {e}");
        assert!(e.problems.iter().all(|p| !p.message.is_empty()));
    }
    // A grant for a type the package does not declare reaches nothing: a package is refused it,
    // saying which was meant (a manifest stored by an older version still reads).
    let m = Manifest::parse(br#"{"id":"ok","name":"x","version":"1.0.0","provides":{"objects":["ticket"]},"permissions":["data.ticket.read","data.tiket.write","data.ok/tikets.read"],"optionalPermissions":["data.account.read"]}"#, "p").unwrap();
    let said: Vec<String> = m.package_problems().iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
    assert_eq!(said.len(), 3, "{said:?}");
    assert!(said[0].starts_with("permissions[1]") && said[0].contains("did you mean `ticket`?"), "{said:?}");
    assert!(said[1].starts_with("permissions[2]") && said[1].contains("`tikets`"), "{said:?}");
    assert!(said[2].starts_with("optionalPermissions[0]") && said[2].contains("declares: ticket"), "{said:?}");
    let long = format!(r#"{{"id":"{}","name":"x","version":"1.0.0"}}"#, "a".repeat(129));
    assert!(Manifest::parse(long.as_bytes(), "p").is_err());
    // arbitrary bytes never panic
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in 0..2000 {
        let bytes: Vec<u8> = (0..len % 300).map(|_| { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; (seed & 0xff) as u8 }).collect();
        let _ = Manifest::parse(&bytes, "fuzz");
    }
}

// ---- packages --------------------------------------------------------------------------------

fn zip_of(path: &std::path::Path, entries: &[(&str, &[u8])]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    for (name, data) in entries {
        z.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut z, data).unwrap();
    }
    z.finish().unwrap();
}

#[tokio::test]
async fn packages_install_from_zip_and_hostile_archives_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let k = Kernel::open(KernelConfig::new(&data)).unwrap();
    k.start().await.unwrap();
    let m = r#"{"id":"com.acme.zipped","name":"Z","version":"1.0.0","provides":{"objects":["thing"]}}"#;
    let good = dir.path().join("good.zip");
    zip_of(&good, &[("pkg/plugin.json", m.as_bytes()), ("pkg/objects/thing.json", br#"{"name":"thing"}"#)]);
    let out = k.install_package(&good, false).await.unwrap();
    assert_eq!((out.id.as_str(), out.state), ("com.acme.zipped", State::Installed));
    let cases: Vec<(&str, Vec<(&str, Vec<u8>)>, &str)> = vec![
        ("slip.zip", vec![("plugin.json", m.replace("zipped", "slip").into_bytes()), ("../../evil.txt", b"x".to_vec())], "outside the package"),
        ("nomanifest.zip", vec![("readme.txt", b"hi".to_vec())], "no plugin.json"),
        ("missingobj.zip", vec![("plugin.json", m.replace("zipped", "missing").into_bytes())], "no objects/thing.yml, .yaml or .json"),
        ("bomb.zip", vec![("plugin.json", m.replace("zipped", "bomb").into_bytes()), ("objects/thing.json", vec![b' '; (65 << 20) as usize])], "too large"),
    ];
    for (name, entries, want) in cases {
        let p = dir.path().join(name);
        let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (*n, d.as_slice())).collect();
        zip_of(&p, &refs);
        let e = k.install_package(&p, false).await.unwrap_err();
        assert!(e.to_string().contains(want), "{name}: {e}");
    }
    assert!(!dir.path().join("evil.txt").exists());
    let left: Vec<_> = std::fs::read_dir(data.join("packages")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "only the installed package and the staging folder: {left:?}");
    assert_eq!(std::fs::read_dir(data.join("packages/.staging")).unwrap().count(), 0);
    assert_eq!(k.plugins().unwrap().len(), 1, "nothing stored by failed installs");
}

#[tokio::test]
async fn dot_entries_are_left_out_of_folders_and_archives_alike() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let k = Kernel::open(KernelConfig::new(&data)).unwrap();
    k.start().await.unwrap();
    let folder = package_dir(dir.path(), "dotted", &manifest("com.acme.dotted", "1.0.0", &[], &[]), &[(".git/config", "[core]"), (".schema/plugin.schema.json", "{}"), ("notes/.draft.md", "x")]);
    k.install_package(&folder, false).await.unwrap();
    let zipped = dir.path().join("dotted.zip");
    let m = manifest("com.acme.zdotted", "1.0.0", &[], &[]);
    zip_of(&zipped, &[("plugin.json", m.as_bytes()), (".hidden/run.js", b"export function onEnable() {}"), ("docs/.x", b"x"), ("docs/readme.md", b"hi")]);
    k.install_package(&zipped, false).await.unwrap();
    fn dotted(root: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(root).unwrap().map(|e| e.unwrap()) {
            if e.file_name().to_string_lossy().starts_with('.') {
                out.push(e.path());
            } else if e.path().is_dir() {
                dotted(&e.path(), out);
            }
        }
    }
    let mut found = Vec::new();
    for e in std::fs::read_dir(data.join("packages")).unwrap().map(|e| e.unwrap()).filter(|e| e.file_name() != ".staging") {
        dotted(&e.path(), &mut found);
    }
    assert!(found.is_empty(), "installed: {found:?}");
    assert_eq!(k.plugins().unwrap().len(), 2);
    // Nothing runs from one either: install refuses it, while a stored manifest still loads.
    let m = Manifest::parse(br#"{"id":"com.acme.d","name":"D","version":"1.0.0","main":".dist/index.js"}"#, "plugin.json").unwrap();
    let said: Vec<String> = m.package_problems().iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
    assert!(said.iter().any(|s| s.starts_with("main:") && s.contains("dot-entry")), "{said:?}");
}

#[tokio::test]
async fn upgrade_keeps_storage_and_refuses_downgrade() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kernel::open(KernelConfig::new(dir.path().join("data"))).unwrap();
    k.start().await.unwrap();
    let v1 = package_dir(dir.path(), "v1", &manifest("com.acme.up", "1.0.0", &[], &["storage.read", "storage.write"]), &[]);
    let v2 = package_dir(dir.path(), "v2", &manifest("com.acme.up", "1.1.0", &[], &["storage.read", "storage.write"]), &[]);
    k.install_package(&v1, false).await.unwrap();
    k.grant("com.acme.up", GrantRequest::All).unwrap();
    k.enable("com.acme.up", false).await.unwrap();
    k.context("com.acme.up").unwrap().storage().set("kept", json!(true)).unwrap();
    let out = k.install_package(&v2, false).await.unwrap();
    assert_eq!(out.upgraded_from.as_deref(), Some("1.0.0"));
    assert_eq!(out.state, State::Enabled, "same permissions: re-enabled after the upgrade");
    assert_eq!(k.context("com.acme.up").unwrap().storage().get("kept").unwrap(), Some(json!(true)));
    assert!(matches!(k.install_package(&v2, false).await, Err(KernelError::AlreadyInstalled { .. })));
    assert!(matches!(k.install_package(&v1, false).await, Err(KernelError::Downgrade { .. })));
    let forced = k.install_package(&v1, true).await.unwrap();
    assert_eq!(forced.version, "1.0.0");
}

// ---- permissions and audit (issue: permissions that are enforced) ----------------------------

async fn ask_kernel(perms: &[&str]) -> Kernel {
    let k = memory_kernel();
    k.set_builtin_policy(BuiltinPolicy::Ask).unwrap();
    let m = format!(
        r#"{{"id":"t.p","name":"P","version":"1.0.0","permissions":[],"optionalPermissions":{}}}"#,
        serde_json::to_string(perms).unwrap()
    );
    k.register_builtin(&m, Arc::new(Probe::default())).unwrap();
    k.register_builtin(&manifest("t.other", "1.0.0", &[], &[]), Arc::new(Probe::default())).unwrap();
    k.start().await.unwrap();
    k.enable("t.p", false).await.unwrap();
    k.enable("t.other", false).await.unwrap();
    k
}

fn denied(r: Result<impl std::fmt::Debug, KernelError>, perm: &str) {
    match r {
        Err(KernelError::PermissionDenied { permission, .. }) => assert_eq!(permission, perm),
        other => panic!("expected denial of {perm}, got {other:?}"),
    }
}

#[tokio::test]
async fn every_domain_is_refused_without_a_grant_audited_and_allowed_with_it() {
    let perms = ["storage.read", "storage.write", "events.emit:crm.lead.*", "events.subscribe:user.*", "services.provide:cache", "services.use:cache", "kernel.manage"];
    let k = ask_kernel(&perms).await;
    let p = k.context("t.p").unwrap();
    denied(p.storage().get("k"), "storage.read");
    denied(p.storage().set("k", json!(1)), "storage.write");
    denied(p.events().emit("crm.lead.created", json!(null)), "events.emit:crm.lead.created");
    denied(p.events().on("user.*", |_| Ok(())), "events.subscribe:user.*");
    denied(p.services().register("cache", 1u8), "services.provide:cache");
    denied(p.services().get::<u8>("cache"), "services.use:cache");
    denied(p.kernel().map(|_| ()), "kernel.manage");
    let denials = k.audit(&AuditQuery { action: Some("permission.denied".into()), ..Default::default() }).unwrap();
    assert_eq!(denials.len(), 7);
    assert!(denials.iter().all(|r| r.actor == "plugin:t.p" && r.plugin.as_deref() == Some("t.p")));
    k.grant("t.p", GrantRequest::All).unwrap();
    p.storage().set("k", json!(1)).unwrap();
    assert_eq!(p.storage().get("k").unwrap(), Some(json!(1)));
    p.events().on("user.*", |_| Ok(())).unwrap();
    p.events().emit("crm.lead.created", json!(null)).unwrap();
    // patterns are matched against the grant: outside it is still refused
    denied(p.events().emit("crm.deal.won", json!(null)), "events.emit:crm.deal.won");
    denied(p.events().on("*", |_| Ok(())), "events.subscribe:*");
    p.services().register("cache", 1u8).unwrap();
    assert_eq!(*p.services().get::<u8>("cache").unwrap(), 1);
    denied(p.services().register("other", 1u8), "services.provide:other");
    p.kernel().unwrap();
    let grants = k.audit(&AuditQuery { action: Some("permission.granted".into()), ..Default::default() }).unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].actor, "admin");
}

#[tokio::test]
async fn required_permissions_block_enable_and_revoking_one_disables() {
    let k = memory_kernel();
    let m = r#"{"id":"t.r","name":"R","version":"1.0.0","permissions":["storage.write"],"optionalPermissions":["storage.read"]}"#;
    k.set_builtin_policy(BuiltinPolicy::Ask).unwrap();
    k.register_builtin(m, Arc::new(Probe::default())).unwrap();
    k.register_builtin(&manifest("t.dep", "1.0.0", &[("t.r", "^1")], &[]), Arc::new(Probe::default())).unwrap();
    k.start().await.unwrap();
    match k.enable("t.r", false).await.unwrap_err() {
        KernelError::PermissionsPending { pending, .. } => assert_eq!(pending, ["storage.write"]),
        e => panic!("{e}"),
    }
    k.grant("t.r", GrantRequest::Some(vec!["storage.write".into()])).unwrap();
    k.enable("t.r", false).await.unwrap();
    // optional permissions can come and go while enabled
    k.grant("t.r", GrantRequest::Some(vec!["storage.read".into()])).unwrap();
    k.revoke("t.r", &["storage.read".into()], false).await.unwrap();
    assert_eq!(state(&k, "t.r"), State::Enabled);
    // revoking a required one disables; refused while dependents are enabled unless cascade
    k.enable("t.dep", false).await.unwrap();
    assert!(matches!(k.revoke("t.r", &["storage.write".into()], false).await, Err(KernelError::DependentsEnabled { .. })));
    k.revoke("t.r", &["storage.write".into()], true).await.unwrap();
    assert_eq!(state(&k, "t.r"), State::Disabled);
    assert_eq!(state(&k, "t.dep"), State::Disabled);
    // granting something not requested is refused
    assert!(k.grant("t.r", GrantRequest::Some(vec!["kernel.manage".into()])).is_err());
}

#[tokio::test]
async fn an_upgrade_asking_for_more_waits_for_approval() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kernel::open(KernelConfig::new(dir.path().join("data"))).unwrap();
    k.start().await.unwrap();
    let v1 = package_dir(dir.path(), "v1", &manifest("com.acme.w", "1.0.0", &[], &["storage.read"]), &[]);
    let v2 = package_dir(dir.path(), "v2", &manifest("com.acme.w", "2.0.0", &[], &["storage.read", "events.emit:w.*"]), &[]);
    k.install_package(&v1, false).await.unwrap();
    k.grant("com.acme.w", GrantRequest::All).unwrap();
    k.enable("com.acme.w", false).await.unwrap();
    let out = k.install_package(&v2, false).await.unwrap();
    assert_eq!(out.state, State::Disabled);
    assert_eq!(out.pending, ["events.emit:w.*"]);
    let info = k.plugin("com.acme.w").unwrap();
    let new: Vec<&str> = info.permissions.iter().filter(|p| p.new).map(|p| p.permission.as_str()).collect();
    assert_eq!(new, ["events.emit:w.*"], "the widened set is marked");
    assert_eq!(info.desired, State::Enabled, "it is meant to come back once approved");
    k.grant("com.acme.w", GrantRequest::All).unwrap();
    k.enable("com.acme.w", false).await.unwrap();
}

#[tokio::test]
async fn builtin_policy_grants_at_first_start_as_system() {
    let k = memory_kernel();
    objectos_metrics::register(&k).unwrap();
    k.start().await.unwrap();
    let info = k.plugin(objectos_metrics::ID).unwrap();
    assert!(info.pending.is_empty());
    assert!(info.permissions.iter().all(|p| p.grant.as_ref().unwrap().granted_by == "system:policy"));
    k.enable(objectos_metrics::ID, false).await.unwrap();
    let text = k.service::<objectos_metrics::Metrics>("metrics").unwrap().render().unwrap();
    assert!(text.contains("objectos_plugin_hook_duration_seconds_count{plugin=\"com.objectos.metrics\",hook=\"onEnable\"} 1"), "{text}");
    assert!(text.contains("objectos_plugin_state{plugin=\"com.objectos.metrics\",state=\"enabled\"} 1"));
}

fn tamper(dir: &std::path::Path, sql: &str) {
    let db = rusqlite::Connection::open(dir.join("objectos.db")).unwrap();
    db.execute_batch(sql).unwrap();
}

#[tokio::test]
async fn the_audit_chain_detects_edits_deletions_and_reordering() {
    for (sql, want) in [
        ("UPDATE audit SET details='{\"version\":\"6.6.6\"}' WHERE id=3", "edited"),
        ("DELETE FROM audit WHERE id=3", "missing"),
        (
            "UPDATE audit SET id=-1 WHERE id=3; UPDATE audit SET id=3 WHERE id=4; UPDATE audit SET id=4 WHERE id=-1;",
            "does not link",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let calls = Arc::default();
        let k = disk_kernel(dir.path(), &calls).await;
        k.enable("t.app", true).await.unwrap();
        k.disable("t.app", false).await.unwrap();
        assert!(k.verify_audit().unwrap().is_intact());
        tamper(dir.path(), sql);
        match k.verify_audit().unwrap() {
            Verification::Broken { id, reason } => {
                assert!(id == 3 || id == 4, "{id}");
                assert!(reason.contains(want), "{sql}: {reason}");
            }
            v => panic!("{sql}: tampering not detected: {v:?}"),
        }
    }
}

#[tokio::test]
async fn trimming_is_checkpointed_and_the_rest_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::default();
    let k = disk_kernel(dir.path(), &calls).await;
    for _ in 0..3 {
        k.enable("t.app", true).await.unwrap();
        k.disable("t.app", false).await.unwrap();
    }
    let before = k.audit(&AuditQuery::default()).unwrap();
    let removed = k.trim_audit(10).unwrap();
    assert_eq!(removed, 9);
    let after = k.audit(&AuditQuery::default()).unwrap();
    assert_eq!(after.first().unwrap().id, 10);
    assert_eq!(after.last().unwrap().action, "audit.trimmed");
    assert_eq!(after.len(), before.len() - 9 + 1);
    assert!(k.verify_audit().unwrap().is_intact());
    // deleting the oldest kept row is still caught
    tamper(dir.path(), "DELETE FROM audit WHERE id=10");
    assert!(!k.verify_audit().unwrap().is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_audit_record_is_lost_in_a_burst_of_100k_events_with_full_detail() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::default();
    let k = disk_kernel(dir.path(), &calls).await;
    k.set_audit_detail(AuditDetail::Full).unwrap();
    k.enable("t.app", true).await.unwrap();
    let ctx = k.context("t.app").unwrap();
    let delivered = Arc::new(AtomicUsize::new(0));
    let d = delivered.clone();
    k.context("t.base").unwrap().events().on("burst.*", move |_| { d.fetch_add(1, Ordering::Relaxed); Ok(()) }).unwrap();
    for i in 0..100_000u32 {
        ctx.events().emit("burst.tick", json!(i)).unwrap();
    }
    assert_eq!(delivered.load(Ordering::Relaxed), 100_000);
    let emitted = k.audit(&AuditQuery { action: Some("event.emitted".into()), ..Default::default() }).unwrap();
    assert_eq!(emitted.len(), 100_000);
    assert!(k.verify_audit().unwrap().is_intact());
}

#[tokio::test]
async fn changes_made_by_another_process_are_noticed_and_applied() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let console = Kernel::open(KernelConfig::new(&data)).unwrap();
    console.start().await.unwrap();
    assert!(!console.changed_externally());
    // The `objectos` command, another kernel on the same data directory.
    let cli = Kernel::open(KernelConfig::new(&data)).unwrap();
    cli.start().await.unwrap();
    let pkg = package_dir(dir.path(), "p", &manifest("com.acme.ext", "1.0.0", &[], &["storage.read"]), &[]);
    cli.install_package(&pkg, false).await.unwrap();
    cli.grant("com.acme.ext", GrantRequest::All).unwrap();
    cli.enable("com.acme.ext", false).await.unwrap();
    cli.flush();
    assert!(console.changed_externally());
    console.sync_external().await.unwrap();
    let info = console.plugin("com.acme.ext").unwrap();
    assert_eq!(info.state, State::Enabled, "the console runs what the command enabled");
    assert!(info.pending.is_empty());
    console.context("com.acme.ext").unwrap().storage().get("x").unwrap();
    cli.disable("com.acme.ext", false).await.unwrap();
    console.sync_external().await.unwrap();
    assert_eq!(state(&console, "com.acme.ext"), State::Disabled);
    cli.uninstall("com.acme.ext").await.unwrap();
    console.sync_external().await.unwrap();
    assert!(console.plugin("com.acme.ext").is_err());
}

#[tokio::test]
async fn a_newer_builtin_upgrades_at_start_and_comes_back_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    {
        let k = Kernel::open(KernelConfig::new(dir.path())).unwrap();
        k.register_builtin(&manifest("t.b", "1.0.0", &[], &["storage.read"]), Arc::new(Probe::with_calls(&calls))).unwrap();
        k.register_builtin(&manifest("t.user", "1.0.0", &[("t.b", "^1")], &[]), Arc::new(Probe::with_calls(&calls))).unwrap();
        k.start().await.unwrap();
        k.enable("t.user", true).await.unwrap();
        k.shutdown().await;
    }
    let probe = Probe::with_calls(&calls);
    let upgraded = probe.upgraded.clone();
    let k = Kernel::open(KernelConfig::new(dir.path())).unwrap();
    k.register_builtin(&manifest("t.b", "1.1.0", &[], &["storage.read", "storage.write"]), Arc::new(probe)).unwrap();
    k.register_builtin(&manifest("t.user", "1.0.0", &[("t.b", "^1")], &[]), Arc::new(Probe::with_calls(&calls))).unwrap();
    let report = k.start().await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let (from, to) = upgraded.lock().unwrap().clone().expect("onUpgrade ran");
    assert_eq!((from.to_string(), to.to_string()), ("1.0.0".into(), "1.1.0".into()));
    let b = k.plugin("t.b").unwrap();
    assert_eq!((b.state, b.manifest.version.to_string()), (State::Enabled, "1.1.0".into()));
    assert!(b.pending.is_empty(), "the built-in policy grants the widened set too");
    assert_eq!(state(&k, "t.user"), State::Enabled);
}

#[tokio::test]
async fn tracing_events_inside_a_plugin_span_land_in_that_plugins_log() {
    use tracing_subscriber::prelude::*;
    let _ = tracing_subscriber::registry().with(objectos_kernel::host::PluginLogLayer).try_init();
    let k = memory_kernel();
    let probe = Probe {
        enable: Some(Arc::new(|_| {
            tracing::warn!(disk = "almost full", "plain tracing call from a hook");
            Ok(())
        })),
        ..Default::default()
    };
    k.register_builtin(&manifest("t.traced", "1.0.0", &[], &[]), Arc::new(probe)).unwrap();
    k.start().await.unwrap();
    k.enable("t.traced", false).await.unwrap();
    let logs = k.logs(&LogQuery { plugin: Some("t.traced".into()), ..Default::default() }).unwrap();
    let line = logs.iter().find(|l| l.message == "plain tracing call from a hook").expect("captured by the layer");
    assert_eq!(line.level, objectos_kernel::model::log::Level::Warn);
    assert_eq!(line.fields["disk"], "almost full");
}

#[tokio::test]
async fn a_failed_disable_is_not_undone_by_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let k = Kernel::open(KernelConfig::new(dir.path())).unwrap();
        let probe = Probe { disable: Some(Arc::new(|_| Err("cannot let go".into()))), ..Default::default() };
        k.register_builtin(&manifest("t.sticky", "1.0.0", &[], &[]), Arc::new(probe)).unwrap();
        k.start().await.unwrap();
        k.enable("t.sticky", false).await.unwrap();
        assert!(matches!(k.disable("t.sticky", false).await, Err(KernelError::Hook { .. })));
        let info = k.plugin("t.sticky").unwrap();
        assert_eq!((info.state, info.desired), (State::Error, State::Disabled));
        assert!(k.services().is_empty());
        k.shutdown().await;
    }
    let k = Kernel::open(KernelConfig::new(dir.path())).unwrap();
    k.register_builtin(&manifest("t.sticky", "1.0.0", &[], &[]), Arc::new(Probe::default())).unwrap();
    k.start().await.unwrap();
    assert_ne!(state(&k, "t.sticky"), State::Enabled);
}

#[test]
fn typos_in_permissions_states_fields_and_values_are_answered_with_the_likely_name() {
    let e = "storage.raed".parse::<objectos_kernel::model::permission::Permission>().unwrap_err();
    assert!(e.contains("did you mean `storage.read`?"), "{e}");
    let e = "servces.use:data".parse::<objectos_kernel::model::permission::Permission>().unwrap_err();
    assert!(e.contains("did you mean `services.use`?"), "{e}");
    let e = "bogus.perm".parse::<objectos_kernel::model::permission::Permission>().unwrap_err();
    assert!(!e.contains("did you mean"), "nothing is close: {e}");
}

// ---- durable delivery ---------------------------------------------------------------------

/// A durable subscription's events are queued with whatever emitted them, wait while no
/// process runs plugins (and across processes), and are handed out by the runner at least
/// once: a delivery that failed comes again with the same id; one that succeeded never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_subscriptions_get_every_event_at_least_once_with_a_stable_id() {
    let dir = tempfile::tempdir().unwrap();
    let seen: Arc<Mutex<Vec<(i64, u32, u64)>>> = Arc::default();
    let open = |seen: Arc<Mutex<Vec<(i64, u32, u64)>>>| {
        let k = Kernel::open(KernelConfig::new(dir.path()).storage(StorageKind::Sqlite)).unwrap();
        let calls = Arc::default();
        k.register_builtin(&manifest("t.emitter", "1.0.0", &[], ALL_PERMS), Arc::new(Probe::with_calls(&calls))).unwrap();
        let subscribe: objectos_tests::HookFn = Arc::new(move |ctx| {
            let seen = seen.clone();
            ctx.events().on_durable("orders", "orders.*", move |d| {
                let seen = seen.clone();
                async move {
                    let n = d.event.payload["n"].as_u64().unwrap();
                    seen.lock().unwrap().push((d.id.unwrap(), d.attempt, n));
                    // Order 2 fails the first time it comes.
                    if n == 2 && d.attempt == 1 {
                        return Err("not yet".into());
                    }
                    Ok(())
                }
            })?;
            Ok(())
        });
        k.register_builtin(&manifest("t.sub", "1.0.0", &[], ALL_PERMS), Arc::new(Probe { enable: Some(subscribe), ..Probe::with_calls(&calls) })).unwrap();
        k
    };
    let waiting = |k: &Kernel| k.durable_subscriptions().unwrap().iter().map(|s| s.waiting).sum::<u32>();
    {
        // Another process runs the plugins here (it has no subscriber of its own).
        let runner = Kernel::open(KernelConfig::new(dir.path()).storage(StorageKind::Sqlite)).unwrap();
        let _lease = runner.take_runner("elsewhere").unwrap();
        let k = open(seen.clone());
        k.start().await.unwrap();
        assert!(!k.is_runner());
        k.enable("t.emitter", false).await.unwrap();
        k.enable("t.sub", false).await.unwrap();
        // No runner: the events wait.
        let emitter = k.context("t.emitter").unwrap();
        for n in 1..=3 {
            emitter.events().emit("orders.created", json!({ "n": n })).unwrap();
        }
        emitter.events().emit("invoices.created", json!({ "n": 9 })).unwrap();
        assert_eq!(waiting(&k), 3, "{:?}", k.durable_subscriptions());
        assert!(seen.lock().unwrap().is_empty(), "only the runner delivers");
        k.flush();
    }
    // Another process, with the runner gone: the events waited in the data directory, and
    // this kernel takes the lease as it starts.
    let k = open(seen.clone());
    k.start().await.unwrap();
    assert!(k.is_runner());
    wait_until(30, "every order handled, order 2 retried", || waiting(&k) == 0).await;
    let seen = seen.lock().unwrap().clone();
    let ids: Vec<i64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(seen.iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(), [(1, 1), (1, 2), (1, 3), (2, 2)], "{seen:?}");
    assert_eq!(ids[1], ids[3], "the redelivery carries the first delivery's id");
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "ids follow the order events were queued in: {ids:?}");
    // The failure is logged and audited.
    let failed = k.audit(&AuditQuery { plugin: Some("t.sub".into()), action: Some("handler.failed".into()), ..Default::default() }).unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    // Ending one subscription leaves the plugin's others (and what waits for them) alone.
    let sub = k.context("t.sub").unwrap();
    let extra = sub.events().on_durable("extra", "extra.*", |_| async { Ok(()) }).unwrap();
    let names = |k: &Kernel| k.durable_subscriptions().unwrap().into_iter().map(|s| s.name).collect::<Vec<_>>();
    assert_eq!(names(&k), ["extra", "orders"]);
    assert!(sub.events().off(extra));
    assert_eq!(names(&k), ["orders"]);
    // Disabling the subscriber ends its subscription.
    k.disable("t.sub", false).await.unwrap();
    assert!(k.durable_subscriptions().unwrap().is_empty());
}
