//! `plugin.json`: parsing and validation.
//!
//! Validation walks the JSON itself rather than deserializing straight into the struct,
//! so that it can report every problem at once, each with its JSON path, whatever the bytes.

use std::collections::BTreeMap;
use std::fmt;

pub use super::id::{validate_id, MAX_ID_LEN};
pub use super::problems::Problem;
use super::problems::{key_path, shown as show, Problems, Vocabulary};

use semver::Version;

pub use super::range::VersionRange;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::permission::{validate_name, Permission};

/// The largest accepted `plugin.json`.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// A validated plugin manifest.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[schemars(title = "plugin.json", description = "An ObjectOS plugin manifest (docs/packages.md).", extend("additionalProperties" = false))]
pub struct Manifest {
    /// Unique id, lowercase `[a-z0-9][a-z0-9._-]*`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Semantic version.
    pub version: Version,
    /// One or two sentences.
    #[schemars(default)]
    pub description: String,
    /// Author, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// SPDX licence, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Required dependencies: id -> range (npm's grammar, see [`VersionRange`]).
    #[cfg_attr(feature = "specta", specta(type = BTreeMap<String, String>))]
    #[schemars(default)]
    pub dependencies: BTreeMap<String, VersionRange>,
    /// Optional dependencies: ordered before this plugin when installed.
    #[cfg_attr(feature = "specta", specta(type = BTreeMap<String, String>))]
    #[schemars(default)]
    pub optional_dependencies: BTreeMap<String, VersionRange>,
    /// What the plugin provides.
    #[schemars(default)]
    pub provides: Provides,
    /// Required permissions.
    #[cfg_attr(feature = "specta", specta(type = Vec<String>))]
    #[schemars(default)]
    pub permissions: Vec<Permission>,
    /// Optional permissions (grantable and revocable at any time).
    #[cfg_attr(feature = "specta", specta(type = Vec<String>))]
    #[schemars(default)]
    pub optional_permissions: Vec<Permission>,
    /// Engine requirements.
    #[schemars(default)]
    pub engines: Engines,
    /// The package's code, relative to its folder: a WebAssembly component (`*.wasm`) or a
    /// JavaScript ES module (`*.js`, `*.mjs`) the host turns into one. `None`: no code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main: Option<String>,
    /// Bounds the package's code asks to run under, up to the host's ceilings (a runtime
    /// fills in its defaults for what is not given). Only with `main`.
    #[serde(skip_serializing_if = "SandboxLimits::is_empty")]
    #[schemars(default)]
    pub sandbox: SandboxLimits,
    /// Settings an admin fills in (an API token, a repository), by key: the plugin reads
    /// them with its configuration. A secret one is kept apart, never shown again.
    #[serde(skip_serializing_if = "Settings::is_empty")]
    #[cfg_attr(feature = "specta", specta(type = std::collections::HashMap<String, Setting>))]
    #[schemars(default)]
    pub settings: Settings,
}

/// The settings a manifest declares, in the order it declares them (the console's form
/// follows it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings(Vec<(String, Setting)>);

impl Settings {
    /// The setting `key`.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, s)| s)
    }

    /// Every setting with its key, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Setting)> {
        self.0.iter().map(|(k, s)| (k, s))
    }

    /// Whether any setting is secret.
    pub fn any_secret(&self) -> bool {
        self.0.iter().any(|(_, s)| s.secret)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl schemars::JsonSchema for Settings {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Settings".into()
    }

    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let setting = g.subschema_for::<Setting>();
        schemars::json_schema!({
            "type": "object",
            "description": "Settings by key (letters, digits and `_`, starting with a letter; at most 32).",
            "propertyNames": { "pattern": "^[A-Za-z][A-Za-z0-9_]{0,63}$" },
            "maxProperties": MAX_SETTINGS,
            "additionalProperties": setting,
        })
    }
}

impl Serialize for Settings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The most settings a manifest declares.
pub const MAX_SETTINGS: usize = 32;

