//! The sample CRM package through the kernel: installed, approved, records created, its
//! workflow driven through legal and illegal transitions, its automation firing once, with
//! audit records for every write and transition and refusals where grants are missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use objectos_declarative::automation::Automations;
use objectos_declarative::data::Data;
use objectos_declarative::workflow::{Workflow, WorkflowError};
use objectos_kernel::serde_json::{json, Value};
use objectos_kernel::{Kernel, KernelConfig, KernelError, PluginContext};
use objectos_kernel::model::audit::AuditQuery;
use objectos_kernel::model::views::GrantRequest;
use objectos_notification::Inbox;
use objectos_tests::{manifest, package_dir, wait_until, Probe};

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packages")
}

const SALES: &[&str] = &["services.use:data", "services.use:workflow", "data.com.acme.crm/account.read", "data.com.acme.crm/account.write", "data.com.acme.crm/opportunity.read", "data.com.acme.crm/opportunity.write"];
const READER: &[&str] = &["services.use:data", "services.use:workflow", "data.com.acme.crm/opportunity.read"];
/// The CRM's record types, by their full names (types belong to the package declaring them).
const OPP: &str = "com.acme.crm/opportunity";
const ACCOUNT: &str = "com.acme.crm/account";

/// A kernel with the built-ins the CRM needs and two test plugins: `t.sales` (may write
/// accounts and opportunities) and `t.reader` (may only read opportunities).
async fn kernel() -> Kernel {
    let k = Kernel::open(KernelConfig::in_memory().runtime(Arc::new(objectos_declarative::Runtime))).unwrap();
    objectos_jobs::register(&k).unwrap();
    objectos_notification::register(&k).unwrap();
    objectos_declarative::register(&k).unwrap();
    let deps = [(objectos_declarative::workflow::ID, "^0.1"), ("com.acme.crm", "^0.4")];
    k.register_builtin(&manifest("t.sales", "1.0.0", &deps, SALES), Arc::new(Probe::default())).unwrap();
    k.register_builtin(&manifest("t.reader", "1.0.0", &deps, READER), Arc::new(Probe::default())).unwrap();
    k.start().await.unwrap();
    for p in ["contacts", "crm"] {
        let out = k.install_package(&samples().join(p), false).await.unwrap();
        k.grant(&out.id, GrantRequest::All).unwrap();
    }
    k.enable("com.acme.crm", true).await.unwrap();
    k.enable("t.sales", true).await.unwrap();
    k.enable("t.reader", true).await.unwrap();
    k
}

fn services(k: &Kernel, id: &str) -> (PluginContext, Arc<Data>, Arc<Workflow>) {
    let ctx = k.context(id).unwrap();
    let data = ctx.services().get::<Data>("data").unwrap();
    let wf = ctx.services().get::<Workflow>("workflow").unwrap();
    (ctx, data, wf)
}

