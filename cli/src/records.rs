//! `objectos records`: the records the packages' types hold, as the admin. Every type's rules
//! apply (fields, bounds, the workflow's legal events and guards); grants do not, since the
//! admin is acting; every write is audited as `admin`.

use std::sync::Arc;

use clap::Subcommand;
use objectos_builtins::declarative::caller::Admin;
use objectos_builtins::declarative::data::{Data, Record};
use objectos_builtins::declarative::defs::ObjectDef;
use objectos_builtins::declarative::workflow::Workflow;
use objectos_kernel::Kernel;
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

/// A refusal: its message shown escaped on stderr (it may name a package's types, fields and
/// values), as it is in the JSON.
fn refused(message: impl Into<String>) -> Failure {
    let message = message.into();
    Failure { json: json!({ "error": "refused", "message": message }), message: clean(&message).into_owned() }
}

/// The full name of `name`: as given when it has an owner, else the one installed type of that
/// short name.
fn resolve(data: &Data, name: &str) -> Result<(String, Arc<ObjectDef>), Failure> {
    let types = data.types();
    if name.contains('/') {
        return types.into_iter().find(|(full, _, _)| full == name).map(|(f, _, d)| (f, d)).ok_or_else(|| refused(format!("no record type `{name}` is installed; `objectos records types` lists them")));
    }
    let found: Vec<_> = types.into_iter().filter(|(_, _, d)| d.name == name).collect();
    match found.as_slice() {
        [] => Err(refused(format!("no record type `{name}` is installed; `objectos records types` lists them"))),
        [(full, _, def)] => Ok((full.clone(), def.clone())),
        many => Err(refused(format!("`{name}` is declared by several packages; name one: {}", many.iter().map(|(f, _, _)| f.as_str()).collect::<Vec<_>>().join(", ")))),
    }
}

/// `FIELD=VALUE` pairs as a JSON object, each value read by its field's type.
fn fields(def: &ObjectDef, pairs: &[String]) -> Result<Value, Failure> {
    let mut named = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let (name, raw) = pair.split_once('=').ok_or_else(|| refused(format!("`{pair}`: give FIELD=VALUE, e.g. title=\"Shop fit-out\"")))?;
        named.push((name, raw));
    }
    objectos_builtins::declarative::table::values(def, named).map_err(refused)
}


