//! The architecture's rules as tests, so the documents stay true: no import cycle between a
//! crate's modules, the kernel's modules in their documented order, no module over
//! [`MAX_LINES`] lines before its tests, the crate graph exactly as ARCHITECTURE.md draws it,
//! and every function and error code of the WIT world in the SDK's TypeScript declarations.
//!
//! Each rule is a function of text, tested on a planted violation below its use on the tree.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines a module has before its `#[cfg(test)]` part.
const MAX_LINES: usize = 600;

/// Files written by a generator, not by hand.
const GENERATED: &[&str] = &["ui/src/bindings.ts"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir` whose name ends with one of `exts`, sorted.
fn files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if p.is_dir() && name != "node_modules" && !name.starts_with('.') {
                stack.push(p);
            } else if exts.iter().any(|x| name.ends_with(x)) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The workspace's crates: name and folder, from the root manifest's members.
fn crates() -> Vec<(String, PathBuf)> {
    let text = read(&root().join("Cargo.toml"));
    let members = text.lines().find(|l| l.starts_with("members")).expect("workspace members");
    members
        .split('"')
        .skip(1)
        .step_by(2)
        .map(|m| {
            let dir = root().join(m);
            let manifest = read(&dir.join("Cargo.toml"));
            let name = manifest.lines().find_map(|l| l.strip_prefix("name = \"")).and_then(|n| n.strip_suffix('"')).expect("package name").to_string();
            (name, dir)
        })
        .collect()
}

// ---- module size -------------------------------------------------------------------------------

/// Lines before the module's tests (a `#[cfg(test)]` at the start of a line), or all of them.
fn lines_before_tests(text: &str) -> usize {
    text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).count()
}

/// The files of `files` (path, text) over [`MAX_LINES`], with their count.
fn oversized(files: &[(String, String)]) -> Vec<(String, usize)> {
    files.iter().map(|(p, t)| (p.clone(), lines_before_tests(t))).filter(|(p, n)| *n > MAX_LINES && !GENERATED.contains(&p.as_str())).collect()
}

#[test]
fn no_module_is_over_the_size_limit() {
    // Product code: each crate's `src` (test files and the tests crate hold tests only).
    let mut sources = Vec::new();
    for (name, dir) in crates() {
        if name != "objectos-tests" {
            sources.extend(files(&dir.join("src"), &[".rs"]).into_iter().filter(|f| !is_test_file(f)));
        }
    }
    sources.extend(files(&root().join("ui/src"), &[".ts", ".tsx"]));
    sources.sort();
    sources.dedup();
    let texts: Vec<(String, String)> = sources.iter().map(|p| (p.strip_prefix(root()).unwrap().display().to_string().replace("\\", "/"), read(p))).collect();
    let over = oversized(&texts);
    assert!(over.is_empty(), "modules over {MAX_LINES} lines before their tests (split them by the jobs they do): {over:?}");
}

#[test]
fn a_planted_long_module_is_found_and_its_tests_do_not_count() {
    let long = "fn f() {}\n".repeat(MAX_LINES + 1);
    let tested = format!("{}#[cfg(test)]\nmod tests {{\n{}}}\n", "fn f() {}\n".repeat(MAX_LINES), "fn t() {}\n".repeat(1000));
    let found = oversized(&[("a.rs".into(), long), ("b.rs".into(), tested), ("ui/src/bindings.ts".into(), "x\n".repeat(5000))]);
    assert_eq!(found, [("a.rs".to_string(), MAX_LINES + 1)]);
}

// ---- module imports ----------------------------------------------------------------------------

/// The top-level module a source file of a crate belongs to (`None`: the crate root).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        f => Some(f.strip_suffix(".rs").unwrap_or(f).to_string()),
    }
}

/// A module of tests kept in its own file (`mod tests;` under `#[cfg(test)]`).
fn is_test_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "tests.rs")
}

