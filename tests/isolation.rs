//! Isolation between packages: each test is an attack a security review made with packages an
//! admin approved exactly as asked, and asserts the refusal or the bound that stops it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use objectos_declarative::automation::Automations;
use objectos_declarative::data::Data;
use objectos_kernel::model::audit::AuditQuery;
use objectos_kernel::model::lifecycle::State;
use objectos_kernel::model::log::LogQuery;
use objectos_kernel::model::views::GrantRequest;
use objectos_kernel::serde_json::{json, Value};
use objectos_kernel::{Kernel, KernelConfig, KernelError};
use objectos_tests::{manifest, package_dir, wait_until, Probe};

/// A kernel with the jobs, notification and declarative built-ins, started.
async fn kernel(config: KernelConfig) -> Kernel {
    let k = Kernel::open(config.runtime(Arc::new(objectos_declarative::Runtime))).unwrap();
    objectos_jobs::register(&k).unwrap();
    objectos_notification::register(&k).unwrap();
    objectos_declarative::register(&k).unwrap();
    k.start().await.unwrap();
    k
}

/// Install, approve everything the package asks for, and enable a package.
async fn install(k: &Kernel, root: &Path, name: &str, perms: &[&str], provides: Value, files: &[(&str, &str)]) -> String {
    let deps = json!({ "com.objectos.objects": "^0.1", "com.objectos.automation": "^0.1" });
    let m = json!({ "id": format!("t.{name}"), "name": name, "version": "1.0.0", "dependencies": deps, "provides": provides, "permissions": perms });
    let dir: PathBuf = package_dir(root, name, &m.to_string(), files);
    let id = k.install_package(&dir, false).await.unwrap().id;
    k.grant(&id, GrantRequest::All).unwrap();
    k.enable(&id, true).await.unwrap();
    id
}

/// Register, approve and enable a built-in test plugin asking for `perms`.
async fn builtin(k: &Kernel, id: &str, deps: &[(&str, &str)], perms: &[&str]) {
    k.register_builtin(&manifest(id, "1.0.0", deps, perms), Arc::new(Probe::default())).unwrap();
    k.sync_builtins().await.unwrap();
    k.grant(id, GrantRequest::All).unwrap();
    k.enable(id, true).await.unwrap();
}

/// A built-in listener subscribed to `pattern`: the payloads it hears.
async fn listener(k: &Kernel, id: &str, pattern: &str) -> Arc<std::sync::Mutex<Vec<Value>>> {
    builtin(k, id, &[], &[&format!("events.subscribe:{pattern}")]).await;
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = heard.clone();
    k.context(id).unwrap().events().on(pattern, move |e| {
        h.lock().unwrap().push((*e.payload).clone());
        Ok(())
    }).unwrap();
    heard
}

/// A data directory where `plugin` ran once, with a storage row written behind the kernel's back
/// (what an older version, or a hand edit, left).
async fn data_dir_with_row(plugin: &str, key: &str, value: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    {
        let k = kernel(KernelConfig::new(dir.path())).await;
        k.enable(plugin, true).await.unwrap();
        k.shutdown().await;
    }
    let db = rusqlite::Connection::open(dir.path().join("objectos.db")).unwrap();
    db.execute("INSERT INTO storage(plugin, key, value) VALUES (?1, ?2, ?3)", [plugin, key, value]).unwrap();
    dir
}

/// `levels` objects, each holding the next under `payload`.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!("bottom"), |v, _| json!({ "payload": v }))
}

fn over_limit(e: &KernelError) -> bool {
    matches!(e, KernelError::OverLimit { .. })
}

/// Finding: any depth was written, so one unreadable row later stopped the jobs plugin at every
/// start. Deep values are now refused where they are written: events, storage and jobs.
#[tokio::test]
async fn deep_values_are_refused_on_every_write_path_and_audited() {
    let k = kernel(KernelConfig::in_memory()).await;
    builtin(&k, "t.deep", &[("com.objectos.jobs", "^0.1")], &["events.emit:p.**", "storage.read", "storage.write", "services.use:jobs"]).await;
    let ctx = k.context("t.deep").unwrap();

    let e = ctx.events().emit("p.tick", nested(123)).unwrap_err();
    assert!(over_limit(&e) && e.to_string().contains("nested more than 32 levels deep"), "{e}");
    let e = ctx.storage().set("k", nested(40)).unwrap_err();
    assert!(over_limit(&e) && e.to_string().contains("storage value `k`"), "{e}");
    let e = ctx.storage().swap("k", None, Some(nested(40))).unwrap_err();
    assert!(over_limit(&e), "{e}");
    let jobs = ctx.services().get::<objectos_jobs::Jobs>("jobs").unwrap();
    let e = jobs.enqueue(&ctx, objectos_jobs::JobSpec::new("work", nested(40))).unwrap_err();
    assert!(over_limit(&e) && e.to_string().contains("its payload is nested"), "{e}");
    // What fits is still accepted, and nothing refused was stored.
    ctx.events().emit("p.tick", nested(20)).unwrap();
    assert_eq!(ctx.storage().get("k").unwrap(), None);
    k.flush();
    let refused = k.audit(&AuditQuery { plugin: Some("t.deep".into()), action: Some("limit.exceeded".into()), ..Default::default() }).unwrap();
    assert_eq!(refused.len(), 4, "every refusal is audited: {refused:?}");
    assert_eq!(refused[0].actor, "plugin:t.deep");
}

/// Finding: one unreadable row aborted the jobs plugin's scan in `on_enable`, so it (and
/// everything depending on it) failed at every start. Such a row is now skipped and reported.
#[tokio::test]
async fn an_unreadable_stored_row_is_skipped_and_reported_not_fatal_to_a_start() {
    // What an older version let a package's relayed payload become: deeper than a reader takes.
    let deep = format!("{{\"id\":\"x\",\"payload\":{}1{}}}", "[".repeat(150), "]".repeat(150));
    let dir = data_dir_with_row("com.objectos.jobs", "job:0000000000000-poison", &deep).await;

    let k = kernel(KernelConfig::new(dir.path())).await;
    k.enable("com.objectos.jobs", true).await.unwrap();
    assert_eq!(k.plugin("com.objectos.jobs").unwrap().state, State::Enabled);
    k.flush();
    let logs = k.logs(&LogQuery { plugin: Some("com.objectos.jobs".into()), ..Default::default() }).unwrap();
    assert!(logs.iter().any(|l| l.message.contains("job:0000000000000-poison") && l.message.contains("cannot be read")), "{logs:?}");
}