fn id(r: &objectos_declarative::data::Record) -> String {
    r["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn braces_in_a_records_values_are_text_in_the_notification_it_triggers() {
    let k = kernel().await;
    let (sales, data, wf) = services(&k, "t.sales");
    let titles = ["Shop {{x}} fit-out", "Lone {{ brace", "Closing }} brace", "{{record.amount}}"];
    let acme = id(&data.create(&sales, ACCOUNT, json!({ "name": "Acme {{GmbH}}" })).unwrap());
    for title in titles {
        let opp = id(&data.create(&sales, OPP, json!({ "title": title, "amount": 100, "account": acme })).unwrap());
        for event in ["qualify", "propose", "win"] {
            wf.transition(&sales, OPP, &opp, event).await.unwrap();
        }
    }
    let inbox = k.service::<Inbox>("notification.inbox").unwrap();
    wait_until(20, "a notification per won deal", || inbox.list(10, false).unwrap().len() == titles.len()).await;
    let mut got: Vec<String> = inbox.list(10, false).unwrap().into_iter().map(|n| n.message.title).collect();
    got.sort();
    let mut want: Vec<String> = titles.iter().map(|t| format!("Deal won: {t}")).collect();
    want.sort();
    assert_eq!(got, want, "each title as written, rendered once");
    let stats = k.service::<Automations>("automation").unwrap().stats();
    assert_eq!(stats[0].failures, 0, "{stats:?}");
}

#[tokio::test]
async fn the_sample_crm_records_workflow_and_automation_work_end_to_end() {
    let k = kernel().await;
    let (sales, data, wf) = services(&k, "t.sales");
    let acme = data.create(&sales, ACCOUNT, json!({"name": "Acme GmbH", "industry": "retail"})).unwrap();
    assert_eq!(acme["active"], json!(true), "defaults applied");
    let opp = data.create(&sales, OPP, json!({"title": "Shop fit-out"})).unwrap();
    let opp_id = id(&opp);
    assert_eq!(opp["stage"], "prospect", "the workflow's initial state");
    assert_eq!(opp["amount"], json!(0));

    // Illegal events name the allowed ones.
    match wf.transition(&sales, OPP, &opp_id, "win").await.unwrap_err() {
        WorkflowError::Illegal { state, allowed, .. } => {
            assert_eq!(state, "prospect");
            assert_eq!(allowed, ["qualify", "lose"]);
        }
        e => panic!("{e}"),
    }
    let t = wf.transition(&sales, OPP, &opp_id, "qualify").await.unwrap();
    assert_eq!((t.from.as_str(), t.to.as_str()), ("prospect", "qualified"));
    assert_eq!(t.record["probability"], json!(25), "entry action ran");
    // The guard `amount > 0` holds back a proposal without an amount.
    let e = wf.transition(&sales, OPP, &opp_id, "propose").await.unwrap_err();
    assert!(matches!(e, WorkflowError::Guard { .. }), "{e}");
    assert!(e.to_string().contains("`amount > 0` does not hold"), "{e}");
    data.update(&sales, OPP, &opp_id, json!({"amount": 12000, "account": id(&acme)})).unwrap();
    wf.transition(&sales, OPP, &opp_id, "propose").await.unwrap();
    let won = wf.transition(&sales, OPP, &opp_id, "win").await.unwrap();
    assert_eq!(won.record["stage"], "won");
    assert_eq!(won.record["probability"], json!(100));
    match wf.transition(&sales, OPP, &opp_id, "lose").await.unwrap_err() {
        WorkflowError::Illegal { allowed, .. } => assert!(allowed.is_empty(), "won is final"),
        e => panic!("{e}"),
    }
    let steps: Vec<(String, String)> = wf.history(&sales, OPP, &opp_id).unwrap().into_iter().map(|s| (s.event, s.to)).collect();
    assert_eq!(steps, [("qualify".into(), "qualified".into()), ("propose".into(), "proposal".into()), ("win".into(), "won".into())]);

    // The automation fires once, as the package, into the notification centre.
    let inbox = k.service::<Inbox>("notification.inbox").unwrap();
    wait_until(20, "the deal-won notification", || inbox.list(10, false).unwrap().len() == 1).await;
    let n = &inbox.list(10, false).unwrap()[0];
    assert_eq!(n.message.title, "Deal won: Shop fit-out");
    assert_eq!(n.message.plugin, "com.acme.crm", "sent with the package's identity");
    // A lost deal does not notify; afterwards there is still exactly one notification and run.
    let other = data.create(&sales, OPP, json!({"title": "Small job"})).unwrap();
    wf.transition(&sales, OPP, &id(&other), "lose").await.unwrap();
    let stats = k.service::<Automations>("automation").unwrap().stats();
    assert_eq!((stats[0].name.as_str(), stats[0].runs, stats[0].failures), ("notify-won", 1, 0), "{stats:?}");
    assert_eq!(inbox.list(10, false).unwrap().len(), 1);

    // Filters use the same expression language.
    let open = data.list(&sales, OPP, Some("stage != \"won\" and stage != \"lost\""), 100).unwrap();
    assert!(open.is_empty(), "{open:?}");
    assert_eq!(data.list(&sales, OPP, Some("amount >= 10000"), 100).unwrap().len(), 1);

    // Every write and transition is in the audit trail, by the plugin that made it, with the
    // names of the changed fields.
    k.flush();
    let audit = k.audit(&AuditQuery { plugin: Some("t.sales".into()), ..Default::default() }).unwrap();
    let actions: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "workflow.transitioned").count(), 4, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| **a == "data.created").count(), 3, "{actions:?}");
    let update = audit.iter().find(|r| r.action == "data.updated" && r.details["fields"] == json!(["amount", "account"])).expect("the amount update");
    assert_eq!(update.actor, "plugin:t.sales");
    let crm = k.audit(&AuditQuery { plugin: Some("com.acme.crm".into()), action: Some("data.updated".into()), ..Default::default() }).unwrap();
    assert!(crm.iter().any(|r| r.details["fields"] == json!(["probability"])), "entry actions write as the package");
}

