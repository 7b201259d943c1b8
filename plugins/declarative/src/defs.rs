//! The declarative files of a package: record types (`objects/`), state machines
//! (`workflows/`) and automations (`automations/`), in YAML or JSON. Parsing checks
//! everything it can on its own and reports every problem with its path in the file; a
//! package-wide check ([`check_package`]) adds what needs several files (a workflow's object).

use std::collections::{BTreeSet, VecDeque};

use objectos_kernel::model::manifest::{DeclaredKind, Problem};
use objectos_kernel::model::problems::{Problems, Vocabulary};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::expr::Expr;
use crate::grammar::keys;

/// Largest declarative file.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Most fields of a record type.
pub const MAX_FIELDS: usize = 200;
/// Most values of an enum field.
pub const MAX_ENUM_VALUES: usize = 1_000;
/// Most states of a workflow.
pub const MAX_STATES: usize = 500;
/// Most transitions leaving one state.
pub const MAX_TRANSITIONS: usize = 100;

/// Read YAML or JSON text into a JSON value. The error says where (line and column).
pub fn load(text: &str, file: &str) -> Result<Value, String> {
    if text.len() > MAX_FILE_BYTES {
        return Err(format!("{file} is {} bytes; at most {MAX_FILE_BYTES} are read", text.len()));
    }
    if file.ends_with(".json") {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))
    }
}

/// Collects problems for one file, in the kernel's collector with the plain vocabulary
/// ("a text", "a mapping") these files' authors know.
pub(crate) struct Report {
    pub(crate) problems: Problems,
    mode: Mode,
}

/// How strictly files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// What install and `objectos manifest check` do: everything is checked.
    Check,
    /// Reading an installed package's files (at enable, for the console): what a stricter
    /// check of a later version refuses but that changes nothing the engines do (a key that
    /// is ignored, a label that is not a text) is let through, so an upgrade does not stop a
    /// package that worked.
    Load,
}

impl Report {
    pub(crate) fn new(file: &str) -> Report {
        Report::with(file, Mode::Check)
    }

    fn with(file: &str, mode: Mode) -> Report {
        Report { problems: Problems::in_file(file, Vocabulary::Plain), mode }
    }

    pub(crate) fn err(&mut self, path: &str, message: impl Into<String>) {
        self.problems.err(path, message);
    }

    /// A problem that changes nothing the engines do: refused when checking, let through when
    /// loading an installed package (see [`Mode::Load`]).
    fn lint(&mut self, path: &str, message: impl Into<String>) {
        if self.mode == Mode::Check {
            self.problems.err(path, message);
        }
    }

    /// Keys of a mapping: `allowed` ones, and when loading, any (they are ignored).
    fn keys<'v>(&mut self, path: &str, v: &'v Value, allowed: &[&str]) -> Option<&'v Map<String, Value>> {
        match self.mode {
            Mode::Check => self.problems.object(path, v, allowed),
            Mode::Load => v.as_object(),
        }
    }

    /// An optional `true` or `false` (absent: false). `lenient`: [`Mode::Load`] when it changed
    /// nothing before the check refused other values, else [`Mode::Check`].
    fn flag(&mut self, path: &str, v: Option<&Value>, lenient: Mode) -> bool {
        match v {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                let message = format!("must be true or false, not {}", type_name(other));
                if lenient == Mode::Load { self.lint(path, message) } else { self.err(path, message) }
                false
            }
        }
    }

    /// An optional text that is only shown (a label): when set, not empty.
    fn label(&mut self, path: &str, v: Option<&Value>) {
        match v {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            Some(Value::String(_)) => self.lint(path, "must not be empty"),
            Some(other) => self.lint(path, format!("must be a text, not {}", type_name(other))),
        }
    }

    /// The problems found, or `ok` when there are none.
    pub(crate) fn finish<T>(self, ok: Option<T>) -> Result<T, Vec<Problem>> {
        match ok {
            Some(v) if self.problems.is_empty() => Ok(v),
            _ => Err(self.problems.into_vec()),
        }
    }

    fn object<'v>(&mut self, path: &str, v: Option<&'v Value>, allowed: &[&str], required: bool) -> Option<&'v Map<String, Value>> {
        match v {
            None | Some(Value::Null) if !required => None,
            None | Some(Value::Null) => {
                self.err(path, "is required");
                None
            }
            Some(v) => self.problems.object(path, v, allowed),
        }
    }

    fn string(&mut self, path: &str, v: Option<&Value>, required: bool) -> Option<String> {
        match v {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            None | Some(Value::Null) if !required => None,
            None | Some(Value::Null) => {
                self.err(path, "is required");
                None
            }
            Some(Value::String(_)) => {
                self.err(path, "must not be empty");
                None
            }
            Some(other) => {
                self.err(path, format!("must be a text, not {}", type_name(other)));
                None
            }
        }
    }

    fn name(&mut self, path: &str, v: Option<&Value>) -> Option<String> {
        let s = self.string(path, v, true)?;
        if is_name(&s) {
            Some(s)
        } else {
            self.err(path, format!("`{s}` {NAME_RULE}"));
            None
        }
    }

    fn expr(&mut self, path: &str, v: Option<&Value>) -> Option<Expr> {
        let src = self.string(path, v, false)?;
        match Expr::parse(&src) {
            Ok(e) => Some(e),
            Err(e) => {
                let shown: String = if src.chars().count() > 80 { src.chars().take(77).chain("…".chars()).collect() } else { src.clone() };
                self.err(path, format!("{e} in `{shown}`"));
                None
            }
        }
    }
}

/// Keys of an emitted payload the engine fills in; an `emit` action's `data` may not set them.
pub const RESERVED_EMIT_KEYS: &[&str] = &["record", "object", "payload"];

