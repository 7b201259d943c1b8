//! The cache plugin through the kernel: a second plugin uses it with the grant it needs and
//! is refused without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use objectos_cache::{Cache, ID};
use objectos_kernel::serde_json::json;
use objectos_kernel::{Kernel, KernelError, PluginContext};
use objectos_tests::{manifest, memory_kernel, wait_until, Probe};

async fn kernel_with(config: Option<objectos_kernel::serde_json::Value>) -> Kernel {
    let k = memory_kernel();
    objectos_cache::register(&k).unwrap();
    objectos_metrics::register(&k).unwrap();
    for (id, perms) in [("t.user", &["services.use:cache"][..]), ("t.other", &["services.use:cache"]), ("t.stranger", &[])] {
        k.register_builtin(&manifest(id, "1.0.0", &[(ID, "^0.1")], perms), Arc::new(Probe::default())).unwrap();
    }
    k.start().await.unwrap();
    if let Some(c) = config {
        k.set_config(ID, c).unwrap();
    }
    for id in ["t.user", "t.other", "t.stranger", objectos_metrics::ID] {
        k.enable(id, true).await.unwrap();
    }
    k
}

fn cache_for(k: &Kernel, id: &str) -> (PluginContext, Arc<Cache>) {
    let ctx = k.context(id).unwrap();
    let cache = ctx.services().get::<Cache>("cache").unwrap();
    (ctx, cache)
}

#[tokio::test]
async fn values_round_trip_in_per_plugin_namespaces() {
    let k = kernel_with(None).await;
    let (user, cache) = cache_for(&k, "t.user");
    let (other, _) = cache_for(&k, "t.other");
    cache.set(&user, "rates", json!({"EUR": 1.08}), None).unwrap();
    assert_eq!(cache.get(&user, "rates"), Some(json!({"EUR": 1.08})));
    assert_eq!(cache.get(&other, "rates"), None, "another plugin's key is invisible");
    assert!(!cache.delete(&other, "rates"), "and cannot be deleted by name");
    cache.set(&other, "rates", json!(2), None).unwrap();
    assert_eq!(cache.get(&user, "rates"), Some(json!({"EUR": 1.08})));
    assert_eq!(cache.clear(&other), 1);
    assert!(cache.delete(&user, "rates"));
    assert_eq!(cache.get(&user, "rates"), None);
    let err = cache.set(&user, "", json!(1), None).unwrap_err();
    assert!(matches!(err, KernelError::InvalidName { .. }), "{err}");
}

#[tokio::test]
async fn a_plugin_without_the_grant_is_refused_and_audited() {
    let k = kernel_with(None).await;
    let ctx = k.context("t.stranger").unwrap();
    let err = ctx.services().get::<Cache>("cache").err().unwrap();
    assert!(matches!(&err, KernelError::PermissionDenied { permission, .. } if permission == "services.use:cache"), "{err}");
    k.flush();
    let denials = k.audit(&objectos_kernel::model::audit::AuditQuery { action: Some("permission.denied".into()), ..Default::default() }).unwrap();
    assert!(denials.iter().any(|r| r.plugin.as_deref() == Some("t.stranger")));
}

#[tokio::test]
async fn expired_entries_are_never_returned() {
    let k = kernel_with(None).await;
    let (user, cache) = cache_for(&k, "t.user");
    cache.set(&user, "short", json!("x"), Some(Duration::from_millis(20))).unwrap();
    cache.set(&user, "long", json!("y"), Some(Duration::from_secs(3600))).unwrap();
    // Every get before expiry sees the value; once one misses, none hits again.
    let mut missed = false;
    wait_until(10, "the short entry to expire", || {
        let v = cache.get(&user, "short");
        assert!(!(missed && v.is_some()), "an expired entry came back");
        missed = v.is_none();
        missed
    })
    .await;
    assert_eq!(cache.get(&user, "short"), None);
    assert_eq!(cache.get(&user, "long"), Some(json!("y")));
    assert_eq!(cache.stats().expirations, 1);
}

#[tokio::test]
async fn least_recently_used_entries_are_evicted_at_the_bounds() {
    let k = kernel_with(Some(json!({"maxEntries": 3, "maxBytes": 4096}))).await;
    let (user, cache) = cache_for(&k, "t.user");
    for key in ["a", "b", "c"] {
        cache.set(&user, key, json!(key), None).unwrap();
    }
    assert!(cache.get(&user, "a").is_some()); // a is now the most recent
    cache.set(&user, "d", json!("d"), None).unwrap();
    assert_eq!(cache.get(&user, "b"), None, "b was least recently used");
    for key in ["a", "c", "d"] {
        assert!(cache.get(&user, key).is_some(), "{key} kept");
    }
    // The byte bound: one big value pushes out older ones; one bigger than the cache is refused.
    cache.set(&user, "big", json!("x".repeat(3500)), None).unwrap();
    assert!(cache.stats().bytes <= 4096, "{:?}", cache.stats());
    let err = cache.set(&user, "huge", json!("x".repeat(5000)), None).unwrap_err();
    assert!(err.to_string().contains("more than the whole cache may hold"), "{err}");
    let s = cache.stats();
    assert!(s.evictions >= 2, "{s:?}");
    assert!(cache.get(&user, "big").is_some());
}

#[tokio::test]
async fn counters_are_exported_by_the_metrics_plugin() {
    let k = kernel_with(None).await;
    let (user, cache) = cache_for(&k, "t.user");
    cache.set(&user, "k", json!(1), None).unwrap();
    cache.get(&user, "k");
    cache.get(&user, "k");
    cache.get(&user, "missing");
    let text = k.service::<objectos_metrics::Metrics>("metrics").unwrap().render().unwrap();
    assert!(text.contains("objectos_cache_hits_total{plugin=\"com.objectos.cache\"} 2"), "{text}");
    assert!(text.contains("objectos_cache_misses_total{plugin=\"com.objectos.cache\"} 1"), "{text}");
    assert!(text.contains("# TYPE objectos_cache_entries gauge"), "{text}");
}

#[tokio::test]
async fn an_uninstalled_plugin_leaves_nothing_behind() {
    let k = kernel_with(None).await;
    let dir = tempfile_dir();
    let pkg = objectos_tests::package_dir(dir.path(), "pkg", &manifest("t.pkg", "1.0.0", &[], &["services.use:cache"]), &[]);
    k.install_package(&pkg, false).await.unwrap();
    k.grant("t.pkg", objectos_kernel::model::views::GrantRequest::All).unwrap();
    k.enable("t.pkg", false).await.unwrap();
    let (ctx, cache) = cache_for(&k, "t.pkg");
    cache.set(&ctx, "k", json!(1), None).unwrap();
    assert_eq!(cache.stats().entries, 1);
    k.disable("t.pkg", false).await.unwrap();
    k.uninstall("t.pkg").await.unwrap();
    wait_until(10, "the namespace to be cleared", || cache.stats().entries == 0).await;
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
