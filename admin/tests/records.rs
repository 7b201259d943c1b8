//! The records use cases on the sample CRM, as every host gets them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use objectos_admin::records::{ListQuery, Records};
use objectos_kernel::model::views::GrantRequest;
use objectos_kernel::serde_json::json;
use objectos_kernel::{Kernel, KernelConfig};

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages")
}

async fn kernel() -> Kernel {
    let k = Kernel::open(KernelConfig::in_memory().runtime(Arc::new(objectos_declarative::Runtime))).unwrap();
    objectos_jobs::register(&k).unwrap();
    objectos_notification::register(&k).unwrap();
    objectos_declarative::register(&k).unwrap();
    k.start().await.unwrap();
    for p in ["contacts", "crm"] {
        let out = k.install_package(&samples().join(p), false).await.unwrap();
        k.grant(&out.id, GrantRequest::All).unwrap();
    }
    k.enable("com.acme.crm", true).await.unwrap();
    k
}

#[tokio::test]
async fn a_type_is_named_in_full_or_by_a_short_name_one_package_declares() {
    let k = kernel().await;
    let r = Records::new(&k).unwrap();
    assert_eq!(r.resolve("opportunity").unwrap().name, "com.acme.crm/opportunity");
    assert_eq!(r.resolve("com.acme.crm/opportunity").unwrap().workflow.unwrap().initial, "prospect");
    let e = r.resolve("invoice").unwrap_err();
    assert_eq!((e.code(), e.to_string().contains("no record type `invoice`")), ("unknownType", true));
    let names: Vec<String> = r.types().into_iter().map(|t| t.name).collect();
    assert!(names.contains(&"com.acme.crm/account".to_string()), "{names:?}");
}

#[tokio::test]
async fn a_list_is_filtered_then_sorted_then_cut() {
    let k = kernel().await;
    let r = Records::new(&k).unwrap();
    for (title, amount) in [("Acme", 40), ("Bolt", 400), ("Cogs", 4), ("Dyno", 4000)] {
        r.save("opportunity", None, json!({ "title": title, "amount": amount })).unwrap();
    }
    let q = ListQuery { filter: Some("amount > 10".into()), sort: Some("amount:desc".into()), limit: 2 };
    let titles: Vec<String> = r.list("opportunity", &q).unwrap().iter().map(|a| a["title"].as_str().unwrap().to_string()).collect();
    assert_eq!(titles, ["Dyno", "Bolt"]);
    let e = r.list("opportunity", &ListQuery { sort: Some("colour".into()), limit: 10, ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("cannot sort by `colour`"), "{e}");
}

#[tokio::test]
async fn an_import_checks_every_row_writes_nothing_until_committed_and_reports_each_failure_by_line() {
    let k = kernel().await;
    let r = Records::new(&k).unwrap();
    let acme = r.save("account", None, json!({ "name": "Acme" })).unwrap().record["id"].as_str().unwrap().to_string();
    // Windows line endings, as a spreadsheet writes them.
    let csv = format!("title,amount,account\r\nScanners,100,{acme}\r\nNo amount,lots,\r\nLathe,50,{acme}\r\n,10,\r\n");
    let check = r.check_import("opportunity", csv.as_bytes()).unwrap();
    assert_eq!(check.valid.iter().map(|(line, _)| *line).collect::<Vec<_>>(), [2, 4]);
    assert_eq!(check.rejected.iter().map(|x| x.line).collect::<Vec<_>>(), [3, 5], "{:?}", check.rejected);
    assert!(r.list("opportunity", &ListQuery { limit: 10, ..Default::default() }).unwrap().is_empty(), "a check writes nothing");

    // The referenced account goes between the check and the commit: that row fails, with its
    // line, and the rest is written.
    let lathe = r.check_import("opportunity", format!("title,account\nLathe,{acme}\nFree-standing,\n").as_bytes()).unwrap();
    r.delete("account", &acme).unwrap();
    let done = r.commit_import(lathe);
    assert_eq!(done.created, 1);
    assert_eq!(done.failed.iter().map(|f| f.line).collect::<Vec<_>>(), [2], "{:?}", done.failed);
    let (csv, n) = r.export_csv("opportunity").unwrap();
    assert_eq!(n, 1);
    assert!(csv.starts_with("id,title,") && csv.contains("Free-standing"), "{csv}");
}

/// A host that shows records is told of each write, by whoever makes it, as a typed change.
#[tokio::test]
async fn a_watcher_is_told_of_every_write_with_its_type_and_id() {
    let k = kernel().await;
    let mut changes = objectos_admin::records::watch(&k).expect("the Records engine runs");
    let r = Records::new(&k).unwrap();
    let id = r.save("account", None, json!({ "name": "Acme" })).unwrap().record["id"].as_str().unwrap().to_string();
    r.save("account", Some(&id), json!({ "name": "Acme GmbH" })).unwrap();
    r.delete("account", &id).unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let c = tokio::time::timeout(std::time::Duration::from_secs(30), changes.recv()).await.unwrap().unwrap();
        seen.push((c.record_type, c.id == id, c.change));
    }
    assert_eq!(seen.iter().map(|(_, same, change)| (*same, *change)).collect::<Vec<_>>(), [(true, "created"), (true, "updated"), (true, "deleted")]);
    assert!(seen.iter().all(|(t, _, _)| t.ends_with("/account")), "{seen:?}");
    drop(r);
    k.disable("com.objectos.objects", true).await.unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), changes.recv()).await.expect("the watch ends with the engine");
    assert!(ended.is_err());
    assert!(objectos_admin::records::watch(&k).is_none());
}