/// What a name must be, as problems say it.
const NAME_RULE: &str = "must be 1-64 characters of a-z, 0-9, `_` or `-`, starting with a letter";

/// Is `s` a valid object, field, state, event or automation name?
pub fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.starts_with(|c: char| c.is_ascii_lowercase()) && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Does `s` name a record type as a reference field may: one of the package's own (`account`)
/// or a package's full name for one (`com.acme.contacts/contact`)?
pub fn is_type_ref(s: &str) -> bool {
    match s.split_once('/') {
        None => is_name(s),
        Some((owner, name)) => objectos_kernel::model::id::validate_id(owner).is_ok() && is_name(name),
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    Vocabulary::Plain.kind(v)
}

// ---- objects ---------------------------------------------------------------------------------

/// A field's type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FieldKind {
    /// Text, at most `max_length` characters.
    Text {
        /// Longest value (default 10,000).
        #[serde(rename = "maxLength")]
        max_length: usize,
    },
    /// A number within optional bounds.
    Number {
        /// Smallest value.
        min: Option<f64>,
        /// Largest value.
        max: Option<f64>,
    },
    /// `true` or `false`.
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// One of `values`.
    Enum {
        /// The allowed values.
        values: Vec<String>,
    },
    /// The id of a record of `object`.
    Reference {
        /// The record type referred to.
        object: String,
    },
}

/// A field of a record type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDef {
    /// Name (a key of records).
    pub name: String,
    /// Shown to people.
    pub label: String,
    /// Its type.
    #[serde(flatten)]
    pub kind: FieldKind,
    /// Must be set on create.
    pub required: bool,
    /// Set on create when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Holds its type's workflow state: only the workflow's transitions (and the admin) change
    /// it, so a record's state always matches its history.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub workflow: bool,
}

/// A record type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectDef {
    /// Name (`data.<name>.read` / `.write` grant access).
    pub name: String,
    /// Shown to people.
    pub label: String,
    /// Fields, in file order.
    pub fields: Vec<FieldDef>,
}

impl ObjectDef {
    /// Parse and check `objects/<name>.*`.
    pub fn parse(v: &Value, file: &str, expected_name: &str) -> Result<ObjectDef, Vec<Problem>> {
        Self::parse_as(v, file, expected_name, Mode::Check)
    }

    /// Like [`Self::parse`], as strictly as `mode` says.
    pub fn parse_as(v: &Value, file: &str, expected_name: &str, mode: Mode) -> Result<ObjectDef, Vec<Problem>> {
        let mut r = Report::with(file, mode);
        let def = object_def(&mut r, v, expected_name);
        r.finish(def)
    }

    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Check `input` as a whole new record (`partial` false: defaults applied, required
    /// fields needed) or as an update (`partial` true: only the given fields). Returns the
    /// fields to store; every problem names the field.
    pub fn validate(&self, input: &Value, partial: bool) -> Result<Map<String, Value>, Vec<Problem>> {
        let file = format!("record of {}", self.name);
        let mut r = Report::new(&file);
        let Some(map) = input.as_object() else {
            r.err("$", format!("a record must be a mapping of fields, not {}", type_name(input)));
            return Err(r.problems.into_vec());
        };
        let mut out = Map::new();
        for (k, v) in map {
            match self.field(k) {
                None => r.err(&format!("$.{k}"), format!("{} has no field `{k}`{}; fields: {}", self.name, objectos_kernel::util::did_you_mean(k, self.fields.iter().map(|f| f.name.as_str())), self.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "))),
                Some(f) => match check_value(f, v) {
                    Ok(()) => {
                        out.insert(k.clone(), v.clone());
                    }
                    Err(m) => r.err(&format!("$.{k}"), m),
                },
            }
        }
        if !partial {
            for f in &self.fields {
                if !out.contains_key(&f.name) || out[&f.name].is_null() {
                    match (&f.default, f.required) {
                        (Some(d), _) => {
                            out.insert(f.name.clone(), d.clone());
                        }
                        (None, true) => r.err(&format!("$.{}", f.name), format!("{} is required", f.label)),
                        (None, false) => {}
                    }
                }
            }
        } else {
            for (k, v) in &out {
                if v.is_null() && self.field(k).is_some_and(|f| f.required) {
                    r.err(&format!("$.{k}"), format!("{k} is required and cannot be cleared"));
                }
            }
        }
        r.finish(Some(out))
    }
}

fn check_value(f: &FieldDef, v: &Value) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    match (&f.kind, v) {
        (FieldKind::Text { max_length }, Value::String(s)) => {
            if s.chars().count() > *max_length {
                return Err(format!("is longer than {max_length} characters"));
            }
        }
        (FieldKind::Number { min, max }, Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m) {
                return Err(format!("{x} is outside {}..{}", min.map_or("".into(), |m| m.to_string()), max.map_or("".into(), |m| m.to_string())));
            }
        }
        (FieldKind::Boolean, Value::Bool(_)) => {}
        (FieldKind::Date, Value::String(s)) => {
            if !is_date(s) {
                return Err(format!("`{s}` is not a date like 2026-11-27"));
            }
        }
        (FieldKind::Enum { values }, Value::String(s)) => {
            if !values.contains(s) {
                return Err(format!("`{s}` is not one of {}{}", values.join(", "), objectos_kernel::util::did_you_mean(s, values.iter().map(String::as_str))));
            }
        }
        (FieldKind::Reference { .. }, Value::String(s)) if !s.is_empty() => {}
        (kind, other) => {
            let want = match kind {
                FieldKind::Text { .. } | FieldKind::Date | FieldKind::Enum { .. } => "a text",
                FieldKind::Number { .. } => "a number",
                FieldKind::Boolean => "true or false",
                FieldKind::Reference { .. } => "a record id",
            };
            return Err(format!("must be {want}, not {}", type_name(other)));
        }
    }
    Ok(())
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(d)) => {
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
            (1..=12).contains(&m) && d >= 1 && d <= days[(m - 1) as usize]
        }
        _ => false,
    }
}

