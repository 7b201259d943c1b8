//! Problems with where they are: the one collector every checked file uses.
//!
//! The kernel's manifest check and the declarative plugins' checks of object, workflow and
//! automation files all report a list of [`Problem`]s, each a JSON path (`$` for the whole
//! document, then `.key`, `["odd key"]` and `[index]`) and a plain sentence, and keep going
//! after the first, so an author sees every problem at once.

use serde::Serialize;
use serde_json::{Map, Value};

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Problem {
    /// JSON path, e.g. `dependencies["com.acme.crm"]`; `$` for the whole document.
    pub path: String,
    /// A plain sentence.
    pub message: String,
}

/// The words a file's authors know its value kinds by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    /// JSON's: a string, an object.
    Json,
    /// The declarative files' (YAML or JSON, written by people who are not programmers): a
    /// text, a mapping.
    Plain,
}

impl Vocabulary {
    /// What kind of value `v` is, as a noun phrase ("a number").
    pub fn kind(self, v: &Value) -> &'static str {
        match (v, self) {
            (Value::Null, _) => "null",
            (Value::Bool(_), _) => "a boolean",
            (Value::Number(_), _) => "a number",
            (Value::String(_), Vocabulary::Json) => "a string",
            (Value::String(_), Vocabulary::Plain) => "a text",
            (Value::Array(_), _) => "a list",
            (Value::Object(_), Vocabulary::Json) => "an object",
            (Value::Object(_), Vocabulary::Plain) => "a mapping",
        }
    }
}

/// The path of `key` under `parent`: `parent.key`, or `parent["odd key"]` when the key is not
/// an identifier. `parent` may be empty or `$` (the document).
pub fn key_path(parent: &str, key: &str) -> String {
    let ident = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !key.starts_with(|c: char| c.is_ascii_digit());
    let quoted = serde_json::to_string(key).unwrap_or_default();
    match (parent, ident) {
        ("", true) => key.to_string(),
        ("", false) => format!("[{quoted}]"),
        (p, true) => format!("{p}.{key}"),
        (p, false) => format!("{p}[{quoted}]"),
    }
}

/// The path of item `i` of the list at `parent`.
pub fn index_path(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// `s` quoted for a message, cut to about 80 characters.
pub fn shown(s: &str) -> String {
    let mut out = serde_json::to_string(s).unwrap_or_default();
    if out.len() > 80 {
        let mut cut = 77;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// Collects the problems of one document, each path optionally prefixed with the file's name
/// (`objects/ticket.yml $.fields.n`).
#[derive(Debug)]
pub struct Problems {
    file: Option<String>,
    vocabulary: Vocabulary,
    list: Vec<Problem>,
}

impl Problems {
    /// Problems whose paths stand alone (the file is said once, elsewhere).
    pub fn new(vocabulary: Vocabulary) -> Problems {
        Problems { file: None, vocabulary, list: Vec::new() }
    }

    /// Problems whose paths start with `file`.
    pub fn in_file(file: impl Into<String>, vocabulary: Vocabulary) -> Problems {
        Problems { file: Some(file.into()), vocabulary, list: Vec::new() }
    }

    /// Record that the value at `path` is wrong (an empty path means the whole document).
    pub fn err(&mut self, path: &str, message: impl Into<String>) {
        let path = if path.is_empty() { "$" } else { path };
        let path = match &self.file {
            Some(f) => format!("{f} {path}"),
            None => path.to_string(),
        };
        self.list.push(Problem { path, message: message.into() });
    }

    /// What kind of value `v` is, in this document's vocabulary.
    pub fn kind(&self, v: &Value) -> &'static str {
        self.vocabulary.kind(v)
    }

    /// `v` as an object whose keys are all in `known` (each unknown one is a problem), or a
    /// problem when it is not an object.
    pub fn object<'v>(&mut self, path: &str, v: &'v Value, known: &[&str]) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = v else {
            let what = if self.vocabulary == Vocabulary::Json { "an object" } else { "a mapping" };
            self.err(path, format!("must be {what}, not {}", self.kind(v)));
            return None;
        };
        for k in map.keys() {
            if !known.contains(&k.as_str()) {
                let message = match self.vocabulary {
                    Vocabulary::Json => format!("unknown field; known fields here: {}", known.join(", ")),
                    Vocabulary::Plain => format!("is not a known key here; known: {}", known.join(", ")),
                };
                self.err(&key_path(path, k), message);
            }
        }
        Some(map)
    }

    /// Add problems found elsewhere (already with their paths).
    pub fn extend(&mut self, problems: impl IntoIterator<Item = Problem>) {
        self.list.extend(problems);
    }

    /// No problem so far.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many problems so far.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The problems, in the order found.
    pub fn into_vec(self) -> Vec<Problem> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        assert_eq!(key_path("", "id"), "id");
        assert_eq!(key_path("", "com.acme.crm"), "[\"com.acme.crm\"]");
        assert_eq!(key_path("dependencies", "com.acme.crm"), "dependencies[\"com.acme.crm\"]");
        assert_eq!(key_path("$.fields", "due_date"), "$.fields.due_date");
        assert_eq!(key_path("$", "9lives"), "$[\"9lives\"]");
        assert_eq!(index_path("permissions", 2), "permissions[2]");
    }

    #[test]
    fn collects_every_problem_with_its_file_and_path() {
        let mut p = Problems::in_file("objects/ticket.yml", Vocabulary::Plain);
        let v = serde_json::json!({ "name": "ticket", "colour": "red" });
        assert!(p.object("$", &v, &["name", "fields"]).is_some());
        assert!(p.object("$.fields", &serde_json::json!([1]), &[]).is_none());
        let list = p.into_vec();
        assert_eq!(list[0].path, "objects/ticket.yml $.colour");
        assert_eq!(list[0].message, "is not a known key here; known: name, fields");
        assert_eq!(list[1].message, "must be a mapping, not a list");
        let mut j = Problems::new(Vocabulary::Json);
        j.err("", "the manifest is larger than 1 MiB");
        assert_eq!(j.into_vec()[0].path, "$");
    }
}