/// The text before the file's tests, with comments removed.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")) {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The top-level modules `text` names through `crate::` paths (`crate::a::b`, `crate::{a, b::c}`).
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code = code(text);
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        // `objectos_kernel::` and the like end with `crate::` too; only the keyword counts.
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item = String::new();
            let mut firsts = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => firsts.push(std::mem::take(&mut item)),
                    c => item.push(c),
                }
            }
            firsts.push(item);
            out.extend(firsts.iter().filter_map(|i| head(i.trim())));
        } else if let Some(h) = head(rest) {
            out.insert(h);
        }
    }
    out
}

/// The first segment of a path (`a` of `a::b`, or a lone `a`: a module, or an item of the root
/// that [`module_graph`] leaves out).
fn head(path: &str) -> Option<String> {
    let name: String = path.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}

/// Which of a crate's top-level modules each one imports (itself and the root left out).
fn module_graph(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in files {
        let deps = graph.entry(module.clone()).or_default();
        deps.extend(crate_paths(text).into_iter().filter(|d| d != module));
    }
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| known.contains(d));
    }
    graph
}

/// The import cycles of `graph`, each as the modules on it (from the smallest name).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn walk(n: &str, graph: &BTreeMap<String, BTreeSet<String>>, stack: &mut Vec<String>, done: &mut BTreeSet<String>, found: &mut BTreeSet<Vec<String>>) {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[at..].to_vec();
            let min = cycle.iter().enumerate().min_by(|a, b| a.1.cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
            cycle.rotate_left(min);
            found.insert(cycle);
            return;
        }
        if done.contains(n) {
            return;
        }
        stack.push(n.to_string());
        for d in graph.get(n).into_iter().flatten() {
            walk(d, graph, stack, done, found);
        }
        stack.pop();
        done.insert(n.to_string());
    }
    let mut found = BTreeSet::new();
    for n in graph.keys() {
        walk(n, graph, &mut Vec::new(), &mut BTreeSet::new(), &mut found);
    }
    found.into_iter().collect()
}

/// Each crate's source files, by top-level module (path, text).
fn crate_modules(dir: &Path) -> Vec<(String, String)> {
    let src = dir.join("src");
    files(&src, &[".rs"]).into_iter().filter(|f| !is_test_file(f)).filter_map(|f| Some((top_module(&src, &f)?, read(&f)))).collect()
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let mut found = Vec::new();
    for (name, dir) in crates() {
        for cycle in cycles(&module_graph(&crate_modules(&dir))) {
            found.push(format!("{name}: {}", cycle.join(" -> ")));
        }
    }
    assert!(found.is_empty(), "import cycles (break each by moving what both need below both): {found:#?}");
}

#[test]
fn a_planted_cycle_is_found_through_grouped_imports() {
    let files = [
        ("a".to_string(), "use crate::{b::X, util};\n".to_string()),
        ("b".to_string(), "pub fn f() { crate::c::g() }\n// crate::a::nothing in a comment\n".to_string()),
        ("c".to_string(), "use crate::{a::{self, Y}};\nuse objectos_crate::a::Z;\n".to_string()),
        ("util".to_string(), "use crate::Result;\n".to_string()),
    ];
    let graph = module_graph(&files);
    assert_eq!(graph["a"], BTreeSet::from(["b".to_string(), "util".to_string()]));
    assert!(graph["util"].is_empty(), "a root item is no module edge");
    assert_eq!(cycles(&graph), [vec!["a".to_string(), "b".to_string(), "c".to_string()]]);
    let acyclic = module_graph(&files[..2]);
    assert!(cycles(&acyclic).is_empty());
}

/// The kernel's module order, from ARCHITECTURE.md's line `Module order: a, b, ...`: a module
/// imports only modules before it.
fn documented_order(architecture: &str) -> Vec<String> {
    let line = architecture.lines().find_map(|l| l.strip_prefix("Module order: ")).expect("ARCHITECTURE.md has a `Module order: ` line");
    line.split(',').map(|m| m.trim().trim_end_matches('.').trim_matches('`').to_string()).collect()
}