/// One setting a plugin declares (`"settings": {"token": {"type": "string", "secret": true}}`).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[schemars(extend("additionalProperties" = false))]
pub struct Setting {
    /// What values it takes.
    #[serde(rename = "type")]
    pub kind: SettingKind,
    /// Its label in the console (the key when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The value when none is set (not for a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// Kept outside the configuration, the audit trail and the logs, never shown again once
    /// set (a token, a password). Only for strings.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schemars(default)]
    pub secret: bool,
    /// The plugin needs a value; the console says when it has none.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schemars(default)]
    pub required: bool,
}

/// The type of a [`Setting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum SettingKind {
    String,
    Number,
    Integer,
    Boolean,
}

impl SettingKind {
    fn parse(s: &str) -> Option<SettingKind> {
        Some(match s {
            "string" => SettingKind::String,
            "number" => SettingKind::Number,
            "integer" => SettingKind::Integer,
            "boolean" => SettingKind::Boolean,
            _ => return None,
        })
    }

    /// Why `v` is not a value of this type, if it is not.
    pub fn check(self, v: &serde_json::Value) -> Result<(), String> {
        let ok = match self {
            SettingKind::String => v.as_str().is_some_and(|s| s.len() <= 4096),
            SettingKind::Number => v.is_number(),
            SettingKind::Integer => v.is_i64() || v.is_u64(),
            SettingKind::Boolean => v.is_boolean(),
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            SettingKind::String if v.is_string() => "must be at most 4096 bytes of text".into(),
            SettingKind::String => format!("must be text, not {}", type_name(v)),
            SettingKind::Number => format!("must be a number, not {}", type_name(v)),
            SettingKind::Integer => format!("must be a whole number, not {v}"),
            SettingKind::Boolean => format!("must be true or false, not {v}"),
        })
    }
}

/// The bounds a package's code asks for (`"sandbox"` in `plugin.json`). Every field is
/// optional; the runtime uses its default where one is missing and refuses a value over
/// its ceiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[schemars(extend("additionalProperties" = false))]
pub struct SandboxLimits {
    /// Linear memory, in MiB.
    #[serde(rename = "memoryMiB", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "specta", specta(type = Option<f64>))]
    pub memory_mib: Option<u64>,
    /// Time a lifecycle hook may run, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "specta", specta(type = Option<f64>))]
    pub hook_ms: Option<u64>,
    /// Time an event handler or a service call may run, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "specta", specta(type = Option<f64>))]
    pub call_ms: Option<u64>,
    /// Elements across the component's tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "specta", specta(type = Option<f64>))]
    pub table_elements: Option<u64>,
    /// Core instances the component may create.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "specta", specta(type = Option<f64>))]
    pub instances: Option<u64>,
}

