//! `objectos new package DIR`: a package that installs, is approved and enables as generated,
//! with one example of each file kind asked for, the engine dependencies its files need and
//! exactly the permissions they need.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Map, Value};

#[derive(Subcommand)]
pub(crate) enum NewCmd {
    /// Write a new package folder that installs and enables as it is.
    Package {
        /// The folder to create (it must not exist, or be empty).
        dir: PathBuf,
        /// The plugin id (default: `com.example.<folder name>`).
        #[arg(long)]
        id: Option<String>,
        /// What it holds, comma-separated: records, workflow (implies records), automation
        /// (implies workflow), translations, code. Default: records.
        #[arg(long, value_delimiter = ',')]
        with: Vec<Part>,
    },
}

/// One kind of file a new package can start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Part {
    /// A record type (`objects/task.yml`).
    Records,
    /// A workflow over it (`workflows/task.yml`).
    Workflow,
    /// An automation that notifies when a task is done (`automations/notify-done.yml`).
    Automation,
    /// English and Simplified Chinese texts (`translations/*.json`).
    Translations,
    /// JavaScript run in the sandbox (`index.js`).
    Code,
}

/// The package as files: path relative to the folder, and contents.
#[derive(Debug)]
pub(crate) struct Scaffold {
    pub(crate) id: String,
    pub(crate) files: Vec<(String, String)>,
}

/// A folder name as an id segment: lowercase letters, digits and `-`.
fn slug(dir: &Path) -> String {
    let raw = dir.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let s: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() || !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        format!("package-{s}").trim_end_matches('-').to_string()
    } else {
        s
    }
}

fn title(slug: &str) -> String {
    slug.split('-').filter(|w| !w.is_empty()).map(|w| w[..1].to_uppercase() + &w[1..]).collect::<Vec<_>>().join(" ")
}

/// What `parts` need, with the implied parts added.
fn closure(parts: &[Part]) -> Vec<Part> {
    let mut v: Vec<Part> = if parts.is_empty() { vec![Part::Records] } else { parts.to_vec() };
    if v.contains(&Part::Automation) && !v.contains(&Part::Workflow) {
        v.push(Part::Workflow);
    }
    if v.contains(&Part::Workflow) && !v.contains(&Part::Records) {
        v.push(Part::Records);
    }
    v
}