/// Finding: the automation depth limit was carried in the payload (`_depth`), and an `emit`
/// action's `data` could reset it: a self-triggering automation ran unbounded. The depth is now
/// the kernel's, on the event, out of any payload's reach.
#[tokio::test]
async fn the_loop_cut_cannot_be_reset_from_an_actions_data() {
    let k = kernel(KernelConfig::in_memory()).await;
    let root = tempfile::tempdir().unwrap();
    let looping = "name: echo\nwhen: { event: loop.ping }\ndo:\n  - emit: { topic: loop.ping, data: { _depth: 0, depth: 0 } }\n";
    let perms = ["services.use:automation", "events.emit:loop.*", "events.subscribe:loop.*"];
    let id = install(&k, root.path(), "loop", &perms, json!({ "automations": ["echo"], "events": ["loop.*"] }), &[("automations/echo.yml", looping)]).await;
    let automations = k.service::<Automations>("automation").unwrap();
    let stat = || automations.stats().into_iter().find(|s| s.package == id).unwrap();
    k.context(&id).unwrap().events().emit("loop.ping", json!({})).unwrap();
    wait_until(20, "the loop to be cut", || stat().skipped == 1).await;
    assert_eq!(stat().runs, u64::from(objectos_declarative::actions::MAX_DEPTH), "{:?}", stat());
}

/// Finding: an `emit` action's `data` could overwrite `record`, and a victim's `set` acted on a
/// record type and id taken from whatever payload triggered it. Data may no longer set the
/// engine's keys, and `set` acts only on the record a record trigger is about, as the data
/// engine announced it.
#[tokio::test]
async fn a_forged_record_event_cannot_steer_another_packages_set() {
    let k = kernel(KernelConfig::in_memory()).await;
    let root = tempfile::tempdir().unwrap();
    let ticket = "name: vticket\nfields:\n  title: { type: text }\n  n: { type: number, default: 0 }\n";
    let invoice = "name: vinvoice\nfields:\n  n: { type: number, default: 0 }\n";
    let bump = "name: bump\nwhen: { record: { object: vticket, on: updated } }\ndo:\n  - set: { n: 1 }\n";
    let perms = ["services.use:data", "services.use:automation", "data.vticket.read", "data.vticket.write", "data.vinvoice.read", "data.vinvoice.write", "events.subscribe:data.vticket.*"];
    let victim = install(&k, root.path(), "victim", &perms, json!({ "objects": ["vticket", "vinvoice"], "automations": ["bump"] }), &[("objects/vticket.yml", ticket), ("objects/vinvoice.yml", invoice), ("automations/bump.yml", bump)]).await;
    let vctx = k.context(&victim).unwrap();
    let data = vctx.services().get::<Data>("data").unwrap();
    let inv = data.create(&vctx, "vinvoice", json!({})).unwrap();
    let inv_id = inv["id"].as_str().unwrap().to_string();

    // The forger was granted the victim's data topic: the kernel refuses the emit (the topic
    // is the data engine's), and had it gone out, the trigger would not believe it.
    let forger = install(&k, root.path(), "forger", &["events.emit:data.vticket.updated"], json!({}), &[]).await;
    let forged = json!({ "object": "vinvoice", "id": inv_id, "record": { "id": inv_id }, "changed": ["title"] });
    let e = k.context(&forger).unwrap().events().emit("data.vticket.updated", forged).unwrap_err();
    assert!(matches!(e, KernelError::TopicNotOwned { .. }), "{e}");

    // A real update of a ticket does run the victim's automation, on that ticket.
    let t = data.create(&vctx, "vticket", json!({ "title": "Printer" })).unwrap();
    data.update(&vctx, "vticket", t["id"].as_str().unwrap(), json!({ "title": "Printer on fire" })).unwrap();
    wait_until(20, "the real update's run", || data.get(&vctx, "vticket", t["id"].as_str().unwrap()).unwrap().unwrap()["n"] == 1).await;
    assert_eq!(data.get(&vctx, "vinvoice", &inv_id).unwrap().unwrap()["n"], 0, "the forged event steered nothing");
}

/// An `emit` action may not name the engine's own payload keys.
#[tokio::test]
async fn an_emit_action_may_not_set_the_engines_keys() {
    let k = kernel(KernelConfig::in_memory()).await;
    let root = tempfile::tempdir().unwrap();
    let bad = "name: a\nwhen: { event: x.y }\ndo:\n  - emit: { topic: x.z, data: { record: { id: other } } }\n";
    let deps = json!({ "com.objectos.automation": "^0.1" });
    let m = json!({ "id": "t.bad", "name": "bad", "version": "1.0.0", "dependencies": deps, "provides": { "automations": ["a"] }, "permissions": ["services.use:automation"] });
    let dir = package_dir(root.path(), "bad", &m.to_string(), &[("automations/a.yml", bad)]);
    let e = k.install_package(&dir, false).await.unwrap_err();
    assert!(e.to_string().contains("1 problem") || matches!(e, KernelError::Manifest(_)), "{e}");
    let KernelError::Manifest(m) = e else { panic!("a manifest error") };
    assert!(m.problems.iter().any(|p| p.path == "automations/a.yml $.do[0].emit.data.record" && p.message.contains("filled in by the engine")), "{:?}", m.problems);
}