/// A kernel on `dir` with the engines registered, not started.
fn opened(dir: &std::path::Path) -> Kernel {
    let k = Kernel::open(KernelConfig::new(dir).storage(objectos_kernel::host::StorageKind::Sqlite).runtime(Arc::new(objectos_declarative::Runtime))).unwrap();
    objectos_jobs::register(&k).unwrap();
    objectos_notification::register(&k).unwrap();
    objectos_declarative::register(&k).unwrap();
    k
}

/// Reading brings the Records engine up without a lifecycle change; a full start afterwards in
/// the same process brings every plugin up as usual, recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_records_then_starting_leaves_every_plugin_as_a_start_does() {
    let dir = tempfile::tempdir().unwrap();
    let k = opened(dir.path());
    k.start().await.unwrap();
    for p in ["contacts", "crm"] {
        let out = k.install_package(&samples().join(p), false).await.unwrap();
        k.grant(&out.id, GrantRequest::All).unwrap();
    }
    k.enable("com.acme.crm", true).await.unwrap();
    Records::new(&k).unwrap().save("account", None, json!({ "name": "Acme" })).unwrap();
    k.shutdown().await;
    drop(k);

    let k = opened(dir.path());
    k.sync_builtins().await.unwrap();
    let before = k.audit(&Default::default()).unwrap().len();
    let r = Records::reading(&k).await.unwrap();
    assert_eq!(r.list("account", &ListQuery { limit: 10, ..Default::default() }).unwrap().len(), 1);
    assert_eq!(r.types().iter().find(|t| t.name == "com.acme.crm/opportunity").and_then(|t| t.workflow.as_ref()).map(|w| w.initial.as_str()), Some("prospect"));
    assert_eq!(k.audit(&Default::default()).unwrap().len(), before, "reading recorded nothing");
    drop(r);

    let report = k.start().await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    for id in ["com.objectos.objects", "com.acme.crm"] {
        assert_eq!(k.plugin(id).unwrap().state, objectos_kernel::model::lifecycle::State::Enabled, "{id}");
    }
    let enabled = k.audit(&objectos_kernel::model::audit::AuditQuery { action: Some("plugin.enabled".into()), plugin: Some("com.objectos.objects".into()), ..Default::default() }).unwrap();
    assert!(!enabled.is_empty(), "the start recorded the engine's enable");
    Records::new(&k).unwrap().save("account", None, json!({ "name": "Bolt" })).unwrap();
    k.shutdown().await;
}
