//! The records the packages' types hold, as the admin: every type's rules apply (fields,
//! bounds, references, the workflow's legal events and guards); grants do not, since the admin
//! is acting; every write is audited as `admin`.
//!
//! One behaviour for every host: a type is named by its full name (`<owner>/<type>`) or by a
//! short name only one package declares; a list is filtered, then sorted, then cut to its
//! limit; an import checks every row first and reports each failure with its line, and writes
//! nothing unless asked, and a commit goes on past a row that fails and reports it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use objectos_declarative::automation::Automations;
use objectos_declarative::caller::Admin;
use objectos_declarative::data::Data;
use objectos_declarative::defs::{ObjectDef, WorkflowDef};
use objectos_declarative::workflow::{Workflow, WorkflowError};
use objectos_declarative::FieldKind;
use objectos_kernel::model::lifecycle::State;
use objectos_kernel::Kernel;
use serde::Serialize;
use serde_json::Value;

use crate::definitions::{field, transitions, TransitionView};
use crate::{AdminError, Result};

/// A record: its fields and `id`, `created_at`, `updated_at`.
pub type Record = serde_json::Map<String, Value>;

/// The most records a list returns.
pub const MAX_LIST: usize = objectos_declarative::data::MAX_LIST;

/// A field as a form (or a table's columns) needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct RecordField {
    pub name: String,
    pub label: String,
    /// text, number, boolean, date, enum or reference.
    pub kind: String,
    pub required: bool,
    /// Enum values, in order.
    pub values: Vec<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub max_length: Option<u32>,
    /// The full name of the type a reference field points at.
    pub reference: Option<String>,
    /// What a new record gets when the field is not given.
    pub default: Option<Value>,
    /// Bounds, values or the referenced type, in words.
    pub detail: String,
}

/// A record type: whose it is, its fields and its workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct RecordType {
    /// The full name, `<owner>/<type>`.
    pub name: String,
    pub label: String,
    pub owner: String,
    pub owner_name: String,
    pub fields: Vec<RecordField>,
    /// The field holding the workflow's state, the initial state, and its transitions.
    pub workflow: Option<RecordWorkflow>,
}

/// A workflow as a records view needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct RecordWorkflow {
    pub name: String,
    pub field: String,
    pub initial: String,
    pub transitions: Vec<TransitionView>,
}

pub use objectos_declarative::data::RecordChange;

/// The service the Records engine offers: when it is registered, [`watch`] has changes to
/// give.
pub const ENGINE_SERVICE: &str = objectos_declarative::data::SERVICE;

/// Every write of a record in this process from now on, while the Records engine runs (`None`
/// while it does not): a host that shows records re-reads a type when told (changes made by
/// another process come as the kernel's `ExternalChange`). It ends when the engine stops.
pub fn watch(kernel: &Kernel) -> Option<tokio::sync::broadcast::Receiver<RecordChange>> {
    kernel.service::<Data>(ENGINE_SERVICE).ok().map(|d| d.watch())
}

/// How to list records.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only records where this expression holds (`stage == "won" and amount > 1000`).
    pub filter: Option<String>,
    /// Sort by this field (`FIELD` or `FIELD:desc`; `id`, `created_at` and `updated_at` too).
    pub sort: Option<String>,
    /// At most this many (at most [`MAX_LIST`]).
    pub limit: usize,
}

/// A transition's outcome: the states, the record afterwards, and entry actions that failed
/// (the transition stands; they are in the package's log).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Transitioned {
    pub from: String,
    pub to: String,
    pub record: Value,
    pub warnings: Vec<String>,
}

/// One step of a record's workflow history.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct HistoryStep {
    pub from: String,
    pub to: String,
    pub event: String,
    pub by: String,
    pub at: f64,
}

/// What a write did: the record afterwards and the fields whose value changed (all given
/// ones, for a new record).
#[derive(Debug, Clone, Serialize)]
pub struct Saved {
    pub record: Record,
    pub changed: Vec<String>,
}