/// Finding: topics had no owner, so a package granted `events.emit:crm.opportunity.won` (shown as
/// low risk) made the CRM's automation send "Deal won" notifications for it. A package now emits
/// only topics it declares, and may declare only namespaces nobody else owns.
#[tokio::test]
async fn topics_have_one_owner() {
    let k = kernel(KernelConfig::in_memory()).await;
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages");
    for p in ["contacts", "crm"] {
        let id = k.install_package(&samples.join(p), false).await.unwrap().id;
        k.grant(&id, GrantRequest::All).unwrap();
    }
    k.enable("com.acme.crm", true).await.unwrap();
    let root = tempfile::tempdir().unwrap();

    // Granted the CRM's topic but declaring none: refused at the emit, and audited.
    let forger = install(&k, root.path(), "forger", &["events.emit:crm.opportunity.won", "events.emit:data.ticket.updated"], json!({}), &[]).await;
    let ctx = k.context(&forger).unwrap();
    for topic in ["crm.opportunity.won", "data.ticket.updated"] {
        let e = ctx.events().emit(topic, json!({ "record": { "title": "FORGED", "amount": 1 } })).unwrap_err();
        assert!(matches!(&e, KernelError::TopicNotOwned { topic: t, .. } if t == topic), "{e}");
    }
    k.flush();
    let refused = k.audit(&AuditQuery { plugin: Some(forger.clone()), action: Some("topic.refused".into()), ..Default::default() }).unwrap();
    assert_eq!(refused.len(), 2, "{refused:?}");

    // Declaring the CRM's namespace, an engine's, the kernel's, or none at all: refused at install.
    let cases = [
        ("squat", json!(["crm.opportunity.*"]), "provides.events[0]", "com.acme.crm owns"),
        ("wide", json!(["crm.**"]), "provides.events[0]", "com.acme.crm owns"),
        ("engine", json!(["data.ticket.*"]), "provides.events[0]", "com.objectos.objects owns"),
        ("jobs", json!(["ok.thing", "jobs.done"]), "provides.events[1]", "com.objectos.jobs owns"),
        ("kernel", json!(["plugin.enabled"]), "provides.events[0]", "the kernel owns"),
        ("nameless", json!(["*.won"]), "provides.events[0]", "must start with a namespace"),
    ];
    for (name, events, path, want) in cases {
        let m = json!({ "id": format!("t.{name}"), "name": name, "version": "1.0.0", "provides": { "events": events } });
        let dir = package_dir(root.path(), name, &m.to_string(), &[]);
        let e = k.install_package(&dir, false).await.unwrap_err();
        let KernelError::Manifest(m) = &e else { panic!("{name}: {e}") };
        assert!(m.problems.iter().any(|p| p.path == path && p.message.contains(want)), "{name}: {:?}", m.problems);
        assert!(k.plugin(&format!("t.{name}")).is_err(), "{name}: nothing installed");
    }
    // A namespace beside another's is fine, and so is emitting a declared topic.
    let ok = install(&k, root.path(), "beside", &["events.emit:crm.lead.*"], json!({ "events": ["crm.lead.*"] }), &[]).await;
    k.context(&ok).unwrap().events().emit("crm.lead.created", json!({})).unwrap();
}

/// Finding: any package could take an id under `com.objectos.`.
#[tokio::test]
async fn built_in_ids_are_reserved() {
    let k = kernel(KernelConfig::in_memory()).await;
    let root = tempfile::tempdir().unwrap();
    let m = json!({ "id": "com.objectos.backup", "name": "Backup", "version": "1.0.0" });
    let e = k.install_package(&package_dir(root.path(), "fake", &m.to_string(), &[]), false).await.unwrap_err();
    let KernelError::Manifest(m) = &e else { panic!("{e}") };
    assert_eq!(m.problems[0].path, "id");
    assert!(m.problems[0].message.contains("reserved for ObjectOS's built-in plugins"), "{:?}", m.problems);
}

/// Finding: record types were one global namespace keyed by name. A package declaring
/// `account` raced the CRM at start, records survived uninstall and went to whoever declared
/// the name next, and the review said "Read account records" without saying whose. Types now
/// belong to their package (`<id>/<type>`), records are stored under that name, and another
/// package reaches them only through a dependency and a grant naming the owner.
#[tokio::test]
async fn record_types_belong_to_their_package() {
    let dir = tempfile::tempdir().unwrap();
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages");
    let root = tempfile::tempdir().unwrap();
    let account = "name: account\nfields:\n  name: { type: text }\n";
    let perms = ["services.use:data", "data.account.read", "data.account.write"];
    {
        let k = kernel(KernelConfig::new(dir.path())).await;
        for p in ["contacts", "crm"] {
            let id = k.install_package(&samples.join(p), false).await.unwrap().id;
            k.grant(&id, GrantRequest::All).unwrap();
        }
        k.enable("com.acme.crm", true).await.unwrap();
        let squat = install(&k, root.path(), "squat", &perms, json!({ "objects": ["account"] }), &[("objects/account.yml", account)]).await;
        let (crm, sq) = (k.context("com.acme.crm").unwrap(), k.context(&squat).unwrap());
        let data = crm.services().get::<Data>("data").unwrap();
        data.create(&crm, "account", json!({ "name": "Acme GmbH" })).unwrap();
        data.create(&sq, "account", json!({ "name": "Mine" })).unwrap();
        // Two types called `account`, each package seeing its own.
        let names = |ctx, object| data.list(ctx, object, None, 10).unwrap().into_iter().map(|r| r["name"].clone()).collect::<Vec<_>>();
        assert_eq!(names(&crm, "account"), [json!("Acme GmbH")]);
        assert_eq!(names(&sq, "account"), [json!("Mine")]);
        let e = data.list(&sq, "com.acme.crm/account", None, 10).unwrap_err();
        assert!(matches!(&e, KernelError::PermissionDenied { permission, .. } if permission == "data.com.acme.crm/account.read"), "{e}");
        k.shutdown().await;
    }
    // After a restart both are enabled: there is no race to win.
    let k = kernel(KernelConfig::new(dir.path())).await;
    for id in ["com.acme.crm", "t.squat"] {
        assert_eq!(k.plugin(id).unwrap().state, State::Enabled, "{id}");
    }
    // Uninstalled, its records are not handed to the next package declaring `account`...
    k.disable("t.squat", false).await.unwrap();
    k.uninstall("t.squat").await.unwrap();
    let other = install(&k, root.path(), "other", &perms, json!({ "objects": ["account"] }), &[("objects/account.yml", account)]).await;
    let ctx = k.context(&other).unwrap();
    let data = ctx.services().get::<Data>("data").unwrap();
    assert!(data.list(&ctx, "account", None, 10).unwrap().is_empty(), "another id gets none of them");
    // ...and a reinstall of the same id finds them again.
    let squat = install(&k, root.path(), "squat", &perms, json!({ "objects": ["account"] }), &[("objects/account.yml", account)]).await;
    let sq = k.context(&squat).unwrap();
    assert_eq!(data.list(&sq, "account", None, 10).unwrap().len(), 1);

    // The review says whose records a grant reaches.
    let info = k.plugin("com.acme.crm").unwrap();
    let p = info.permissions.iter().find(|p| p.permission == "data.account.read").unwrap();
    assert_eq!(p.description, "Read its own account records");
}

