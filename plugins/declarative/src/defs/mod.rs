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

mod object;
mod action;
mod workflow;
mod automation;
mod package;

pub use object::*;
pub use action::*;
pub use workflow::*;
pub use automation::*;
pub use package::*;
