//! `com.objectos.objects`: records of the record types packages declare, through the `data`
//! service.
//!
//! A type belongs to the package that declares it: its full name is `<owner id>/<type>`
//! (`com.acme.crm/account`), and a call may name the caller's own types by their short name.
//! Two packages' `account` are two types; records are stored under the full name, so they are
//! never handed to another package. Every call names its caller; reading needs
//! `data.<type>.read` and writing `data.<type>.write` (`data.<owner>/<type>.*` for another
//! package's type, which the manifest check allows only with a dependency on the owner),
//! checked on the caller's grants (a refusal is audited). Every write is audited by the caller
//! with the names of the fields it changed (never their values) and announced as
//! `data.<owner>.<type>.created|updated|deleted` carrying ids and field names only: a
//! subscriber reads the record through the service, with its own read grant.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use objectos_kernel::context::Prepared;
use objectos_kernel::runtime::storage::Charge;
use objectos_kernel::{HookResult, KernelError, Plugin, PluginContext, Result, async_trait};
use serde_json::{json, Map, Value};

use crate::caller::Caller;
use crate::defs::ObjectDef;
use crate::expr::Expr;
use crate::util::{now_ms, service_err};

pub use crate::names::{full_type, owner_of, Record};

/// The plugin's id.
pub const ID: &str = crate::names::OBJECTS_ID;
/// The service name.
pub const SERVICE: &str = crate::names::DATA_SERVICE;
/// The embedded manifest.
pub const MANIFEST: &str = include_str!("../manifests/objects.json");
/// The plugin's translations.
pub const TRANSLATIONS: &[(&str, &str)] = &[("translations/en.json", include_str!("../translations/objects.en.json")), ("translations/zh-CN.json", include_str!("../translations/objects.zh-CN.json"))];
/// Most records one `list` returns.
pub const MAX_LIST: usize = 10_000;

pub(crate) fn err(message: impl Into<String>) -> KernelError {
    service_err(SERVICE, message)
}

/// The plugin's code.
#[derive(Default)]
pub struct ObjectsPlugin;

#[async_trait]
impl Plugin for ObjectsPlugin {
    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        let inner = Arc::new(Inner { ctx: ctx.clone(), types: RwLock::default(), seq: AtomicU64::new(0), changes: tokio::sync::broadcast::channel(CHANGES).0 });
        // Records kept before storage had charges count for the engine; once, they are
        // charged to their types' owners, as every record written since is.
        if ctx.storage().get(RECHARGED)?.is_none() {
            let n = ctx.storage().recharge("r:", &|key| key.strip_prefix("r:").and_then(|k| k.split_once('/')).map(|(owner, _)| owner.to_string()))?;
            ctx.storage().set(RECHARGED, json!(true))?;
            if n > 0 {
                ctx.logger().info(format!("{n} records are now charged to their packages' storage"));
            }
        }
        let weak = Arc::downgrade(&inner);
        ctx.events().on_plugin_stopped(move |id, _| {
            if let Some(inner) = weak.upgrade() {
                inner.write().retain(|_, (owner, _)| owner != id);
            }
            Ok(())
        })?;
        crate::util::delete_when_uninstalled(ctx, "r", |_| {})?;
        let data = Arc::new(Data { inner });
        ctx.services().register_arc(SERVICE, data.clone())?;
        ctx.services().expose(SERVICE, data)?;
        Ok(())
    }
}

type Types = HashMap<String, (String, Arc<ObjectDef>)>;

struct Inner {
    ctx: PluginContext,
    types: RwLock<Types>,
    seq: AtomicU64,
    /// Every write, for hosts that show records ([`Data::watch`]).
    changes: tokio::sync::broadcast::Sender<RecordChange>,
}

/// Changes a slow watcher may fall behind by before it is told it missed some.
const CHANGES: usize = 256;

/// A write of a record, as a host that shows records follows it ([`Data::watch`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordChange {
    /// The type's full name.
    pub record_type: String,
    /// The record's id.
    pub id: String,
    /// `created`, `updated` or `deleted`.
    pub change: &'static str,
}

/// The engine's own key saying its records are charged to their owners.
const RECHARGED: &str = "meta:charged";