/// A CSV row that does not pass, or that could not be written.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct RejectedRow {
    /// Its line in the file (the header is line 1).
    pub line: u32,
    pub problem: String,
}

/// A CSV file checked against a type: the rows that pass, ready to write, and the others.
/// Nothing is written until [`Records::commit_import`].
#[derive(Debug, Clone)]
pub struct ImportCheck {
    /// The type's full name.
    pub record_type: String,
    /// Each row that passes, with its line.
    pub valid: Vec<(u32, Value)>,
    /// Each other row, in line order.
    pub rejected: Vec<RejectedRow>,
}

/// What a committed import did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Imported {
    pub created: u32,
    /// Rows that could not be written after all (another change came in between), each with
    /// its line and why.
    pub failed: Vec<RejectedRow>,
}

/// The records use cases, over the running Records engine (and the Workflows engine, when it
/// runs).
pub struct Records {
    kernel: Kernel,
    data: Arc<Data>,
    workflow: Option<Arc<Workflow>>,
    /// The workflows read from the packages' files, by type, where the Workflows engine does
    /// not run ([`Records::reading`]).
    read_workflows: BTreeMap<String, Arc<WorkflowDef>>,
    admin: Admin,
}

impl Records {
    /// The use cases on `kernel`, whose Records plugin must be running.
    pub fn new(kernel: &Kernel) -> Result<Records> {
        let data = kernel
            .service::<Data>(objectos_declarative::data::SERVICE)
            .map_err(|_| AdminError::refused("recordsOff", format!("the Records plugin ({}) is not enabled: enable it, e.g. `objectos plugins enable {}`", objectos_declarative::data::ID, objectos_declarative::data::ID)))?;
        let workflow = kernel.service::<Workflow>(objectos_declarative::workflow::SERVICE).ok();
        Ok(Records { kernel: kernel.clone(), data, workflow, read_workflows: BTreeMap::new(), admin: Admin(kernel.clone()) })
    }

    /// The use cases that read (types, list, get, export, an import's check) on a kernel that
    /// was opened without starting plugins: the Records engine alone is brought up, without a
    /// lifecycle change ([`Kernel::start_quietly`]), and the record types and workflows of the
    /// packages an admin wants enabled are read from their files and declared to it. No
    /// package's code runs, and nothing is written to the audit trail or a log. A kernel whose
    /// plugins run already is used as it is.
    pub async fn reading(kernel: &Kernel) -> Result<Records> {
        Records::quietly(kernel, false).await
    }

    /// The use cases that write, on a kernel that runs no plugins because another process (the
    /// runner: `objectos serve`, the console) does: the Records and Workflows engines come up
    /// as for [`Records::reading`], with the packages' workflows declared to the Workflows
    /// engine, so records are written and moved through their workflows here with every rule
    /// applied; what a change sets off (automations, subscribers' handlers, jobs) is queued
    /// for the runner, and no package's code runs here.
    pub async fn writing_for_runner(kernel: &Kernel) -> Result<Records> {
        Records::quietly(kernel, true).await
    }

    async fn quietly(kernel: &Kernel, writing: bool) -> Result<Records> {
        if kernel.started() {
            return Records::new(kernel);
        }
        let engines: &[&str] = if writing { &[objectos_declarative::data::ID, objectos_declarative::workflow::ID] } else { &[objectos_declarative::data::ID] };
        kernel.start_quietly(engines).await?;
        let mut records = Records::new(kernel)?;
        for id in kernel.load_order() {
            let Ok(info) = kernel.plugin(&id) else { continue };
            let wanted = info.desired == State::Enabled && info.state != State::Error;
            let declares = !info.manifest.provides.objects.is_empty() || !info.manifest.provides.workflows.is_empty();
            let (true, true, Some(dir)) = (wanted, declares, info.package_dir.as_deref()) else { continue };
            // What enable would refuse is left out here as it would be there.
            let Ok(defs) = objectos_declarative::read_definitions(&info.manifest, std::path::Path::new(dir)) else { continue };
            let ctx = kernel.context(&id)?;
            if defs.objects.into_iter().try_for_each(|o| records.data.define(&ctx, o)).is_err() {
                records.data.undefine_all(&ctx);
                continue;
            }
            for w in defs.workflows {
                match &records.workflow {
                    Some(engine) => engine.define(&ctx, w)?,
                    None => drop(records.read_workflows.insert(ctx.record_type(&w.object), Arc::new(w))),
                }
            }
        }
        Ok(records)
    }