/// Another package's records are named with their owner, and only with a dependency on it.
#[tokio::test]
async fn another_packages_records_need_a_dependency_on_it() {
    let k = kernel(KernelConfig::in_memory()).await;
    let root = tempfile::tempdir().unwrap();
    let m = json!({ "id": "t.peek", "name": "Peek", "version": "1.0.0", "permissions": ["services.use:data", "data.com.acme.crm/account.read"] });
    let e = k.install_package(&package_dir(root.path(), "peek", &m.to_string(), &[]), false).await.unwrap_err();
    let KernelError::Manifest(m) = &e else { panic!("{e}") };
    assert_eq!(m.problems[0].path, "permissions[1]");
    assert!(m.problems[0].message.contains("not among the dependencies"), "{:?}", m.problems);
    // The sample invoicing package does it right, and its review names the owner.
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages");
    for p in ["contacts", "crm", "invoicing"] {
        k.install_package(&samples.join(p), false).await.unwrap();
    }
    let info = k.plugin("com.acme.invoicing").unwrap();
    let p = info.permissions.iter().find(|p| p.permission == "data.com.acme.crm/opportunity.read").unwrap();
    assert_eq!(p.description, "Read com.acme.crm's opportunity records");
    assert_eq!(p.owners.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["com.acme.crm"]);
}

/// Finding: data events carried the whole record, so `events.subscribe:data.x.*` read records
/// without `data.x.read`, and `data.x.write` read them through templates. Data events now carry
/// ids and field names only, and an automation sees a record's fields only with the read grant.
#[tokio::test]
async fn read_grants_mean_read() {
    let k = kernel(KernelConfig::in_memory()).await;
    let root = tempfile::tempdir().unwrap();
    let note = "name: note\nfields:\n  secret: { type: text }\n";
    let tell = "name: tell\nwhen: { record: { object: note, on: created } }\ndo:\n  - notify: { title: \"Secret: {{record.secret}}\" }\n";
    let perms = ["services.use:data", "services.use:automation", "services.use:notification", "data.note.write"];
    let deps = json!({ "com.objectos.objects": "^0.1", "com.objectos.automation": "^0.1", "com.objectos.notification": "^0.1" });
    let m = json!({ "id": "t.blind", "name": "blind", "version": "1.0.0", "dependencies": deps, "provides": { "objects": ["note"], "automations": ["tell"] }, "permissions": perms });
    let dir = package_dir(root.path(), "blind", &m.to_string(), &[("objects/note.yml", note), ("automations/tell.yml", tell)]);
    k.install_package(&dir, false).await.unwrap();
    k.grant("t.blind", GrantRequest::All).unwrap();
    k.enable("t.blind", true).await.unwrap();

    // A listener granted the data topic hears ids and field names, never values.
    let heard = listener(&k, "t.listen", "data.t.blind.note.*").await;

    let ctx = k.context("t.blind").unwrap();
    let data = ctx.services().get::<Data>("data").unwrap();
    data.create(&ctx, "note", json!({ "secret": "hunter2" })).unwrap();
    let automations = k.service::<Automations>("automation").unwrap();
    wait_until(20, "the automation's run", || automations.stats().iter().any(|s| s.package == "t.blind" && s.failures >= 1)).await;
    let inbox = k.service::<objectos_notification::Inbox>("notification.inbox").unwrap();
    assert!(inbox.list(10, false).unwrap().iter().all(|n| !n.message.title.contains("hunter2")), "the template could not read the record");
    let heard = heard.lock().unwrap();
    assert_eq!(heard.len(), 1);
    assert!(heard[0].get("record").is_none() && !heard[0].to_string().contains("hunter2"), "{:?}", heard[0]);
    assert_eq!(heard[0]["changed"], json!(["secret"]));
}

/// Finding: an upgrade from a different author with the same id kept every grant silently, and
/// a forced downgrade was recorded as `plugin.upgraded`.
#[tokio::test]
async fn another_author_under_the_same_id_is_approved_again() {
    let k = kernel(KernelConfig::in_memory()).await;
    let root = tempfile::tempdir().unwrap();
    let version = |v: &str, author: &str| {
        let m = json!({ "id": "t.tool", "name": "Tool", "version": v, "author": author, "provides": { "events": ["tool.*"] }, "permissions": ["storage.read", "events.emit:tool.*"] });
        package_dir(root.path(), &format!("tool-{v}"), &m.to_string(), &[])
    };
    k.install_package(&version("1.0.0", "Acme"), false).await.unwrap();
    k.grant("t.tool", GrantRequest::All).unwrap();
    k.enable("t.tool", false).await.unwrap();

    let out = k.install_package(&version("1.1.0", "Mallory"), false).await.unwrap();
    assert_ne!(out.state, State::Enabled, "it does not run under the new author unapproved");
    let info = k.plugin("t.tool").unwrap();
    let change = info.author_change.clone().expect("the change is shown");
    assert_eq!((change.from.as_deref(), change.to.as_deref(), change.version.as_str()), (Some("Acme"), Some("Mallory"), "1.1.0"));
    assert_eq!(info.pending, ["storage.read", "events.emit:tool.*"], "nothing granted carries over");
    assert!(info.permissions.iter().all(|p| p.new && p.grant.is_none()));
    let e = k.enable("t.tool", false).await.unwrap_err();
    assert!(matches!(e, KernelError::AuthorChanged { .. } | KernelError::PermissionsPending { .. }), "{e}");

    // Approving is accepting the new author.
    k.grant("t.tool", GrantRequest::All).unwrap();
    assert!(k.plugin("t.tool").unwrap().author_change.is_none());
    k.enable("t.tool", false).await.unwrap();

    // A forced downgrade is recorded as one.
    k.disable("t.tool", false).await.unwrap();
    let e = k.install_package(&version("0.9.0", "Mallory"), false).await.unwrap_err();
    assert!(matches!(e, KernelError::Downgrade { .. }), "{e}");
    k.install_package(&version("0.9.0", "Mallory"), true).await.unwrap();
    k.flush();
    let audit = k.audit(&AuditQuery { plugin: Some("t.tool".into()), ..Default::default() }).unwrap();
    let down = audit.iter().find(|r| r.action == "plugin.downgraded").expect("a downgrade record");
    assert_eq!((down.details["from"].as_str(), down.details["to"].as_str()), (Some("1.1.0"), Some("0.9.0")));
    assert!(down.details.get("authorChanged").is_none(), "same author: no change");
    let up = audit.iter().find(|r| r.action == "plugin.upgraded").unwrap();
    assert_eq!(up.details["authorChanged"], json!({ "from": "Acme", "to": "Mallory" }));
}

