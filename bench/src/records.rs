//! The records rows: `objectos records list` on a data directory with the sample CRM and the
//! lead-scoring JavaScript package enabled, as the command did before it read without starting
//! plugins (every plugin started, hooks and guest code run, lifecycle recorded) and as it does
//! now (the Records engine alone, nothing recorded). One run each, as a person runs it.

use super::*;

use objectos_admin::records::{ListQuery, Records};
use objectos_builtins::host;

fn packages() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages")
}

/// A data directory with contacts, the CRM and lead scoring installed, granted and enabled,
/// and `leads` leads.
async fn crm_data_dir(leads: usize) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let k = host::open(dir.path())?;
    host::start(&k).await?;
    for p in ["contacts", "crm", "lead-scoring"] {
        let out = k.install_package(&packages().join(p), false).await?;
        k.grant(&out.id, GrantRequest::All)?;
    }
    k.enable("com.acme.crm", true).await?;
    k.enable("com.acme.leads", true).await?;
    let records = Records::new(&k)?;
    for i in 0..leads {
        records.save("lead", None, json!({ "name": format!("Lead {i}"), "company": "Acme", "email": format!("lead{i}@acme.example") }))?;
    }
    records.settle(Duration::from_secs(60)).await;
    k.shutdown().await;
    Ok(dir)
}

/// What one `records list lead` does, and how many audit records it added.
async fn list_once(dir: &std::path::Path, start: bool) -> anyhow::Result<(Duration, usize)> {
    let before = audit_count(dir)?;
    let started = Instant::now();
    let k = host::open(dir)?;
    let records = if start {
        host::start(&k).await?;
        Records::new(&k)?
    } else {
        host::sync(&k).await?;
        Records::reading(&k).await?
    };
    let list = records.list("lead", &ListQuery { limit: 10_000, ..Default::default() })?;
    black_box(list);
    k.flush();
    let took = started.elapsed();
    drop(records);
    drop(k);
    Ok((took, audit_count(dir)? - before))
}

fn audit_count(dir: &std::path::Path) -> anyhow::Result<usize> {
    let k = host::open(dir)?;
    let n = k.audit(&AuditQuery { limit: Some(1_000_000), ..Default::default() })?.len();
    drop(k);
    Ok(n)
}

pub(crate) async fn records_list(t: &mut Table, scale: usize) -> anyhow::Result<()> {
    let leads = 1_000 / scale;
    let dir = crm_data_dir(leads).await?;
    let (before, before_audit) = list_once(dir.path(), true).await?;
    let (now, now_audit) = list_once(dir.path(), false).await?;
    println!("records list of {leads} leads: every plugin started {before:?} ({before_audit} audit records); the Records engine alone {now:?} ({now_audit} audit records)");
    t.add("records", format!("records list, {leads} leads: every plugin started (before)"), 1, before, None);
    t.add("records", format!("records list, {leads} leads: the Records engine alone (now)"), 1, now, Some(&format!("records list, {leads} leads: every plugin started (before)")));
    Ok(())
}