fn object_def(r: &mut Report, v: &Value, expected_name: &str) -> Option<ObjectDef> {
    let m = r.object("$", Some(v), keys::OBJECT, true)?;
    let name = r.name("$.name", m.get("name"));
    if let Some(n) = &name {
        if n != expected_name {
            r.err("$.name", format!("is `{n}` but the file declares `{expected_name}`"));
        }
    }
    let label = r.string("$.label", m.get("label"), false);
    let fields_m = match m.get("fields") {
        Some(Value::Object(f)) if !f.is_empty() => f,
        Some(Value::Object(_)) | None | Some(Value::Null) => {
            r.err("$.fields", "declares no field");
            return None;
        }
        Some(other) => {
            r.err("$.fields", format!("must be a mapping of field names, not {}", type_name(other)));
            return None;
        }
    };
    if fields_m.len() > MAX_FIELDS {
        r.err("$.fields", format!("has {} fields; a record type has at most {MAX_FIELDS}", fields_m.len()));
        return None;
    }
    let mut fields = Vec::new();
    // Every key some field type takes: the one list unknown keys are checked against.
    let all: Vec<&str> = keys::FIELD.iter().chain(keys::FIELD_TYPES.iter().flat_map(|(_, k)| k.iter())).copied().collect();
    let types: Vec<&str> = keys::FIELD_TYPES.iter().map(|(n, _)| *n).collect();
    for (fname, fv) in fields_m {
        let path = format!("$.fields.{fname}");
        if !is_name(fname) {
            r.err(&path, format!("`{fname}` {NAME_RULE}"));
            continue;
        }
        if keys::RESERVED_FIELDS.contains(&fname.as_str()) {
            r.err(&path, format!("`{fname}` is kept by the data service; choose another name"));
            continue;
        }
        let Some(f) = r.object(&path, Some(fv), &all, true) else { continue };
        // A key of another type (`maxLength` on a number) would be silently ignored.
        if let Some((t, own)) = f.get("type").and_then(Value::as_str).and_then(|t| keys::FIELD_TYPES.iter().find(|(name, _)| *name == t)) {
            for key in f.keys().filter(|k| !keys::FIELD.contains(&k.as_str()) && !own.contains(&k.as_str())) {
                let of = keys::FIELD_TYPES.iter().filter(|(_, ks)| ks.contains(&key.as_str())).map(|(n, _)| *n).collect::<Vec<_>>().join(" or ");
                r.lint(&format!("{path}.{key}"), format!("`{key}` is a key of {of} fields, not of {t} ones"));
            }
        }
        // A bound that is not a number would be ignored, so it is refused.
        let mut number = |key: &str, whole: bool| match f.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if !whole => n.as_f64(),
            Some(Value::Number(n)) if n.as_f64().is_some_and(|x| x >= 1.0 && x.fract() == 0.0) => n.as_f64(),
            Some(other) => {
                r.lint(&format!("{path}.{key}"), if whole { format!("must be a whole number of at least 1, not {other}") } else { format!("must be a number, not {}", type_name(other)) });
                None
            }
        };
        let kind = match f.get("type").and_then(Value::as_str) {
            Some("text") => Some(FieldKind::Text { max_length: number("maxLength", true).map_or(10_000, |n| n as usize) }),
            Some("number") => {
                let (min, max) = (number("min", false), number("max", false));
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        r.lint(&format!("{path}.min"), format!("{lo} is above max {hi}: no value would fit"));
                    }
                }
                Some(FieldKind::Number { min, max })
            }
            Some("boolean") => Some(FieldKind::Boolean),
            Some("date") => Some(FieldKind::Date),
            Some("enum") => match f.get("values") {
                Some(Value::Array(items)) if items.len() > MAX_ENUM_VALUES => {
                    r.err(&format!("{path}.values"), format!("lists {} values; an enum has at most {MAX_ENUM_VALUES}", items.len()));
                    None
                }
                Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
                    let values: Vec<String> = items.iter().filter_map(|v| v.as_str().map(String::from)).collect();
                    let unique: BTreeSet<&String> = values.iter().collect();
                    if unique.len() != values.len() {
                        r.err(&format!("{path}.values"), "lists a value twice");
                    }
                    Some(FieldKind::Enum { values })
                }
                _ => {
                    r.err(&format!("{path}.values"), "an enum needs a non-empty list of texts");
                    None
                }
            },
            Some("reference") => match f.get("object").and_then(Value::as_str) {
                Some(o) if is_type_ref(o) => Some(FieldKind::Reference { object: o.into() }),
                other => {
                    let shown = other.map(|o| format!("`{o}` is not a record type's name: ")).unwrap_or_default();
                    r.err(&format!("{path}.object"), format!("{shown}a reference needs the record type it refers to: one of this package's (`account`) or a dependency's (`com.acme.contacts/contact`)"));
                    None
                }
            },
            Some(t) => {
                r.err(&format!("{path}.type"), format!("`{t}` is not a field type; types: {}{}", types.join(", "), objectos_kernel::util::did_you_mean(t, types.iter().copied())));
                None
            }
            None => {
                r.err(&format!("{path}.type"), format!("is required ({})", types.join(", ")));
                None
            }
        };
        let Some(kind) = kind else { continue };
        let required = r.flag(&format!("{path}.required"), f.get("required"), Mode::Check);
        let label = r.string(&format!("{path}.label"), f.get("label"), false).unwrap_or_else(|| {
            let words = fname.replace(['_', '-'], " ");
            let mut c = words.chars();
            c.next().map(|first| first.to_uppercase().chain(c).collect()).unwrap_or_default()
        });
        let def = FieldDef { name: fname.clone(), label, kind, required, default: f.get("default").cloned(), workflow: false };
        if let Some(d) = &def.default {
            if let Err(m) = check_value(&def, d) {
                r.err(&format!("{path}.default"), format!("the default {m}"));
            }
        }
        fields.push(def);
    }
    Some(ObjectDef { name: name.unwrap_or_default(), label: label.unwrap_or_else(|| expected_name.to_string()), fields })
}

