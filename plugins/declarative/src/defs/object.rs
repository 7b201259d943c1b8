//! A record type file: its fields, their kinds and bounds, and a value checked against them.

use super::*;

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

pub(crate) fn check_value(f: &FieldDef, v: &Value) -> Result<(), String> {
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

pub(crate) fn is_date(s: &str) -> bool {
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

pub(crate) fn object_def(r: &mut Report, v: &Value, expected_name: &str) -> Option<ObjectDef> {
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