#[tokio::test]
async fn missing_grants_are_refused_and_audited() {
    let k = kernel().await;
    let (sales, data, _) = services(&k, "t.sales");
    let opp = data.create(&sales, OPP, json!({"title": "T"})).unwrap();
    let (reader, data_r, wf_r) = services(&k, "t.reader");
    assert!(data_r.get(&reader, OPP, &id(&opp)).unwrap().is_some(), "reading is granted");
    let denied = |e: KernelError, perm: &str| assert!(matches!(&e, KernelError::PermissionDenied { permission, .. } if permission == perm), "{e}");
    denied(data_r.create(&reader, OPP, json!({"title": "x"})).unwrap_err(), "data.com.acme.crm/opportunity.write");
    denied(data_r.get(&reader, ACCOUNT, "x").unwrap_err(), "data.com.acme.crm/account.read");
    match wf_r.transition(&reader, OPP, &id(&opp), "qualify").await.unwrap_err() {
        WorkflowError::Kernel(e) => denied(e, "data.com.acme.crm/opportunity.write"),
        e => panic!("{e}"),
    }
    assert_eq!(data.get(&sales, OPP, &id(&opp)).unwrap().unwrap()["stage"], "prospect", "nothing changed");
    // Invalid records are explained field by field and nothing is stored.
    let e = data.create(&sales, OPP, json!({"amount": -5, "stage": "won", "colour": "red"})).unwrap_err().to_string();
    for want in ["$.amount: -5 is outside 0..", "$.colour: opportunity has no field `colour`", "$.title: Title is required", "$.stage: Stage is moved by the workflow of opportunity"] {
        assert!(e.contains(want), "{want} in {e}");
    }
    assert_eq!(data.list(&sales, OPP, None, 100).unwrap().len(), 1);
    // The workflow's state moves only by its events: a plugin cannot write it, the admin can.
    let e = data.update(&sales, OPP, &id(&opp), json!({"stage": "won"})).unwrap_err().to_string();
    assert!(e.contains("$.stage: Stage is moved by the workflow of opportunity"), "{e}");
    let admin = objectos_declarative::caller::Admin(k.clone());
    assert_eq!(data.update(&admin, OPP, &id(&opp), json!({"stage": "qualified"})).unwrap().record["stage"], "qualified");
    k.flush();
    let denials = k.audit(&AuditQuery { plugin: Some("t.reader".into()), action: Some("permission.denied".into()), ..Default::default() }).unwrap();
    assert_eq!(denials.len(), 3, "{denials:?}");
}

fn pkg(root: &std::path::Path, name: &str, perms: &[&str], provides: Value, files: &[(&str, &str)]) -> PathBuf {
    let deps = json!({ "com.objectos.objects": "^0.1", "com.objectos.automation": "^0.1" });
    let m = json!({ "id": format!("t.{name}"), "name": name, "version": "1.0.0", "dependencies": deps, "provides": provides, "permissions": perms });
    package_dir(root, name, &m.to_string(), files)
}

const TICKET: &str = "name: ticket\nfields:\n  title: { type: text, required: true }\n  n: { type: number, default: 0 }\n";