// ---- actions ---------------------------------------------------------------------------------

/// What a workflow state or an automation does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Set fields of the record.
    Set(Map<String, Value>),
    /// Emit an event (payload: the record or the triggering payload, plus `data`).
    Emit {
        /// The topic.
        topic: String,
        /// Extra payload fields.
        data: Map<String, Value>,
    },
    /// Send a notification (title and body are templates over the context).
    Notify {
        /// Title template.
        title: String,
        /// Body template.
        body: String,
        /// info, success, warning or error.
        level: String,
        /// Channels (default in-app).
        channels: Vec<String>,
    },
    /// Emit an event later, through the jobs service (retried if it fails).
    Enqueue {
        /// The topic to emit.
        topic: String,
        /// Delay in milliseconds.
        delay_ms: u64,
    },
}

fn duration_ms(s: &str) -> Option<u64> {
    let (num, unit) = s.trim().split_at(s.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(s.trim().len()));
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "ms" => 1,
        "s" | "" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn topic_ok(t: &str) -> bool {
    !t.is_empty() && t.len() <= 256 && t.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
}

pub(crate) fn actions(r: &mut Report, path: &str, v: Option<&Value>) -> Vec<Action> {
    let items = match v {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            r.err(path, format!("must be a list of actions, not {}", type_name(other)));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(m) = item.as_object().filter(|m| m.len() == 1) else {
            r.err(&p, format!("an action is a mapping with one key: {}", keys::ACTIONS.join(", ")));
            continue;
        };
        let Some((kind, body)) = m.iter().next() else { continue };
        let p = format!("{p}.{kind}");
        match kind.as_str() {
            "set" => match body.as_object() {
                Some(fields) if !fields.is_empty() => out.push(Action::Set(fields.clone())),
                _ => r.err(&p, "lists the fields to set, e.g. `set: { probability: 50 }`"),
            },
            "emit" => {
                let (topic, data) = match body {
                    Value::String(t) => (Some(t.clone()), Map::new()),
                    Value::Object(_) => {
                        let Some(o) = r.keys(&p, body, keys::EMIT) else { continue };
                        let data = match o.get("data") {
                            None | Some(Value::Null) => Map::new(),
                            Some(Value::Object(d)) => d.clone(),
                            Some(other) => {
                                r.lint(&format!("{p}.data"), format!("must be a mapping of payload fields, not {}", type_name(other)));
                                Map::new()
                            }
                        };
                        (r.string(&format!("{p}.topic"), o.get("topic"), true), data)
                    }
                    _ => (None, Map::new()),
                };
                for key in data.keys().filter(|k| RESERVED_EMIT_KEYS.contains(&k.as_str())) {
                    r.err(&format!("{p}.data.{key}"), format!("`{key}` is filled in by the engine (the record and the triggering payload); choose another name"));
                }
                match topic {
                    Some(t) if topic_ok(&t) && !t.starts_with("kernel.") && !t.starts_with("plugin.") => out.push(Action::Emit { topic: t, data }),
                    Some(t) => r.err(&p, format!("`{t}` is not a topic an action may emit (dot-separated names; not kernel.* or plugin.*)")),
                    None if !body.is_object() => r.err(&p, "needs a topic: `emit: crm.deal.won` or `emit: { topic: ..., data: {...} }`"),
                    None => {}
                }
            }
            "notify" => {
                let Some(o) = r.object(&p, Some(body), keys::NOTIFY, true) else { continue };
                let title = r.string(&format!("{p}.title"), o.get("title"), true);
                let text = r.string(&format!("{p}.body"), o.get("body"), false).unwrap_or_default();
                let level = r.string(&format!("{p}.level"), o.get("level"), false).unwrap_or_else(|| "info".into());
                if !keys::LEVELS.contains(&level.as_str()) {
                    r.err(&format!("{p}.level"), format!("`{level}` is not a level; levels: {}{}", keys::LEVELS.join(", "), objectos_kernel::util::did_you_mean(&level, keys::LEVELS.iter().copied())));
                }
                // Kept as written: a name no channel has fails the delivery, as it always did.
                let channels: Vec<String> = o.get("channels").and_then(Value::as_array).map(|a| a.iter().filter_map(|c| c.as_str().map(String::from)).collect()).unwrap_or_default();
                let named = match o.get("channels") {
                    None | Some(Value::Null) => true,
                    Some(Value::Array(a)) => a.iter().all(|c| c.as_str().is_some_and(objectos_notification::is_channel_name)),
                    Some(_) => false,
                };
                if !named {
                    r.lint(&format!("{p}.channels"), "must be a list of channel names (1-64 characters of a-z, 0-9, `.`, `_` or `-`)");
                }
                for (field, t) in [("title", title.as_deref().unwrap_or_default()), ("body", text.as_str())] {
                    if let Err(e) = objectos_kernel::model::text::render_placeholders(t, |_| Ok(String::new())) {
                        r.err(&format!("{p}.{field}"), e);
                    }
                }
                if let Some(title) = title {
                    out.push(Action::Notify { title, body: text, level, channels });
                }
            }
            "enqueue" => {
                let Some(o) = r.object(&p, Some(body), keys::ENQUEUE, true) else { continue };
                let topic = r.string(&format!("{p}.emit"), o.get("emit"), true);
                let delay = match o.get("delay") {
                    None | Some(Value::Null) => Some(0),
                    Some(Value::String(s)) => duration_ms(s),
                    Some(Value::Number(n)) => n.as_u64().and_then(|s| s.checked_mul(1000)),
                    Some(_) => None,
                };
                if delay.is_none() {
                    r.err(&format!("{p}.delay"), "must be a duration like 30s, 10m, 2h or 1d");
                }
                match topic {
                    Some(t) if topic_ok(&t) && !t.starts_with("kernel.") && !t.starts_with("plugin.") => out.push(Action::Enqueue { topic: t, delay_ms: delay.unwrap_or(0) }),
                    Some(t) => r.err(&format!("{p}.emit"), format!("`{t}` is not a topic an action may emit")),
                    None => {}
                }
            }
            other => r.err(&p, format!("`{other}` is not an action; actions: {}{}", keys::ACTIONS.join(", "), objectos_kernel::util::did_you_mean(other, keys::ACTIONS.iter().copied()))),
        }
    }
    out
}

// ---- workflows -------------------------------------------------------------------------------

/// A transition out of a state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// The event that fires it.
    pub event: String,
    /// The state it leads to.
    pub to: String,
    /// A condition over the record's fields, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    #[serde(skip)]
    pub(crate) guard_expr: Option<Expr>,
}