/// Finding: a zip listing `plugin.json` twice installed the second one, while `unzip` (and a
/// reviewer) would see the first. Such an archive is refused.
#[tokio::test]
async fn a_zip_listing_a_name_twice_is_refused() {
    let k = kernel(KernelConfig::in_memory()).await;
    let root = tempfile::tempdir().unwrap();
    let shown = json!({ "id": "t.dup", "name": "Harmless", "version": "1.0.0" }).to_string();
    let hidden = json!({ "id": "t.dup", "name": "Harmless", "version": "1.0.0", "permissions": ["kernel.manage"] }).to_string();
    let mut bytes = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut bytes);
        for (name, text) in [("plugin.json", &shown), ("plugin.jsoX", &hidden)] {
            z.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut z, text.as_bytes()).unwrap();
        }
        z.finish().unwrap();
    }
    // Rename the second entry to the first's name, in its local header and the central
    // directory alike (the writer refuses duplicates; an attacker's tool does not).
    let mut bytes = bytes.into_inner();
    let (from, to) = (b"plugin.jsoX", b"plugin.json");
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(from.len()).position(|w| w == from) {
        bytes[i + at..i + at + from.len()].copy_from_slice(to);
        i += at + from.len();
    }
    let path = root.path().join("dup.zip");
    std::fs::write(&path, bytes).unwrap();
    let e = k.install_package(&path, false).await.unwrap_err();
    assert!(e.to_string().contains("lists a file name twice"), "{e}");
    assert!(k.plugin("t.dup").is_err());
}

/// A loop through the engines (an automation answering its own notification, or its own queued
/// job) is cut like any other: the engines' events continue the chain of the run that caused
/// them, so they are not depth 0.
#[tokio::test]
async fn loops_through_the_engines_are_cut() {
    let k = kernel(KernelConfig::in_memory()).await;
    let root = tempfile::tempdir().unwrap();
    let deps = json!({ "com.objectos.automation": "^0.1", "com.objectos.notification": "^0.1" });
    let start = "name: start\nwhen: { event: echo.go }\ndo:\n  - notify: { title: \"go\" }\n  - enqueue: { emit: echo.later, delay: 1h }\n";
    let again = "name: again\nwhen: { event: notification.sent }\ndo:\n  - notify: { title: \"again\" }\n";
    let queue = "name: queue\nwhen: { event: jobs.enqueued }\ndo:\n  - enqueue: { emit: echo.later, delay: 1h }\n";
    let perms = ["services.use:automation", "services.use:notification", "events.emit:echo.*", "events.subscribe:echo.*", "events.subscribe:notification.*", "events.subscribe:jobs.*"];
    let m = json!({ "id": "t.echo", "name": "echo", "version": "1.0.0", "dependencies": deps, "provides": { "automations": ["start", "again", "queue"], "events": ["echo.*"] }, "permissions": perms });
    let dir = package_dir(root.path(), "echo", &m.to_string(), &[("automations/start.yml", start), ("automations/again.yml", again), ("automations/queue.yml", queue)]);
    k.install_package(&dir, false).await.unwrap();
    k.grant("t.echo", GrantRequest::All).unwrap();
    k.enable("t.echo", true).await.unwrap();
    let automations = k.service::<Automations>("automation").unwrap();
    let stat = |name: &str| automations.stats().into_iter().find(|s| s.package == "t.echo" && s.name == name).unwrap();
    k.context("t.echo").unwrap().events().emit("echo.go", json!({})).unwrap();
    wait_until(20, "the notification loop to be cut", || stat("again").skipped >= 1).await;
    wait_until(20, "the job loop to be cut", || stat("queue").skipped >= 1).await;
    let max = u64::from(objectos_declarative::actions::MAX_DEPTH);
    assert!(stat("again").runs <= max && stat("queue").runs <= max, "{:?} {:?}", stat("again"), stat("queue"));
}

/// Records stored before types had owners go, once, to the first package declaring their name;
/// a package declaring it later does not get them.
#[tokio::test]
async fn records_from_before_owners_are_adopted_once() {
    let legacy = r#"{"id":"old1","name":"Legacy GmbH","active":true,"created_at":1,"updated_at":1}"#;
    let dir = data_dir_with_row("com.objectos.objects", "r:account:old1", legacy).await;
    let k = kernel(KernelConfig::new(dir.path())).await;
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages");
    for p in ["contacts", "crm"] {
        let id = k.install_package(&samples.join(p), false).await.unwrap().id;
        k.grant(&id, GrantRequest::All).unwrap();
    }
    k.enable("com.acme.crm", true).await.unwrap();
    let crm = k.context("com.acme.crm").unwrap();
    let data = crm.services().get::<Data>("data").unwrap();
    assert_eq!(data.list(&crm, "account", None, 10).unwrap().len(), 1, "the CRM adopted it");
    let root = tempfile::tempdir().unwrap();
    let account = "name: account\nfields:\n  name: { type: text }\n";
    let later = install(&k, root.path(), "later", &["services.use:data", "data.account.read"], json!({ "objects": ["account"] }), &[("objects/account.yml", account)]).await;
    assert!(data.list(&k.context(&later).unwrap(), "account", None, 10).unwrap().is_empty());
}