    fn workflow_of(&self, full: &str) -> Option<Arc<WorkflowDef>> {
        match &self.workflow {
            Some(w) => w.definition(full),
            None => self.read_workflows.get(full).cloned(),
        }
    }

    /// Every installed record type, sorted by its owner's name, then its label.
    pub fn types(&self) -> Vec<RecordType> {
        let owner_name = |id: &str| self.kernel.plugin(id).map(|p| p.manifest.name).unwrap_or_else(|_| id.to_string());
        record_types(self.data.types(), |full| self.workflow_of(full), owner_name)
    }

    /// The type `name` names: its full name, or a short name only one package declares.
    pub fn resolve(&self, name: &str) -> Result<RecordType> {
        let (full, _) = self.definition(name)?;
        self.types().into_iter().find(|t| t.name == full).ok_or_else(|| unknown(name))
    }

    fn definition(&self, name: &str) -> Result<(String, Arc<ObjectDef>)> {
        let types = self.data.types();
        if name.contains('/') {
            return types.into_iter().find(|(full, _, _)| full == name).map(|(f, _, d)| (f, d)).ok_or_else(|| unknown(name));
        }
        let found: Vec<_> = types.into_iter().filter(|(_, _, d)| d.name == name).collect();
        match found.as_slice() {
            [] => Err(unknown(name)),
            [(full, _, def)] => Ok((full.clone(), def.clone())),
            many => Err(AdminError::refused("ambiguousType", format!("`{name}` is declared by several packages; name one: {}", many.iter().map(|(f, _, _)| f.as_str()).collect::<Vec<_>>().join(", ")))),
        }
    }

