//! The `objectos` command as a new user runs it, against a fresh data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

struct Cli {
    data: tempfile::TempDir,
}

fn packages() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages")
}

impl Cli {
    fn new() -> Self {
        Cli { data: tempfile::tempdir().unwrap() }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_objectos"))
            .arg("--data-dir")
            .arg(self.data.path())
            .args(args)
            .output()
            .unwrap()
    }

    /// Run, expect `code`, return (stdout, stderr).
    fn expect(&self, code: i32, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let (so, se) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
        assert_eq!(out.status.code(), Some(code), "objectos {args:?}\nstdout: {so}\nstderr: {se}");
        (so, se)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.expect(0, &a).0).unwrap()
    }

    /// Install, approve and enable the sample contacts and CRM packages.
    fn enable_crm(&self) {
        for p in ["contacts", "crm"] {
            self.expect(0, &["plugins", "install", packages().join(p).to_str().unwrap()]);
        }
        self.expect(0, &["permissions", "grant", "com.acme.contacts", "--all"]);
        self.expect(0, &["permissions", "grant", "com.acme.crm", "--all"]);
        self.expect(0, &["plugins", "enable", "com.acme.crm", "--with-deps"]);
    }

    fn install_samples(&self) {
        for p in ["contacts", "crm", "invoicing"] {
            self.expect(0, &["plugins", "install", packages().join(p).to_str().unwrap()]);
        }
    }
}

#[test]
fn a_fresh_data_directory_lists_the_builtin_plugins() {
    let cli = Cli::new();
    let (out, _) = cli.expect(0, &["plugins", "list"]);
    assert!(out.contains("com.objectos.metrics") && out.contains("builtin"), "{out}");
    let list = cli.json(&["plugins", "list"]);
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|p| p["manifest"]["id"].as_str().unwrap()).collect();
    for id in ["com.objectos.cache", "com.objectos.jobs", "com.objectos.i18n", "com.objectos.metrics", "com.objectos.notification"] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert!(list.as_array().unwrap().iter().all(|p| p["state"] == "installed"), "{list}");
}