impl SandboxLimits {
    /// The `plugin.json` keys, each with the largest value the manifest format accepts (a
    /// runtime's ceilings are lower).
    pub const KEYS: [(&'static str, u64); 5] = [("memoryMiB", 4096), ("hookMs", 600_000), ("callMs", 600_000), ("tableElements", 10_000_000), ("instances", 10_000)];

    /// Nothing asked for.
    pub fn is_empty(&self) -> bool {
        *self == SandboxLimits::default()
    }

    fn set(&mut self, key: &str, value: u64) {
        match key {
            "memoryMiB" => self.memory_mib = Some(value),
            "hookMs" => self.hook_ms = Some(value),
            "callMs" => self.call_ms = Some(value),
            "tableElements" => self.table_elements = Some(value),
            _ => self.instances = Some(value),
        }
    }
}

/// The file extensions a package's `main` may have: a component, or JavaScript.
pub const CODE_EXTENSIONS: [&str; 3] = ["wasm", "js", "mjs"];

/// What a plugin declares it provides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[schemars(default, extend("additionalProperties" = false))]
pub struct Provides {
    /// Service names.
    pub services: Vec<String>,
    /// Event topics.
    pub events: Vec<String>,
    /// Object (record type) names; packages carry `objects/<name>.{json,yml,yaml}`.
    pub objects: Vec<String>,
    /// Workflow names; packages carry `workflows/<name>.{json,yml,yaml}`.
    pub workflows: Vec<String>,
    /// Automation names; packages carry `automations/<name>.{json,yml,yaml}`.
    pub automations: Vec<String>,
    /// Locales (BCP 47 tags such as `en` or `zh-CN`) the plugin is translated into; it carries
    /// `translations/<locale>.json`.
    pub translations: Vec<String>,
}

/// The extensions a declared definition file (object, workflow, automation) may have, in the
/// order they are looked for: the first that exists is the one checked and the one loaded.
pub const DEFINITION_EXTENSIONS: [&str; 3] = ["yml", "yaml", "json"];

/// A kind of file a manifest declares in `provides`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclaredKind {
    /// `objects/<name>.{yml,yaml,json}`.
    Object,
    /// `workflows/<name>.{yml,yaml,json}`.
    Workflow,
    /// `automations/<name>.{yml,yaml,json}`.
    Automation,
    /// `translations/<locale>.json`.
    Translation,
}

impl DeclaredKind {
    /// The folder the files are in, which is also the `provides` field that lists them.
    pub fn folder(self) -> &'static str {
        match self {
            DeclaredKind::Object => "objects",
            DeclaredKind::Workflow => "workflows",
            DeclaredKind::Automation => "automations",
            DeclaredKind::Translation => "translations",
        }
    }

    fn extensions(self) -> &'static [&'static str] {
        match self {
            DeclaredKind::Translation => &["json"],
            _ => &DEFINITION_EXTENSIONS,
        }
    }
}

/// One file a manifest declares: the one rule for where a package keeps it, used by the
/// install check, the loaders and [`crate::Kernel::declared_file`].
#[derive(Debug, Clone, Copy)]
pub struct Declared<'m> {
    /// What it declares.
    pub kind: DeclaredKind,
    /// Its position in the `provides` list.
    pub index: usize,
    /// The declared name (or locale).
    pub name: &'m str,
}

impl Declared<'_> {
    /// The paths, relative to the package folder, where the file may be, in the order tried.
    pub fn candidates(&self) -> impl Iterator<Item = String> + '_ {
        self.kind.extensions().iter().map(move |ext| format!("{}/{}.{ext}", self.kind.folder(), self.name))
    }

    /// Its entry in the manifest, e.g. `provides.objects[0]`.
    pub fn json_path(&self) -> String {
        format!("provides.{}[{}]", self.kind.folder(), self.index)
    }

    /// The problem when no candidate exists.
    pub fn missing(&self) -> String {
        let folder = self.kind.folder();
        match self.kind.extensions() {
            [only] => format!("the package has no {folder}/{}.{only}", self.name),
            [first, rest @ ..] => format!("the package has no {folder}/{}.{first}, {}", self.name, rest.iter().map(|e| format!(".{e}")).collect::<Vec<_>>().join(" or ")),
            [] => format!("the package has no {folder}/{}", self.name),
        }
    }
}

impl Provides {
    /// Every file these declarations need, definitions first, in manifest order.
    pub fn declared(&self) -> impl Iterator<Item = Declared<'_>> {
        [
            (DeclaredKind::Object, &self.objects),
            (DeclaredKind::Workflow, &self.workflows),
            (DeclaredKind::Automation, &self.automations),
            (DeclaredKind::Translation, &self.translations),
        ]
        .into_iter()
        .flat_map(|(kind, names)| names.iter().enumerate().map(move |(index, name)| Declared { kind, index, name }))
    }

    /// Whether `path` (relative to the package folder) is one a declaration may name.
    pub fn declares(&self, path: &str) -> bool {
        self.declared().any(|d| d.candidates().any(|c| c == path))
    }
}

/// Engine requirements.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[schemars(extend("additionalProperties" = false))]
pub struct Engines {
    /// Range of kernel versions the plugin works with.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "specta", specta(type = Option<String>))]
    pub objectos: Option<VersionRange>,
}