/// Imports against `order` (`a -> b` where `b` is not before `a`), and modules it does not name.
fn against_order(graph: &BTreeMap<String, BTreeSet<String>>, order: &[String]) -> Vec<String> {
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut out = Vec::new();
    for (m, deps) in graph {
        let Some(r) = rank(m) else {
            out.push(format!("{m} is not in the documented order"));
            continue;
        };
        out.extend(deps.iter().filter(|d| rank(d).is_none_or(|rd| rd >= r)).map(|d| format!("{m} -> {d}")));
    }
    out
}

#[test]
fn the_kernels_modules_follow_the_documented_order() {
    let order = documented_order(&read(&root().join("ARCHITECTURE.md")));
    let graph = module_graph(&crate_modules(&root().join("kernel")));
    let wrong = against_order(&graph, &order);
    assert!(wrong.is_empty(), "kernel imports against ARCHITECTURE.md's module order {order:?}: {wrong:#?}");
}

#[test]
fn a_planted_import_against_the_order_is_found() {
    let order = documented_order("text\nModule order: `model`, `db`, `host`.\n");
    assert_eq!(order, ["model", "db", "host"]);
    let files = [("model".to_string(), "use crate::db::Store;\n".to_string()), ("db".to_string(), "use crate::model::X;\n".to_string()), ("extra".to_string(), String::new())];
    assert_eq!(against_order(&module_graph(&files), &order), ["extra is not in the documented order", "model -> db"]);
}

// ---- crate edges -------------------------------------------------------------------------------

/// The workspace crates a crate's manifest depends on (not its dev-dependencies).
fn crate_deps(manifest: &str, workspace: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]" || (line.starts_with("[target.") && line.ends_with(".dependencies]"));
            continue;
        }
        if !in_deps {
            continue;
        }
        let name: String = line.chars().take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_').collect();
        if workspace.contains(&name) {
            out.insert(name);
        }
    }
    out
}

/// The crate graph ARCHITECTURE.md draws: the lines `crate -> dep, dep` of its `crate graph`
/// block.
fn drawn_edges(architecture: &str) -> BTreeMap<String, BTreeSet<String>> {
    let block = architecture.split("```crate-graph\n").nth(1).and_then(|b| b.split("```").next()).expect("ARCHITECTURE.md has a ```crate-graph block");
    block
        .lines()
        .filter_map(|l| l.split_once("->"))
        .map(|(from, to)| (from.trim().to_string(), to.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()))
        .collect()
}

/// Where the drawn graph and the manifests differ.
fn edge_differences(actual: &BTreeMap<String, BTreeSet<String>>, drawn: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (from, deps) in actual {
        let allowed = drawn.get(from).cloned().unwrap_or_default();
        out.extend(deps.difference(&allowed).map(|d| format!("{from} -> {d} is not drawn")));
        out.extend(allowed.difference(deps).map(|d| format!("{from} -> {d} is drawn but not in its Cargo.toml")));
    }
    out.extend(drawn.keys().filter(|k| !actual.contains_key(*k)).map(|k| format!("{k} is drawn but is no workspace crate")));
    out
}

#[test]
fn the_crate_graph_is_the_one_architecture_md_draws() {
    let crates = crates();
    let names: BTreeSet<String> = crates.iter().map(|(n, _)| n.clone()).collect();
    let actual: BTreeMap<String, BTreeSet<String>> = crates.iter().map(|(n, d)| (n.clone(), crate_deps(&read(&d.join("Cargo.toml")), &names))).collect();
    let drawn = drawn_edges(&read(&root().join("ARCHITECTURE.md")));
    let wrong = edge_differences(&actual, &drawn);
    assert!(wrong.is_empty(), "the crate graph differs from ARCHITECTURE.md's: {wrong:#?}");
}