/// An `emit` action sends the record by reference: a subscriber without the read grant learns
/// which record, not what is in it; the package's own automations still read it, as the package.
#[tokio::test]
async fn emitted_events_name_records_without_their_fields() {
    let k = kernel(KernelConfig::in_memory()).await;
    let root = tempfile::tempdir().unwrap();
    let memo = "name: memo\nfields:\n  secret: { type: text }\n";
    let made = "name: made\nwhen: { record: { object: memo, on: created } }\ndo:\n  - emit: memo.made\n";
    let perms = ["services.use:data", "services.use:automation", "data.memo.read", "data.memo.write", "events.emit:memo.*"];
    let id = install(&k, root.path(), "memo", &perms, json!({ "objects": ["memo"], "automations": ["made"], "events": ["memo.*"] }), &[("objects/memo.yml", memo), ("automations/made.yml", made)]).await;
    let heard = listener(&k, "t.ear", "memo.*").await;
    let ctx = k.context(&id).unwrap();
    let data = ctx.services().get::<Data>("data").unwrap();
    let rec = data.create(&ctx, "memo", json!({ "secret": "hunter2" })).unwrap();
    wait_until(20, "the emitted event", || !heard.lock().unwrap().is_empty()).await;
    let got = heard.lock().unwrap()[0].clone();
    assert_eq!(got["record"], json!({ "id": rec["id"] }), "{got}");
    assert_eq!(got["object"], json!("t.memo/memo"));
    assert!(!got.to_string().contains("hunter2"), "{got}");
}

/// Finding: no quotas. A failing action in a loop wrote 115,000 retry jobs and 81 MB in 20 s,
/// one package filled the inbox and pushed out an admin's "backup failed" alert, and 1,400 jobs
/// were queued ten years ahead. A package now runs under quotas an admin sets, and its jobs go
/// with it.
#[tokio::test]
async fn quotas_bound_what_one_package_takes() {
    use objectos_kernel::model::quota::Quotas;
    use objectos_notification::{Notice, Notifications};
    let k = kernel(KernelConfig::in_memory()).await;
    k.set_quotas(Quotas { events_per_second: 5, queued_jobs: 3, notifications_per_minute: 10, inbox_items: 2, storage_bytes: 4_000, log_lines_per_minute: 5 }).unwrap();
    assert_eq!(k.quotas().queued_jobs, 3);
    let root = tempfile::tempdir().unwrap();
    let blob = "name: blob\nfields:\n  text: { type: text }\n";
    let perms = ["services.use:data", "data.blob.read", "data.blob.write", "events.emit:hog.*"];
    let hog = install(&k, root.path(), "hog", &perms, json!({ "objects": ["blob"], "events": ["hog.*"] }), &[("objects/blob.yml", blob)]).await;
    let ctx = k.context(&hog).unwrap();
    let refused = |e: KernelError| assert!(over_limit(&e), "{e}");

    // Events: five a second (a record it writes is one of them, announced by the data engine).
    let sent = (0..20).filter(|_| ctx.events().emit("hog.tick", json!({})).is_ok()).count();
    assert!(sent < 20, "{sent} of 20 emits went out");
    // Jobs: three queued at once, none more than a year ahead.
    let jobs = k.service::<objectos_jobs::Jobs>("jobs").unwrap();
    let later = || objectos_jobs::JobSpec::new("work", json!({})).delay(std::time::Duration::from_secs(3600));
    for _ in 0..3 {
        jobs.enqueue(&ctx, later()).unwrap();
    }
    refused(jobs.enqueue(&ctx, later()).unwrap_err());
    let far = objectos_jobs::JobSpec::new("work", json!({})).delay(std::time::Duration::from_secs(10 * 365 * 86_400));
    assert!(jobs.enqueue(&k.context("com.objectos.automation").unwrap(), far).unwrap_err().to_string().contains("366 days"));
    // Records: a few kB.
    let data = ctx.services().get::<Data>("data").unwrap();
    k.set_quotas(Quotas { events_per_second: 1_000, ..k.quotas() }).unwrap();
    let made = (0..10).take_while(|_| data.create(&ctx, "blob", json!({ "text": "x".repeat(1_000) })).is_ok()).count();
    assert!((1..10).contains(&made), "{made} records of 1 kB fit in 4 kB");
    k.set_quotas(Quotas { events_per_second: 5, ..k.quotas() }).unwrap();
    let e = data.create(&ctx, "blob", json!({ "text": "x".repeat(1_000) })).unwrap_err();
    assert!(e.to_string().contains("bytes of storage"), "{e}");
    // Logs: five lines a minute.
    for i in 0..20 {
        ctx.logger().info(format!("line {i}"));
    }
    // Notifications: the admin's alert survives a package filling the inbox.
    k.enable("com.objectos.notification", true).await.unwrap();
    let notify = k.service::<Notifications>("notification").unwrap();
    let admin = k.context("com.objectos.notification").unwrap();
    notify.send(&admin, Notice { title: Some("Backup failed".into()), ..Default::default() }).await.unwrap();
    let mut ok = 0;
    for i in 0..12 {
        if notify.send(&ctx, Notice { title: Some(format!("Spam {i}")), ..Default::default() }).await.is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 10, "ten a minute");
    let inbox = k.service::<objectos_notification::Inbox>("notification.inbox").unwrap();
    let titles: Vec<String> = inbox.list(100, false).unwrap().into_iter().map(|n| n.message.title).collect();
    assert!(titles.contains(&"Backup failed".to_string()), "{titles:?}");
    assert_eq!(titles.iter().filter(|t| t.starts_with("Spam")).count(), 2, "the package keeps its two newest: {titles:?}");

    k.flush();
    let lines = k.logs(&LogQuery { plugin: Some(hog.clone()), ..Default::default() }).unwrap();
    assert_eq!(lines.iter().filter(|l| l.target == hog).count(), 5, "five lines of its own a minute: {lines:?}");
    let audited = k.audit(&AuditQuery { plugin: Some(hog.clone()), action: Some("limit.exceeded".into()), ..Default::default() }).unwrap();
    assert!(audited.iter().any(|r| r.details["what"] == "a job"), "{audited:?}");
    assert_eq!(audited.iter().filter(|r| r.details["what"] == "event `hog.tick`").count(), 1, "one record per window of refused events");

    // Uninstalled, its jobs go with it.
    k.disable(&hog, false).await.unwrap();
    k.uninstall(&hog).await.unwrap();
    let left = jobs.list(&ctx).unwrap().into_iter().filter(|j| !j.status.is_terminal()).count();
    assert_eq!(left, 0, "no job of an uninstalled package waits");
}

