//! Where a problem is: the file, the path inside it, and the line and column of the key the
//! path ends at, for `--json` output (an editor or a CI annotation jumps there).

use std::path::Path;

use serde_json::{json, Value};

/// A problem of a package's check as `--json` gives it: `file` (relative to the package),
/// `path` (inside the file), `line` and `column` (1-based, of the key the path ends at, when
/// found), and `message`. `manifest` is the checked `plugin.json`.
pub(crate) fn problem(manifest: &str, path: &str, message: &str) -> Value {
    let dir = Path::new(manifest).parent().unwrap_or(Path::new(""));
    // Problems of declared files are `<file> $.<path>`, or the file's name alone (it does not
    // parse); the manifest's own are a bare path.
    let (file, inner) = match path.split_once(" $") {
        Some((file, rest)) if dir.join(file).is_file() => (file.to_string(), format!("${rest}")),
        _ if path.contains('/') && dir.join(path).is_file() => (path.to_string(), "$".to_string()),
        _ => (Path::new(manifest).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin.json".into()), path.to_string()),
    };
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

/// The 1-based line and column (in characters) of the key `path` ends at in `text` (JSON or
/// YAML), found by looking for each key of the path after the one before it, inside it (on
/// its line, or on a line indented deeper). When a key is not there (a required one that is
/// missing), the place of the last key found; `None` when not even the first is.
fn line_column(text: &str, path: &str) -> Option<(usize, usize)> {
    let line_start = |i: usize| text[..i].rfind('\n').map_or(0, |n| n + 1);
    let indent = |i: usize| text[line_start(i)..].chars().take_while(|c| *c == ' ').count();
    let mut parent: Option<usize> = None;
    for key in keys(path) {
        let quoted = format!("\"{key}\"");
        let candidates = [format!("{quoted}:"), format!("{quoted} :"), format!("{key}:")];
        // The parent's block: its line, and the lines after it indented deeper.
        let end = parent.map_or(text.len(), |p| {
            let mut at = text[p..].find('\n').map_or(text.len(), |n| p + n + 1);
            while at < text.len() {
                let line = &text[at..];
                let next = line.find('\n').map_or(text.len(), |n| at + n + 1);
                let blank = line[..next - at].trim().is_empty();
                if !blank && indent(at) <= indent(p) {
                    break;
                }
                at = next;
            }
            at
        });
        let inside = |i: usize| i < end;
        let found = candidates
            .iter()
            .filter_map(|c| {
                let mut search = parent.map_or(0, |p| p + text[p..].chars().next().map_or(1, char::len_utf8));
                while let Some(i) = text.get(search..).and_then(|t| t.find(c.as_str())).map(|i| i + search) {
                    // A YAML key starts its line (after indentation) or follows `{`, `,` or `- `.
                    let before = text[..i].chars().rev().find(|c| *c != ' ');
                    let key_like = c.starts_with('"') || matches!(before, None | Some('\n' | '{' | ',' | '-'));
                    if key_like && inside(i) {
                        return Some(i);
                    }
                    search = i + c.len();
                }
                None
            })
            .min();
        match found {
            Some(i) => parent = Some(i + usize::from(text[i..].starts_with('"'))),
            None => break,
        }
    }
    let at = parent?;
    let line = text[..at].matches('\n').count() + 1;
    let column = text[line_start(at)..at].chars().count() + 1;
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

    #[test]
    fn a_missing_key_points_at_its_parent_and_text_is_not_bytes() {
        // `title` has no `type`: the place is `title`, not the next field's `type`.
        let yaml = "fields:\n  title: { required: true }\n  due:\n    type: date\n";
        assert_eq!(line_column(yaml, "$.fields.title.type"), Some((2, 3)));
        // Keys and text in other scripts: columns count characters, and nothing panics.
        let cjk = "label: \"状态: 开\"\nfields:\n  状态: { type: txet }\n";
        assert_eq!(line_column(cjk, "$.fields.状态.type"), Some((3, 9)));
        assert_eq!(line_column("名前: x\n", "$.fields.名前"), None);
    }
}
