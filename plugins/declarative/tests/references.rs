//! Reference fields to a dependency's record types: the check refuses names nobody declares
//! (with the likely one), the install asks for the read grant a lookup needs, enable refuses a
//! type the dependency does not declare, and records are checked against the dependency's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use objectos_declarative::caller::Admin;
use objectos_declarative::data::Data;
use objectos_kernel::model::manifest::Manifest;
use objectos_kernel::model::views::GrantRequest;
use objectos_kernel::serde_json::json;
use objectos_kernel::{Kernel, KernelConfig};
use objectos_tests::package_dir;

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packages")
}

const TICKET: &str = "name: ticket\nfields:\n  title: { type: text }\n  parent: { type: reference, object: tiket }\n  deal: { type: reference, object: com.acme.crm/opportunty }\n  account: { type: reference, object: com.acme.crm/account }\n  person: { type: reference, object: com.acme.contacts/person }\n";

fn ticket_manifest() -> Manifest {
    Manifest::parse(br#"{"id":"com.acme.t","name":"T","version":"1.0.0","dependencies":{"com.objectos.objects":"^0.1","com.acme.crm":"^0.4"},
        "provides":{"objects":["ticket"]},"permissions":["services.use:data","data.ticket.read","data.ticket.write"]}"#, "plugin.json").unwrap()
}

#[test]
fn a_reference_names_an_own_type_or_one_a_dependency_declares() {
    let m = ticket_manifest();
    let read = |path: &str| (path == "objects/ticket.yml").then(|| TICKET.to_string());
    let crm = |id: &str| (id == "com.acme.crm").then(|| vec!["account".to_string(), "contact".into(), "opportunity".into()]);
    let said: Vec<String> = objectos_declarative::check_package_in(&m, read, &crm, objectos_declarative::defs::Mode::Check).unwrap_err().iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
    assert!(said.iter().any(|s| s.contains("$.fields.parent.object") && s.contains("`tiket` is not a record type of this package") && s.contains("did you mean `ticket`?")), "{said:?}");
    assert!(said.iter().any(|s| s.contains("$.fields.deal.object") && s.contains("com.acme.crm declares no record type `opportunty`") && s.contains("did you mean `opportunity`?")), "{said:?}");
    assert!(said.iter().any(|s| s.contains("$.fields.person.object") && s.contains("`com.acme.contacts` is not a dependency of this package")), "{said:?}");
    assert_eq!(said.len(), 3, "com.acme.crm/account is fine: {said:?}");
    // Where the dependency is not known, only what the package itself shows is refused.
    let said = objectos_declarative::check_package(&m, read).unwrap_err();
    assert_eq!(said.len(), 2, "{said:?}");
}

#[test]
fn a_reference_to_a_dependencys_type_needs_its_read_grant() {
    let m = ticket_manifest();
    let text = "name: ticket\nfields:\n  account: { type: reference, object: com.acme.crm/account }\n";
    let defs = objectos_declarative::check_package(&m, |p| (p == "objects/ticket.yml").then(|| text.to_string())).unwrap();
    let missing: Vec<String> = objectos_declarative::needs::missing(&m, &defs).iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
    assert!(missing.iter().any(|s| s.starts_with("permissions:") && s.contains("`data.com.acme.crm/account.read`")), "{missing:?}");
}

async fn kernel() -> Kernel {
    kernel_with(&[]).await
}

/// A kernel with the engines and the built-in test plugins `builtins` (registered before it
/// starts, as built-ins are).
async fn kernel_with(builtins: &[String]) -> Kernel {
    let k = Kernel::open(KernelConfig::in_memory().runtime(Arc::new(objectos_declarative::Runtime))).unwrap();
    objectos_jobs::register(&k).unwrap();
    objectos_notification::register(&k).unwrap();
    objectos_declarative::register(&k).unwrap();
    for m in builtins {
        k.register_builtin(m, Arc::new(objectos_tests::Probe::default())).unwrap();
    }
    k.start().await.unwrap();
    k
}

async fn install_crm(k: &Kernel) {
    for p in ["contacts", "crm"] {
        let out = k.install_package(&samples().join(p), false).await.unwrap();
        k.grant(&out.id, GrantRequest::All).unwrap();
    }
}

async fn kernel_with_crm() -> Kernel {
    let k = kernel().await;
    install_crm(&k).await;
    k.enable("com.acme.crm", true).await.unwrap();
    k
}