#[test]
fn a_planted_crate_edge_is_found() {
    let names: BTreeSet<String> = ["objectos-kernel", "objectos-jobs", "objectos-metrics"].map(String::from).into();
    let manifest = "[package]\nname = \"objectos-jobs\"\n[dependencies]\nobjectos-kernel.workspace = true\nobjectos-metrics = { path = \"../metrics\" }\nserde = \"1\"\n[dev-dependencies]\nobjectos-metrics.workspace = true\n";
    let actual = BTreeMap::from([("objectos-jobs".to_string(), crate_deps(manifest, &names))]);
    let drawn = drawn_edges("```crate-graph\nobjectos-jobs -> objectos-kernel\nobjectos-cache -> objectos-kernel\n```\n");
    assert_eq!(edge_differences(&actual, &drawn), ["objectos-jobs -> objectos-metrics is not drawn", "objectos-cache is drawn but is no workspace crate"]);
}

// ---- the guest API -----------------------------------------------------------------------------

/// The functions (`name: func`) and the `error-code` cases of a WIT world, in camelCase as the
/// JavaScript API names them.
fn wit_names(wit: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let camel = |s: &str| {
        let mut out = String::new();
        let mut up = false;
        for c in s.chars() {
            if c == '-' {
                up = true;
            } else if up {
                out.extend(c.to_uppercase());
                up = false;
            } else {
                out.push(c);
            }
        }
        out
    };
    let mut funcs = BTreeSet::new();
    let mut codes = BTreeSet::new();
    let mut in_codes = false;
    for line in wit.lines().map(str::trim) {
        if line.starts_with("//") {
            continue;
        }
        if line.starts_with("enum error-code") {
            in_codes = true;
            continue;
        }
        if in_codes {
            if line.starts_with('}') {
                in_codes = false;
            } else if let Some(case) = line.strip_suffix(',').or(Some(line)).filter(|c| !c.is_empty()) {
                codes.insert(case.to_string());
            }
            continue;
        }
        if let Some((name, rest)) = line.split_once(':') {
            if rest.trim_start().starts_with("func") {
                funcs.insert(camel(name.trim()));
            }
        }
    }
    (funcs, codes)
}

/// The JavaScript face's names for the world's functions where they differ from the WIT name
/// in camelCase: the SDK declares these (the shim in `plugins/sandbox/src/js.rs` maps them).
const JS_NAMES: &[(&str, &str)] = &[
    ("unsubscribe", "off"),
    ("send", "request"),
    ("entries", "list"),
    // The guest's exports: hooks, and what `on` and `register` hand the host.
    ("install", "onInstall"),
    ("load", "onLoad"),
    ("enable", "onEnable"),
    ("disable", "onDisable"),
    ("unload", "onUnload"),
    ("uninstall", "onUninstall"),
    ("upgrade", "onUpgrade"),
    ("handleEvent", "on"),
    ("call", "register"),
];

/// What of `wit` the TypeScript declarations `dts` do not name: a function (by its
/// JavaScript name) as a method or property, an error code as a string literal.
fn missing_from_dts(wit: &str, dts: &str) -> Vec<String> {
    let (funcs, codes) = wit_names(wit);
    let declared = |f: &str| ["(", "<", ":", "?:", "?("].iter().any(|after| dts.contains(&format!("{f}{after}")));
    let js = |f: String| JS_NAMES.iter().find(|(w, _)| *w == f).map_or(f.clone(), |(_, j)| j.to_string());
    let mut out: Vec<String> = funcs.into_iter().map(js).filter(|f| !declared(f)).map(|f| format!("function {f}")).collect();
    out.extend(codes.into_iter().filter(|c| !dts.contains(&format!("\"{c}\""))).map(|c| format!("error code \"{c}\"")));
    out
}

#[test]
fn every_function_and_error_code_of_the_world_is_in_the_sdk_declarations() {
    let wit = read(&root().join("wit/plugin.wit"));
    let dts = read(&root().join("sdk/objectos.d.ts"));
    let missing = missing_from_dts(&wit, &dts);
    assert!(missing.is_empty(), "sdk/objectos.d.ts lacks what wit/plugin.wit declares: {missing:?}");
}

