//! `objectos audit` and `objectos logs`: the trail and the logs, listed, verified, exported
//! or followed.

use super::*;

pub(crate) async fn audit(cli: &Cli, command: Option<&AuditCmd>, f: &AuditFilter) -> Out {
    let kernel = open(cli, false).await?;
    let q = AuditQuery { plugin: f.plugin.clone(), action: f.action.clone(), actor: f.actor.clone(), since: f.since, after_id: None, limit: f.limit };
    match command {
        Some(AuditCmd::Verify) => {
            let v = kernel.verify_audit()?;
            if cli.json {
                print_json(&v);
            }
            match v {
                Verification::Intact { records, first_id } => {
                    if !cli.json {
                        println!("Audit chain intact: {records} record(s) from #{first_id} verified.");
                    }
                    Ok(())
                }
                Verification::Broken { id, reason } => Err(Failure {
                    message: format!("audit chain broken at record #{id}: {}", printable(&reason)),
                    json: json!({ "error": "auditBroken", "id": id, "reason": reason }),
                }),
            }
        }
        Some(AuditCmd::Export { format, output }) => {
            let records = kernel.audit(&q)?;
            let text = match format {
                ExportFormat::Json => serde_json::to_string_pretty(&records).unwrap_or_default() + "\n",
                ExportFormat::Csv => audit_to_csv(&records),
            };
            match output {
                Some(p) => {
                    std::fs::write(p, text).map_err(|e| KernelError::Io { path: p.clone(), source: e })?;
                    eprintln!("Wrote {} record(s) to {}", records.len(), p.display());
                }
                None => match format {
                    ExportFormat::Json => print!("{}", terminal_json(text)),
                    ExportFormat::Csv => print!("{}", for_terminal(&text)),
                },
            }
            Ok(())
        }
        Some(AuditCmd::Trim { keep_from }) => {
            let n = kernel.trim_audit(*keep_from)?;
            if cli.json {
                print_json(&json!({ "removed": n }));
            } else {
                println!("Removed {n} record(s); a checkpoint records the trim.");
            }
            Ok(())
        }
        None => {
            tail(cli.json, f.follow, |after_id, first| {
                Ok(kernel.audit(&AuditQuery { after_id, limit: if first { q.limit } else { None }, ..q.clone() })?)
            }, |r| r.id, render::audit_line)
            .await
        }
    }
}

/// Print rows (oldest first); with `follow`, keep polling for newer ones until interrupted.
/// Polling suits a separate process: it sees rows written by any process on the directory.
pub(crate) async fn tail<T: serde::Serialize>(
    json: bool,
    follow: bool,
    mut fetch: impl FnMut(Option<i64>, bool) -> Result<Vec<T>, Failure>,
    id_of: fn(&T) -> i64,
    human: fn(&T) -> String,
) -> Out {
    let mut after = None;
    let mut first = true;
    loop {
        let rows = fetch(after, first)?;
        for r in &rows {
            if json {
                println!("{}", terminal_json(serde_json::to_string(r).unwrap_or_default()));
            } else {
                println!("{}", human(r));
            }
        }
        let _ = std::io::stdout().flush();
        if !follow {
            return Ok(());
        }
        after = rows.last().map(id_of).or(after).or(Some(0));
        first = false;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