/// Finding (issue 28): a package's own keys and its records were metered apart, each meter
/// allowing the whole `storageBytes`, so a package held about twice its quota; and each own
/// write summed everything the package stored. One running total per package now holds both.
#[tokio::test]
async fn one_storage_budget_holds_a_packages_keys_and_records_together() {
    use objectos_kernel::model::quota::Quotas;
    let k = kernel(KernelConfig::in_memory()).await;
    k.set_quotas(Quotas { storage_bytes: 4_000, events_per_second: 1_000, ..Quotas::default() }).unwrap();
    let root = tempfile::tempdir().unwrap();
    let blob = "name: blob\nfields:\n  text: { type: text }\n";
    let perms = ["storage.read", "storage.write", "services.use:data", "data.blob.read", "data.blob.write"];
    let id = install(&k, root.path(), "packrat", &perms, json!({ "objects": ["blob"] }), &[("objects/blob.yml", blob)]).await;
    let ctx = k.context(&id).unwrap();
    let data = ctx.services().get::<Data>("data").unwrap();
    ctx.storage().set("notes", json!("x".repeat(2_500))).unwrap();
    data.create(&ctx, "blob", json!({ "text": "y".repeat(1_000) })).unwrap();
    let e = data.create(&ctx, "blob", json!({ "text": "y".repeat(1_000) })).unwrap_err();
    assert!(over_limit(&e) && e.to_string().contains("its own keys and its records together"), "{e}");
    let e = ctx.storage().set("more", json!("z".repeat(600))).unwrap_err();
    assert!(over_limit(&e), "{e}");
    // What it holds is counted once, as stored; freeing some makes room again.
    let used = ctx.storage().usage_of(&id).unwrap();
    assert!((3_500..4_000).contains(&used), "{used}");
    ctx.storage().delete("notes").unwrap();
    assert!(ctx.storage().usage_of(&id).unwrap() < 1_200);
    data.create(&ctx, "blob", json!({ "text": "y".repeat(1_000) })).unwrap();
    k.flush();
    let refused = k.audit(&AuditQuery { plugin: Some(id.clone()), action: Some("limit.exceeded".into()), ..Default::default() }).unwrap();
    assert!(refused.len() >= 2, "{refused:?}");
    let engine = k.audit(&AuditQuery { plugin: Some("com.objectos.objects".into()), action: Some("limit.exceeded".into()), ..Default::default() }).unwrap();
    assert!(engine.is_empty(), "the package's refusal is the package's, not the engine's: {engine:?}");
}

/// Uninstall asks what to do with a package's records: kept for a reinstall of the same id, or
/// deleted. A reinstall of that id by another author is approved again before it runs, since
/// the kept records are at stake.
#[tokio::test]
async fn uninstall_keeps_or_deletes_records_and_a_new_author_is_approved_again() {
    let k = kernel(KernelConfig::in_memory()).await;
    let root = tempfile::tempdir().unwrap();
    let note = "name: note\nfields:\n  text: { type: text }\n";
    let pkg = |author: &str, dir: &str| {
        let deps = json!({ "com.objectos.objects": "^0.1" });
        let m = json!({ "id": "t.notes", "name": "Notes", "version": "1.0.0", "author": author, "dependencies": deps, "provides": { "objects": ["note"] }, "permissions": ["services.use:data", "data.note.read", "data.note.write"] });
        package_dir(root.path(), dir, &m.to_string(), &[("objects/note.yml", note)])
    };
    let notes = |k: &Kernel| {
        let ctx = k.context("t.notes").unwrap();
        ctx.services().get::<Data>("data").unwrap().list(&ctx, "note", None, 10).unwrap().len()
    };
    k.install_package(&pkg("Acme", "a"), false).await.unwrap();
    k.grant("t.notes", GrantRequest::All).unwrap();
    k.enable("t.notes", true).await.unwrap();
    let ctx = k.context("t.notes").unwrap();
    ctx.services().get::<Data>("data").unwrap().create(&ctx, "note", json!({ "text": "keep me" })).unwrap();

    // Kept: the same author's reinstall finds them, and runs without a second approval.
    k.disable("t.notes", false).await.unwrap();
    k.uninstall("t.notes").await.unwrap();
    k.install_package(&pkg("Acme", "b"), false).await.unwrap();
    assert!(k.plugin("t.notes").unwrap().author_change.is_none());
    k.grant("t.notes", GrantRequest::All).unwrap();
    k.enable("t.notes", true).await.unwrap();
    assert_eq!(notes(&k), 1);

    // Another author under the id: approved again before it can run.
    k.disable("t.notes", false).await.unwrap();
    k.uninstall("t.notes").await.unwrap();
    k.install_package(&pkg("Mallory", "c"), false).await.unwrap();
    let change = k.plugin("t.notes").unwrap().author_change.expect("the change is shown");
    assert_eq!((change.from.as_deref(), change.to.as_deref()), (Some("Acme"), Some("Mallory")));
    let e = k.enable("t.notes", true).await.unwrap_err();
    assert!(matches!(e, KernelError::AuthorChanged { .. } | KernelError::PermissionsPending { .. }), "{e}");

    // Deleted: nothing is left for the next install.
    k.uninstall_with("t.notes", objectos_kernel::host::Uninstall { keep_records: false }).await.unwrap();
    k.install_package(&pkg("Mallory", "d"), false).await.unwrap();
    assert!(k.plugin("t.notes").unwrap().author_change.is_none(), "with its records deleted, nothing is at stake");
    k.grant("t.notes", GrantRequest::All).unwrap();
    k.enable("t.notes", true).await.unwrap();
    assert_eq!(notes(&k), 0);
}

/// Finding: every shutdown audited `permission.denied` for lookups the runtime made itself
/// (the automation and workflow services) for packages that never asked for them.
#[tokio::test]
async fn the_runtime_does_not_audit_its_own_lookups_as_a_packages_refusals() {
    let k = kernel(KernelConfig::in_memory()).await;
    let root = tempfile::tempdir().unwrap();
    let note = "name: note\nfields:\n  text: { type: text }\n";
    let id = install(&k, root.path(), "plain", &["services.use:data", "data.note.read"], json!({ "objects": ["note"] }), &[("objects/note.yml", note)]).await;
    k.disable(&id, false).await.unwrap();
    k.shutdown().await;
    let all = k.audit(&AuditQuery { plugin: Some(id), ..Default::default() }).unwrap();
    assert!(all.iter().any(|r| r.action == "plugin.disabled"), "{all:?}");
    let denied: Vec<_> = all.iter().filter(|r| r.action == "permission.denied").collect();
    assert!(denied.is_empty(), "{denied:?}");
}