    /// Records of type `name`, oldest first unless sorted.
    pub fn list(&self, name: &str, query: &ListQuery) -> Result<Vec<Record>> {
        let (full, def) = self.definition(name)?;
        let filter = query.filter.as_deref().filter(|f| !f.trim().is_empty());
        let limit = query.limit.min(MAX_LIST);
        let Some(spec) = query.sort.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(self.data.list(&self.admin, &full, filter, limit)?);
        };
        let (field, desc) = spec.strip_suffix(":desc").map_or((spec, false), |f| (f, true));
        if field != "id" && def.field(field).is_none() && !["created_at", "updated_at"].contains(&field) {
            return Err(AdminError::refused("fields", format!("cannot sort by `{field}`: {} has no such field", def.name)));
        }
        let mut list = self.data.list(&self.admin, &full, filter, MAX_LIST)?;
        list.sort_by(|a, b| {
            let (x, y) = (a.get(field).unwrap_or(&Value::Null), b.get(field).unwrap_or(&Value::Null));
            let o = match (x.as_f64(), y.as_f64()) {
                (Some(p), Some(q)) => p.total_cmp(&q),
                _ => text(x).cmp(&text(y)),
            };
            if desc { o.reverse() } else { o }
        });
        list.truncate(limit);
        Ok(list)
    }

    /// One record.
    pub fn get(&self, name: &str, id: &str) -> Result<Record> {
        let (full, _) = self.definition(name)?;
        self.data.get(&self.admin, &full, id)?.ok_or_else(|| no_record(&full, id))
    }

    /// `FIELD=VALUE` pairs as the fields of a record of type `name`, each value read by its
    /// field's type (an empty value clears it).
    pub fn parse_fields(&self, name: &str, pairs: &[String]) -> Result<Value> {
        let (_, def) = self.definition(name)?;
        let mut named = Vec::with_capacity(pairs.len());
        for pair in pairs {
            let (field, raw) = pair.split_once('=').ok_or_else(|| AdminError::refused("fields", format!("`{pair}`: give FIELD=VALUE, e.g. title=\"Shop fit-out\"")))?;
            named.push((field, raw));
        }
        objectos_declarative::table::values(&def, named).map_err(|e| AdminError::refused("fields", e))
    }

    /// Create a record (`id` none) or change one. Every problem names its field (`$.amount`).
    pub fn save(&self, name: &str, id: Option<&str>, fields: Value) -> Result<Saved> {
        let (full, _) = self.definition(name)?;
        match id {
            None => {
                let changed = fields.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
                Ok(Saved { record: self.data.create(&self.admin, &full, fields)?, changed })
            }
            Some(id) => {
                let change = self.data.update(&self.admin, &full, id, fields)?;
                Ok(Saved { record: change.record, changed: change.changed })
            }
        }
    }

    /// Delete a record; refused when there is none with this id.
    pub fn delete(&self, name: &str, id: &str) -> Result<()> {
        let (full, _) = self.definition(name)?;
        if self.data.delete(&self.admin, &full, id)? { Ok(()) } else { Err(no_record(&full, id)) }
    }

    /// Fire a workflow event on a record.
    pub async fn transition(&self, name: &str, id: &str, event: &str) -> Result<Transitioned> {
        let (full, _) = self.definition(name)?;
        let wf = self.workflow.as_ref().ok_or_else(|| AdminError::refused("workflowsOff", format!("the Workflows plugin ({}) is not enabled", objectos_declarative::workflow::ID)))?;
        let t = wf.transition(&self.admin, &full, id, event).await.map_err(|e| match e {
            WorkflowError::Kernel(k) => AdminError::Kernel(k),
            other => AdminError::refused("workflow", other.to_string()),
        })?;
        Ok(Transitioned { from: t.from, to: t.to, record: Value::Object(t.record), warnings: t.warnings })
    }

    /// A record's workflow history, oldest first (empty when its type has no workflow, or the
    /// Workflows plugin is off).
    pub fn history(&self, name: &str, id: &str) -> Result<Vec<HistoryStep>> {
        let (full, _) = self.definition(name)?;
        let Some(wf) = &self.workflow else { return Ok(Vec::new()) };
        Ok(wf.history(&self.admin, &full, id)?.into_iter().map(|s| HistoryStep { from: s.from, to: s.to, event: s.event, by: s.by, at: s.at as f64 }).collect())
    }

    /// Check CSV text (a header row naming fields, as [`Records::export_csv`] writes it) against
    /// type `name`: every row against every rule of the type and its references. Writes nothing.
    pub fn check_import(&self, name: &str, csv: &[u8]) -> Result<ImportCheck> {
        let (full, def) = self.definition(name)?;
        let checked = self.data.check_import(&full, &def, csv).map_err(|e| AdminError::refused("csv", e))?;
        let line = |l: u64| u32::try_from(l).unwrap_or(u32::MAX);
        Ok(ImportCheck {
            record_type: full,
            valid: checked.lines.into_iter().map(line).zip(checked.valid).collect(),
            rejected: checked.rejected.into_iter().map(|r| RejectedRow { line: line(r.line), problem: r.problem }).collect(),
        })
    }

    /// Write the valid rows of a checked import. A row that fails now (a referenced record
    /// deleted meanwhile) is reported with its line, and the others are still written.
    pub fn commit_import(&self, check: ImportCheck) -> Imported {
        let mut out = Imported { created: 0, failed: Vec::new() };
        for (line, fields) in check.valid {
            match self.data.create(&self.admin, &check.record_type, fields) {
                Ok(_) => out.created += 1,
                Err(e) => out.failed.push(RejectedRow { line, problem: e.to_string() }),
            }
        }
        out
    }

    /// Every record of type `name` as CSV (a header row: `id`, then the fields), and how many.
    pub fn export_csv(&self, name: &str) -> Result<(String, usize)> {
        let (full, def) = self.definition(name)?;
        let list = self.data.list(&self.admin, &full, None, MAX_LIST)?;
        Ok((objectos_declarative::table::to_csv(&def, &list), list.len()))
    }

    /// Wait, at most `limit`, for the automations the changes made here triggered (a
    /// notification for a won deal); false when some still run (they go on at the next start).
    pub async fn settle(&self, limit: Duration) -> bool {
        match self.kernel.service::<Automations>(objectos_declarative::automation::SERVICE) {
            Ok(a) => a.settle(limit).await,
            Err(_) => true,
        }
    }
}