#[tokio::test]
async fn an_invoice_refers_to_an_opportunity_of_the_crm() {
    let k = kernel_with_crm().await;
    let out = k.install_package(&samples().join("invoicing"), false).await.unwrap();
    k.grant(&out.id, GrantRequest::All).unwrap();
    k.enable("com.acme.invoicing", false).await.unwrap();
    let admin = Admin(k.clone());
    let data = k.context("com.acme.invoicing").unwrap().services().get::<Data>("data").unwrap();
    let opp = data.create(&admin, "com.acme.crm/opportunity", json!({ "title": "Shop fit-out" })).unwrap();
    let opp_id = opp["id"].as_str().unwrap();
    let invoice = json!({ "number": "2026-001", "total": 1200, "opportunity": opp_id });
    data.create(&admin, "com.acme.invoicing/invoice", invoice.clone()).unwrap();
    // The package itself, with its read grant on the CRM's opportunities.
    let invoicing = k.context("com.acme.invoicing").unwrap();
    data.create(&invoicing, "invoice", json!({ "number": "2026-002", "total": 80, "opportunity": opp_id })).unwrap();
    let e = data.create(&admin, "com.acme.invoicing/invoice", json!({ "number": "2026-003", "total": 1, "opportunity": "nope" })).unwrap_err().to_string();
    assert!(e.contains("`nope` names no com.acme.crm/opportunity record"), "{e}");
}

#[tokio::test]
async fn a_reference_to_a_type_the_dependency_does_not_declare_is_refused_at_install_or_enable() {
    let root = tempfile::tempdir().unwrap();
    let m = json!({ "id": "t.tickets", "name": "Tickets", "version": "1.0.0", "dependencies": { "com.objectos.objects": "^0.1", "com.acme.crm": "^0.4" },
        "provides": { "objects": ["ticket"] }, "permissions": ["services.use:data", "data.ticket.read", "data.ticket.write", "data.com.acme.crm/acount.read"] });
    let dir = package_dir(root.path(), "tickets", &m.to_string(), &[("objects/ticket.yml", "name: ticket\nfields:\n  account: { type: reference, object: com.acme.crm/acount }\n")]);
    // With the CRM installed, install knows its types.
    let k = kernel_with_crm().await;
    let e = k.install_package(&dir, false).await.unwrap_err().to_string();
    assert!(e.contains("$.fields.account.object") && e.contains("com.acme.crm declares no record type `acount`") && e.contains("did you mean `account`?"), "{e}");
    // Installed before the CRM, it is refused when enabled, when the CRM's types are declared.
    let k = kernel().await;
    k.install_package(&dir, false).await.unwrap();
    k.grant("t.tickets", GrantRequest::All).unwrap();
    install_crm(&k).await;
    let e = k.enable("t.tickets", true).await.unwrap_err().to_string();
    assert!(e.contains("ticket.account refers to `com.acme.crm/acount`, which is not declared") && e.contains("did you mean `account`?"), "{e}");
}

#[tokio::test]
async fn install_refuses_a_reference_without_the_read_grant_it_needs() {
    let k = kernel_with_crm().await;
    let root = tempfile::tempdir().unwrap();
    let m = json!({ "id": "t.tickets", "name": "Tickets", "version": "1.0.0", "dependencies": { "com.objectos.objects": "^0.1", "com.acme.crm": "^0.4" },
        "provides": { "objects": ["ticket"] }, "permissions": ["services.use:data", "data.ticket.read", "data.ticket.write"] });
    let dir = package_dir(root.path(), "tickets", &m.to_string(), &[("objects/ticket.yml", "name: ticket\nfields:\n  account: { type: reference, object: com.acme.crm/account }\n")]);
    let e = k.install_package(&dir, false).await.unwrap_err().to_string();
    assert!(e.contains("data.com.acme.crm/account.read"), "{e}");
}

#[tokio::test]
async fn a_reference_cannot_probe_ids_of_a_type_the_caller_may_not_read() {
    // May write opportunities, may not read accounts: whether an account id exists is not
    // something it may learn through an opportunity's account field.
    let writer = objectos_tests::manifest("t.writer", "1.0.0", &[("com.acme.crm", "^0.4")], &["services.use:data", "data.com.acme.crm/opportunity.write"]);
    let k = kernel_with(&[writer]).await;
    install_crm(&k).await;
    k.enable("com.acme.crm", true).await.unwrap();
    k.enable("t.writer", true).await.unwrap();
    let admin = Admin(k.clone());
    let data = k.context("t.writer").unwrap().services().get::<Data>("data").unwrap();
    let account = data.create(&admin, "com.acme.crm/account", json!({ "name": "Acme GmbH" })).unwrap();
    let ctx = k.context("t.writer").unwrap();
    for id in [account["id"].as_str().unwrap(), "guess"] {
        let e = data.create(&ctx, "com.acme.crm/opportunity", json!({ "title": "Probe", "account": id })).unwrap_err().to_string();
        assert!(e.contains("data.com.acme.crm/account.read"), "the same refusal whether or not {id} exists: {e}");
    }
    data.create(&ctx, "com.acme.crm/opportunity", json!({ "title": "No account" })).unwrap();
}
