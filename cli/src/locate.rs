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

/// A step of a path: a key, or the n-th item of a list.
#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Item(usize),
}

/// The steps of `path` (`$.fields.title.type`, `permissions[0]`, `settings["api token"]`), in
/// order.
fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix("[\"") {
            let end = r.find("\"]").unwrap_or(r.len());
            out.push(Step::Key(r[..end].to_string()));
            rest = r.get(end + 2..).unwrap_or("");
            continue;
        }
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            match r[..end].parse() {
                Ok(n) => out.push(Step::Item(n)),
                Err(_) => break,
            }
            rest = r.get(end + 1..).unwrap_or("");
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        out.push(Step::Key(rest[..end].to_string()));
        rest = &rest[end..];
    }
    out
}

/// Where the `n`-th item of the list held by the key at `key` starts: in a flow list
/// (`[a, { b: 1 }]`, JSON's too) after the n-th comma at the list's own depth; in a YAML block
/// list after the n-th `- ` of the key's block.
fn item(text: &str, key: usize, end: usize, n: usize) -> Option<usize> {
    let colon = key + text[key..].find(':')?;
    let after = colon + 1 + text[colon + 1..].find(|c: char| !c.is_whitespace())?;
    if text[after..].starts_with('[') {
        let (mut depth, mut quote, mut seen) = (0usize, None::<char>, 0usize);
        let mut start = true;
        for (i, c) in text[after..].char_indices() {
            let at = after + i;
            if start && !c.is_whitespace() && depth == 1 && c != ',' && c != ']' {
                if seen == n {
                    return Some(at);
                }
                start = false;
            }
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '[' | '{') => depth += 1,
                (None, ']' | '}') => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return None;
                    }
                }
                (None, ',') if depth == 1 => {
                    seen += 1;
                    start = true;
                }
                _ => {}
            }
        }
        return None;
    }
    // Block items: lines of the key's block whose text starts with `- `, at the first one's
    // indentation (deeper ones are inside an item).
    let (mut seen, mut level) = (0, None);
    let mut at = text[key..].find('\n').map_or(text.len(), |i| key + i + 1);
    while at < end {
        let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
        let trimmed = text[at..line_end].trim_start_matches(' ');
        let indent = line_end - at - trimmed.len();
        if (trimmed.starts_with("- ") || trimmed.trim_end() == "-") && *level.get_or_insert(indent) == indent {
            if seen == n {
                // The item's content, after `- ` (or the dash, when its content is below).
                let dash = line_end - trimmed.len();
                return Some(if trimmed.starts_with("- ") { dash + 2 } else { dash });
            }
            seen += 1;
        }
        at = line_end;
    }
    None
}

/// The 1-based line and column (in characters) of the key `path` ends at in `text` (JSON or
/// YAML), found by looking for each key of the path after the one before it, inside it (on
/// its line, or on a line indented deeper). When a key is not there (a required one that is
/// missing), the place of the last key found; `None` when not even the first is.
fn line_column(text: &str, path: &str) -> Option<(usize, usize)> {
    let line_start = |i: usize| text[..i].rfind('\n').map_or(0, |n| n + 1);
    let mut parent: Option<usize> = None;
    // An item's first key starts where the item does; any other key is after its parent's.
    let mut at_item = false;
    for step in steps(path) {
        let key = match step {
            Step::Key(k) => k,
            Step::Item(n) => {
                let Some(p) = parent else { break };
                match item(text, p, block_end(text, p), n) {
                    Some(i) => {
                        parent = Some(i);
                        at_item = true;
                        continue;
                    }
                    None => break,
                }
            }
        };
        let quoted = format!("\"{key}\"");
        let candidates = [format!("{quoted}:"), format!("{quoted} :"), format!("{key}:")];
        let end = parent.map_or(text.len(), |p| block_end(text, p));
        let inside = |i: usize| i < end;
        let found = candidates
            .iter()
            .filter_map(|c| {
                let mut search = parent.map_or(0, |p| if at_item { p } else { p + text[p..].chars().next().map_or(1, char::len_utf8) });
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
        at_item = false;
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

/// Where the block of what starts at `p` ends: its line, and the lines after it indented
/// deeper; a key's block list may also sit at the key's own indentation (`do:` then `- ...`).
fn block_end(text: &str, p: usize) -> usize {
    let start = text[..p].rfind('\n').map_or(0, |n| n + 1);
    let indent = |at: usize| text[at..].chars().take_while(|c| *c == ' ').count();
    let own = indent(start);
    let in_item = text[start + own..].starts_with('-');
    let mut at = text[p..].find('\n').map_or(text.len(), |n| p + n + 1);
    while at < text.len() {
        let next = text[at..].find('\n').map_or(text.len(), |n| at + n + 1);
        let line = &text[at..next];
        let i = indent(at);
        let item_of_key = !in_item && i == own && line[i..].starts_with('-');
        if !line.trim().is_empty() && i <= own && !item_of_key {
            break;
        }
        at = next;
    }
    at
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
        assert_eq!(line_column(json, "permissions[0]"), Some((4, 5)));
        assert_eq!(line_column(json, "nowhere"), None);
        assert_eq!(steps("settings[\"api token\"].type"), [Step::Key("settings".into()), Step::Key("api token".into()), Step::Key("type".into())]);
        assert_eq!(steps("$.do[2].notify"), [Step::Key("do".into()), Step::Item(2), Step::Key("notify".into())]);
    }

    #[test]
    fn the_nth_item_of_a_list_is_found() {
        // A block list, with a nested list inside an item, and a flow list of mappings.
        let yaml = "states:\n  open:\n    entry:\n      - notify:\n          title: a\n          channels:\n            - x\n            - y\n      - emit: b.c\n    transitions: [{ event: go, to: done }, { event: stop, to: closed }]\n";
        assert_eq!(line_column(yaml, "$.states.open.entry[1].emit"), Some((9, 9)));
        assert_eq!(line_column(yaml, "$.states.open.entry[0].notify.channels[1]"), Some((8, 15)));
        assert_eq!(line_column(yaml, "$.states.open.transitions[1].to"), Some((10, 59)));
        assert_eq!(line_column(yaml, "$.states.open.transitions[0].to"), Some((10, 32)));
        // A block list at its key's own indentation.
        let flat = "do:\n- emit: a.b\n- notify: { title: x }\nwhen: { event: a.b }\n";
        assert_eq!(line_column(flat, "$.do[1].notify.title"), Some((3, 13)));
        assert_eq!(line_column(flat, "$.do[5]"), Some((1, 1)), "no such item: the list's key");
        let json = "{ \"permissions\": [\"a\", \"data.tiket.read\"] }";
        assert_eq!(line_column(json, "permissions[1]"), Some((1, 24)));
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
