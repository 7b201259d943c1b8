//! Where a problem is: the file, the path inside it, and the line and column of the key the
//! path ends at, for `--json` output (an editor or a CI annotation jumps there).

use std::path::Path;

use serde_json::{json, Value};

/// A problem of a package's check as `--json` gives it: `file` (relative to the package),
/// `path` (inside the file), `line` and `column` (1-based, of the key the path ends at, when
/// found), and `message`. `manifest` is the checked `plugin.json`.
pub(crate) fn problem(manifest: &str, path: &str, message: &str) -> Value {
    // Problems of declared files are `<file> $.<path>`; the manifest's own are a bare path.
    let (file, inner) = match path.split_once(" $") {
        Some((file, rest)) => (file.to_string(), format!("${rest}")),
        None => (Path::new(manifest).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin.json".into()), path.to_string()),
    };
    let dir = Path::new(manifest).parent().unwrap_or(Path::new(""));
    let at = std::fs::read_to_string(dir.join(&file)).ok().and_then(|text| line_column(&text, &inner));
    json!({ "file": file, "path": inner, "line": at.map(|a| a.0), "column": at.map(|a| a.1), "message": message })
}

/// The keys of `path` (`$.fields.title.type`, `permissions[0]`, `settings["api token"]`), in
/// order; list indexes are left out (the key holding the list is found).
fn keys(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix("[\"") {
            let end = r.find("\"]").unwrap_or(r.len());
            out.push(r[..end].to_string());
            rest = r.get(end + 2..).unwrap_or("");
            continue;
        }
        if let Some(r) = rest.strip_prefix('[') {
            rest = r.find(']').map_or("", |end| &r[end + 1..]);
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        out.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    out
}

/// The 1-based line and column of the key `path` ends at in `text` (JSON or YAML), found by
/// looking for each key of the path after the one before it.
fn line_column(text: &str, path: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    let mut found = None;
    for key in keys(path) {
        let quoted = format!("\"{key}\"");
        let candidates = [format!("{quoted}:"), format!("{quoted} :"), format!("{key}:")];
        let at = candidates
            .iter()
            .filter_map(|c| {
                let mut search = from;
                while let Some(i) = text[search..].find(c.as_str()).map(|i| i + search) {
                    // A YAML key starts its line (after indentation) or follows `{`, `,` or `- `.
                    let before = text[..i].chars().rev().find(|c| *c != ' ');
                    if c.starts_with('"') || matches!(before, None | Some('\n' | '{' | ',' | '-')) {
                        return Some(i);
                    }
                    search = i + 1;
                }
                None
            })
            .min()?;
        found = Some(at + usize::from(text[at..].starts_with('"')));
        from = at + key.len();
    }
    let at = found?;
    let line = text[..at].matches('\n').count() + 1;
    let column = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    Some((line, column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_found_in_yaml_and_json() {
        let yaml = "name: task\nfields:\n  title: { type: txet, required: true }\n  done:\n    type: boolean\n";
        assert_eq!(line_column(yaml, "$.fields.title.type"), Some((3, 12)));
        assert_eq!(line_column(yaml, "$.fields.done.type"), Some((5, 5)));
        let json = "{\n  \"id\": \"x\",\n  \"permissions\": [\n    \"data.tiket.read\"\n  ]\n}";
        assert_eq!(line_column(json, "permissions[0]"), Some((3, 4)));
        assert_eq!(line_column(json, "nowhere"), None);
        assert_eq!(keys("settings[\"api token\"].type"), ["settings", "api token", "type"]);
    }
}