impl Inner {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Types> {
        self.types.write().unwrap_or_else(|p| p.into_inner())
    }
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Types> {
        self.types.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a write changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The record after the write (before, for a delete).
    pub record: Record,
    /// The names of the fields whose value changed.
    pub changed: Vec<String>,
}

/// The `data` service.
pub struct Data {
    inner: Arc<Inner>,
}

fn key(full: &str, id: &str) -> String {
    format!("r:{full}:{id}")
}

/// May `caller` learn whether records of `full` exist, for a reference it writes (`call`)?
/// Its own types' records are its own; another's need its read grant.
fn may_read(caller: &impl Caller, full: &str, call: &str) -> Result<()> {
    if owner_of(full) == caller.who() { Ok(()) } else { caller.require_data(full, false, call) }
}

/// The topic a change of a record of `full` (`<owner>/<type>`) is announced on:
/// `data.<owner>.<type>.<what>`, e.g. `data.com.acme.crm.account.created`.
pub fn topic(full: &str, what: &str) -> String {
    format!("data.{}.{what}", full.replace('/', "."))
}

impl Data {
    /// Declare a record type owned by the caller (a package's runtime does it when the package
    /// is enabled): `<caller>/<def.name>`. Records stored under the bare name by a version
    /// before types had owners are adopted by the first package to declare that name.
    pub fn define(&self, caller: &PluginContext, def: ObjectDef) -> Result<()> {
        if !crate::defs::is_name(&def.name) {
            return Err(err(format!("`{}` is not a record type name", def.name)));
        }
        let full = caller.record_type(&def.name);
        // A reference to a dependency's type needs it declared now (a dependency is enabled
        // first); one to the package's own types is checked at install.
        for f in &def.fields {
            let crate::defs::FieldKind::Reference { object } = &f.kind else { continue };
            let target = full_type(caller.id(), object);
            let owner = owner_of(&target);
            if owner != caller.id() && !self.inner.read().contains_key(&target) {
                let theirs: Vec<String> = self.types().into_iter().filter(|(_, o, _)| o == owner).map(|(_, _, d)| d.name.clone()).collect();
                let short = target.rsplit('/').next().unwrap_or_default();
                let declared = if theirs.is_empty() { format!("{owner} declares no record type now (is it enabled?)") } else { format!("{owner} declares {}{}", theirs.join(", "), objectos_kernel::util::did_you_mean(short, theirs.iter().map(String::as_str))) };
                return Err(err(format!("{}.{} refers to `{target}`, which is not declared: {declared}", def.name, f.name)));
            }
        }
        crate::util::adopt_unowned(&self.inner.ctx, "r", &def.name, &full)?;
        self.inner.write().insert(full, (caller.id().to_string(), Arc::new(def)));
        Ok(())
    }

    /// Forget the caller's record types (their records stay stored, under the caller's id).
    pub fn undefine_all(&self, caller: &PluginContext) {
        self.inner.write().retain(|_, (owner, _)| owner != caller.id());
    }