/// Check a locale tag: a 2-3 letter language, then `-`-separated subtags of 2-8 letters or
/// digits (`en`, `zh-CN`, `zh-Hant-TW`).
pub fn validate_locale(tag: &str) -> Result<(), String> {
    let mut parts = tag.split('-');
    let lang = parts.next().unwrap_or_default();
    let lang_ok = (2..=3).contains(&lang.len()) && lang.chars().all(|c| c.is_ascii_alphabetic());
    let rest_ok = parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if lang_ok && rest_ok && tag.len() <= 35 {
        Ok(())
    } else {
        Err(format!("`{tag}` is not a locale tag like `en`, `zh-CN` or `zh-Hant-TW`"))
    }
}

impl Manifest {
    /// Parse and validate manifest bytes. `source` names the file in messages.
    pub fn parse(bytes: &[u8], source: &str) -> Result<Manifest, ManifestErrors> {
        let fail = |path: &str, msg: String| ManifestErrors {
            file: source.to_string(),
            problems: vec![Problem { path: path.to_string(), message: msg }],
        };
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(fail("$", format!("the manifest is {} bytes; at most {MAX_MANIFEST_BYTES} are accepted", bytes.len())));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            fail("$", format!("not valid JSON: {e}"))
        })?;
        Self::from_value(&value, source)
    }

    /// Validate an already-parsed JSON value.
    pub fn from_value(value: &Value, source: &str) -> Result<Manifest, ManifestErrors> {
        let mut v = Validator { problems: Problems::new(Vocabulary::Json) };
        let manifest = v.manifest(value);
        match manifest {
            Some(m) if v.problems.is_empty() => Ok(m),
            _ => Err(ManifestErrors { file: source.to_string(), problems: v.problems.into_vec() }),
        }
    }

    /// Problems a package's manifest must not have when it is installed or checked, beyond
    /// what [`Manifest::parse`] refuses (which also reads manifests stored by older versions,
    /// so it cannot tighten): a `data.<type>` grant for one of its own types that
    /// `provides.objects` does not declare reaches nothing.
    pub fn package_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        // Staging leaves dot-entries out (an author's `.git`, `.schema`), so code in one would
        // not be there. A package installed before that rule keeps loading.
        if let Some(main) = self.main.as_deref().filter(|m| m.split('/').any(|part| part.starts_with('.'))) {
            out.push(Problem { path: "main".into(), message: format!("`{main}` is in or is a dot-entry, which a package leaves out (like `.git`); move it (like \"dist/plugin.wasm\")") });
        }
        for (key, list) in [("permissions", &self.permissions), ("optionalPermissions", &self.optional_permissions)] {
            for (i, p) in list.iter().enumerate() {
                let Permission::Data { object, .. } = p else { continue };
                let own = match object.split_once('/') {
                    None => object.as_str(),
                    Some((owner, short)) if owner == self.id => short,
                    Some(_) => continue,
                };
                if own == "*" || self.provides.objects.iter().any(|o| o == own) {
                    continue;
                }
                let declared = &self.provides.objects;
                let hint = match crate::util::nearest(own, declared.iter().map(String::as_str)) {
                    Some(o) => format!("; did you mean `{o}`?"),
                    None if declared.is_empty() => "; declare it in `provides.objects` (objects/<name>.yml), or name another package's type as `<owner>/<type>`".to_string(),
                    None => format!(" (it declares: {})", declared.join(", ")),
                };
                out.push(Problem { path: format!("{key}[{i}]"), message: format!("`{p}` names record type `{own}`, which `provides.objects` does not declare{hint}") });
            }
        }
        out
    }

    /// Every permission the plugin declares, required first.
    pub fn all_permissions(&self) -> impl Iterator<Item = (&Permission, bool)> {
        self.permissions.iter().map(|p| (p, true)).chain(self.optional_permissions.iter().map(|p| (p, false)))
    }

    /// Required and optional dependencies, with a flag telling which.
    pub fn all_dependencies(&self) -> impl Iterator<Item = (&String, &VersionRange, bool)> {
        self.dependencies.iter().map(|(k, v)| (k, v, false)).chain(self.optional_dependencies.iter().map(|(k, v)| (k, v, true)))
    }

    /// The manifest as JSON text (the form stored in the database), written in one pass.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// All the problems found in one manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct ManifestErrors {
    /// The file (or other source) validated.
    pub file: String,
    /// Every problem, in document order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} problem(s)", self.file, self.problems.len())?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.path, p.message)?;
        }
        Ok(())
    }
}

