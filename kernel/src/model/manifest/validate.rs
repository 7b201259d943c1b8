//! The manifest's check: a walk over the JSON that reports every problem with its JSON path.

use super::*;

pub(super) struct Validator {
    pub(super) problems: Problems,
}

pub(super) fn type_name(v: &Value) -> &'static str {
    Vocabulary::Json.kind(v)
}

impl Validator {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.problems.err(path, message);
    }

    fn object<'v>(&mut self, path: &str, v: &'v Value, known: &[&str]) -> Option<&'v Map<String, Value>> {
        self.problems.object(path, v, known)
    }

    fn string(&mut self, map: &Map<String, Value>, parent: &str, key: &str, required: bool) -> Option<String> {
        let path = key_path(parent, key);
        match map.get(key) {
            None if required => {
                self.err(&path, "is required");
                None
            }
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.err(&path, format!("must be a string, not {}", type_name(other)));
                None
            }
        }
    }

    pub(super) fn manifest(&mut self, root: &Value) -> Option<Manifest> {
        const KNOWN: &[&str] = &[
            "$schema", "id", "name", "version", "description", "author", "license", "dependencies",
            "optionalDependencies", "provides", "permissions", "optionalPermissions", "engines",
            "main", "sandbox", "settings",
        ];
        let map = self.object("", root, KNOWN)?;
        let id = self.string(map, "", "id", true);
        if let Some(id) = &id {
            if let Err(e) = validate_id(id) {
                self.err("id", e);
            }
        }
        let name = self.string(map, "", "name", true);
        if let Some(n) = &name {
            if n.trim().is_empty() {
                self.err("name", "cannot be empty");
            } else if n.chars().count() > 200 {
                self.err("name", "can be at most 200 characters");
            }
        }
        let version = self.string(map, "", "version", true).and_then(|s| match Version::parse(&s) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err("version", format!("{} is not a semantic version like \"1.2.3\" ({e})", show(&s)));
                None
            }
        });
        let description = self.string(map, "", "description", false).unwrap_or_default();
        let author = self.string(map, "", "author", false);
        let license = self.string(map, "", "license", false);
        // Shown in terminals and the console: no escape codes or line breaks that could forge
        // other lines (a description may break lines).
        for (key, text, lines) in [("name", name.as_deref(), false), ("description", Some(description.as_str()), true), ("author", author.as_deref(), false), ("license", license.as_deref(), false)] {
            if text.is_some_and(|t| t.chars().any(|c| c.is_control() && !(lines && matches!(c, '\n' | '\t')))) {
                self.err(key, "cannot hold control characters (escape codes, line breaks)");
            }
        }
        let dependencies = self.deps(map, "dependencies", id.as_deref());
        let optional_dependencies = self.deps(map, "optionalDependencies", id.as_deref());
        for dup in dependencies.keys().filter(|k| optional_dependencies.contains_key(*k)) {
            self.err(&key_path("optionalDependencies", dup), "is also a required dependency; list it once");
        }
        let provides = self.provides(map.get("provides"));
        let permissions = self.permissions(map, "permissions");
        let optional_permissions = self.permissions(map, "optionalPermissions");
        for (i, p) in optional_permissions.iter().enumerate() {
            if permissions.contains(p) {
                self.err(&format!("optionalPermissions[{i}]"), format!("`{p}` is also a required permission; list it once"));
            }
        }
        // Another package's records are reached only through a declared dependency on it.
        for (key, list) in [("permissions", &permissions), ("optionalPermissions", &optional_permissions)] {
            for (i, p) in list.iter().enumerate() {
                let Permission::Data { object, .. } = p else { continue };
                let Some((owner, _)) = object.split_once('/') else { continue };
                if Some(owner) != id.as_deref() && !dependencies.contains_key(owner) && !optional_dependencies.contains_key(owner) {
                    self.err(&format!("{key}[{i}]"), format!("`{p}` names records of {owner}, which is not among the dependencies; add it to `dependencies`"));
                }
            }
        }
        let engines = match map.get("engines") {
            None => Engines::default(),
            Some(v) => match self.object("engines", v, &["objectos"]) {
                None => Engines::default(),
                Some(e) => Engines {
                    objectos: self.string(e, "engines", "objectos", false).and_then(|s| self.range("engines.objectos", &s)),
                },
            },
        };
        let main = self.string(map, "", "main", false).filter(|m| self.main_path(m));
        let sandbox = self.sandbox(map.get("sandbox"), main.is_some());
        let settings = self.settings(map.get("settings"));
        Some(Manifest {
            main,
            sandbox,
            settings,
            id: id?,
            name: name?,
            version: version?,
            description,
            author,
            license,
            dependencies,
            optional_dependencies,
            provides,
            permissions,
            optional_permissions,
            engines,
        })
    }

    /// `main` is a relative path inside the package, to a component or a JavaScript module.
    fn main_path(&mut self, main: &str) -> bool {
        let ext = main.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        let problem = if main.is_empty() || main.len() > 200 {
            Some("must be a path of 1 to 200 characters".to_string())
        } else if main.starts_with('/') || main.contains('\\') || main.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
            Some(format!("{} must be a relative path inside the package, without `.`, `..` or `\\` (like \"index.js\" or \"dist/plugin.wasm\")", show(main)))
        } else if main.chars().any(char::is_control) {
            Some("cannot hold control characters".to_string())
        } else if !CODE_EXTENSIONS.contains(&ext) {
            Some(format!("{} must name a WebAssembly component (`.wasm`) or a JavaScript module (`.js`, `.mjs`)", show(main)))
        } else {
            None
        };
        match problem {
            Some(p) => {
                self.err("main", p);
                false
            }
            None => true,
        }
    }

    fn sandbox(&mut self, v: Option<&Value>, has_main: bool) -> SandboxLimits {
        let mut out = SandboxLimits::default();
        let Some(v) = v else { return out };
        let keys: Vec<&str> = SandboxLimits::KEYS.iter().map(|(k, _)| *k).collect();
        let Some(map) = self.object("sandbox", v, &keys) else { return out };
        if !has_main {
            self.err("sandbox", "bounds the package's code, but the manifest has no `main`");
        }
        for (key, max) in SandboxLimits::KEYS {
            let Some(value) = map.get(key) else { continue };
            match value.as_u64() {
                Some(n) if (1..=max).contains(&n) => out.set(key, n),
                _ => self.err(&key_path("sandbox", key), format!("must be a whole number from 1 to {max}, not {value}")),
            }
        }
        out
    }

    fn settings(&mut self, v: Option<&Value>) -> Settings {
        let mut out = Vec::new();
        let Some(v) = v else { return Settings(out) };
        let Value::Object(map) = v else {
            self.err("settings", format!("must be an object of settings by key, not {}", type_name(v)));
            return Settings(out);
        };
        if map.len() > MAX_SETTINGS {
            self.err("settings", format!("declares {} settings; at most {MAX_SETTINGS} are accepted", map.len()));
            return Settings(out);
        }
        for (key, spec) in map {
            let path = key_path("settings", key);
            let key_ok = !key.is_empty() && key.len() <= 64 && key.starts_with(|c: char| c.is_ascii_alphabetic()) && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !key_ok {
                self.err(&path, "a setting's key is a name of letters, digits and `_`, starting with a letter (like `apiToken`), at most 64 bytes");
                continue;
            }
            let Some(spec) = self.object(&path, spec, &["type", "title", "description", "default", "secret", "required"]) else { continue };
            let kind = match spec.get("type").and_then(Value::as_str).map(|t| (t, SettingKind::parse(t))) {
                Some((_, Some(k))) => k,
                Some((t, None)) => {
                    self.err(&key_path(&path, "type"), format!("{} is not a setting type: string, number, integer or boolean", show(t)));
                    continue;
                }
                None => {
                    self.err(&key_path(&path, "type"), "is required: string, number, integer or boolean");
                    continue;
                }
            };
            let title = self.string(spec, &path, "title", false);
            let description = self.string(spec, &path, "description", false);
            let flag = |v: &mut Self, name: &str| match spec.get(name) {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    v.err(&key_path(&path, name), format!("must be true or false, not {other}"));
                    false
                }
            };
            let (secret, required) = (flag(self, "secret"), flag(self, "required"));
            let default = spec.get("default").cloned();
            if secret && kind != SettingKind::String {
                self.err(&key_path(&path, "secret"), "a secret setting is text (`\"type\": \"string\"`)");
            }
            if secret && default.is_some() {
                self.err(&key_path(&path, "default"), "a secret has no default: it would ship in the package for everyone to read");
            }
            if let Some(d) = &default {
                if let Err(e) = kind.check(d) {
                    self.err(&key_path(&path, "default"), e);
                }
            }
            out.push((key.clone(), Setting { kind, title, description, default, secret, required }));
        }
        Settings(out)
    }

    fn range(&mut self, path: &str, s: &str) -> Option<VersionRange> {
        match VersionRange::parse(s) {
            Ok(r) => Some(r),
            Err(e) => {
                self.err(path, format!("{} is not a version range like \"^1.2\", \">=1.0.0 <2.0.0\" or \"1.x || 2.x\" ({e})", show(s)));
                None
            }
        }
    }

    fn deps(&mut self, map: &Map<String, Value>, key: &str, own: Option<&str>) -> BTreeMap<String, VersionRange> {
        let mut out = BTreeMap::new();
        let Some(v) = map.get(key) else { return out };
        let Value::Object(deps) = v else {
            self.err(key, format!("must be an object mapping plugin ids to semver ranges, not {}", type_name(v)));
            return out;
        };
        for (dep, range) in deps {
            let path = key_path(key, dep);
            if let Err(e) = validate_id(dep) {
                self.err(&path, format!("is not a plugin id: {e}"));
                continue;
            }
            if Some(dep.as_str()) == own {
                self.err(&path, "a plugin cannot depend on itself");
                continue;
            }
            let Value::String(r) = range else {
                self.err(&path, format!("must be a semver range string, not {}", type_name(range)));
                continue;
            };
            if let Some(req) = self.range(&path, r) {
                out.insert(dep.clone(), req);
            }
        }
        out
    }

    fn string_list(&mut self, path: &str, v: Option<&Value>, check: impl Fn(&str) -> Result<(), String>) -> Vec<String> {
        let Some(v) = v else { return Vec::new() };
        let Value::Array(items) = v else {
            self.err(path, format!("must be a list of strings, not {}", type_name(v)));
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            match item {
                Value::String(s) => {
                    if let Err(e) = check(s) {
                        self.err(&p, format!("{}: {e}", show(s)));
                    } else if out.contains(s) {
                        self.err(&p, format!("{} is listed twice", show(s)));
                    } else {
                        out.push(s.clone());
                    }
                }
                other => self.err(&p, format!("must be a string, not {}", type_name(other))),
            }
        }
        out
    }

    fn provides(&mut self, v: Option<&Value>) -> Provides {
        let Some(v) = v else { return Provides::default() };
        let Some(map) = self.object("provides", v, &["services", "events", "objects", "workflows", "automations", "translations"]) else {
            return Provides::default();
        };
        let file_name = |s: &str| -> Result<(), String> {
            if s.is_empty() || s.len() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) {
                Err("names use 1-64 letters, digits, `_` or `-`".into())
            } else {
                Ok(())
            }
        };
        Provides {
            services: self.string_list("provides.services", map.get("services"), validate_name),
            events: self.string_list("provides.events", map.get("events"), |s| {
                s.parse::<crate::model::permission::Pattern>().map(|_| ())
            }),
            objects: self.string_list("provides.objects", map.get("objects"), file_name),
            workflows: self.string_list("provides.workflows", map.get("workflows"), file_name),
            automations: self.string_list("provides.automations", map.get("automations"), file_name),
            translations: self.string_list("provides.translations", map.get("translations"), validate_locale),
        }
    }

    fn permissions(&mut self, map: &Map<String, Value>, key: &str) -> Vec<Permission> {
        let list = self.string_list(key, map.get(key), |s| s.parse::<Permission>().map(|_| ()));
        let mut out: Vec<Permission> = Vec::with_capacity(list.len());
        for s in list {
            if let Ok(p) = s.parse::<Permission>() {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }
}