    /// The record types declared now: full name, owner and definition, sorted by full name.
    pub fn types(&self) -> Vec<(String, String, Arc<ObjectDef>)> {
        let mut out: Vec<(String, String, Arc<ObjectDef>)> = self.inner.read().iter().map(|(full, (owner, d))| (full.clone(), owner.clone(), d.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A record type, by its full name.
    pub fn definition(&self, full: &str) -> Result<Arc<ObjectDef>> {
        self.inner.read().get(full).map(|(_, d)| d.clone()).ok_or_else(|| {
            let mut known: Vec<String> = self.inner.read().keys().cloned().collect();
            known.sort();
            err(format!("no record type `{full}` is declared (declared: {})", if known.is_empty() { "none".into() } else { known.join(", ") }))
        })
    }

    /// What a write of a record of `object` for `caller` is charged to: the type's owner, and
    /// for a package caller within its storage quota (its own keys and its records together,
    /// kept by the kernel).
    fn charge<'a>(caller: &impl Caller, object: &'a str) -> Charge<'a> {
        Charge { owner: owner_of(object), limit: Self::storage_limit(caller) }
    }

    /// The storage budget of the caller's records' owner (`None`: not metered).
    fn storage_limit(caller: &impl Caller) -> Option<u64> {
        caller.quotas().map(|q| objectos_kernel::runtime::meter::Held::StorageBytes.limit(&q))
    }

    /// Refuse, before anything is counted (the write's event), a record of `object` that would
    /// take its owner past the storage quota; the write checks again, atomically.
    fn room(&self, caller: &impl Caller, object: &str, key: &str, old: Option<&Value>, new: &Value) -> Result<()> {
        let Some(limit) = Self::storage_limit(caller) else { return Ok(()) };
        let size = |v: &Value| (key.len() + v.to_string().len()) as u64;
        let owner = owner_of(object);
        let used = self.inner.ctx.storage().usage_of(owner)?;
        if objectos_kernel::runtime::storage::over_budget(used, old.map_or(0, size), size(new), limit) {
            return Err(caller.over_limit(format!("a {object} record"), objectos_kernel::runtime::storage::budget_reason(owner, used, limit)));
        }
        Ok(())
    }

    /// A refusal for a record of `object` past its owner's storage quota.
    fn over_quota(caller: &impl Caller, object: &str, e: KernelError) -> KernelError {
        match e {
            KernelError::OverLimit { reason, .. } => caller.over_limit(format!("a {object} record"), reason),
            other => other,
        }
    }

    /// `checked` (a validation of `fields`), with one more problem when a plugin writes a
    /// workflow's state field: it moves only by transitions.
    fn with_state_problem<T>(caller: &impl Caller, def: &ObjectDef, fields: &Value, checked: std::result::Result<T, Vec<objectos_kernel::model::manifest::Problem>>) -> std::result::Result<T, Vec<objectos_kernel::model::manifest::Problem>> {
        let state = (!caller.sets_workflow_state())
            .then(|| def.fields.iter().find(|f| f.workflow && fields.get(&f.name).is_some()))
            .flatten()
            .map(|f| objectos_kernel::model::manifest::Problem { path: format!("$.{}", f.name), message: format!("{} is moved by the workflow of {}: fire one of its events instead", f.label, def.name) });
        match (checked, state) {
            (Ok(v), None) => Ok(v),
            (Ok(_), Some(p)) => Err(vec![p]),
            (Err(mut ps), p) => {
                ps.extend(p);
                Err(ps)
            }
        }
    }

    /// Check CSV text for `object` (a full type name) as an import would write it: every rule of
    /// the type ([`crate::table::check_csv`]) and the references, so that writing the valid
    /// rows cannot stop halfway. Rejected rows are in line order.
    pub fn check_import(&self, object: &str, def: &ObjectDef, text: &[u8]) -> std::result::Result<crate::table::Checked, String> {
        let checked = crate::table::check_csv(text, def)?;
        let mut out = crate::table::Checked { rejected: checked.rejected, ..Default::default() };
        for (line, v) in checked.lines.into_iter().zip(checked.valid) {
            match self.reference_problem(object, &v) {
                Some(problem) => out.rejected.push(crate::table::Rejected { line, problem }),
                None => {
                    out.valid.push(v);
                    out.lines.push(line);
                }
            }
        }
        out.rejected.sort_by_key(|r| r.line);
        Ok(out)
    }

    /// Why the reference fields of `fields` (for `object`, a full type name) name no record of
    /// their type, if they do not.
    /// Imports are the admin's, so no grant is asked for.
    fn reference_problem(&self, object: &str, fields: &Value) -> Option<String> {
        let def = self.definition(object).ok()?;
        let map = fields.as_object()?;
        match self.check_references(object, &def, map, &|_| Ok(())) {
            Err(KernelError::Manifest(m)) => m.problems.first().map(|p| format!("{} {}", p.path, p.message)),
            Err(e) => Some(e.to_string()),
            Ok(()) => None,
        }
    }

    /// Refuse values of reference fields that name no record of the referenced type (one of
    /// the same package's types, or a dependency's). Whether a record exists is something
    /// read: `may_read` asks for the caller's read grant on a referenced type it does not own,
    /// so a caller cannot probe ids of another's type it may not read.
    fn check_references(&self, object: &str, def: &ObjectDef, fields: &Map<String, Value>, may_read: &dyn Fn(&str) -> Result<()>) -> Result<()> {
        let owner = owner_of(object);
        let storage = self.inner.ctx.storage();
        for f in &def.fields {
            let crate::defs::FieldKind::Reference { object: target } = &f.kind else { continue };
            let Some(Value::String(id)) = fields.get(&f.name) else { continue };
            let full = full_type(owner, target);
            may_read(&full)?;
            if !storage.has(&key(&full, id))? {
                return Err(Self::problems(object, vec![objectos_kernel::model::manifest::Problem { path: format!("$.{}", f.name), message: format!("{} `{id}` names no {target} record", f.label) }]));
            }
        }
        Ok(())
    }

    /// A record's problems, each with its field's path (`$.amount`), so a form can show each
    /// beside its field.
    fn problems(object: &str, ps: Vec<objectos_kernel::model::manifest::Problem>) -> KernelError {
        let problems = ps.into_iter().map(|p| objectos_kernel::model::manifest::Problem { path: p.path.rsplit(' ').next().unwrap_or_default().to_string(), message: p.message }).collect();
        KernelError::Manifest(objectos_kernel::model::manifest::ManifestErrors { file: format!("invalid {object} record"), problems })
    }

    /// Every write of a record in this process from now on, by any caller, for a host that
    /// shows records (ids and the change only). A receiver that falls more than 256 behind is
    /// told it lagged; it ends when the engine stops.
    pub fn watch(&self) -> tokio::sync::broadcast::Receiver<RecordChange> {
        self.inner.changes.subscribe()
    }

    /// The event announcing a change, checked before the change is stored (it is queued for
    /// durable subscribers with it); `None`, said in the log, when it cannot be emitted (a
    /// chain of events too deep): the change is stored unannounced.
    fn announcement(&self, caller: &impl Caller, what: &'static str, object: &str, id: &str, changed: &[String], depth: u32) -> Option<Prepared> {
        // Ids and field names only: the record itself is read through `get`, with a read grant.
        let payload = json!({ "object": object, "id": id, "changed": changed, "by": caller.who() });
        let topic = topic(object, what);
        match self.inner.ctx.events().prepare(&topic, payload, depth) {
            Ok(p) => Some(p),
            Err(e) => {
                self.inner.ctx.logger().warn(format!("could not announce {topic}: {e}"));
                None
            }
        }
    }

    /// Store a record's change (`new` None: delete) if the record is still `expected`, with
    /// its announcement; true when it was stored.
    fn store(&self, caller: &impl Caller, object: &str, key: &str, expected: Option<&Value>, new: Option<Value>, event: Option<&Prepared>) -> Result<bool> {
        let storage = self.inner.ctx.storage();
        match event {
            Some(ev) => storage.swap_announcing(key, expected, new, Self::charge(caller, object), ev),
            None => storage.swap_charged(key, expected, new, Self::charge(caller, object)),
        }
        .map_err(|e| Self::over_quota(caller, object, e))
    }

    fn announce(&self, caller: &impl Caller, what: &'static str, object: &str, id: &str, change: &Change, event: Option<Prepared>) {
        let _ = self.inner.changes.send(RecordChange { record_type: object.to_string(), id: id.to_string(), change: what });
        let _ = caller.audit(&format!("data.{what}"), json!({ "object": object, "id": id, "fields": change.changed }));
        if let Some(ev) = event {
            self.inner.ctx.events().publish(ev);
        }
    }

    /// Create a record from `fields` (checked, defaults applied); returns it with its id.
    /// `object` is a full type name, or the short name of one of the caller's own types (so
    /// in every method).
    pub fn create(&self, caller: &impl Caller, object: &str, fields: Value) -> Result<Record> {
        self.create_at_depth(caller, object, fields, 0)
    }

    pub(crate) fn create_at_depth(&self, caller: &impl Caller, object: &str, fields: Value, depth: u32) -> Result<Record> {
        let object = &caller.record_type(object)?;
        caller.require_data(object, true, "data.create")?;
        let def = self.definition(object)?;
        let record = Self::with_state_problem(caller, &def, &fields, def.validate(&fields, false)).map_err(|ps| Self::problems(object, ps))?;
        self.check_references(object, &def, &record, &|t| may_read(caller, t, "data.create"))?;
        let now = now_ms();
        for _ in 0..8 {
            let n = self.inner.seq.fetch_add(1, Relaxed);
            // Fixed widths: ids sort by creation and cannot run into each other.
            let id = format!("{now:011x}{:05x}{:06x}", std::process::id() & 0xf_ffff, n & 0xff_ffff);
            let mut stored = Map::new();
            stored.insert("id".into(), Value::String(id.clone()));
            stored.append(&mut record.clone());
            stored.insert("created_at".into(), json!(now));
            stored.insert("updated_at".into(), json!(now));
            let k = key(object, &id);
            let value = Value::Object(stored.clone());
            self.room(caller, object, &k, None, &value)?;
            // The announcement is the caller's event, for its quota.
            caller.charge_event(&topic(object, "created"))?;
            let changed: Vec<String> = record.keys().cloned().collect();
            let event = self.announcement(caller, "created", object, &id, &changed, depth);
            if self.store(caller, object, &k, None, Some(value), event.as_ref())? {
                let change = Change { changed, record: stored.clone() };
                self.announce(caller, "created", object, &id, &change, event);
                return Ok(stored);
            }
        }
        Err(err("could not find a free record id; try again"))
    }

    /// One record, if it exists.
    pub fn get(&self, caller: &impl Caller, object: &str, id: &str) -> Result<Option<Record>> {
        let object = &caller.record_type(object)?;
        caller.require_data(object, false, "data.get")?;
        self.definition(object)?;
        Ok(self.inner.ctx.storage().get(&key(object, id))?.and_then(|v| v.as_object().cloned()))
    }

    /// Change the given fields of a record (checked); returns the record and what changed.
    pub fn update(&self, caller: &impl Caller, object: &str, id: &str, patch: Value) -> Result<Change> {
        self.update_at_depth(caller, object, id, patch, 0)
    }

    pub(crate) fn update_at_depth(&self, caller: &impl Caller, object: &str, id: &str, patch: Value, depth: u32) -> Result<Change> {
        let def = self.definition(&caller.record_type(object)?)?;
        if let Err(ps) = Self::with_state_problem(caller, &def, &patch, def.validate(&patch, true)) {
            return Err(Self::problems(&caller.record_type(object)?, ps));
        }
        self.update_state(caller, object, id, patch, depth)
    }

    /// Like `update_at_depth`, the workflow's state field included: for the workflow engine's
    /// own transitions.
    pub(crate) fn update_state(&self, caller: &impl Caller, object: &str, id: &str, patch: Value, depth: u32) -> Result<Change> {
        let object = &caller.record_type(object)?;
        caller.require_data(object, true, "data.update")?;
        let def = self.definition(object)?;
        let fields = def.validate(&patch, true).map_err(|ps| Self::problems(object, ps))?;
        self.check_references(object, &def, &fields, &|t| may_read(caller, t, "data.update"))?;
        let storage = self.inner.ctx.storage();
        for _ in 0..8 {
            let old = storage.get(&key(object, id))?.ok_or_else(|| err(format!("no {object} record `{id}`")))?;
            let mut record = old.as_object().cloned().unwrap_or_default();
            let changed: Vec<String> = fields.iter().filter(|(k, v)| record.get(*k).unwrap_or(&Value::Null) != *v).map(|(k, _)| k.clone()).collect();
            if changed.is_empty() {
                return Ok(Change { record, changed });
            }
            for (k, v) in &fields {
                record.insert(k.clone(), v.clone());
            }
            record.insert("updated_at".into(), json!(now_ms()));
            let k = key(object, id);
            let new = Value::Object(record.clone());
            self.room(caller, object, &k, Some(&old), &new)?;
            caller.charge_event(&topic(object, "updated"))?;
            let event = self.announcement(caller, "updated", object, id, &changed, depth);
            if self.store(caller, object, &k, Some(&old), Some(new), event.as_ref())? {
                let change = Change { record, changed };
                self.announce(caller, "updated", object, id, &change, event);
                return Ok(change);
            }
        }
        Err(err(format!("{object} record `{id}` kept changing; try again")))
    }

    /// Delete a record; true when it existed.
    pub fn delete(&self, caller: &impl Caller, object: &str, id: &str) -> Result<bool> {
        let object = &caller.record_type(object)?;
        caller.require_data(object, true, "data.delete")?;
        self.definition(object)?;
        let storage = self.inner.ctx.storage();
        let Some(old) = storage.get(&key(object, id))? else { return Ok(false) };
        caller.charge_event(&topic(object, "deleted"))?;
        let event = self.announcement(caller, "deleted", object, id, &[], 0);
        if !self.store(caller, object, &key(object, id), Some(&old), None, event.as_ref())? {
            return Err(err(format!("{object} record `{id}` changed while being deleted; try again")));
        }
        let record = old.as_object().cloned().unwrap_or_default();
        let change = Change { changed: Vec::new(), record };
        self.announce(caller, "deleted", object, id, &change, event);
        Ok(true)
    }

    /// Records of `object`, oldest first, that match `filter` (an expression over the record's
    /// fields, e.g. `stage == "won" and amount > 1000`), at most `limit`.
    pub fn list(&self, caller: &impl Caller, object: &str, filter: Option<&str>, limit: usize) -> Result<Vec<Record>> {
        let object = &caller.record_type(object)?;
        caller.require_data(object, false, "data.list")?;
        let def = self.definition(object)?;
        let expr = filter.map(Expr::parse).transpose().map_err(|e| err(format!("filter: {e}")))?;
        if let Some(e) = &expr {
            for p in e.paths() {
                if def.field(&p[0]).is_none() && !["id", "created_at", "updated_at"].contains(&p[0].as_str()) {
                    return Err(err(format!("filter reads `{}`, which is not a field of {object}", p.join("."))));
                }
            }
        }
        let mut out = Vec::new();
        for (_, v) in self.inner.ctx.storage().scan(&format!("r:{object}:"))? {
            let keep = match &expr {
                Some(e) => e.test(&v).unwrap_or(false),
                None => true,
            };
            if keep {
                if let Value::Object(m) = v {
                    out.push(m);
                }
            }
        }
        out.sort_by(|a, b| a.get("created_at").and_then(Value::as_i64).cmp(&b.get("created_at").and_then(Value::as_i64)));
        out.truncate(limit.min(MAX_LIST));
        Ok(out)
    }
}

/// `data` for code in the sandbox: `get {object, id}`, `list {object, filter?, limit?}`,
/// `create {object, fields}`, `update {object, id, patch}`, `delete {object, id}`, each
/// checked against the caller's `data.<type>` grants as the typed methods are.
impl objectos_kernel::plugin::JsonService for Data {
    fn call(&self, caller: &PluginContext, method: &str, args: Value) -> Result<Value> {
        use objectos_kernel::plugin::{no_method, str_arg};
        let arg = |key| str_arg(SERVICE, method, &args, key);
        match method {
            "get" => Ok(self.get(caller, arg("object")?, arg("id")?)?.map_or(Value::Null, Value::Object)),
            "list" => {
                let limit = args.get("limit").and_then(Value::as_u64).map_or(100, |n| n as usize).min(MAX_LIST);
                let filter = args.get("filter").and_then(Value::as_str);
                Ok(Value::Array(self.list(caller, arg("object")?, filter, limit)?.into_iter().map(Value::Object).collect()))
            }
            "create" => Ok(Value::Object(self.create(caller, arg("object")?, args.get("fields").cloned().unwrap_or_else(|| Value::Object(Map::new())))?)),
            "update" => {
                let patch = args.get("patch").cloned().ok_or_else(|| err("update: `patch` (the fields to change) is required"))?;
                let change = self.update(caller, arg("object")?, arg("id")?, patch)?;
                Ok(serde_json::json!({ "record": change.record, "changed": change.changed }))
            }
            "delete" => Ok(Value::Bool(self.delete(caller, arg("object")?, arg("id")?)?)),
            _ => Err(no_method(SERVICE, method, &["get", "list", "create", "update", "delete"])),
        }
    }
}
