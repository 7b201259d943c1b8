//! A package's declared files read together, with what only all of them can say: references
//! between types, literals against fields, templates, a workflow's record type.

use super::*;

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
pub(crate) fn check_reference_targets(r: &mut Report, o: &ObjectDef, manifest: &objectos_kernel::model::manifest::Manifest, own: &[ObjectDef], declared: &dyn Fn(&str) -> Option<Vec<String>>) {
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
pub(crate) fn check_literals(r: &mut Report, at: &str, e: &Expr, o: &ObjectDef, prefix: Option<&str>) {
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
pub(crate) fn check_templates(r: &mut Report, at: &str, actions: &[Action], o: &ObjectDef) {
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

pub(crate) fn check_workflow_object(r: &mut Report, w: &WorkflowDef, objects: &[ObjectDef]) {
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