#[tokio::test]
async fn an_automation_runs_with_its_package_grants_only_and_loops_are_cut() {
    let k = kernel().await;
    let root = tempfile::tempdir().unwrap();
    // Re-emits its own trigger: must stop at the depth limit.
    let looping = "name: echo\nwhen: { event: loop.ping }\ndo:\n  - emit: loop.ping\n";
    let dir = pkg(root.path(), "loop", &["services.use:automation", "events.emit:loop.*", "events.subscribe:loop.*"], json!({"automations": ["echo"], "events": ["loop.*"]}), &[("automations/echo.yml", looping)]);
    k.install_package(&dir, false).await.unwrap();
    k.grant("t.loop", GrantRequest::All).unwrap();
    k.enable("t.loop", true).await.unwrap();
    // Wants to notify but may not use the notification service.
    let greedy = "name: tell\nwhen: { record: { object: ticket, on: created } }\ndo:\n  - notify: { title: \"New ticket {{record.title}}\" }\n";
    let perms = ["services.use:data", "services.use:automation", "data.ticket.read", "data.ticket.write", "events.subscribe:data.ticket.*"];
    let files = [("objects/ticket.yml", TICKET), ("automations/tell.yml", greedy)];
    // Without the grant or the dependency at all, the check says what to add, before enable.
    let dir = pkg(root.path(), "greedy", &perms, json!({"objects": ["ticket"], "automations": ["tell"]}), &files);
    let err = k.install_package(&dir, false).await.unwrap_err().to_string();
    assert!(err.contains("dependencies: notify actions need com.objectos.notification"), "{err}");
    assert!(err.contains("permissions: automation `tell`'s actions need `services.use:notification`"), "{err}");
    // Asked for as optional and not granted: it installs, and the engine is refused at run time.
    let m = json!({ "id": "t.greedy", "name": "greedy", "version": "1.0.0",
        "dependencies": { "com.objectos.objects": "^0.1", "com.objectos.automation": "^0.1" },
        "optionalDependencies": { "com.objectos.notification": "^0.1" },
        "provides": {"objects": ["ticket"], "automations": ["tell"]}, "permissions": perms, "optionalPermissions": ["services.use:notification"] });
    let dir = package_dir(&root.path().join("optional"), "greedy", &m.to_string(), &files);
    k.install_package(&dir, false).await.unwrap();
    k.grant("t.greedy", GrantRequest::Some(perms.iter().map(|p| p.to_string()).collect())).unwrap();
    k.enable("t.greedy", true).await.unwrap();

    let automations = k.service::<Automations>("automation").unwrap();
    let stat = |pkg: &str| automations.stats().into_iter().find(|s| s.package == pkg).unwrap();
    k.emit("loop.ping", json!({})).unwrap();
    wait_until(20, "the loop to be cut", || stat("t.loop").skipped == 1).await;
    assert_eq!(stat("t.loop").runs, u64::from(objectos_declarative::actions::MAX_DEPTH), "{:?}", stat("t.loop"));

    // A schedule trigger runs through the jobs service.
    let ticking = "name: tick\nwhen: { schedule: \"* * * * * *\" }\ndo:\n  - emit: tick.done\n";
    let dir = pkg(root.path(), "tick", &["services.use:automation", "events.emit:tick.*"], json!({"automations": ["tick"], "events": ["tick.*"]}), &[("automations/tick.yml", ticking)]);
    k.install_package(&dir, false).await.unwrap();
    k.grant("t.tick", GrantRequest::All).unwrap();
    k.enable("t.tick", true).await.unwrap();
    wait_until(20, "the scheduled automation", || stat("t.tick").runs >= 1).await;
    assert_eq!(stat("t.tick").failures, 0);

    let ctx = k.context("t.greedy").unwrap();
    let data = ctx.services().get::<Data>("data").unwrap();
    data.create(&ctx, "ticket", json!({"title": "Printer"})).unwrap();
    wait_until(20, "the refused notification", || stat("t.greedy").failures >= 1).await;
    assert!(k.service::<Inbox>("notification.inbox").unwrap().list(10, false).unwrap().is_empty(), "nothing was sent");
    k.flush();
    let denied = k.audit(&AuditQuery { plugin: Some("t.greedy".into()), action: Some("permission.denied".into()), ..Default::default() }).unwrap();
    assert!(denied.iter().any(|r| r.details["permission"] == "services.use:notification"), "{denied:?}");
}