fn unknown(name: &str) -> AdminError {
    AdminError::refused("unknownType", format!("no record type `{name}` is installed; `objectos records types` lists them"))
}

fn no_record(full: &str, id: &str) -> AdminError {
    AdminError::refused("notFound", format!("no {full} record `{id}`"))
}

/// A value as a cell shows it: a string as it is, nothing for null, other values as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The record types `types` (full name, owner, definition), sorted by owner name then label.
pub(crate) fn record_types(types: Vec<(String, String, Arc<ObjectDef>)>, workflow: impl Fn(&str) -> Option<Arc<WorkflowDef>>, owner_name: impl Fn(&str) -> String) -> Vec<RecordType> {
    let mut out: Vec<RecordType> = types
        .into_iter()
        .map(|(full, owner, def)| {
            let fields = def
                .fields
                .iter()
                .map(|f| {
                    let view = field(f.clone());
                    let (values, min, max, max_length, reference) = match &f.kind {
                        FieldKind::Enum { values } => (values.clone(), None, None, None, None),
                        FieldKind::Number { min, max } => (Vec::new(), *min, *max, None, None),
                        FieldKind::Text { max_length } => (Vec::new(), None, None, Some(*max_length as u32), None),
                        FieldKind::Reference { object } => (Vec::new(), None, None, None, Some(objectos_declarative::data::full_type(&owner, object))),
                        _ => (Vec::new(), None, None, None, None),
                    };
                    // Another package's type is named by that package's name, as a person knows it.
                    let detail = match (&reference, &f.kind) {
                        (Some(target), FieldKind::Reference { object }) if object.contains('/') => {
                            let (theirs, short) = target.split_once('/').unwrap_or_default();
                            format!("→ {short} record of {}", owner_name(theirs))
                        }
                        _ => view.detail,
                    };
                    RecordField { name: view.name, label: view.label, kind: view.kind, required: view.required, values, min, max, max_length, reference, default: f.default.clone(), detail }
                })
                .collect();
            let workflow = workflow(&full).map(|w| RecordWorkflow { name: w.name.clone(), field: w.field.clone(), initial: w.initial.clone(), transitions: transitions(&w) });
            RecordType { label: def.label.clone(), owner_name: owner_name(&owner), name: full, owner, fields, workflow }
        })
        .collect();
    out.sort_by(|a, b| (&a.owner_name, &a.label).cmp(&(&b.owner_name, &b.label)));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_reference_to_another_packages_type_names_it_and_its_package() {
        let (dir, m) = crate::definitions::tests::sample("invoicing");
        let defs = objectos_declarative::read_definitions(&m, &dir).unwrap();
        let invoice = Arc::new(defs.objects[0].clone());
        let names = |id: &str| if id == "com.acme.crm" { "Small CRM".to_string() } else { id.to_string() };
        let types = record_types(vec![("com.acme.invoicing/invoice".into(), "com.acme.invoicing".into(), invoice)], |_| None, names);
        let field = types[0].fields.iter().find(|f| f.name == "opportunity").unwrap();
        assert_eq!(field.reference.as_deref(), Some("com.acme.crm/opportunity"), "the form lists the CRM's deals");
        assert_eq!(field.detail, "→ opportunity record of Small CRM");
    }
}
