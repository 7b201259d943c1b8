#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_committed_schemas_are_current() {
    let dir = repo().join("docs/schema");
    for name in NAMES {
        let file = dir.join(format!("{name}.schema.json"));
        let fresh = serde_json::to_string_pretty(&schema(name).unwrap()).unwrap() + "\n";
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::write(&file, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(committed == fresh, "{} is stale: run `UPDATE_SCHEMAS=1 cargo test -p objectos-declarative --lib grammar` and commit it", file.display());
    }
}

fn set<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(String::from).collect()
}

fn props(v: &Value) -> BTreeSet<String> {
    v["properties"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// The one key each alternative of a `oneOf` requires (an externally tagged enum).
fn tags(v: &Value) -> BTreeSet<String> {
    v["oneOf"].as_array().unwrap().iter().map(|alt| alt["required"][0].as_str().unwrap().to_string()).collect()
}

#[test]
fn the_schemas_and_the_parser_know_the_same_keys_and_values() {
    let object = schema("object").unwrap();
    assert_eq!(props(&object), set(keys::OBJECT.iter().copied()));
    assert_eq!(strings(&object["properties"]["fields"]["propertyNames"]["not"]["enum"]), set(keys::RESERVED_FIELDS.iter().copied()));
    let variants = object["definitions"]["Field"]["oneOf"].as_array().unwrap();
    assert_eq!(variants.len(), keys::FIELD_TYPES.len());
    for v in variants {
        let t = v["properties"]["type"]["const"].as_str().unwrap();
        let (_, own) = keys::FIELD_TYPES.iter().find(|(n, _)| *n == t).unwrap_or_else(|| panic!("`{t}` is not a type the parser knows"));
        assert_eq!(props(v), set(keys::FIELD.iter().chain(own.iter()).copied()), "{t}");
    }

    let workflow = schema("workflow").unwrap();
    assert_eq!(props(&workflow), set(keys::WORKFLOW.iter().copied()));
    assert_eq!(props(&workflow["definitions"]["State"]), set(keys::STATE.iter().copied()));
    assert_eq!(props(&workflow["definitions"]["Transition"]), set(keys::TRANSITION.iter().copied()));

    let automation = schema("automation").unwrap();
    let defs = &automation["definitions"];
    assert_eq!(props(&automation), set(keys::AUTOMATION.iter().copied()));
    assert_eq!(tags(&defs["When"]), set(keys::TRIGGERS.iter().copied()));
    assert_eq!(props(&defs["RecordTrigger"]), set(keys::RECORD_TRIGGER.iter().copied()));
    assert_eq!(strings(&defs["Change"]["enum"]), set(keys::RECORD_CHANGES.iter().copied()));
    assert_eq!(tags(&defs["Action"]), set(keys::ACTIONS.iter().copied()));
    assert_eq!(props(&defs["EmitFull"]), set(keys::EMIT.iter().copied()));
    assert_eq!(strings(&defs["EmitFull"]["properties"]["data"]["propertyNames"]["not"]["enum"]), set(crate::defs::RESERVED_EMIT_KEYS.iter().copied()));
    assert_eq!(props(&defs["Notify"]), set(keys::NOTIFY.iter().copied()));
    assert_eq!(strings(&defs["Level"]["enum"]), set(keys::LEVELS.iter().copied()));
    assert_eq!(props(&defs["Enqueue"]), set(keys::ENQUEUE.iter().copied()));
    // The workflow's actions are the automation's.
    assert_eq!(workflow["definitions"]["Action"], defs["Action"]);
}

/// A validator for each file kind's schema.
struct Validators {
    schemas: boon::Schemas,
    index: Vec<(&'static str, boon::SchemaIndex)>,
}

impl Validators {
    fn new() -> Self {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        let mut index = Vec::new();
        for name in NAMES {
            let url = format!("mem:///{name}.schema.json");
            compiler.add_resource(&url, schema(name).unwrap()).unwrap();
            index.push((name, compiler.compile(&url, &mut schemas).unwrap_or_else(|e| panic!("{name}: {e}"))));
        }
        Validators { schemas, index }
    }

    fn valid(&self, kind: &str, doc: &Value) -> Result<(), String> {
        let (_, i) = self.index.iter().find(|(n, _)| *n == kind).unwrap();
        self.schemas.validate(doc, *i).map_err(|e| format!("{e:#}"))
    }
}

/// The parser's verdict on `doc` as a `kind` file named `name`.
fn parsed(kind: &str, doc: &Value, name: &str) -> Result<(), String> {
    let file = format!("{kind}s/{name}.yml");
    let said = match kind {
        "object" => crate::defs::ObjectDef::parse(doc, &file, name).map(|_| ()),
        "workflow" => crate::defs::WorkflowDef::parse(doc, &file, name).map(|_| ()),
        _ => crate::defs::AutomationDef::parse(doc, &file, name).map(|_| ()),
    };
    said.map_err(|ps| ps.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; "))
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

#[test]
fn every_sample_file_is_valid_by_its_schema_and_points_an_editor_at_it() {
    let v = Validators::new();
    let mut seen = 0;
    for pkg in std::fs::read_dir(repo().join("plugins/packages")).unwrap() {
        let pkg = pkg.unwrap().path();
        for kind in NAMES {
            let Ok(files) = std::fs::read_dir(pkg.join(format!("{kind}s"))) else { continue };
            for file in files {
                let file = file.unwrap().path();
                let text = std::fs::read_to_string(&file).unwrap();
                v.valid(kind, &yaml(&text)).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                let comment = format!("# yaml-language-server: $schema=../../../../docs/schema/{kind}.schema.json");
                assert!(text.starts_with(&comment), "{} should start with `{comment}`", file.display());
                seen += 1;
            }
        }
    }
    assert!(seen >= 6, "the samples hold record types, workflows and automations ({seen} files)");
}

#[test]
fn what_the_schema_refuses_the_parser_refuses() {
    let v = Validators::new();
    let cases: &[(&str, &str)] = &[
        ("object", "name: t\nfields:\n  n: { type: integer }\n"),
        ("object", "name: t\nfields:\n  n: { type: number, maxLength: 3 }\n"),
        ("object", "name: t\nfields:\n  n: { type: text, maxLength: 0 }\n"),
        ("object", "name: t\nfields:\n  n: { type: number, min: low }\n"),
        ("object", "name: t\nfields:\n  s: { type: enum, values: [] }\n"),
        ("object", "name: t\nfields:\n  s: { type: enum, values: [a, a] }\n"),
        ("object", "name: t\nfields:\n  r: { type: reference, object: Not/A/Type }\n"),
        ("object", "name: t\nfields:\n  id: { type: text }\n"),
        ("object", "name: t\nfields: {}\n"),
        ("object", "name: t\ntitle: T\nfields:\n  n: { type: text }\n"),
        ("object", "name: T\nfields:\n  n: { type: text }\n"),
        ("workflow", "name: t\nobject: t\nfield: s\ninitial: a\nstates:\n  a: { final: yes please }\n"),
        ("workflow", "name: t\nobject: t\nfield: s\ninitial: a\nstates:\n  a: { transitions: [{ event: go }] }\n"),
        ("workflow", "name: t\nobject: t\nfield: s\ninitial: a\nstates:\n  a: { on: [] }\n"),
        ("workflow", "name: t\nobject: t\nfield: s\ninitial: a\nstates:\n  a: { entry: [{ set: {} }] }\n"),
        ("workflow", "name: t\nobject: t\nfield: s\ninitial: a\nstates:\n  a: { entry: [{ emit: { topic: x.y, topik: x.z } }] }\n"),
        ("workflow", "name: t\nobject: t\nfield: s\ninitial: a\nstates:\n  a: { entry: [{ emit: { topic: x.y, data: { record: 1 } } }] }\n"),
        ("automation", "name: t\nwhen: { event: x.y }\ndo: []\n"),
        ("automation", "name: t\nwhen: { event: x.y, schedule: \"* * * * *\" }\ndo: [{ emit: x.z }]\n"),
        ("automation", "name: t\nwhen: { record: { object: t, on: deleted } }\ndo: [{ emit: x.z }]\n"),
        ("automation", "name: t\nwhen: { event: x.y }\ndo: [{ emit: plugin.enabled }]\n"),
        ("automation", "name: t\nwhen: { event: x.y }\ndo: [{ emit: x.z, notify: { title: hi } }]\n"),
        ("automation", "name: t\nwhen: { event: x.y }\ndo: [{ notify: { title: hi, level: loud } }]\n"),
        ("automation", "name: t\nwhen: { event: x.y }\ndo: [{ notify: { title: hi, channels: mail } }]\n"),
        ("automation", "name: t\nwhen: { event: x.y }\ndo: [{ enqueue: { emit: x.z, delay: soon } }]\n"),
        ("automation", "name: t\nwhen: { event: x.y }\ndo: [{ launch: rockets }]\n"),
        ("automation", "name: t\nwhen: { event: x.y }\ndo:\n"),
        ("automation", "name: t\nwhen: { record: { object: t, on: [created, 5] } }\ndo: [{ emit: x.z }]\n"),
        ("automation", "name: t\nlabel: \"\"\nwhen: { event: x.y }\ndo: [{ emit: x.z }]\n"),
        ("automation", "name: t\nwhen: { event: x.y }\ndo: [{ notify: { title: hi, channels: [Mail Room] } }]\n"),
        ("automation", "name: t\nwhen: { event: x.y }\ndo: [{ notify: { title: \"\" } }]\n"),
    ];
    for (kind, text) in cases {
        let doc = yaml(text);
        assert!(v.valid(kind, &doc).is_err(), "the {kind} schema accepts\n{text}");
        assert!(parsed(kind, &doc, "t").is_err(), "the parser accepts the {kind}\n{text}");
    }
    // And what both accept, written the other ways the grammar allows.
    let fine: &[(&str, &str)] = &[
        ("object", "$schema: ../x.json\nname: t\nfields:\n  r: { type: reference, object: com.acme.crm/account }\n  d: { type: date, default: 2026-12-01 }\n"),
        ("workflow", "name: t\nobject: t\nfield: s\ninitial: a\nstates:\n  a: { transitions: [{ event: go, to: b, guard: \"n > 1\" }] }\n  b:\n"),
        ("automation", "name: t\nwhen: { record: { object: t, on: [created, updated] } }\ndo: [{ emit: { topic: x.z, data: { n: 1 } } }, { enqueue: { emit: x.z, delay: 90 } }, { enqueue: { emit: x.z, delay: 2h } }]\n"),
        // Nothing after a key is YAML's null, which both read as the key left out.
        ("object", "name: t\nlabel:\nfields:\n  n: { type: text, required: null, maxLength: 200.0 }\n"),
        ("automation", "name: t\nwhen: { record: { object: t, on: } }\nif:\ndo: [{ notify: { title: hi, body: null, channels: [com.acme.webhook] } }, { enqueue: { emit: x.z, delay: } }]\n"),
    ];
    for (kind, text) in fine {
        let doc = yaml(text);
        v.valid(kind, &doc).unwrap_or_else(|e| panic!("the {kind} schema refuses\n{text}\n{e}"));
        parsed(kind, &doc, "t").unwrap_or_else(|e| panic!("the parser refuses the {kind}\n{text}\n{e}"));
    }
}

#[test]
fn an_installed_package_loads_what_a_later_check_refuses_but_nothing_reads() {
    // Each of these was ignored before the check refused it: a package installed then still
    // enables (loading is lenient), while a new install is told.
    let object = yaml("name: t\nfields:\n  n: { type: number, maxLength: 3, min: 5, max: 1 }\n");
    assert!(crate::defs::ObjectDef::parse(&object, "objects/t.yml", "t").is_err());
    assert!(crate::defs::ObjectDef::parse_as(&object, "objects/t.yml", "t", crate::defs::Mode::Load).is_ok());
    let flow = yaml("name: t\nlabel: 5\nobject: t\nfield: s\ninitial: a\nstates:\n  a: { final: true, transitions: [{ event: go, to: a }], entry: [{ emit: { topic: x.y, extra: 1 } }] }\n");
    assert!(crate::defs::WorkflowDef::parse(&flow, "workflows/t.yml", "t").is_err());
    assert!(crate::defs::WorkflowDef::parse_as(&flow, "workflows/t.yml", "t", crate::defs::Mode::Load).is_ok());
    // A notification's channels are kept as written: a bad name fails its delivery, as before,
    // rather than the notice going somewhere else.
    let notify = yaml("name: t\nwhen: { event: x.y }\ndo: [{ notify: { title: hi, channels: [com.acme.webhook, Email] } }]\n");
    let a = crate::defs::AutomationDef::parse_as(&notify, "automations/t.yml", "t", crate::defs::Mode::Load).unwrap();
    assert!(matches!(&a.actions[0], crate::defs::Action::Notify { channels, .. } if channels == &["com.acme.webhook", "Email"]), "{:?}", a.actions);
    // What never worked is refused either way.
    let broken = yaml("name: t\nfields:\n  n: { type: integer }\n");
    assert!(crate::defs::ObjectDef::parse_as(&broken, "objects/t.yml", "t", crate::defs::Mode::Load).is_err());
}

/// The first fenced block of `lang` after the heading that starts with `heading`.
fn example<'d>(doc: &'d str, heading: &str, lang: &str) -> &'d str {
    let at = doc.find(&format!("\n## {heading}")).unwrap_or_else(|| panic!("no heading {heading}"));
    let fence = format!("```{lang}\n");
    let start = at + doc[at..].find(&fence).unwrap() + fence.len();
    &doc[start..start + doc[start..].find("```").unwrap()]
}

#[test]
fn the_format_references_examples_are_a_valid_package() {
    let doc = std::fs::read_to_string(repo().join("docs/packages.md")).unwrap();
    let manifest = objectos_kernel::model::manifest::Manifest::parse(example(&doc, "`plugin.json`", "json").as_bytes(), "docs/packages.md").unwrap();
    let files = [
        ("objects/opportunity.yml", example(&doc, "Record types", "yaml").to_string()),
        ("objects/account.yml", "name: account\nfields:\n  name: { type: text }\n".to_string()),
        ("workflows/opportunity.yml", example(&doc, "Workflows", "yaml").to_string()),
        ("automations/notify-won.yml", example(&doc, "Automations", "yaml").to_string()),
    ];
    let v = Validators::new();
    for (file, text) in &files[..] {
        let kind = file.split('s').next().unwrap();
        v.valid(kind, &yaml(text)).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let defs = crate::check_package(&manifest, |p| files.iter().find(|(f, _)| *f == p).map(|(_, t)| t.clone())).unwrap_or_else(|e| panic!("{e:?}"));
    let missing = crate::needs::missing(&manifest, &defs);
    assert!(missing.is_empty(), "the example plugin.json lacks what its files need: {missing:?}");
}