#[tokio::test]
async fn malformed_files_are_refused_with_file_and_path() {
    let k = kernel().await;
    let root = tempfile::tempdir().unwrap();
    let wf = |states: &str| format!("name: flow\nobject: ticket\nfield: state\ninitial: open\nstates:\n{states}");
    let ticket_with_state = format!("{TICKET}  state: {{ type: text }}\n");
    type Case<'a> = (&'a str, Value, Vec<(String, String)>, &'a str);
    let cases: Vec<Case> = vec![
        ("yaml", json!({"objects": ["ticket"]}), vec![("objects/ticket.yml".into(), "name: ticket\nfields: [unclosed".into())], "objects/ticket.yml: not valid YAML"),
        ("type", json!({"objects": ["ticket"]}), vec![("objects/ticket.yml".into(), "name: ticket\nfields:\n  n: { type: integer }\n".into())], "objects/ticket.yml $.fields.n.type: `integer` is not a field type"),
        ("enum", json!({"objects": ["ticket"]}), vec![("objects/ticket.yml".into(), "name: ticket\nfields:\n  s: { type: enum }\n".into())], "$.fields.s.values: an enum needs a non-empty list"),
        ("default", json!({"objects": ["ticket"]}), vec![("objects/ticket.yml".into(), "name: ticket\nfields:\n  n: { type: number, default: lots }\n".into())], "$.fields.n.default: the default must be a number"),
        ("name", json!({"objects": ["ticket"]}), vec![("objects/ticket.yml".into(), "name: tickets\nfields:\n  n: { type: number }\n".into())], "$.name: is `tickets` but the file declares `ticket`"),
        ("unknown-state", json!({"objects": ["ticket"], "workflows": ["flow"]}), vec![("objects/ticket.yml".into(), ticket_with_state.clone()), ("workflows/flow.yml".into(), wf("  open:\n    transitions:\n      - { event: close, to: closed }\n"))], "workflows/flow.yml $.states.open.transitions[0].to: `closed` is not a state"),
        ("unreachable", json!({"objects": ["ticket"], "workflows": ["flow"]}), vec![("objects/ticket.yml".into(), ticket_with_state.clone()), ("workflows/flow.yml".into(), wf("  open: {}\n  done: {}\n"))], "$.states.done: cannot be reached from the initial state `open`"),
        ("duplicate", json!({"objects": ["ticket"], "workflows": ["flow"]}), vec![("objects/ticket.yml".into(), ticket_with_state.clone()), ("workflows/flow.yml".into(), wf("  open:\n    transitions:\n      - { event: go, to: open }\n      - { event: go, to: done }\n  done: {}\n"))], "$.states.open.transitions[1].event: `go` already leaves open"),
        ("initial", json!({"objects": ["ticket"], "workflows": ["flow"]}), vec![("objects/ticket.yml".into(), ticket_with_state.clone()), ("workflows/flow.yml".into(), "name: flow\nobject: ticket\nfield: state\ninitial: nowhere\nstates:\n  open: {}\n".into())], "$.initial: `nowhere` is not one of the states"),
        ("field", json!({"objects": ["ticket"], "workflows": ["flow"]}), vec![("objects/ticket.yml".into(), TICKET.into()), ("workflows/flow.yml".into(), wf("  open: {}\n"))], "workflows/flow.yml $.field: ticket has no field `state`"),
        ("guard", json!({"objects": ["ticket"], "workflows": ["flow"]}), vec![("objects/ticket.yml".into(), ticket_with_state.clone()), ("workflows/flow.yml".into(), wf("  open:\n    transitions:\n      - { event: go, to: open, guard: \"n = 1\" }\n"))], "$.states.open.transitions[0].guard: at character 3: `=` is not an operator"),
        ("guard-field", json!({"objects": ["ticket"], "workflows": ["flow"]}), vec![("objects/ticket.yml".into(), ticket_with_state.clone()), ("workflows/flow.yml".into(), wf("  open:\n    transitions:\n      - { event: go, to: open, guard: \"price > 1\" }\n"))], "reads `price`, which is not a field of ticket"),
        ("deep", json!({"objects": ["ticket"], "workflows": ["flow"]}), vec![("objects/ticket.yml".into(), ticket_with_state.clone()), ("workflows/flow.yml".into(), wf(&format!("  open:\n    transitions:\n      - {{ event: go, to: open, guard: \"{}n{}\" }}\n", "(".repeat(40), ")".repeat(40))))], "nested more than 32 deep"),
        ("set", json!({"objects": ["ticket"], "workflows": ["flow"]}), vec![("objects/ticket.yml".into(), ticket_with_state.clone()), ("workflows/flow.yml".into(), wf("  open:\n    entry:\n      - set: { n: many }\n"))], "$.states.open.entry[0].set: $.n: must be a number"),
        ("action", json!({"automations": ["a"]}), vec![("automations/a.yml".into(), "name: a\nwhen: { event: x.y }\ndo:\n  - launch: rockets\n".into())], "automations/a.yml $.do[0].launch: `launch` is not an action"),
        ("trigger", json!({"automations": ["a"]}), vec![("automations/a.yml".into(), "name: a\nwhen: { event: x.y, schedule: \"* * * * *\" }\ndo: [ { emit: x.z } ]\n".into())], "$.when: needs exactly one of event, record or schedule"),
        ("cron", json!({"automations": ["a"]}), vec![("automations/a.yml".into(), "name: a\nwhen: { schedule: \"every day\" }\ndo: [ { emit: x.z } ]\n".into())], "$.when.schedule: `every day` is not a cron expression"),
        ("condition", json!({"automations": ["a"]}), vec![("automations/a.yml".into(), "name: a\nwhen: { event: x.y }\nif: \"payload.n >\"\ndo: [ { emit: x.z } ]\n".into())], "automations/a.yml $.if: at character 12: the expression ends too early"),
        ("template", json!({"automations": ["a"]}), vec![("automations/a.yml".into(), "name: a\nwhen: { event: x.y }\ndo: [ { notify: { title: \"Hi {{name\" } } ]\n".into())], "$.do[0].notify.title: `{{` at byte 3 is never closed"),
        ("reserved", json!({"automations": ["a"]}), vec![("automations/a.yml".into(), "name: a\nwhen: { event: x.y }\ndo: [ { emit: plugin.enabled } ]\n".into())], "`plugin.enabled` is not a topic an action may emit"),
        ("record-object", json!({"automations": ["a"]}), vec![("automations/a.yml".into(), "name: a\nwhen: { record: { object: ghost } }\ndo: [ { emit: x.z } ]\n".into())], "$.when.record.object: `ghost` is not a record type of this package"),
        ("missing", json!({"automations": ["a"]}), vec![], "provides.automations[0]: the package has no automations/a.yml, .yaml or .json"),
        ("states", json!({"objects": ["ticket"], "workflows": ["flow"]}), vec![("objects/ticket.yml".into(), ticket_with_state.clone()), ("workflows/flow.yml".into(), wf(&(0..501).map(|i| format!("  s{i}: {{}}\n")).collect::<String>()))], "$.states: has 501 states; a workflow has at most 500"),
        ("enum-values", json!({"objects": ["ticket"]}), vec![("objects/ticket.yml".into(), format!("name: ticket\nfields:\n  s: {{ type: enum, values: [{}] }}\n", (0..1001).map(|i| format!("v{i}")).collect::<Vec<_>>().join(", ")))], "lists 1001 values; an enum has at most 1000"),
        // With two candidates, the install check and the loader take the same one (.yml first).
        ("both-extensions", json!({"objects": ["ticket"]}), vec![("objects/ticket.json".into(), "{ not json".into()), ("objects/ticket.yml".into(), "name: ticket\nfields:\n  n: { type: integer }\n".into())], "objects/ticket.yml $.fields.n.type: `integer` is not a field type"),
    ];
    for (name, provides, files, want) in cases {
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        let dir = pkg(root.path(), name, &[], provides, &files);
        let e = k.install_package(&dir, false).await.unwrap_err();
        let text = match &e {
            KernelError::Manifest(m) => m.problems.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("\n"),
            other => other.to_string(),
        };
        assert!(text.contains(want), "{name}: want {want:?} in\n{text}");
        assert!(k.plugin(&format!("t.{name}")).is_err(), "{name}: nothing installed");
    }
}