/// A state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateDef {
    /// Name.
    pub name: String,
    /// Run on entering.
    pub entry: Vec<Action>,
    /// Run on leaving.
    pub exit: Vec<Action>,
    /// Ways out.
    pub transitions: Vec<Transition>,
}

/// A state machine over one field of a record type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowDef {
    /// Name.
    pub name: String,
    /// The record type.
    pub object: String,
    /// The field holding the state.
    pub field: String,
    /// The state of new records.
    pub initial: String,
    /// States, in file order.
    pub states: Vec<StateDef>,
}

impl WorkflowDef {
    /// Parse and check `workflows/<name>.*` (the object is checked by [`check_package`]).
    pub fn parse(v: &Value, file: &str, expected_name: &str) -> Result<WorkflowDef, Vec<Problem>> {
        Self::parse_as(v, file, expected_name, Mode::Check)
    }

    /// Like [`Self::parse`], as strictly as `mode` says.
    pub fn parse_as(v: &Value, file: &str, expected_name: &str, mode: Mode) -> Result<WorkflowDef, Vec<Problem>> {
        let mut r = Report::with(file, mode);
        let def = workflow_def(&mut r, v, expected_name);
        r.finish(def)
    }

    /// A state by name.
    pub fn state(&self, name: &str) -> Option<&StateDef> {
        self.states.iter().find(|s| s.name == name)
    }
}

fn workflow_def(r: &mut Report, v: &Value, expected_name: &str) -> Option<WorkflowDef> {
    let m = r.object("$", Some(v), keys::WORKFLOW, true)?;
    r.label("$.label", m.get("label"));
    let name = r.name("$.name", m.get("name"));
    if let Some(n) = &name {
        if n != expected_name {
            r.err("$.name", format!("is `{n}` but the file declares `{expected_name}`"));
        }
    }
    let object = r.name("$.object", m.get("object"));
    let field = r.name("$.field", m.get("field"));
    let initial = r.name("$.initial", m.get("initial"));
    let states_v = match m.get("states") {
        Some(Value::Object(s)) if !s.is_empty() => s,
        Some(Value::Object(_)) | None | Some(Value::Null) => {
            r.err("$.states", "needs at least one state");
            return None;
        }
        Some(other) => {
            r.err("$.states", format!("must be a mapping of state names, not {}", type_name(other)));
            return None;
        }
    };
    if states_v.len() > MAX_STATES {
        r.err("$.states", format!("has {} states; a workflow has at most {MAX_STATES}", states_v.len()));
        return None;
    }
    let mut states = Vec::new();
    for (sname, sv) in states_v {
        let path = format!("$.states.{sname}");
        if !is_name(sname) {
            r.err(&path, format!("`{sname}` {NAME_RULE}"));
            continue;
        }
        let empty = Value::Object(Map::new());
        let sv = if sv.is_null() { &empty } else { sv };
        let Some(s) = r.object(&path, Some(sv), keys::STATE, true) else { continue };
        r.label(&format!("{path}.label"), s.get("label"));
        let is_final = r.flag(&format!("{path}.final"), s.get("final"), Mode::Load);
        if is_final && s.get("transitions").and_then(Value::as_array).is_some_and(|t| !t.is_empty()) {
            r.lint(&format!("{path}.final"), format!("{sname} is final but has transitions out"));
        }
        let entry = actions(r, &format!("{path}.entry"), s.get("entry"));
        let exit = actions(r, &format!("{path}.exit"), s.get("exit"));
        let mut transitions = Vec::new();
        let mut seen = BTreeSet::new();
        match s.get("transitions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.len() > MAX_TRANSITIONS => {
                r.err(&format!("{path}.transitions"), format!("has {} transitions; a state has at most {MAX_TRANSITIONS}", items.len()));
            }
            Some(Value::Array(items)) => {
                for (i, t) in items.iter().enumerate() {
                    let tp = format!("{path}.transitions[{i}]");
                    let Some(t) = r.object(&tp, Some(t), keys::TRANSITION, true) else { continue };
                    let event = r.name(&format!("{tp}.event"), t.get("event"));
                    let to = r.name(&format!("{tp}.to"), t.get("to"));
                    let guard_expr = r.expr(&format!("{tp}.guard"), t.get("guard"));
                    if let Some(e) = &event {
                        if !seen.insert(e.clone()) {
                            r.err(&format!("{tp}.event"), format!("`{e}` already leaves {sname}; one event leads to one state"));
                        }
                    }
                    if let (Some(event), Some(to)) = (event, to) {
                        transitions.push(Transition { event, to, guard: t.get("guard").and_then(Value::as_str).map(String::from), guard_expr });
                    }
                }
            }
            Some(other) => r.err(&format!("{path}.transitions"), format!("must be a list of {{event, to, guard}}, not {}", type_name(other))),
        }
        states.push(StateDef { name: sname.clone(), entry, exit, transitions });
    }
    let names: BTreeSet<&str> = states.iter().map(|s| s.name.as_str()).collect();
    if let Some(i) = &initial {
        if !names.contains(i.as_str()) {
            r.err("$.initial", format!("`{i}` is not one of the states ({}){}", names.iter().copied().collect::<Vec<_>>().join(", "), objectos_kernel::util::did_you_mean(i, names.iter().copied())));
        }
    }
    for s in &states {
        for (i, t) in s.transitions.iter().enumerate() {
            if !names.contains(t.to.as_str()) {
                r.err(&format!("$.states.{}.transitions[{i}].to", s.name), format!("`{}` is not a state of this workflow{}", t.to, objectos_kernel::util::did_you_mean(&t.to, names.iter().copied())));
            }
        }
    }
    if let Some(i) = &initial {
        if names.contains(i.as_str()) {
            // One walk over the states and their transitions: linear in the workflow's size.
            let by_name: std::collections::HashMap<&str, &StateDef> = states.iter().map(|s| (s.name.as_str(), s)).collect();
            let mut reached: BTreeSet<&str> = BTreeSet::from([i.as_str()]);
            let mut queue = VecDeque::from([i.as_str()]);
            while let Some(cur) = queue.pop_front() {
                for t in by_name.get(cur).into_iter().flat_map(|s| &s.transitions) {
                    if names.contains(t.to.as_str()) && reached.insert(t.to.as_str()) {
                        queue.push_back(t.to.as_str());
                    }
                }
            }
            for s in &states {
                if !reached.contains(s.name.as_str()) {
                    r.err(&format!("$.states.{}", s.name), format!("cannot be reached from the initial state `{i}`"));
                }
            }
        }
    }
    Some(WorkflowDef { name: name?, object: object?, field: field?, initial: initial?, states })
}