fn show_record(cli: &Cli, def: &ObjectDef, r: &Record) {
    if cli.json {
        print_json(r);
        return;
    }
    let mut rows = vec![vec!["id".to_string(), r.get("id").and_then(Value::as_str).unwrap_or_default().to_string()]];
    for f in &def.fields {
        rows.push(vec![f.name.clone(), r.get(&f.name).map(text).unwrap_or_default()]);
    }
    print!("{}", table(&["FIELD", "VALUE"], &rows));
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn services(cli: &Cli) -> Result<(Kernel, Arc<Data>), Failure> {
    let kernel = open(cli, true).await?;
    let data = kernel.service::<Data>(objectos_builtins::declarative::data::SERVICE).map_err(|_| refused("the Records plugin (com.objectos.objects) is not enabled: `objectos plugins enable com.objectos.objects`"))?;
    Ok((kernel, data))
}

pub(crate) async fn records(cli: &Cli, cmd: &RecordsCmd) -> Out {
    let (kernel, data) = services(cli).await?;
    let admin = Admin(kernel.clone());
    let out = run(cli, cmd, &kernel, &data, &admin).await;
    // Automations a change triggered (a notification for a won deal...) finish before the
    // process does.
    if let Ok(a) = kernel.service::<objectos_builtins::declarative::automation::Automations>(objectos_builtins::declarative::automation::SERVICE) {
        if !a.settle(std::time::Duration::from_secs(10)).await {
            eprintln!("objectos: automations were still running after 10 s; they continue at the next start of ObjectOS");
        }
    }
    kernel.flush();
    out
}

async fn run(cli: &Cli, cmd: &RecordsCmd, kernel: &Kernel, data: &Data, admin: &Admin) -> Out {
    let workflow = || kernel.service::<Workflow>(objectos_builtins::declarative::workflow::SERVICE).map_err(|_| refused("the Workflows plugin (com.objectos.workflow) is not enabled"));
    match cmd {
        RecordsCmd::Types => {
            let wf = workflow().ok();
            let types = data.types();
            if cli.json {
                let list: Vec<Value> = types.iter().map(|(full, owner, def)| json!({ "type": full, "owner": owner, "definition": **def, "workflow": wf.as_ref().and_then(|w| w.definition(full)).map(|w| w.name.clone()) })).collect();
                print_json(&list);
                return Ok(());
            }
            if types.is_empty() {
                println!("No record types: install and enable a package that declares some (try the sample CRM).");
            }
            let rows: Vec<Vec<String>> = types
                .iter()
                .map(|(full, owner, def)| {
                    let fields = def.fields.iter().map(|f| if f.required { format!("{}*", f.name) } else { f.name.clone() }).collect::<Vec<_>>().join(", ");
                    vec![full.clone(), owner.clone(), wf.as_ref().and_then(|w| w.definition(full)).map(|w| w.name.clone()).unwrap_or_else(|| "-".into()), fields]
                })
                .collect();
            print!("{}", table(&["TYPE", "OWNER", "WORKFLOW", "FIELDS (* required)"], &rows));
        }
        RecordsCmd::List { r#type, filter, sort, limit } => {
            let (full, def) = resolve(data, r#type)?;
            let mut list = data.list(admin, &full, filter.as_deref(), objectos_builtins::declarative::data::MAX_LIST)?;
            if let Some(spec) = sort {
                let (field, desc) = spec.strip_suffix(":desc").map_or((spec.as_str(), false), |f| (f, true));
                if field != "id" && def.field(field).is_none() && !["created_at", "updated_at"].contains(&field) {
                    return Err(refused(format!("cannot sort by `{field}`: {} has no such field", def.name)));
                }
                list.sort_by(|a, b| {
                    let (x, y) = (a.get(field).unwrap_or(&Value::Null), b.get(field).unwrap_or(&Value::Null));
                    let o = match (x.as_f64(), y.as_f64()) {
                        (Some(p), Some(q)) => p.total_cmp(&q),
                        _ => text(x).cmp(&text(y)),
                    };
                    if desc { o.reverse() } else { o }
                });
            }
            list.truncate(*limit);
            if cli.json {
                print_json(&list);
                return Ok(());
            }
            let mut headers = vec!["ID".to_string()];
            headers.extend(def.fields.iter().map(|f| f.name.to_uppercase()));
            let rows: Vec<Vec<String>> = list.iter().map(|r| std::iter::once(text(&r["id"])).chain(def.fields.iter().map(|f| r.get(&f.name).map(text).unwrap_or_default())).collect()).collect();
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            print!("{}", table(&headers, &rows));
            if list.is_empty() {
                println!("(no {} records)", clean(&def.name));
            }
        }
        RecordsCmd::Show { r#type, id } => {
            let (full, def) = resolve(data, r#type)?;
            let r = data.get(admin, &full, id)?.ok_or_else(|| refused(format!("no {full} record `{id}`")))?;
            show_record(cli, &def, &r);
        }
        RecordsCmd::Create { r#type, fields: pairs } => {
            let (full, def) = resolve(data, r#type)?;
            let r = data.create(admin, &full, fields(&def, pairs)?)?;
            if cli.json {
                print_json(&r);
            } else {
                println!("{}", clean(&text(&r["id"])));
            }
        }
        RecordsCmd::Update { r#type, id, fields: pairs } => {
            let (full, def) = resolve(data, r#type)?;
            let change = data.update(admin, &full, id, fields(&def, pairs)?)?;
            if cli.json {
                print_json(&json!({ "record": change.record, "changed": change.changed }));
            } else if change.changed.is_empty() {
                println!("Nothing changed");
            } else {
                println!("Changed {}", clean(&change.changed.join(", ")));
            }
        }
        RecordsCmd::Delete { r#type, id } => {
            let (full, _) = resolve(data, r#type)?;
            if !data.delete(admin, &full, id)? {
                return Err(refused(format!("no {full} record `{id}`")));
            }
            if cli.json {
                print_json(&json!({ "deleted": id }));
            } else {
                println!("Deleted {id}");
            }
        }
        RecordsCmd::Transition { r#type, id, event } => {
            let (full, _) = resolve(data, r#type)?;
            let t = workflow()?.transition(admin, &full, id, event).await.map_err(|e| refused(e.to_string()))?;
            if cli.json {
                print_json(&json!({ "from": t.from, "to": t.to, "record": t.record, "warnings": t.warnings }));
            } else {
                println!("{} -> {}", clean(&t.from), clean(&t.to));
                for w in &t.warnings {
                    println!("warning: {}", clean(w));
                }
            }
        }
        RecordsCmd::Import { r#type, file, dry_run, skip_invalid } => {
            let (full, def) = resolve(data, r#type)?;
            let text = std::fs::read(file).map_err(|e| refused(format!("{}: {e}", file.display())))?;
            let checked = data.check_import(&full, &def, &text).map_err(|e| refused(format!("{}: {e}", file.display())))?;
            let bad: Vec<Value> = checked.rejected.iter().map(|r| json!({ "line": r.line, "problem": r.problem })).collect();
            let good = checked.valid;
            let write = !dry_run && (bad.is_empty() || *skip_invalid);
            let mut created = 0;
            if write {
                for v in good.iter().cloned() {
                    data.create(admin, &full, v)?;
                    created += 1;
                }
            }
            if cli.json {
                print_json(&json!({ "checked": good.len() + bad.len(), "valid": good.len(), "created": created, "rejected": bad }));
            } else {
                for b in &bad {
                    println!("line {}: {}", b["line"], clean(b["problem"].as_str().unwrap_or_default()));
                }
                let rows = good.len() + bad.len();
                match (write, dry_run) {
                    (true, _) => println!("Created {created} {} record(s) from {rows} row(s){}", clean(&def.name), if bad.is_empty() { String::new() } else { format!("; skipped {} invalid", bad.len()) }),
                    (false, true) => println!("{} of {rows} row(s) would be created (dry run: nothing written)", good.len()),
                    (false, false) => {}
                }
            }
            if !bad.is_empty() && !skip_invalid {
                return Err(refused(format!("{} of the rows are invalid; nothing was written (fix them, or pass --skip-invalid)", bad.len())));
            }
        }
        RecordsCmd::Export { r#type, format } => {
            let (full, def) = resolve(data, r#type)?;
            let list = data.list(admin, &full, None, objectos_builtins::declarative::data::MAX_LIST)?;
            match format {
                Format::Json => print_json(&list),
                Format::Csv => print!("{}", for_terminal(&objectos_builtins::declarative::table::to_csv(&def, &list))),
            }
        }
        RecordsCmd::History { r#type, id } => {
            let (full, _) = resolve(data, r#type)?;
            let steps = workflow()?.history(admin, &full, id)?;
            if cli.json {
                print_json(&steps);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = steps.iter().map(|s| vec![crate::render::time(s.at), s.event.clone(), s.from.clone(), s.to.clone(), s.by.clone()]).collect();
            print!("{}", table(&["WHEN", "EVENT", "FROM", "TO", "BY"], &rows));
        }
    }
    Ok(())
}