#[test]
fn typos_in_declared_files_are_answered_with_the_likely_name() {
    use objectos_declarative::defs::{ObjectDef, WorkflowDef};
    let object: objectos_kernel::serde_json::Value = serde_yaml_ng::from_str("name: ticket\nfields:\n  title: { type: text }\n  status: { type: enum, values: [open, approved, closed] }\n").unwrap();
    let def = ObjectDef::parse(&object, "objects/ticket.yml", "ticket").unwrap();
    let e = def.validate(&objectos_kernel::serde_json::json!({ "titel": "x", "status": "aproved" }), true).unwrap_err();
    let said: Vec<String> = e.iter().map(|p| p.message.clone()).collect();
    assert!(said.iter().any(|m| m.contains("did you mean `title`?")), "{said:?}");
    assert!(said.iter().any(|m| m.contains("did you mean `approved`?")), "{said:?}");
    let flow: objectos_kernel::serde_json::Value = serde_yaml_ng::from_str("name: ticket\nobject: ticket\nfield: status\ninitial: opne\nstates:\n  open: { transitions: [{ event: approve, to: aproved }] }\n  approved: {}\n  closed: {}\n").unwrap();
    let e = WorkflowDef::parse(&flow, "workflows/ticket.yml", "ticket").unwrap_err();
    let said: Vec<String> = e.iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
    assert!(said.iter().any(|m| m.contains("$.initial") && m.contains("did you mean `open`?")), "{said:?}");
    assert!(said.iter().any(|m| m.contains(".to") && m.contains("did you mean `approved`?")), "{said:?}");
}