// ---- automations -----------------------------------------------------------------------------

/// What starts an automation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// An event whose topic matches the pattern.
    Event(String),
    /// A record of `object` created or updated.
    Record {
        /// The record type.
        object: String,
        /// `created`, `updated` or both.
        on: Vec<String>,
    },
    /// A cron schedule (through the jobs service).
    Schedule(String),
}

/// An automation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutomationDef {
    /// Name.
    pub name: String,
    /// What starts it.
    pub when: Trigger,
    /// The condition, as written.
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip)]
    pub(crate) condition_expr: Option<Expr>,
    /// What it does.
    #[serde(rename = "do")]
    pub actions: Vec<Action>,
}

impl AutomationDef {
    /// Parse and check `automations/<name>.*`.
    pub fn parse(v: &Value, file: &str, expected_name: &str) -> Result<AutomationDef, Vec<Problem>> {
        Self::parse_as(v, file, expected_name, Mode::Check)
    }

    /// Like [`Self::parse`], as strictly as `mode` says.
    pub fn parse_as(v: &Value, file: &str, expected_name: &str, mode: Mode) -> Result<AutomationDef, Vec<Problem>> {
        let mut r = Report::with(file, mode);
        let def = automation_def(&mut r, v, expected_name);
        r.finish(def)
    }

    /// Does the condition hold for `ctx` (no condition: yes)?
    pub fn holds(&self, ctx: &Value) -> Result<bool, crate::expr::ExprError> {
        self.condition_expr.as_ref().map_or(Ok(true), |e| e.test(ctx))
    }
}

fn automation_def(r: &mut Report, v: &Value, expected_name: &str) -> Option<AutomationDef> {
    let m = r.object("$", Some(v), keys::AUTOMATION, true)?;
    r.label("$.label", m.get("label"));
    let name = r.name("$.name", m.get("name"));
    if let Some(n) = &name {
        if n != expected_name {
            r.err("$.name", format!("is `{n}` but the file declares `{expected_name}`"));
        }
    }
    let when = r.object("$.when", m.get("when"), keys::TRIGGERS, true);
    let trigger = when.and_then(|w| {
        if w.len() != 1 {
            r.err("$.when", "needs exactly one of event, record or schedule");
            return None;
        }
        if let Some(t) = w.get("event") {
            let t = r.string("$.when.event", Some(t), true)?;
            if t.parse::<objectos_kernel::model::permission::Pattern>().is_err() || t.starts_with("kernel") {
                r.err("$.when.event", format!("`{t}` is not a topic pattern (dot-separated names, `*` for one segment, a trailing `**`)"));
                return None;
            }
            return Some(Trigger::Event(t));
        }
        if let Some(rec) = w.get("record") {
            let o = r.object("$.when.record", Some(rec), keys::RECORD_TRIGGER, true)?;
            let object = r.name("$.when.record.object", o.get("object"))?;
            let on: Vec<String> = match o.get("on") {
                None | Some(Value::Null) => vec!["created".into(), "updated".into()],
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => {
                    if !a.iter().all(Value::is_string) {
                        r.lint("$.when.record.on", "lists something that is not created or updated");
                    }
                    a.iter().filter_map(|x| x.as_str().map(String::from)).collect()
                }
                Some(_) => Vec::new(),
            };
            if on.is_empty() || on.iter().any(|x| !keys::RECORD_CHANGES.contains(&x.as_str())) {
                r.err("$.when.record.on", "must be created, updated or both");
                return None;
            }
            return Some(Trigger::Record { object, on });
        }
        let s = r.string("$.when.schedule", w.get("schedule"), true)?;
        Some(Trigger::Schedule(s))
    });
    let condition_expr = r.expr("$.if", m.get("if"));
    let acts = actions(r, "$.do", m.get("do"));
    match m.get("do") {
        None => r.err("$.do", "needs at least one action"),
        Some(Value::Null) => r.lint("$.do", "needs at least one action"),
        Some(Value::Array(a)) if a.is_empty() => r.lint("$.do", "needs at least one action"),
        Some(_) => {}
    }
    Some(AutomationDef { name: name?, when: trigger?, condition: m.get("if").and_then(Value::as_str).map(String::from), condition_expr, actions: acts })
}