mod validate;
use validate::{type_name, Validator};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_problem_with_paths() {
        let json = br#"{"id":"Bad Id","name":"","version":"1","dependencies":{"crm":"^1.x.y","com.x":3},
            "provides":{"services":["ok","a..b"],"colors":[]},"permissions":["storage.read","nope"],"extra":1}"#;
        let e = Manifest::parse(json, "plugin.json").unwrap_err();
        let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
        for want in ["extra", "id", "name", "version", "dependencies.crm", "dependencies[\"com.x\"]", "provides.colors", "provides.services[1]", "permissions[1]"] {
            assert!(paths.contains(&want), "missing {want} in {paths:?}\n{e}");
        }
        let crm = e.problems.iter().find(|p| p.path == "dependencies.crm").unwrap();
        assert!(crm.message.starts_with("\"^1.x.y\" is not a version range"), "{}", crm.message);
    }

    #[test]
    fn names_shown_in_terminals_hold_no_control_characters() {
        let json = "{\"id\":\"com.acme.a\",\"name\":\"A\\ncom.objectos.metrics 1.0.0\",\"version\":\"1.0.0\",\"author\":\"\\u001b[31mAcme\",\"description\":\"Two\\nlines\"}";
        let e = Manifest::parse(json.as_bytes(), "plugin.json").unwrap_err();
        let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["name", "author"], "{e}");
    }

    #[test]
    fn main_and_sandbox_bounds_are_checked() {
        let m = Manifest::parse(br#"{"id":"com.acme.a","name":"A","version":"1.0.0","main":"src/index.js","sandbox":{"memoryMiB":32,"callMs":100}}"#, "x").unwrap();
        assert_eq!(m.main.as_deref(), Some("src/index.js"));
        assert_eq!((m.sandbox.memory_mib, m.sandbox.call_ms, m.sandbox.hook_ms), (Some(32), Some(100), None));
        // What is stored reads back the same.
        assert_eq!(Manifest::parse(m.to_json().as_bytes(), "x").unwrap(), m);
        for (main, sandbox, path) in [
            (r#""../escape.js""#, "{}", "main"),
            (r#""/etc/x.js""#, "{}", "main"),
            (r#""a/./b.js""#, "{}", "main"),
            (r#""run.sh""#, "{}", "main"),
            (r#""index.js""#, r#"{"memoryMiB":0}"#, "sandbox.memoryMiB"),
            (r#""index.js""#, r#"{"memoryMiB":1.5}"#, "sandbox.memoryMiB"),
            (r#""index.js""#, r#"{"fuel":1}"#, "sandbox.fuel"),
        ] {
            let json = format!(r#"{{"id":"com.acme.a","name":"A","version":"1.0.0","main":{main},"sandbox":{sandbox}}}"#);
            let e = Manifest::parse(json.as_bytes(), "x").unwrap_err();
            assert_eq!(e.problems[0].path, path, "{json}: {e}");
        }
        let e = Manifest::parse(br#"{"id":"com.acme.a","name":"A","version":"1.0.0","sandbox":{"callMs":5}}"#, "x").unwrap_err();
        assert!(e.problems[0].message.contains("no `main`"), "{e}");
    }

    #[test]
    fn minimal_manifest() {
        let m = Manifest::parse(br#"{"id":"com.acme.a","name":"A","version":"1.0.0"}"#, "x").unwrap();
        assert_eq!(m.id, "com.acme.a");
        assert!(m.dependencies.is_empty());
    }
}