#[test]
fn manifest_check_reports_paths_and_exit_codes() {
    let cli = Cli::new();
    cli.expect(0, &["manifest", "check", packages().join("crm").to_str().unwrap()]);
    // A package with code: the check turns its JavaScript into a component, as install would.
    let (out, _) = cli.expect(0, &["manifest", "check", packages().join("lead-scoring").to_str().unwrap()]);
    assert!(out.contains("valid (com.acme.leads 1.0.0)"), "{out}");
    // The review says what its code runs under.
    cli.expect(0, &["plugins", "install", packages().join("lead-scoring").to_str().unwrap()]);
    let (perms, _) = cli.expect(0, &["permissions", "list", "com.acme.leads"]);
    assert!(perms.starts_with("Runs code in the sandbox: index.js (JavaScript), with 32 MiB memory, 1000 ms per hook, 250 ms per event or service call"), "{perms}");
    let (show, _) = cli.expect(0, &["plugins", "show", "com.acme.leads"]);
    assert!(show.contains("code      index.js (JavaScript, sandboxed)"), "{show}");
    // JavaScript whose top level never ends: its componentizing process is stopped.
    let looping = cli.data.path().join("looping");
    std::fs::create_dir_all(&looping).unwrap();
    std::fs::write(looping.join("plugin.json"), r#"{"id":"com.acme.loop","name":"Loop","version":"1.0.0","main":"index.js"}"#).unwrap();
    std::fs::write(looping.join("index.js"), "for (;;) {}\nexport function onEnable() {}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_objectos")).env("OBJECTOS_COMPONENTIZE_TIMEOUT", "2").arg("--data-dir").arg(cli.data.path()).args(["manifest", "check"]).arg(&looping).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("main: index.js did not finish running its top level within 2 s (an endless loop outside any hook?); it was stopped"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("plugin.json");
    std::fs::write(&bad, r#"{"id":"Bad","name":"x","version":"1.0.0","dependencies":{"crm":"^1.x.y"}}"#).unwrap();
    let (_, err) = cli.expect(1, &["manifest", "check", bad.to_str().unwrap()]);
    assert!(err.contains("dependencies.crm: \"^1.x.y\" is not a version range"), "{err}");
    // npm's range grammar, which Cargo's refused.
    let npm = dir.path().join("npm.json");
    std::fs::write(&npm, r#"{"id":"com.acme.npm","name":"x","version":"1.0.0","dependencies":{"com.acme.contacts":">=1.0.0 <2.0.0","com.acme.crm":"0.3.x || 0.4.x"},"engines":{"objectos":"0.1.0 - 0.9.0"}}"#).unwrap();
    cli.expect(0, &["manifest", "check", npm.to_str().unwrap()]);
    assert!(err.contains(bad.to_str().unwrap()), "names the file: {err}");
    let j: Value = serde_json::from_str(&cli.expect(1, &["--json", "manifest", "check", bad.to_str().unwrap()]).0).unwrap();
    assert_eq!(j["error"], "manifest");
    assert!(j["problems"].as_array().unwrap().iter().any(|p| p["path"] == "id"));
    // usage errors exit 2
    cli.expect(2, &["plugins", "frobnicate"]);
    cli.expect(2, &["manifest", "check"]);
    // help exits 0
    cli.expect(0, &["--help"]);
}

#[test]
fn install_approve_enable_disable_cascade_as_a_new_user_would() {
    let cli = Cli::new();
    cli.install_samples();
    let (_, err) = cli.expect(1, &["plugins", "enable", "com.acme.invoicing"]);
    assert!(err.contains("needs com.acme.crm enabled") && err.contains("--with-deps"), "{err}");
    let (_, err) = cli.expect(1, &["plugins", "enable", "com.acme.invoicing", "--with-deps"]);
    assert!(err.contains("await approval") && err.contains("objectos permissions list"), "{err}");
    let perms = cli.json(&["permissions", "list", "com.acme.invoicing"]);
    let net = perms.as_array().unwrap().iter().find(|p| p["permission"] == "network.connect:api.payments.example.com:443").unwrap();
    assert_eq!((net["required"].as_bool(), net["risk"].as_str(), net["enforced"].as_bool()), (Some(false), Some("high"), Some(true)));
    for id in ["com.acme.contacts", "com.acme.crm", "com.acme.invoicing"] {
        cli.expect(0, &["permissions", "grant", id, "--all"]);
    }
    cli.expect(0, &["plugins", "enable", "com.acme.invoicing", "--with-deps"]);
    let list = cli.json(&["plugins", "list"]);
    let state = |id: &str| list.as_array().unwrap().iter().find(|p| p["manifest"]["id"] == id).unwrap()["state"].clone();
    assert_eq!(state("com.acme.contacts"), "enabled");
    assert_eq!(state("com.acme.invoicing"), "enabled");
    let (_, err) = cli.expect(1, &["plugins", "disable", "com.acme.contacts"]);
    assert!(err.contains("com.acme.crm, com.acme.invoicing") && err.contains("--cascade"), "{err}");
    cli.expect(0, &["plugins", "disable", "com.acme.contacts", "--cascade"]);
    let info = cli.json(&["plugins", "show", "com.acme.invoicing"]);
    assert_eq!(info["state"], "disabled");
    // the graph, as DOT
    let (dot, _) = cli.expect(0, &["plugins", "graph", "--format", "dot"]);
    assert!(dot.contains("\"com.acme.crm\" -> \"com.acme.contacts\" [label=\"^1.0\"]"), "{dot}");
    // unload, uninstall; built-ins cannot be uninstalled
    cli.expect(0, &["plugins", "unload", "com.acme.invoicing"]);
    cli.expect(0, &["plugins", "uninstall", "com.acme.invoicing"]);
    let (_, err) = cli.expect(1, &["plugins", "show", "com.acme.invoicing"]);
    assert!(err.contains("no plugin with id"), "{err}");
    let (_, err) = cli.expect(1, &["plugins", "uninstall", "com.objectos.metrics"]);
    assert!(err.contains("built in"), "{err}");
}

#[test]
fn audit_verify_export_and_tamper_detection() {
    let cli = Cli::new();
    cli.install_samples();
    cli.expect(0, &["permissions", "grant", "com.acme.contacts", "--all"]);
    cli.expect(0, &["plugins", "enable", "com.acme.contacts", "--with-deps"]);
    let (out, _) = cli.expect(0, &["audit", "verify"]);
    assert!(out.contains("intact"), "{out}");
    let (csv, _) = cli.expect(0, &["audit", "export", "--format", "csv"]);
    assert!(csv.starts_with("id,ts,actor,plugin,action,details,prev_hash,hash\n"));
    assert!(csv.contains("permission.granted"));
    let records = cli.json(&["audit", "export", "--format", "json"]);
    assert!(records.as_array().unwrap().iter().any(|r| r["action"] == "plugin.enabled" && r["actor"] == "admin"));
    let (filtered, _) = cli.expect(0, &["audit", "--plugin", "com.acme.contacts", "--action", "plugin."]);
    assert!(filtered.lines().all(|l| l.contains("com.acme.contacts")), "{filtered}");
    let db = rusqlite::Connection::open(cli.data.path().join("objectos.db")).unwrap();
    db.execute("UPDATE audit SET actor='someone-else' WHERE id=2", []).unwrap();
    drop(db);
    let (_, err) = cli.expect(1, &["audit", "verify"]);
    assert!(err.contains("broken at record #2"), "{err}");
}

#[test]
fn logs_and_bad_input_never_panic() {
    let cli = Cli::new();
    cli.expect(0, &["plugins", "enable", "com.objectos.metrics"]);
    let (out, _) = cli.expect(0, &["logs", "com.objectos.metrics"]);
    assert!(out.contains("metrics service registered"), "{out}");
    let (_, err) = cli.expect(1, &["logs", "no.such.plugin"]);
    assert!(err.contains("no plugin with id"));
    let (_, err) = cli.expect(1, &["plugins", "install", "/definitely/not/here"]);
    assert!(err.contains("/definitely/not/here"), "{err}");
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), [0xff, 0x00, 0x13, 0x37]).unwrap();
    let (_, err) = cli.expect(1, &["plugins", "install", junk.path().to_str().unwrap()]);
    assert!(err.contains("neither a folder nor a readable .zip"), "{err}");
    let (_, err) = cli.expect(1, &["permissions", "grant", "com.objectos.metrics", "storage.delete"]);
    assert!(err.contains("unknown permission"), "{err}");
    let (out, _) = cli.expect(0, &["metrics"]);
    assert!(out.contains("# TYPE objectos_plugin_events_emitted_total counter"), "{out}");
}

#[test]
fn notify_reaches_the_inbox_once_the_notification_plugin_is_enabled() {
    let cli = Cli::new();
    let (_, err) = cli.expect(1, &["notify", "Backup finished"]);
    assert!(err.contains("objectos plugins enable com.objectos.notification --with-deps"), "{err}");
    cli.expect(0, &["plugins", "enable", "com.objectos.notification", "--with-deps"]);
    let report = cli.json(&["notify", "Backup finished", "--body", "12 files", "--level", "success", "--channel", "in-app", "--channel", "log"]);
    assert_eq!(report["deliveries"]["in-app"]["status"], "delivered", "{report}");
    assert_eq!(report["deliveries"]["log"]["status"], "delivered", "{report}");
    let (out, _) = cli.expect(0, &["logs", "com.objectos.notification"]);
    assert!(out.contains("[com.objectos.notification] Backup finished: 12 files"), "{out}");
    let (_, err) = cli.expect(1, &["notify", "x", "--channel", "pager"]);
    assert!(err.contains("no channel named `pager`"), "{err}");
}

/// A command that only reads records starts no plugin: with the CRM, the lead-scoring package
/// (JavaScript) and a package with an every-second schedule enabled, listing, showing and
/// exporting records and the types runs no package's hooks or code, no schedule and no job,
/// and writes no log line and no audit record, yet shows what the packages' types hold and
/// their workflows.
#[test]
fn reading_records_runs_no_plugin_and_writes_nothing() {
    let cli = Cli::new();
    cli.enable_crm();
    cli.expect(0, &["plugins", "install", packages().join("lead-scoring").to_str().unwrap()]);
    cli.expect(0, &["permissions", "grant", "com.acme.leads", "--all"]);
    cli.expect(0, &["plugins", "enable", "com.acme.leads", "--with-deps"]);
    // A package with an every-second schedule: overdue by the time the reads below run.
    let tick = cli.data.path().join("tick");
    cli.expect(0, &["new", "package", tick.to_str().unwrap(), "--id", "com.acme.tick", "--with", "automation"]);
    std::fs::write(tick.join("automations/tick.yml"), "name: tick\nwhen:\n  schedule: \"* * * * * *\"\ndo:\n  - notify:\n      title: Tick\n").unwrap();
    let manifest = std::fs::read_to_string(tick.join("plugin.json")).unwrap().replace("\"notify-done\"", "\"notify-done\", \"tick\"");
    std::fs::write(tick.join("plugin.json"), manifest).unwrap();
    cli.expect(0, &["plugins", "install", tick.to_str().unwrap()]);
    cli.expect(0, &["permissions", "grant", "com.acme.tick", "--all"]);
    cli.expect(0, &["plugins", "enable", "com.acme.tick", "--with-deps"]);
    let lead = cli.json(&["records", "create", "lead", "name=Ada", "company=Analytical Engines", "email=ada@engines.example"]);
    let lead = lead["id"].as_str().unwrap().to_string();
    cli.expect(0, &["records", "create", "account", "name=Acme GmbH"]);

    // Both print a JSON value per line.
    let lines = |args: &[&str]| cli.expect(0, args).0.lines().filter(|l| !l.trim().is_empty()).count();
    let written = || (lines(&["--json", "audit", "--limit", "1000000"]), lines(&["--json", "logs", "--limit", "1000000"]));
    let before = written();
    let leads = cli.json(&["records", "list", "lead"]);
    assert_eq!(leads.as_array().unwrap().len(), 1, "{leads}");
    assert_eq!(cli.json(&["records", "show", "lead", &lead])["name"], "Ada");
    let types = cli.json(&["records", "types"]);
    let workflow = types.as_array().unwrap().iter().find(|t| t["type"] == "com.acme.crm/opportunity").map(|t| t["workflow"].clone());
    assert_eq!(workflow, Some("opportunity".into()), "the workflow is read from the package's files: {types}");
    let (csv, _) = cli.expect(0, &["records", "export", "account"]);
    assert!(csv.contains("Acme GmbH"), "{csv}");
    assert_eq!(written(), before, "reading records wrote no audit record and no log line");

    // A write starts the plugins, as before: the lead-scoring code scores the new lead.
    cli.expect(0, &["records", "create", "lead", "name=Grace", "company=Navy", "email=grace@navy.example"]);
    assert!(written().0 > before.0);
}

/// The sample CRM, driven from the command line as the admin: records created, checked by the
/// type's rules, moved through the workflow (its automation notifying on a won deal), audited
/// as the admin.
#[test]
fn records_are_created_checked_and_moved_through_their_workflow() {
    let cli = Cli::new();
    cli.enable_crm();

    let (shown, _) = cli.expect(0, &["plugins", "show", "com.acme.crm"]);
    assert!(shown.contains("automations: notify-won") && shown.contains("workflows: opportunity"), "plugins show lists everything a package provides: {shown}");
    let types = cli.json(&["records", "types"]);
    let names: Vec<&str> = types.as_array().unwrap().iter().map(|t| t["type"].as_str().unwrap()).collect();
    assert!(names.contains(&"com.acme.crm/opportunity"), "{names:?}");
    let (acc, _) = cli.expect(0, &["records", "create", "account", "name=Acme GmbH", "industry=retail"]);
    let acc = acc.trim().to_string();
    let opp = cli.json(&["records", "create", "com.acme.crm/opportunity", "title=Shop fit-out", "amount=12000", &format!("account={acc}")]);
    let opp = opp["id"].as_str().unwrap().to_string();
    assert_eq!(cli.json(&["records", "show", "opportunity", &opp])["amount"], 12000);

    // Bad values: each refused with what is wrong, and nothing stored.
    for (args, want) in [
        (vec!["records", "create", "opportunity", "title=x", "amount=lots"], "amount: `lots` is not a number"),
        (vec!["records", "create", "opportunity", "title=x", "colour=red"], "opportunity has no field `colour`"),
        (vec!["records", "create", "opportunity", "amount=5"], "Title is required"),
        (vec!["records", "create", "opportunity", "title=x", "amount=-5"], "-5 is outside 0.."),
        (vec!["records", "create", "account", "name=x", "active=perhaps"], "`perhaps` is not true or false"),
        (vec!["records", "create", "ghost", "name=x"], "no record type `ghost` is installed"),
        (vec!["records", "create", "opportunity", "title"], "give FIELD=VALUE"),
        (vec!["records", "create", "opportunity", "title=x", "account=no-such-account"], "`no-such-account` names no account record"),
    ] {
        let (_, err) = cli.expect(1, &args);
        assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
    }
    assert_eq!(cli.json(&["records", "list", "opportunity"]).as_array().unwrap().len(), 1);

    // The workflow: an illegal event names the allowed ones; a failing guard says which.
    let (_, err) = cli.expect(1, &["records", "transition", "opportunity", &opp, "win"]);
    assert!(err.contains("`win` is not allowed while the opportunity is in `prospect`; allowed: qualify, lose"), "{err}");
    cli.expect(0, &["records", "transition", "opportunity", &opp, "qualify"]);
    cli.expect(0, &["records", "update", "opportunity", &opp, "amount="]);
    let (_, err) = cli.expect(1, &["records", "transition", "opportunity", &opp, "propose"]);
    assert!(err.contains("`amount > 0`"), "{err}");
    cli.expect(0, &["records", "update", "opportunity", &opp, "amount=12000"]);
    cli.expect(0, &["records", "transition", "opportunity", &opp, "propose"]);
    let (out, _) = cli.expect(0, &["records", "transition", "opportunity", &opp, "win"]);
    assert_eq!(out.trim(), "proposal -> won");
    let history = cli.json(&["records", "history", "opportunity", &opp]);
    let events: Vec<&str> = history.as_array().unwrap().iter().map(|s| s["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["qualify", "propose", "win"]);

    // The CRM's automation ran before the command ended, and every write is the admin's.
    let lines = |args: &[&str]| -> Vec<Value> {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        cli.expect(0, &a).0.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let sent = lines(&["audit", "--action", "notification.sent"]);
    assert!(sent.iter().any(|r| r["details"]["title"] == "Deal won: Shop fit-out"), "{sent:?}");
    assert_eq!(lines(&["audit", "--actor", "admin", "--action", "workflow.transitioned"]).len(), 3);

    // Filter, sort, delete.
    cli.expect(0, &["records", "create", "opportunity", "title=Small job", "amount=500"]);
    let big = cli.json(&["records", "list", "opportunity", "--where", "amount > 1000"]);
    assert_eq!(big.as_array().unwrap().len(), 1);
    let sorted = cli.json(&["records", "list", "opportunity", "--sort", "amount"]);
    assert_eq!(sorted[0]["title"], "Small job");
    cli.expect(0, &["records", "delete", "opportunity", &opp]);
    let (_, err) = cli.expect(1, &["records", "show", "opportunity", &opp]);
    assert!(err.contains("no com.acme.crm/opportunity record"), "{err}");

    // CSV: every row checked first; one bad row and nothing is written, unless asked.
    let csv = cli.data.path().join("deals.csv");
    std::fs::write(&csv, "title,amount\nFit-out,1200\nBad amount,lots\n,300\n\"Quoted, with comma\",50\n").unwrap();
    let before = cli.json(&["records", "list", "opportunity"]).as_array().unwrap().len();
    let (out, err) = cli.expect(1, &["records", "import", "opportunity", csv.to_str().unwrap()]);
    assert!(out.contains("line 3: amount: `lots` is not a number") && out.contains("line 4: $.title Title is required"), "{out}");
    assert!(err.contains("nothing was written"), "{err}");
    let (out, _) = cli.expect(0, &["records", "import", "opportunity", csv.to_str().unwrap(), "--dry-run", "--skip-invalid"]);
    assert!(out.contains("2 of 4 row(s) would be created"), "{out}");
    assert_eq!(cli.json(&["records", "list", "opportunity"]).as_array().unwrap().len(), before);
    let (out, _) = cli.expect(0, &["records", "import", "opportunity", csv.to_str().unwrap(), "--skip-invalid"]);
    assert!(out.contains("Created 2 opportunity record(s) from 4 row(s); skipped 2 invalid"), "{out}");
    let (exported, _) = cli.expect(0, &["records", "export", "opportunity"]);
    assert!(exported.starts_with("id,title,account,amount,probability,stage,close_date\n"), "{exported}");
    assert!(exported.contains("\"Quoted, with comma\""), "{exported}");
    // References are checked with the file, before anything is written.
    let refs = cli.data.path().join("refs.csv");
    std::fs::write(&refs, "title,account\nGood,\nGhost deal,ghost\n").unwrap();
    let (out, _) = cli.expect(1, &["records", "import", "opportunity", refs.to_str().unwrap()]);
    assert!(out.contains("line 3: $.account Account `ghost` names no account record"), "{out}");
    // What export writes, import reads (ids are given anew).
    std::fs::write(&csv, &exported).unwrap();
    let (out, _) = cli.expect(0, &["records", "import", "opportunity", csv.to_str().unwrap(), "--dry-run"]);
    assert!(out.contains(&format!("{} of {} row(s) would be created", before + 2, before + 2)), "{out}");
}

/// The samples' demo data imports as it ships, so an offline demo shows a working CRM.
#[test]
fn the_sample_demo_data_imports() {
    let cli = Cli::new();
    cli.enable_crm();
    for (t, file, n) in [("person", "contacts/demo/people.csv", 4), ("account", "crm/demo/accounts.csv", 5), ("opportunity", "crm/demo/opportunities.csv", 5)] {
        let (out, _) = cli.expect(0, &["records", "import", t, packages().join(file).to_str().unwrap()]);
        assert!(out.contains(&format!("Created {n} {t} record(s)")), "{out}");
    }
    let stages: std::collections::BTreeSet<String> = cli.json(&["records", "list", "opportunity"]).as_array().unwrap().iter().map(|r| r["stage"].as_str().unwrap().to_string()).collect();
    assert!(stages.len() >= 4, "deals in several stages: {stages:?}");
}

/// An author's edit loop: the same version reinstalled replaces the files, keeps the grants
/// (the permissions did not change) and is enabled again.
#[test]
fn the_same_version_is_reinstalled_for_an_edit_loop() {
    let cli = Cli::new();
    cli.enable_crm();
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("notes");
    std::fs::create_dir_all(pkg.join("objects")).unwrap();
    let manifest = r#"{"id":"t.notes","name":"Notes","version":"1.0.0","dependencies":{"com.objectos.objects":"^0.1"},"provides":{"objects":["note"]},"permissions":["services.use:data","data.note.read","data.note.write"]}"#;
    std::fs::write(pkg.join("plugin.json"), manifest).unwrap();
    std::fs::write(pkg.join("objects/note.yml"), "name: note\nfields:\n  text: { type: text }\n").unwrap();
    let p = pkg.to_str().unwrap();
    cli.expect(0, &["plugins", "install", p]);
    cli.expect(0, &["permissions", "grant", "t.notes", "--all"]);
    cli.expect(0, &["plugins", "enable", "t.notes"]);
    let (_, err) = cli.expect(1, &["plugins", "install", p]);
    assert!(err.contains("already installed"), "{err}");
    // The edit: a new field.
    std::fs::write(pkg.join("objects/note.yml"), "name: note\nfields:\n  text: { type: text }\n  done: { type: boolean, default: false }\n").unwrap();
    let (out, _) = cli.expect(0, &["plugins", "install", p, "--reinstall"]);
    assert!(out.contains("Reinstalled t.notes 1.0.0 (now enabled)"), "{out}");
    let types = cli.json(&["records", "types"]);
    let note = types.as_array().unwrap().iter().find(|t| t["type"] == "t.notes/note").unwrap();
    assert_eq!(note["definition"]["fields"].as_array().unwrap().len(), 2, "the edited file is in effect");
    // Nothing to replace: refused, saying what is installed.
    let (_, err) = cli.expect(1, &["plugins", "install", packages().join("invoicing").to_str().unwrap(), "--reinstall"]);
    assert!(err.contains("nothing is installed"), "{err}");
}

#[test]
fn a_new_package_installs_is_approved_and_enables_as_generated() {
    let cli = Cli::new();
    let dir = cli.data.path().join("todo");
    let (out, _) = cli.expect(0, &["new", "package", dir.to_str().unwrap(), "--with", "records,workflow,automation,translations,code"]);
    assert!(out.contains("Wrote") && out.contains("com.example.todo"), "{out}");
    for f in ["plugin.json", "objects/task.yml", "workflows/task.yml", "automations/notify-done.yml", "translations/en.json", "translations/zh-CN.json", "index.js", ".schema/plugin.schema.json", ".schema/automation.schema.json"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    cli.expect(0, &["manifest", "check", dir.to_str().unwrap()]);
    cli.expect(0, &["plugins", "install", dir.to_str().unwrap()]);
    cli.expect(0, &["permissions", "grant", "com.example.todo", "--all"]);
    cli.expect(0, &["plugins", "enable", "com.example.todo", "--with-deps"]);
    let info = cli.json(&["plugins", "show", "com.example.todo"]);
    assert_eq!(info["state"], "enabled", "{info}");
    // Its record type works, and its workflow moves a task.
    let id = cli.json(&["records", "create", "com.example.todo/task", "title=Write the guide"]);
    let id = id["id"].as_str().unwrap().to_string();
    cli.expect(0, &["records", "transition", "com.example.todo/task", &id, "start"]);
    // Packed as a .zip, it is what install reads: the same package.
    let zip = cli.data.path().join("todo.zip");
    let (out, _) = cli.expect(0, &["package", dir.to_str().unwrap(), "--out", zip.to_str().unwrap()]);
    assert!(out.contains("com.example.todo 0.1.0") && out.contains("7 files"), "the editor's .schema folder is not packed: {out}");
    cli.expect(0, &["manifest", "check", zip.to_str().unwrap()]);
    // What install would refuse is not packed.
    std::fs::write(dir.join("objects/task.yml"), "name: task\nfields:\n  title: { type: colour }\n").unwrap();
    let (_, err) = cli.expect(1, &["package", dir.to_str().unwrap(), "--out", cli.data.path().join("bad.zip").to_str().unwrap()]);
    assert!(err.contains("objects/task.yml"), "{err}");
    assert!(!cli.data.path().join("bad.zip").exists());
    // A mistyped id is answered with the likely one.
    let (_, err) = cli.expect(1, &["plugins", "enable", "com.example.tod"]);
    assert!(err.contains("no plugin with id `com.example.tod` is installed") && err.contains("did you mean `com.example.todo`?"), "{err}");
    let (_, err) = cli.expect(1, &["permissions", "list", "com.exmaple.todo"]);
    assert!(err.contains("did you mean `com.example.todo`?"), "{err}");
    let (_, err) = cli.expect(1, &["plugins", "show", "org.other.thing"]);
    assert!(!err.contains("did you mean"), "nothing close: no guess: {err}");
    // A folder with files in it is not overwritten.
    let (_, err) = cli.expect(1, &["new", "package", dir.to_str().unwrap()]);
    assert!(err.contains("already exists and is not empty"), "{err}");
}

#[test]
fn settings_are_listed_set_typed_and_secrets_read_from_stdin_are_never_shown() {
    use std::io::Write;
    let cli = Cli::new();
    let dir = tempfile::tempdir().unwrap();
    let manifest = serde_json::json!({ "id": "com.acme.hook", "name": "Hook", "version": "1.0.0", "settings": {
        "token": { "type": "string", "secret": true, "required": true, "title": "Webhook token" },
        "retries": { "type": "integer", "default": 3 },
    } });
    std::fs::write(dir.path().join("plugin.json"), manifest.to_string()).unwrap();
    cli.expect(0, &["plugins", "install", dir.path().to_str().unwrap()]);
    let (out, _) = cli.expect(0, &["plugins", "settings", "com.acme.hook"]);
    assert!(out.contains("retries (integer): 3 (default)") && out.contains("token (string): (secret, not set)  [required]"), "{out}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_objectos"))
        .arg("--data-dir")
        .arg(cli.data.path())
        .args(["plugins", "set", "com.acme.hook", "token"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"tok-123456\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("will not be shown again"));
    cli.expect(0, &["plugins", "set", "com.acme.hook", "retries", "5"]);
    let (_, err) = cli.expect(1, &["plugins", "set", "com.acme.hook", "retries", "many"]);
    assert!(err.contains("setting `retries`") && err.contains("whole number"), "{err}");
    let (_, err) = cli.expect(1, &["plugins", "set", "com.acme.hook", "tokn", "x"]);
    assert!(err.contains("no such setting") && err.contains("token"), "{err}");

    let shown = cli.json(&["plugins", "settings", "com.acme.hook"]).to_string();
    assert!(shown.contains(r#""set":true"#) && shown.contains(r#""value":5"#) && !shown.contains("tok-123456"), "{shown}");
    let (audit, _) = cli.expect(0, &["--json", "audit"]);
    assert!(!audit.contains("tok-123456") && audit.contains("plugin.configured"), "{audit}");
}

#[test]
fn manifest_check_fix_writes_what_the_files_need_and_nothing_else() {
    let cli = Cli::new();
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("tasks");
    cli.expect(0, &["new", "package", pkg.to_str().unwrap(), "--id", "com.acme.tasks", "--with", "records,workflow,automation"]);
    // An author who wrote the files but not the manifest's side of them.
    let file = pkg.join("plugin.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let kept_first_key = m.as_object().unwrap().keys().next().unwrap().clone();
    m["dependencies"] = serde_json::json!({});
    m["permissions"] = serde_json::json!(["storage.read"]);
    m["provides"]["events"] = serde_json::json!([]);
    std::fs::write(&file, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let (_, err) = cli.expect(1, &["manifest", "check", pkg.to_str().unwrap()]);
    assert!(err.contains("need com.objectos.objects") && err.contains("services.use:data"), "{err}");

    let (out, _) = cli.expect(0, &["manifest", "check", pkg.to_str().unwrap(), "--fix"]);
    assert!(out.contains("added") && out.contains("dependencies: record types need com.objectos.objects") && out.contains("valid (com.acme.tasks"), "{out}");
    let fixed: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(fixed.as_object().unwrap().keys().next().unwrap(), &kept_first_key, "the file's key order is kept");
    assert_eq!(fixed["permissions"][0], "storage.read", "what was there stays");
    assert!(fixed["dependencies"]["com.objectos.objects"] == "^0.1" && fixed["permissions"].as_array().unwrap().iter().any(|p| p == "services.use:data"), "{fixed}");
    let (out, _) = cli.expect(0, &["manifest", "check", pkg.to_str().unwrap(), "--fix"]);
    assert!(out.contains("nothing to add"), "{out}");
    let zip = dir.path().join("tasks.zip");
    cli.expect(0, &["package", pkg.to_str().unwrap(), "--out", zip.to_str().unwrap()]);
    let (_, err) = cli.expect(1, &["manifest", "check", zip.to_str().unwrap(), "--fix"]);
    assert!(err.contains("give its folder or its plugin.json"), "{err}");
}

#[test]
fn every_schema_is_printed_as_committed() {
    let cli = Cli::new();
    for name in ["plugin", "object", "workflow", "automation"] {
        let (out, _) = cli.expect(0, &["schema", name]);
        let committed = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../docs/schema/{name}.schema.json"))).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), serde_json::from_str::<Value>(&committed).unwrap(), "{name}");
    }
    let (_, err) = cli.expect(2, &["schema", "plugn"]);
    assert!(err.contains("plugin"), "{err}");
}

#[test]
fn json_problems_carry_file_path_line_and_column() {
    let cli = Cli::new();
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("tp");
    cli.expect(0, &["new", "package", pkg.to_str().unwrap(), "--with", "records"]);
    let yml = pkg.join("objects/task.yml");
    std::fs::write(&yml, std::fs::read_to_string(&yml).unwrap().replacen("type: text", "type: txet", 1)).unwrap();
    let out = cli.run(&["--json", "manifest", "check", pkg.to_str().unwrap()]);
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &j["problems"][0];
    assert_eq!((p["file"].as_str(), p["path"].as_str()), (Some("objects/task.yml"), Some("$.fields.title.type")), "{j}");
    let line = p["line"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string(&yml).unwrap();
    let at = &text.lines().nth(line - 1).unwrap()[p["column"].as_u64().unwrap() as usize - 1..];
    assert!(at.starts_with("type: txet"), "line {line}: {at}");
    let (_, err) = cli.expect(1, &["manifest", "check", pkg.to_str().unwrap()]);
    assert!(err.contains(&format!("objects/task.yml:{line}:{}: $.fields.title.type: `txet`", p["column"])), "people get the place too: {err}");
    // A file that does not parse is that file's problem, not plugin.json's.
    std::fs::write(&yml, "name: task\nfields: [unclosed\n").unwrap();
    let out = cli.run(&["--json", "manifest", "check", pkg.to_str().unwrap()]);
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["problems"][0]["file"], "objects/task.yml", "{j}");
}

#[test]
fn manifest_check_warns_of_keys_one_locale_lacks() {
    let cli = Cli::new();
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("tr");
    cli.expect(0, &["new", "package", pkg.to_str().unwrap(), "--with", "translations"]);
    let (out, _) = cli.expect(0, &["manifest", "check", pkg.to_str().unwrap()]);
    assert!(!out.contains("warning"), "as generated, both locales have every key: {out}");
    let zh = pkg.join("translations/zh-CN.json");
    let mut texts: serde_json::Map<String, Value> = serde_json::from_str(&std::fs::read_to_string(&zh).unwrap()).unwrap();
    let dropped = texts.keys().next().unwrap().clone();
    texts.remove(&dropped);
    std::fs::write(&zh, Value::Object(texts).to_string()).unwrap();
    let (out, _) = cli.expect(0, &["manifest", "check", pkg.to_str().unwrap()]);
    assert!(out.contains("warning: translations/zh-CN.json lacks 1 key(s)") && out.contains(&dropped), "{out}");
    let j = cli.json(&["manifest", "check", pkg.to_str().unwrap()]);
    assert_eq!(j["warnings"].as_array().unwrap().len(), 1, "{j}");
}

#[test]
fn manifest_check_knows_the_installed_dependencies_record_types() {
    let cli = Cli::new();
    cli.enable_crm();
    let (out, _) = cli.expect(0, &["manifest", "check", packages().join("invoicing").to_str().unwrap()]);
    assert!(!out.contains("warning"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("invoicing");
    std::fs::create_dir_all(pkg.join("objects")).unwrap();
    let manifest = std::fs::read_to_string(packages().join("invoicing/plugin.json")).unwrap();
    std::fs::write(pkg.join("plugin.json"), manifest.replace("\"com.acme.crm\": \"~0.4\"", "\"com.acme.crm\": \"~0.4\", \"com.acme.billing\": \"^1.0\"")).unwrap();
    let invoice = std::fs::read_to_string(packages().join("invoicing/objects/invoice.yml")).unwrap();
    std::fs::write(pkg.join("objects/invoice.yml"), &invoice).unwrap();
    let (out, _) = cli.expect(0, &["manifest", "check", pkg.to_str().unwrap()]);
    assert!(out.contains("warning: dependency `com.acme.billing` is not installed here"), "{out}");
    std::fs::write(pkg.join("objects/invoice.yml"), invoice.replace("com.acme.crm/opportunity", "com.acme.crm/opportunty")).unwrap();
    let (_, err) = cli.expect(1, &["manifest", "check", pkg.to_str().unwrap()]);
    assert!(err.contains("objects/invoice.yml:6:") && err.contains("com.acme.crm declares no record type `opportunty`") && err.contains("did you mean `opportunity`?"), "{err}");
}