/// The files of a new package in `dir`.
pub(crate) fn scaffold(dir: &Path, id: Option<&str>, parts: &[Part]) -> Result<Scaffold, String> {
    let slug = slug(dir);
    let id = id.map(str::to_string).unwrap_or_else(|| format!("com.example.{slug}"));
    objectos_kernel::model::manifest::validate_id(&id).map_err(|e| format!("`{id}` is not a plugin id: {e}; choose one with --id"))?;
    let parts = closure(parts);
    let has = |p: Part| parts.contains(&p);
    let name = title(&slug);
    let topic = format!("{id}.task");
    let mut deps = Map::new();
    let mut perms: Vec<String> = Vec::new();
    let mut provides = Map::new();
    let mut files = Vec::new();
    let mut sentence = vec![];

    if has(Part::Records) {
        deps.insert("com.objectos.objects".into(), json!("^0.1"));
        perms.extend(["services.use:data", "data.task.read", "data.task.write"].map(String::from));
        provides.insert("objects".into(), json!(["task"]));
        let status = if has(Part::Workflow) { "\n  status: { type: enum, values: [open, doing, done] }" } else { "" };
        files.push((
            "objects/task.yml".into(),
            format!(
                "{}# A record type. Fields are text, number, boolean, date, enum or reference (docs/packages.md).\nname: task\nlabel: Task\nfields:\n  title: {{ type: text, required: true, maxLength: 200 }}\n  due: {{ type: date, label: Due }}\n  estimate: {{ type: number, min: 0, default: 1, label: Estimate (hours) }}{status}\n",
                editor("object")
            ),
        ));
        sentence.push("keeps tasks");
    }
    if has(Part::Workflow) {
        deps.insert("com.objectos.workflow".into(), json!("^0.1"));
        perms.push("services.use:workflow".into());
        provides.insert("workflows".into(), json!(["task"]));
        let done = if has(Part::Automation) { format!("\n  done:\n    entry:\n      - emit: {topic}.done\n") } else { "\n  done: {}\n".into() };
        files.push((
            "workflows/task.yml".into(),
            format!(
                "{}# A state machine over the task's status: only these transitions move it.\nname: task\nobject: task\nfield: status\ninitial: open\nstates:\n  open:\n    transitions:\n      - {{ event: start, to: doing }}\n  doing:\n    transitions:\n      - {{ event: finish, to: done, guard: \"estimate > 0\" }}\n      - {{ event: stop, to: open }}{done}",
                editor("workflow")
            ),
        ));
        sentence.push("moves them from open to done");
    }
    if has(Part::Automation) {
        deps.insert("com.objectos.automation".into(), json!("^0.1"));
        deps.insert("com.objectos.notification".into(), json!("^0.1"));
        perms.extend([format!("events.emit:{topic}.*"), format!("events.subscribe:{topic}.*"), "services.use:automation".into(), "services.use:notification".into()]);
        provides.insert("events".into(), json!([format!("{topic}.*")]));
        provides.insert("automations".into(), json!(["notify-done"]));
        files.push((
            "automations/notify-done.yml".into(),
            format!("{}# When a task is done, tell the console's notification centre.\nname: notify-done\nwhen:\n  event: {topic}.done\ndo:\n  - notify:\n      title: \"Done: {{{{record.title}}}}\"\n      level: success\n", editor("automation")),
        ));
        sentence.push("and says when one is done");
    }
    if has(Part::Translations) {
        provides.insert("translations".into(), json!(["en", "zh-CN"]));
        files.push(("translations/en.json".into(), serde_json::to_string_pretty(&json!({ "plugin.name": name, "plugin.description": format!("{name}: a package made with objectos new package.") })).unwrap_or_default() + "\n"));
        files.push(("translations/zh-CN.json".into(), serde_json::to_string_pretty(&json!({ "plugin.name": name, "plugin.description": format!("{name}：用 objectos new package 生成的软件包。") })).unwrap_or_default() + "\n"));
    }
    let mut manifest = json!({
        "$schema": ".schema/plugin.schema.json",
        "id": id,
        "name": name,
        "version": "0.1.0",
        "description": if sentence.is_empty() { "A new package.".to_string() } else { format!("A new package that {}.", sentence.join(", ")) },
    });
    if has(Part::Code) {
        perms.extend(["storage.read".into(), "storage.write".into()]);
        if has(Part::Records) {
            perms.push(format!("events.subscribe:data.{id}.task.created"));
        }
        manifest["main"] = json!("index.js");
        files.push(("index.js".into(), code(&id, has(Part::Records))));
    }
    manifest["dependencies"] = Value::Object(deps);
    manifest["provides"] = Value::Object(provides);
    manifest["permissions"] = json!(perms);
    manifest["engines"] = json!({ "objectos": "^0.1" });
    files.insert(0, ("plugin.json".into(), serde_json::to_string_pretty(&manifest).unwrap_or_default() + "\n"));
    // The schemas the files point at, beside them for an editor; install and `objectos package`
    // leave dot-folders out.
    let kinds = [("plugin", true), ("object", has(Part::Records)), ("workflow", has(Part::Workflow)), ("automation", has(Part::Automation))];
    for (kind, _) in kinds.iter().filter(|(_, wanted)| *wanted) {
        let schema = objectos_admin::author::schema(kind).unwrap_or_default();
        files.push((format!(".schema/{kind}.schema.json"), serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"));
    }
    Ok(Scaffold { id, files })
}

/// The first line of a YAML file of `kind`, pointing an editor (through the YAML language
/// server) at its schema.
fn editor(kind: &str) -> String {
    format!("# yaml-language-server: $schema=../.schema/{kind}.schema.json\n")
}

fn code(id: &str, records: bool) -> String {
    let mut js = String::from(
        "// @ts-check\n// Runs in the ObjectOS sandbox: every ctx call is checked against the permissions an admin\n// approved. The types are in sdk/objectos.d.ts of the ObjectOS repository.\n\n/** @param {any} ctx */\nexport function onEnable(ctx) {\n  const starts = (ctx.storage.get(\"starts\") ?? 0) + 1;\n  ctx.storage.set(\"starts\", starts);\n  ctx.log.info(\"enabled\", { starts });\n",
    );
    if records {
        js.push_str(&format!(
            "\n  // Data events carry ids only: read the record through the data service.\n  ctx.events.on(\"data.{id}.task.created\", (/** @type {{any}} */ event) => {{\n    const task = ctx.services.call(\"data\", \"get\", {{ object: \"task\", id: event.payload.id }});\n    if (task) ctx.log.info(`new task: ${{task.title}}`, {{ id: task.id }});\n  }});\n"
        ));
    }
    js.push_str("}\n");
    js
}

/// Write the package into `dir`, refusing a folder that exists with files in it.
pub(crate) fn write(dir: &Path, s: &Scaffold) -> Result<(), String> {
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(format!("{} already exists and is not empty; choose a new folder", dir.display()));
    }
    for (path, text) in &s.files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parts_imply_what_they_need_and_names_come_from_the_folder() {
        let s = scaffold(Path::new("/tmp/My Todo!"), None, &[Part::Automation]).unwrap();
        assert_eq!(s.id, "com.example.my-todo");
        let paths: Vec<&str> = s.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["plugin.json", "objects/task.yml", "workflows/task.yml", "automations/notify-done.yml", ".schema/plugin.schema.json", ".schema/object.schema.json", ".schema/workflow.schema.json", ".schema/automation.schema.json"]);
        assert!(s.files[1].1.starts_with("# yaml-language-server: $schema=../.schema/object.schema.json\n"));
        let m: Value = serde_json::from_str(&s.files[0].1).unwrap();
        assert_eq!(m["name"], "My Todo");
        assert!(m["dependencies"].get("com.objectos.notification").is_some());
        assert!(scaffold(Path::new("/tmp/x"), Some("Bad Id"), &[]).unwrap_err().contains("--id"));
    }
}