// ---- a whole package -------------------------------------------------------------------------

/// Every declarative definition of one package.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Definitions {
    /// Record types.
    pub objects: Vec<ObjectDef>,
    /// State machines.
    pub workflows: Vec<WorkflowDef>,
    /// Automations.
    pub automations: Vec<AutomationDef>,
}

/// Read and check a package's declared files. `read(path)` returns the text of the file at
/// `path` (relative to the package), if there is one; each declaration's candidates are tried
/// in the kernel's order ([`objectos_kernel::model::manifest::Declared::candidates`]).
pub fn check_package(manifest: &objectos_kernel::model::manifest::Manifest, read: impl Fn(&str) -> Option<String>) -> Result<Definitions, Vec<Problem>> {
    check_package_in(manifest, read, &|_| None, Mode::Check)
}

/// Like [`check_package`], where the record types of other packages are known: `declared(id)`
/// lists those package `id` declares (`None`: not known here), so a reference to a
/// dependency's type that it does not declare is refused too.
pub fn check_package_in(manifest: &objectos_kernel::model::manifest::Manifest, read: impl Fn(&str) -> Option<String>, declared: &dyn Fn(&str) -> Option<Vec<String>>, mode: Mode) -> Result<Definitions, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut defs = Definitions::default();
    let mut load_all = |kind: DeclaredKind| -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for d in manifest.provides.declared().filter(|d| d.kind == kind) {
            let Some((shown, text)) = d.candidates().find_map(|c| read(&c).map(|t| (c, t))) else {
                problems.push(Problem { path: d.json_path(), message: d.missing() });
                continue;
            };
            match load(&text, &shown) {
                Ok(v) => out.push((shown, d.name.to_string(), v)),
                Err(e) => problems.push(Problem { path: shown, message: e }),
            }
        }
        out
    };
    let objects = load_all(DeclaredKind::Object);
    let workflows = load_all(DeclaredKind::Workflow);
    let automations = load_all(DeclaredKind::Automation);
    let mut object_files = Vec::new();
    for (file, name, v) in objects {
        match ObjectDef::parse_as(&v, &file, &name, mode) {
            Ok(d) => {
                defs.objects.push(d);
                object_files.push(file);
            }
            Err(e) => problems.extend(e),
        }
    }
    for (o, file) in defs.objects.iter().zip(&object_files) {
        let mut r = Report::new(file);
        check_reference_targets(&mut r, o, manifest, &defs.objects, declared);
        problems.extend(r.problems.into_vec());
    }
    for (file, name, v) in workflows {
        match WorkflowDef::parse_as(&v, &file, &name, mode) {
            Ok(w) => {
                let mut r = Report::new(&file);
                check_workflow_object(&mut r, &w, &defs.objects);
                problems.extend(r.problems.into_vec());
                defs.workflows.push(w);
            }
            Err(e) => problems.extend(e),
        }
    }
    for (file, name, v) in automations {
        match AutomationDef::parse_as(&v, &file, &name, mode) {
            Ok(a) => {
                let mut r = Report::new(&file);
                if let Trigger::Record { object, .. } = &a.when {
                    match defs.objects.iter().find(|o| &o.name == object) {
                        None => r.err("$.when.record.object", format!("`{object}` is not a record type of this package{}", objectos_kernel::util::did_you_mean(object, defs.objects.iter().map(|o| o.name.as_str())))),
                        // The condition reads the record that triggered it.
                        Some(o) => {
                            if let Some(e) = &a.condition_expr {
                                check_literals(&mut r, "$.if", e, o, Some("record"));
                            }
                            check_templates(&mut r, "$.do", &a.actions, o);
                        }
                    }
                }
                if let Trigger::Schedule(s) = &a.when {
                    if let Err(e) = croner::parser::CronParser::builder().seconds(croner::parser::Seconds::Optional).build().parse(s) {
                        r.err("$.when.schedule", format!("`{s}` is not a cron expression: {e}"));
                    }
                }
                problems.extend(r.problems.into_vec());
                defs.automations.push(a);
            }
            Err(e) => problems.extend(e),
        }
    }
    if problems.is_empty() {
        Ok(defs)
    } else {
        Err(problems)
    }
}