/// Finding: a package whose enable was refused kept `enabled` as its desired state, so at the
/// next start it raced the plugin that had refused it. A refused enable is not remembered.
#[tokio::test]
async fn a_refused_enable_is_not_the_desired_state() {
    let dir = tempfile::tempdir().unwrap();
    {
        let k = kernel(KernelConfig::new(dir.path())).await;
        let probe = Probe { enable: Some(Arc::new(|_| Err("refused: the name is taken".into()))), ..Default::default() };
        k.register_builtin(&manifest("t.refused", "1.0.0", &[], &[]), Arc::new(probe)).unwrap();
        k.sync_builtins().await.unwrap();
        assert!(matches!(k.enable("t.refused", false).await, Err(KernelError::Hook { .. })));
        let info = k.plugin("t.refused").unwrap();
        assert_eq!(info.state, State::Error);
        assert_ne!(info.desired, State::Enabled);
        k.shutdown().await;
    }
    let k = Kernel::open(KernelConfig::new(dir.path()).runtime(Arc::new(objectos_declarative::Runtime))).unwrap();
    objectos_jobs::register(&k).unwrap();
    objectos_notification::register(&k).unwrap();
    objectos_declarative::register(&k).unwrap();
    k.register_builtin(&manifest("t.refused", "1.0.0", &[], &[]), Arc::new(Probe::default())).unwrap();
    k.start().await.unwrap();
    assert_ne!(k.plugin("t.refused").unwrap().state, State::Enabled, "not retried at the next start");
}

/// A plugin that ran before and fails to enable at a start keeps `enabled` as its desired
/// state, so the next start tries again (the refused-enable rule is for new enables only).
#[tokio::test]
async fn a_plugin_that_ran_before_is_retried_after_a_failed_start() {
    let dir = tempfile::tempdir().unwrap();
    let open = |probe: Probe| {
        let k = Kernel::open(KernelConfig::new(dir.path())).unwrap();
        k.register_builtin(&manifest("t.flaky", "1.0.0", &[], &[]), Arc::new(probe)).unwrap();
        k
    };
    let k = open(Probe::default());
    k.start().await.unwrap();
    k.enable("t.flaky", false).await.unwrap();
    k.shutdown().await;
    let k = open(Probe { enable: Some(Arc::new(|_| Err("the disk is not mounted yet".into()))), ..Default::default() });
    k.start().await.unwrap();
    let info = k.plugin("t.flaky").unwrap();
    assert_eq!((info.state, info.desired), (State::Error, State::Enabled));
    k.shutdown().await;
    let k = open(Probe::default());
    k.start().await.unwrap();
    assert_eq!(k.plugin("t.flaky").unwrap().state, State::Enabled);
}

/// A new version that fails to enable after an upgrade is installed all the same, in ERROR
/// with its reason, instead of failing the install after the old version's files are gone.
#[tokio::test]
async fn an_upgrade_that_fails_to_enable_is_installed_in_error() {
    let k = kernel(KernelConfig::in_memory()).await;
    let root = tempfile::tempdir().unwrap();
    let deps = json!({ "com.objectos.objects": "^0.1", "com.objectos.automation": "^0.1" });
    let item = "name: item\nfields:\n  name: { type: text }\n";
    let ping = "name: ping\nwhen: { event: up.ping }\ndo:\n  - emit: up.pong\n";
    // The events grants are optional and not approved. 1.1.0 adds an automation that needs
    // them: the same permissions, so it is enabled after the upgrade, and its enable fails.
    let required = ["services.use:data", "services.use:automation"];
    let version = |v: &str, provides: Value, files: &[(&str, &str)]| {
        let m = json!({ "id": "t.up", "name": "Up", "version": v, "author": "Acme", "dependencies": deps, "provides": provides,
            "permissions": required, "optionalPermissions": ["events.subscribe:up.*", "events.emit:up.*"] });
        package_dir(root.path(), &format!("up-{v}"), &m.to_string(), files)
    };
    k.install_package(&version("1.0.0", json!({ "objects": ["item"], "events": ["up.*"] }), &[("objects/item.yml", item)]), false).await.unwrap();
    k.grant("t.up", GrantRequest::Some(required.iter().map(|p| p.to_string()).collect())).unwrap();
    k.enable("t.up", true).await.unwrap();
    let newer = version("1.1.0", json!({ "objects": ["item"], "automations": ["ping"], "events": ["up.*"] }), &[("objects/item.yml", item), ("automations/ping.yml", ping)]);
    let out = k.install_package(&newer, false).await.unwrap();
    assert_eq!((out.version.as_str(), out.state), ("1.1.0", State::Error));
    let info = k.plugin("t.up").unwrap();
    assert!(info.last_error.as_ref().is_some_and(|e| e.message.contains("events.subscribe")), "{:?}", info.last_error);
    assert_eq!(info.desired, State::Enabled, "retried at the next start, like the version before it");
}

#[tokio::test]
async fn a_plugin_refused_in_a_loop_cannot_flood_the_audit_trail() {
    let k = kernel(KernelConfig::in_memory()).await;
    builtin(&k, "t.loop", &[], &[]).await;
    let ctx = k.context("t.loop").unwrap();
    for i in 0..500 {
        assert!(ctx.storage().get(&format!("k{i}")).is_err());
    }
    k.flush();
    let records = k.audit(&AuditQuery { plugin: Some("t.loop".into()), limit: Some(10_000), ..Default::default() }).unwrap();
    let denied = records.iter().filter(|r| r.action == "permission.denied").count();
    let said: Vec<&Value> = records.iter().filter(|r| r.action == "limit.exceeded").map(|r| &r.details).collect();
    assert_eq!(denied, objectos_kernel::context::MAX_AUDITED_DENIALS as usize, "the first refusals of the minute are recorded");
    assert_eq!(said.len(), 1, "one record says the rest are only counted: {said:?}");
    assert!(said[0]["reason"].as_str().unwrap().contains("counted, not recorded"));
    let stats = k.stats("t.loop").unwrap();
    assert_eq!(stats.permission_denials, 500, "every refusal is counted");
}
