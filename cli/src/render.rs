//! Human-readable output.

use std::fmt::Write as _;

use objectos_kernel::model::audit::AuditRecord;
use objectos_kernel::model::log::LogRecord;
use objectos_kernel::model::views::{Graph, PluginInfo};

pub(crate) fn time(ms: i64) -> String {
    // UTC, second precision, without a date library: days since epoch -> civil date.
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `s` as one safe line for a terminal ([`objectos_kernel::util::printable`]): control
/// characters (line breaks, escape sequences) and the Unicode controls that reorder text are
/// shown as `\u{..}` instead of acting, so text a package wrote (a name, a log line, a
/// notification) cannot forge other lines or colours.
pub(crate) use objectos_kernel::util::printable as clean;

pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    // Headers may be a package's names too (a record type's fields).
    let headers: Vec<_> = headers.iter().map(|&h| clean(h)).collect();
    let headers: Vec<&str> = headers.iter().map(|h| &**h).collect();
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| clean(c).into_owned()).collect()).collect();
    let rows = &rows;
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let _ = write!(s, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

pub(crate) fn plugin_table(list: &[PluginInfo]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.manifest.id.clone(),
                p.manifest.version.to_string(),
                format!("{:?}", p.kind).to_lowercase(),
                p.state.to_string(),
                if p.pending.is_empty() { "-".into() } else { p.pending.len().to_string() },
                p.manifest.name.clone(),
            ]
        })
        .collect();
    table(&["ID", "VERSION", "KIND", "STATE", "PENDING", "NAME"], &rows)
}

pub(crate) fn plugin_detail(p: &PluginInfo) -> String {
    let m = &p.manifest;
    let mut s = String::new();
    let _ = writeln!(s, "{} {} ({})", clean(&m.name), m.version, m.id);
    if !m.description.is_empty() {
        let _ = writeln!(s, "{}", clean(&m.description));
    }
    let _ = writeln!(s, "kind      {}", format!("{:?}", p.kind).to_lowercase());
    let _ = writeln!(s, "state     {} (recorded as {})", p.state, p.desired);
    let acts: Vec<&str> = p.actions.iter().map(|a| a.as_str()).collect();
    let _ = writeln!(s, "actions   {}", if acts.is_empty() { "-".into() } else { acts.join(", ") });
    if let Some(e) = &p.last_error {
        let _ = writeln!(s, "error     {}{}", e.hook.as_deref().map(|h| format!("{}: ", clean(h))).unwrap_or_default(), clean(&e.message));
    }
    if let Some(e) = &p.resolve_error {
        let _ = writeln!(s, "resolve   {}", clean(e));
    }
    if let Some(c) = &p.author_change {
        let who = |a: &Option<String>| a.as_deref().map_or_else(|| "nobody named".into(), |a| clean(a).into_owned());
        let _ = writeln!(s, "AUTHOR    changed in {} from {} to {}: approve its permissions again to enable it", c.version, who(&c.from), who(&c.to));
    }
    if let Some(a) = &m.author {
        let _ = writeln!(s, "author    {}", clean(a));
    }
    if let Some(l) = &m.license {
        let _ = writeln!(s, "license   {}", clean(l));
    }
    if let Some(e) = &m.engines.objectos {
        let _ = writeln!(s, "engine    objectos {e}");
    }
    if let Some(c) = &p.code {
        let _ = writeln!(s, "code      {} ({}, sandboxed): {}", clean(&c.main), c.language, bounds(c));
    }
    let _ = writeln!(s, "\nDependencies:");
    if p.dependencies.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for d in &p.dependencies {
        let _ = writeln!(
            s,
            "  {} {}{} -> {}{}",
            d.id,
            clean(&d.range),
            if d.optional { " (optional)" } else { "" },
            d.installed.as_deref().map(|v| format!("{v} {}", d.state.map(|s| s.to_string()).unwrap_or_default())).unwrap_or_else(|| "not installed".into()),
            if d.satisfied { "" } else { "  UNSATISFIED" }
        );
    }
    let _ = writeln!(s, "Required by: {}", if p.dependents.is_empty() { "nothing".into() } else { p.dependents.join(", ") });
    let pr = &m.provides;
    let _ = writeln!(s, "\nProvides:");
    for (what, list) in [
        ("services", &pr.services),
        ("events", &pr.events),
        ("objects", &pr.objects),
        ("workflows", &pr.workflows),
        ("automations", &pr.automations),
        ("translations", &pr.translations),
    ] {
        if !list.is_empty() {
            let _ = writeln!(s, "  {what}: {}", clean(&list.join(", ")));
        }
    }
    if !p.services.is_empty() {
        let _ = writeln!(s, "  registered now: {}", clean(&p.services.join(", ")));
    }
    let _ = writeln!(s, "\nPermissions:");
    s.push_str(&permissions(p));
    s
}

/// A package's sandbox bounds in words.
fn bounds(c: &objectos_kernel::model::views::CodeInfo) -> String {
    let b = &c.bounds;
    let n = |v: Option<u64>| v.map_or_else(|| "?".into(), |v| v.to_string());
    format!("{} MiB memory, {} ms per hook, {} ms per event or service call, {} KiB stack", n(b.memory_mib), n(b.hook_ms), n(b.call_ms), c.stack_kib)
}

