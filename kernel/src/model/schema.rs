//! JSON Schemas of the files an author writes, generated from the types that read them, so
//! they cannot drift: `objectos schema NAME` prints one; `docs/schema/` holds them for editors
//! (a test fails when a committed one is stale).

use serde_json::{json, Value};

/// The schemas there are, by name.
pub const NAMES: [&str; 1] = ["plugin"];

/// The schema called `name` (see [`NAMES`]).
pub fn schema(name: &str) -> Option<Value> {
    match name {
        "plugin" => Some(plugin()),
        _ => None,
    }
}

/// The draft-07 schema of `T`, as `plugin.json` is checked: an optional key is left out,
/// never `null`.
fn generate<T: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut v = generator.into_root_schema_for::<T>().to_value();
    not_null(&mut v);
    v
}

/// `plugin.json`.
fn plugin() -> Value {
    let mut v = generate::<super::manifest::Manifest>();
    // An editor's pointer to this schema is the one key beyond the manifest's own.
    if let Some(props) = v.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("$schema".into(), json!({ "type": "string", "description": "Where this schema is, for editors." }));
    }
    // The sandbox's bounds are whole numbers from 1 to what the manifest format accepts.
    if let Some(props) = v.pointer_mut("/definitions/SandboxLimits/properties").and_then(Value::as_object_mut) {
        for (key, max) in super::manifest::SandboxLimits::KEYS {
            if let Some(p) = props.get_mut(key).and_then(Value::as_object_mut) {
                p.insert("minimum".into(), json!(1));
                p.insert("maximum".into(), json!(max));
            }
        }
    }
    v
}

/// An optional key is left out, never `null` (the manifest check refuses a null): drop the
/// `null` schemars adds to the type of every `Option`.
fn not_null(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(alternatives)) = map.get_mut("anyOf") {
                alternatives.retain(|a| a.get("type").and_then(Value::as_str) != Some("null"));
                if alternatives.len() == 1 {
                    let only = alternatives.remove(0);
                    map.remove("anyOf");
                    if let Value::Object(o) = only {
                        map.extend(o);
                    }
                }
            }
            if let Some(Value::Array(types)) = map.get("type") {
                let kept: Vec<Value> = types.iter().filter(|t| t.as_str() != Some("null")).cloned().collect();
                if kept.len() == 1 {
                    map.insert("type".into(), kept[0].clone());
                }
            }
            map.values_mut().for_each(not_null);
        }
        Value::Array(items) => items.iter_mut().for_each(not_null),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_schemas_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema");
        for name in NAMES {
            let file = dir.join(format!("{name}.schema.json"));
            let fresh = serde_json::to_string_pretty(&schema(name).unwrap_or_default()).unwrap_or_default() + "\n";
            if std::env::var_os("UPDATE_SCHEMAS").is_some() {
                std::fs::create_dir_all(&dir).unwrap_or_default();
                std::fs::write(&file, &fresh).unwrap_or_default();
            }
            let committed = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(committed == fresh, "{} is stale: run `UPDATE_SCHEMAS=1 cargo test -p objectos-kernel schemas` and commit it", file.display());
        }
    }

    #[test]
    fn the_plugin_schema_knows_every_manifest_key() {
        let s = schema("plugin").unwrap_or_default();
        let props = s["properties"].as_object().cloned().unwrap_or_default();
        for key in ["$schema", "id", "name", "version", "dependencies", "optionalDependencies", "provides", "permissions", "optionalPermissions", "engines", "main", "sandbox", "settings"] {
            assert!(props.contains_key(key), "{key} missing from the schema");
        }
        assert_eq!(s["required"], json!(["id", "name", "version"]));
        assert_eq!(s["additionalProperties"], json!(false));
    }
}