#[test]
fn a_planted_function_and_error_code_missing_from_the_declarations_are_found() {
    let wit = "interface types {\n  enum error-code {\n    permission-denied,\n    not-found,\n  }\n}\ninterface storage {\n  get: func(key: string) -> option<string>;\n  list-keys: func(prefix: string) -> list<string>;\n}\n";
    let dts = "export type ErrorCode = \"permission-denied\";\nexport interface Storage { get(key: string): unknown; }\n";
    assert_eq!(missing_from_dts(wit, dts), ["function listKeys", "error code \"not-found\""]);
    let renamed = "interface events {\n  unsubscribe: func(id: u64) -> bool;\n}\n";
    assert_eq!(missing_from_dts(renamed, "unsubscribe(id: number): boolean;"), ["function off"], "a renamed function is looked for by its JavaScript name");
}


// ---- released worlds ---------------------------------------------------------------------------

/// Each released version of the world, frozen in `wit/<version>/plugin.wit`, with the SHA-256
/// of the file as released: a package built against it must keep working, so it never changes.
/// A new version is a new folder (and a new line here), and `wit/plugin.wit` points at it.
const RELEASED: &[(&str, &str)] = &[("0.1.0", "38efa00ea0c19e6f62580b3bdf96945f2ce31bfba8c3ff8d0114a51450890426")];

/// The version in a world's `package objectos:plugin@<version>;` line.
fn world_version(wit: &str) -> Option<String> {
    wit.lines().find_map(|l| l.trim().strip_prefix("package objectos:plugin@")).map(|v| v.trim_end_matches(';').to_string())
}

/// What is wrong with the released worlds (`folders`: version, file text) and the current one.
fn released_problems(folders: &[(String, String)], current: &str) -> Vec<String> {
    use sha2::Digest;
    let mut out = Vec::new();
    for (version, hash) in RELEASED {
        match folders.iter().find(|(v, _)| v == version) {
            None => out.push(format!("wit/{version}/plugin.wit, a released world, is gone")),
            Some((_, text)) => {
                let now = hex::encode(sha2::Sha256::digest(text.as_bytes()));
                if now != *hash {
                    out.push(format!("wit/{version}/plugin.wit changed after its release (sha256 {now}): add a new version instead"));
                }
                if world_version(text).as_deref() != Some(version) {
                    out.push(format!("wit/{version}/plugin.wit does not declare version {version}"));
                }
            }
        }
    }
    out.extend(folders.iter().filter(|(v, _)| !RELEASED.iter().any(|(r, _)| r == v)).map(|(v, _)| format!("wit/{v}/ is not listed as released")));
    let current_version = world_version(current).unwrap_or_default();
    if let Some((_, text)) = folders.iter().find(|(v, _)| *v == current_version) {
        if text != current {
            out.push(format!("wit/plugin.wit declares the released version {current_version} but differs from it: give it a new version"));
        }
    }
    out
}

#[test]
fn released_worlds_are_frozen() {
    let mut folders = Vec::new();
    for e in std::fs::read_dir(root().join("wit")).unwrap().flatten() {
        let file = e.path().join("plugin.wit");
        if e.path().is_dir() && file.is_file() {
            folders.push((e.file_name().to_string_lossy().into_owned(), read(&file)));
        }
    }
    let problems = released_problems(&folders, &read(&root().join("wit/plugin.wit")));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_changed_released_world_and_a_reused_version_are_found() {
    let released = read(&root().join("wit/0.1.0/plugin.wit"));
    let changed = released.replacen("interface storage {", "interface storage {\n    clear: func();", 1);
    let problems = released_problems(&[("0.1.0".into(), changed.clone())], &changed);
    assert!(problems.iter().any(|p| p.contains("changed after its release")), "{problems:?}");
    let problems = released_problems(&[("0.1.0".into(), released.clone())], &changed);
    assert_eq!(problems, ["wit/plugin.wit declares the released version 0.1.0 but differs from it: give it a new version"]);
    assert!(released_problems(&[("0.1.0".into(), released.clone())], &released).is_empty());
}