pub(crate) fn permissions(p: &PluginInfo) -> String {
    let code = p.code.as_ref().map(|c| format!("Runs code in the sandbox: {} ({}), with {}. It reaches only what these permissions allow; no files, network or environment.\n\n", clean(&c.main), c.language, bounds(c))).unwrap_or_default();
    if p.permissions.is_empty() {
        return format!("{code}  none requested\n");
    }
    let rows: Vec<Vec<String>> = p
        .permissions
        .iter()
        .map(|x| {
            vec![
                x.permission.clone(),
                if x.required { "required".into() } else { "optional".into() },
                x.risk.to_string(),
                match &x.grant {
                    Some(g) => format!("granted by {}", g.granted_by),
                    None => "PENDING".into(),
                },
                format!("{}{}{}{}", x.description, reaches(&p.manifest.id, &x.owners), if x.enforced { "" } else { " (declared, not enforced: built-in code runs in the host process)" }, if x.new { " [new in this version]" } else { "" }),
            ]
        })
        .collect();
    format!("{code}{}", table(&["PERMISSION", "KIND", "RISK", "STATUS", "WHAT IT ALLOWS"], &rows))
}

/// Whose names a permission reaches, beside the plugin's own: "; reaches CRM (com.acme.crm)'s".
fn reaches(own: &str, owners: &[objectos_kernel::model::views::Owner]) -> String {
    let others: Vec<String> = owners.iter().filter(|o| o.id != own).map(|o| format!("{} ({})", o.name, o.id)).collect();
    if others.is_empty() {
        String::new()
    } else {
        format!("; reaches {}'s", others.join(", "))
    }
}

pub(crate) fn graph_text(g: &Graph) -> String {
    let mut s = String::new();
    for n in &g.nodes {
        let _ = writeln!(s, "{} {} [{}]", n.id, n.version, n.state);
        for e in g.edges.iter().filter(|e| e.from == n.id) {
            let flag = if e.in_cycle { "  CYCLE" } else if !e.satisfied { "  UNSATISFIED" } else { "" };
            let _ = writeln!(s, "  -> {} {}{}{}", e.to, clean(&e.range), if e.optional { " (optional)" } else { "" }, flag);
        }
    }
    if !g.order.is_empty() {
        let _ = writeln!(s, "\nLoad order: {}", g.order.join(", "));
    }
    for (id, e) in &g.errors {
        let _ = writeln!(s, "error: {id}: {}", clean(&e.to_string()));
    }
    s
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", clean(s).replace('\\', "\\\\").replace('"', "\\\""))
}

pub(crate) fn graph_dot(g: &Graph) -> String {
    let mut s = String::from("digraph objectos {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"sans-serif\"];\n");
    for n in &g.nodes {
        let color = match n.state {
            objectos_kernel::model::lifecycle::State::Enabled => "#c8f7c5",
            objectos_kernel::model::lifecycle::State::Error => "#f7c5c5",
            objectos_kernel::model::lifecycle::State::Disabled => "#e0e0e0",
            objectos_kernel::model::lifecycle::State::Loaded => "#c5daf7",
            objectos_kernel::model::lifecycle::State::Installed => "#ffffff",
        };
        let _ = writeln!(s, "  {} [label={}, fillcolor=\"{color}\"];", dot_id(&n.id), dot_id(&format!("{}\\n{} ({})", n.id, n.version, n.state)));
    }
    for e in &g.edges {
        let style = if e.in_cycle || !e.satisfied { ", color=red, fontcolor=red" } else if e.optional { ", style=dashed" } else { "" };
        let _ = writeln!(s, "  {} -> {} [label={}{style}];", dot_id(&e.from), dot_id(&e.to), dot_id(&e.range));
    }
    s.push_str("}\n");
    s
}

pub(crate) fn log_line(l: &LogRecord) -> String {
    let fields = if l.fields.is_null() { String::new() } else { format!(" {}", l.fields) };
    format!("{} {:<5} {} {}{}", time(l.ts), l.level.as_str().to_uppercase(), clean(&l.plugin), clean(&l.message), clean(&fields))
}

pub(crate) fn audit_line(r: &AuditRecord) -> String {
    format!("#{:<5} {} {:<24} {:<22} {} {}", r.id, time(r.ts), clean(&r.actor), clean(&r.action), clean(r.plugin.as_deref().unwrap_or("-")), clean(&r.details.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_packages_cannot_forge_lines_or_colours() {
        assert_eq!(clean("Acme CRM"), "Acme CRM");
        assert_eq!(clean("a\nb"), "a\\u{a}b");
        assert_eq!(clean("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(clean("abc\u{202e}fed"), "abc\\u{202e}fed");
        let t = table(&["ID", "NAME"], &[vec!["com.evil".into(), "Evil\ncom.objectos.metrics  1.0.0  builtin  enabled".into()]]);
        assert_eq!(t.lines().count(), 2, "{t}");
    }
}

/// A plugin's settings: key, type, what is set (a secret as set or not), what it is for.
pub(crate) fn settings(id: &str, settings: &[objectos_kernel::model::views::SettingStatus]) -> String {
    if settings.is_empty() {
        return format!("{id} declares no settings\n");
    }
    let mut out = String::new();
    for s in settings {
        let kind = serde_json::to_value(s.setting.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let value = match (&s.value, s.setting.secret, s.set) {
            (_, true, true) => "(secret, set)".to_string(),
            (_, true, false) => "(secret, not set)".to_string(),
            (Some(v), _, _) => v.to_string(),
            (None, _, _) => match &s.setting.default {
                Some(d) => format!("{d} (default)"),
                None => "(not set)".to_string(),
            },
        };
        let required = if s.setting.required && !s.set { "  [required]" } else { "" };
        out.push_str(&format!("{} ({kind}): {}{required}\n", clean(&s.key), clean(&value)));
        if let Some(t) = s.setting.title.as_deref().or(s.setting.description.as_deref()) {
            out.push_str(&format!("    {}\n", clean(t)));
        }
    }
    out
}
