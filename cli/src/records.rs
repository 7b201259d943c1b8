//! `objectos records`: the records the packages' types hold, as the admin. Every type's rules
//! apply (fields, bounds, the workflow's legal events and guards); grants do not, since the
//! admin is acting; every write is audited as `admin`.

use clap::Subcommand;
use objectos_admin::records::{text, ListQuery, Record, RecordType, Records};
use objectos_admin::AdminError;
use serde_json::{json, Value};

use crate::render::{clean, table};
use crate::{for_terminal, open, print_json, Cli, Failure, Out};

#[derive(Subcommand)]
pub(crate) enum RecordsCmd {
    /// Every installed record type, with its owner, fields and workflow.
    Types,
    /// Records of TYPE (its full name, or a short name only one package declares), oldest first.
    List {
        r#type: String,
        /// Only records where this expression holds, e.g. `stage == "won" and amount > 1000`.
        #[arg(long = "where", value_name = "EXPR")]
        filter: Option<String>,
        /// Sort by this field (`FIELD` or `FIELD:desc`).
        #[arg(long)]
        sort: Option<String>,
        /// At most N records.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One record.
    Show { r#type: String, id: String },
    /// Create a record from FIELD=VALUE pairs; prints its id.
    Create {
        r#type: String,
        /// `FIELD=VALUE` pairs; values are read by the field's type (an empty value clears).
        fields: Vec<String>,
    },
    /// Change fields of a record.
    Update { r#type: String, id: String, fields: Vec<String> },
    /// Delete a record.
    Delete { r#type: String, id: String },
    /// Fire a workflow event on a record.
    Transition { r#type: String, id: String, event: String },
    /// A record's workflow history.
    History { r#type: String, id: String },
    /// Create records from a CSV file whose header row names the fields. Every row is checked
    /// first; when any fails, nothing is written (unless `--skip-invalid`).
    Import {
        r#type: String,
        file: std::path::PathBuf,
        /// Check every row and report, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write the rows that pass and report the others.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Every record of TYPE, as CSV (a header row of field names) or JSON, on stdout.
    Export {
        r#type: String,
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    Csv,
    Json,
}

/// A refusal of the records layer: its message shown escaped on stderr (it may name a
/// package's types, fields and values), as it is in the JSON.
fn refused(message: impl Into<String>) -> Failure {
    let message = message.into();
    Failure { json: json!({ "error": "refused", "message": message }), message: clean(&message).into_owned() }
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Kernel(k) => Failure::from(k),
            AdminError::Refused { message, .. } => refused(message),
        }
    }
}

fn show_record(cli: &Cli, ty: &RecordType, r: &Record) {
    if cli.json {
        print_json(r);
        return;
    }
    let mut rows = vec![vec!["id".to_string(), r.get("id").and_then(Value::as_str).unwrap_or_default().to_string()]];
    for f in &ty.fields {
        rows.push(vec![f.name.clone(), r.get(&f.name).map(text).unwrap_or_default()]);
    }
    print!("{}", table(&["FIELD", "VALUE"], &rows));
}

pub(crate) async fn records(cli: &Cli, cmd: &RecordsCmd) -> Out {
    // A command that only reads starts no plugin: the Records engine comes up alone, without a
    // lifecycle change, and no package's code runs. One that writes, with no runner on the
    // data directory, becomes the runner until it exits and starts every plugin, so that the
    // automations and handlers its change triggers run here (a history needs the Workflows
    // engine, which runs jobs). With a runner (`objectos serve`, the console), it writes
    // through the Records engine alone, and the events it queues are delivered there.
    let reads = matches!(cmd, RecordsCmd::Types | RecordsCmd::List { .. } | RecordsCmd::Show { .. } | RecordsCmd::Export { .. } | RecordsCmd::Import { dry_run: true, .. });
    let kernel = open(cli, !reads).await?;
    let records = match (kernel.started(), reads) {
        (true, _) => Records::new(&kernel)?,
        (false, true) => Records::reading(&kernel).await?,
        (false, false) => Records::writing_for_runner(&kernel).await?,
    };
    let out = run(cli, cmd, &records).await;
    if kernel.started() {
        // What a change triggered (automations, subscribers' handlers, and what they in turn
        // set off) finishes before the process does.
        let limit = std::time::Duration::from_secs(30);
        let settled = records.settle(limit).await & kernel.settle_deliveries(limit).await;
        if !settled {
            eprintln!("objectos: handlers were still running after {} s; what they did not finish is done at the next start of ObjectOS", limit.as_secs());
        }
    }
    kernel.flush();
    out
}

async fn run(cli: &Cli, cmd: &RecordsCmd, records: &Records) -> Out {
    match cmd {
        RecordsCmd::Types => {
            let types = records.types();
            if cli.json {
                let list: Vec<Value> = types.iter().map(|t| json!({ "type": t.name, "owner": t.owner, "workflow": t.workflow.as_ref().map(|w| &w.name), "definition": t })).collect();
                print_json(&list);
                return Ok(());
            }
            if types.is_empty() {
                println!("No record types: install and enable a package that declares some (try the sample CRM).");
            }
            let rows: Vec<Vec<String>> = types
                .iter()
                .map(|t| {
                    let fields = t.fields.iter().map(|f| if f.required { format!("{}*", f.name) } else { f.name.clone() }).collect::<Vec<_>>().join(", ");
                    vec![t.name.clone(), t.owner.clone(), t.workflow.as_ref().map(|w| w.name.clone()).unwrap_or_else(|| "-".into()), fields]
                })
                .collect();
            print!("{}", table(&["TYPE", "OWNER", "WORKFLOW", "FIELDS (* required)"], &rows));
        }
        RecordsCmd::List { r#type, filter, sort, limit } => {
            let ty = records.resolve(r#type)?;
            let list = records.list(&ty.name, &ListQuery { filter: filter.clone(), sort: sort.clone(), limit: *limit })?;
            if cli.json {
                print_json(&list);
                return Ok(());
            }
            let mut headers = vec!["ID".to_string()];
            headers.extend(ty.fields.iter().map(|f| f.name.to_uppercase()));
            let rows: Vec<Vec<String>> = list.iter().map(|r| std::iter::once(text(&r["id"])).chain(ty.fields.iter().map(|f| r.get(&f.name).map(text).unwrap_or_default())).collect()).collect();
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            print!("{}", table(&headers, &rows));
            if list.is_empty() {
                println!("(no {} records)", clean(ty.name.rsplit('/').next().unwrap_or_default()));
            }
        }
        RecordsCmd::Show { r#type, id } => {
            let ty = records.resolve(r#type)?;
            show_record(cli, &ty, &records.get(&ty.name, id)?);
        }
        RecordsCmd::Create { r#type, fields } => {
            let ty = records.resolve(r#type)?;
            let saved = records.save(&ty.name, None, records.parse_fields(&ty.name, fields)?)?;
            if cli.json {
                print_json(&saved.record);
            } else {
                println!("{}", clean(&text(&saved.record["id"])));
            }
        }
        RecordsCmd::Update { r#type, id, fields } => {
            let ty = records.resolve(r#type)?;
            let change = records.save(&ty.name, Some(id), records.parse_fields(&ty.name, fields)?)?;
            if cli.json {
                print_json(&json!({ "record": change.record, "changed": change.changed }));
            } else if change.changed.is_empty() {
                println!("Nothing changed");
            } else {
                println!("Changed {}", clean(&change.changed.join(", ")));
            }
        }
        RecordsCmd::Delete { r#type, id } => {
            records.delete(r#type, id)?;
            if cli.json {
                print_json(&json!({ "deleted": id }));
            } else {
                println!("Deleted {id}");
            }
        }
        RecordsCmd::Transition { r#type, id, event } => {
            let t = records.transition(r#type, id, event).await?;
            if cli.json {
                print_json(&t);
            } else {
                println!("{} -> {}", clean(&t.from), clean(&t.to));
                for w in &t.warnings {
                    println!("warning: {}", clean(w));
                }
            }
        }
        RecordsCmd::Import { r#type, file, dry_run, skip_invalid } => {
            let ty = records.resolve(r#type)?;
            let text = std::fs::read(file).map_err(|e| refused(format!("{}: {e}", file.display())))?;
            let check = records.check_import(&ty.name, &text).map_err(|e| refused(format!("{}: {e}", file.display())))?;
            let rejected = check.rejected.clone();
            let (valid, rows) = (check.valid.len(), check.valid.len() + rejected.len());
            let write = !dry_run && (rejected.is_empty() || *skip_invalid);
            let done = write.then(|| records.commit_import(check));
            let created = done.as_ref().map_or(0, |d| d.created);
            let failed = done.map(|d| d.failed).unwrap_or_default();
            if cli.json {
                print_json(&json!({ "checked": rows, "valid": valid, "created": created, "rejected": rejected, "failed": failed }));
            } else {
                for b in rejected.iter().chain(&failed) {
                    println!("line {}: {}", b.line, clean(&b.problem));
                }
                let name = clean(ty.name.rsplit('/').next().unwrap_or_default()).into_owned();
                match (write, dry_run) {
                    (true, _) => println!("Created {created} {name} record(s) from {rows} row(s){}", if rejected.is_empty() { String::new() } else { format!("; skipped {} invalid", rejected.len()) }),
                    (false, true) => println!("{valid} of {rows} row(s) would be created (dry run: nothing written)"),
                    (false, false) => {}
                }
            }
            if !rejected.is_empty() && !skip_invalid {
                return Err(refused(format!("{} of the rows are invalid; nothing was written (fix them, or pass --skip-invalid)", rejected.len())));
            }
            if !failed.is_empty() {
                return Err(refused(format!("{} of the rows could not be written (each is listed with its line); the others were", failed.len())));
            }
        }
        RecordsCmd::Export { r#type, format } => match format {
            Format::Json => print_json(&records.list(r#type, &ListQuery { limit: objectos_admin::records::MAX_LIST, ..Default::default() })?),
            Format::Csv => print!("{}", for_terminal(&records.export_csv(r#type)?.0)),
        },
        RecordsCmd::History { r#type, id } => {
            let steps = records.history(r#type, id)?;
            if cli.json {
                print_json(&steps);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = steps.iter().map(|s| vec![crate::render::time(s.at as i64), s.event.clone(), s.from.clone(), s.to.clone(), s.by.clone()]).collect();
            print!("{}", table(&["WHEN", "EVENT", "FROM", "TO", "BY"], &rows));
        }
    }
    Ok(())
}