/// Each reference field of `o` names a type there is: one of the package's own, or one of a
/// required dependency's (which `declared` lists, where it is known).
fn check_reference_targets(r: &mut Report, o: &ObjectDef, manifest: &objectos_kernel::model::manifest::Manifest, own: &[ObjectDef], declared: &dyn Fn(&str) -> Option<Vec<String>>) {
    let own_names = || own.iter().map(|d| d.name.as_str());
    for f in &o.fields {
        let FieldKind::Reference { object } = &f.kind else { continue };
        let at = format!("$.fields.{}.object", f.name);
        let full = crate::names::full_type(&manifest.id, object);
        let (owner, name) = (crate::names::owner_of(&full), full.rsplit('/').next().unwrap_or_default());
        if owner == manifest.id {
            if !own_names().any(|n| n == name) {
                // The likely one: an own type, or a dependency's of that name.
                let theirs = manifest.dependencies.keys().find(|dep| declared(dep).is_some_and(|ts| ts.iter().any(|t| t == name)));
                let hint = match theirs {
                    Some(dep) if !object.contains('/') => format!("; did you mean `{dep}/{name}`?"),
                    _ => objectos_kernel::util::did_you_mean(name, own_names()),
                };
                r.err(&at, format!("`{name}` is not a record type of this package ({}){hint} (a dependency's type is named `<package id>/<type>`)", own_names().collect::<Vec<_>>().join(", ")));
            }
            continue;
        }
        if !manifest.dependencies.contains_key(owner) {
            let why = if manifest.optional_dependencies.contains_key(owner) { format!("`{owner}` is an optional dependency; a reference needs its type there, so move it to `dependencies`") } else { format!("`{owner}` is not a dependency of this package: add it to `dependencies` in plugin.json{}", objectos_kernel::util::did_you_mean(owner, manifest.dependencies.keys().map(|k| k.as_str()))) };
            r.err(&at, why);
            continue;
        }
        if let Some(theirs) = declared(owner) {
            if !theirs.iter().any(|t| t == name) {
                r.err(&at, format!("{owner} declares no record type `{name}` ({}){}", if theirs.is_empty() { "it declares none".to_string() } else { theirs.join(", ") }, objectos_kernel::util::did_you_mean(name, theirs.iter().map(String::as_str))));
            }
        }
    }
}

/// A literal an expression compares an enum field with that is not one of its values: the
/// comparison could never hold (`priority == 'urgent'` where priority is low, normal, high).
/// `record`, in automations, where a record's fields are `record.<field>`; `None` in guards,
/// where they are bare.
fn check_literals(r: &mut Report, at: &str, e: &Expr, o: &ObjectDef, prefix: Option<&str>) {
    for (path, lit) in e.compared_literals() {
        let field = match prefix {
            Some(p) if path.len() == 2 && path[0] == p => &path[1],
            None if path.len() == 1 => &path[0],
            _ => continue,
        };
        let (Some(FieldKind::Enum { values }), Some(text)) = (o.field(field).map(|f| &f.kind), lit.as_str()) else { continue };
        if !values.iter().any(|v| v == text) {
            r.err(at, format!("compares `{}` with '{text}', which is not one of its values ({}){}", path.join("."), values.join(", "), objectos_kernel::util::did_you_mean(text, values.iter().map(String::as_str))));
        }
    }
}

/// A `{{record.<field>}}` in a notification's text naming no field of `o`: it would fail
/// each time the action runs.
fn check_templates(r: &mut Report, at: &str, actions: &[Action], o: &ObjectDef) {
    for (i, a) in actions.iter().enumerate() {
        let Action::Notify { title, body, .. } = a else { continue };
        for (key, text) in [("title", title), ("body", body)] {
            let mut rest = text.as_str();
            while let Some(start) = rest.find("{{") {
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else { break };
                let var = after[..end].trim();
                if let Some(field) = var.strip_prefix("record.").map(|f| f.split('.').next().unwrap_or(f)) {
                    if o.field(field).is_none() && !["id", "created_at", "updated_at"].contains(&field) {
                        r.err(&format!("{at}[{i}].notify.{key}"), format!("`{{{{{var}}}}}` names no field of {}{}", o.name, objectos_kernel::util::did_you_mean(field, o.fields.iter().map(|f| f.name.as_str()))));
                    }
                }
                rest = &after[end + 2..];
            }
        }
    }
}

fn check_workflow_object(r: &mut Report, w: &WorkflowDef, objects: &[ObjectDef]) {
    let Some(o) = objects.iter().find(|o| o.name == w.object) else {
        r.err("$.object", format!("`{}` is not a record type of this package ({}){}", w.object, objects.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", "), objectos_kernel::util::did_you_mean(&w.object, objects.iter().map(|o| o.name.as_str()))));
        return;
    };
    match o.field(&w.field).map(|f| &f.kind) {
        None => r.err("$.field", format!("{} has no field `{}`{}", o.name, w.field, objectos_kernel::util::did_you_mean(&w.field, o.fields.iter().map(|f| f.name.as_str())))),
        Some(FieldKind::Text { .. }) => {}
        Some(FieldKind::Enum { values }) => {
            for s in &w.states {
                if !values.contains(&s.name) {
                    r.err(&format!("$.states.{}", s.name), format!("is not a value of {}.{} ({})", o.name, w.field, values.join(", ")));
                }
            }
        }
        Some(_) => r.err("$.field", format!("{}.{} must be a text or enum field to hold a state", o.name, w.field)),
    }
    for s in &w.states {
        for (i, t) in s.transitions.iter().enumerate() {
            for path in t.guard_expr.iter().flat_map(|e| e.paths()) {
                if o.field(&path[0]).is_none() {
                    r.err(&format!("$.states.{}.transitions[{i}].guard", s.name), format!("reads `{}`, which is not a field of {}{}", path.join("."), o.name, objectos_kernel::util::did_you_mean(&path[0], o.fields.iter().map(|f| f.name.as_str()))));
                }
            }
            if let Some(e) = &t.guard_expr {
                check_literals(r, &format!("$.states.{}.transitions[{i}].guard", s.name), e, o, None);
            }
        }
        for (when, acts) in [("entry", &s.entry), ("exit", &s.exit)] {
            check_templates(r, &format!("$.states.{}.{when}", s.name), acts, o);
            for (i, a) in acts.iter().enumerate() {
                if let Action::Set(fields) = a {
                    let input = Value::Object(fields.clone());
                    if let Err(ps) = o.validate(&input, true) {
                        for p in ps {
                            r.err(&format!("$.states.{}.{when}[{i}].set", s.name), format!("{}: {}", p.path.rsplit(' ').next().unwrap_or_default(), p.message));
                        }
                    }
                }
            }
        }
    }
}