#[test]
fn an_enum_literal_or_a_template_variable_that_cannot_match_is_refused() {
    use objectos_kernel::model::manifest::Manifest;
    let manifest = Manifest::parse(br#"{"id":"com.acme.t","name":"T","version":"1.0.0","dependencies":{"com.objectos.objects":"^0.1","com.objectos.workflow":"^0.1","com.objectos.automation":"^0.1","com.objectos.notification":"^0.1"},
        "provides":{"objects":["ticket"],"workflows":["ticket"],"automations":["urgent"]},
        "permissions":["services.use:data","services.use:workflow","services.use:automation","services.use:notification","data.ticket.read","data.ticket.write"]}"#, "plugin.json").unwrap();
    let files = [
        ("objects/ticket.yml", "name: ticket\nfields:\n  title: { type: text }\n  priority: { type: enum, values: [low, normal, high] }\n  status: { type: enum, values: [open, closed] }\n"),
        ("workflows/ticket.yml", "name: ticket\nobject: ticket\nfield: status\ninitial: open\nstates:\n  open: { transitions: [{ event: close, to: closed, guard: \"priority != 'hgih'\" }] }\n  closed: { entry: [{ notify: { title: \"Closed: {{record.titel}}\" } }] }\n"),
        ("automations/urgent.yml", "name: urgent\nwhen:\n  record: { object: ticket, on: [created] }\nif: \"record.priority in ['high', 'urgent'] or 'hi' in record.title or record.priority in 'low,high'\"\ndo:\n  - notify: { title: \"Urgent: {{record.title}} ({{record.id}})\" }\n"),
    ];
    let problems = objectos_declarative::check_package(&manifest, |path| files.iter().find(|(p, _)| *p == path).map(|(_, t)| t.to_string())).unwrap_err();
    let said: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
    assert!(said.iter().any(|m| m.contains("guard") && m.contains("'hgih'") && m.contains("did you mean `high`?")), "{said:?}");
    assert!(said.iter().any(|m| m.contains("$.if") && m.contains("'urgent'")), "{said:?}");
    assert!(said.iter().any(|m| m.contains("notify.title") && m.contains("{{record.titel}}") && m.contains("did you mean `title`?")), "{said:?}");
    assert_eq!(said.len(), 3, "{{record.title}} and {{record.id}} are fine: {said:?}");
}
