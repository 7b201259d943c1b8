//! `{{placeholder}}` substitution, shared by the plugins that render text from data
//! (notification templates, translations).

/// Replace every `{{ name }}` in `text` by `lookup(name)` (the name trimmed). `lookup`
/// returns `Err` to stop with a message; unclosed or empty placeholders are errors that give
/// the byte offset.
pub fn render_placeholders(text: &str, mut lookup: impl FnMut(&str) -> Result<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let at = text.len() - rest.len() + start;
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| format!("`{{{{` at byte {at} is never closed with `}}}}`"))?;
        let name = after[..end].trim();
        if name.is_empty() {
            return Err(format!("an empty `{{{{}}}}` placeholder at byte {at}"));
        }
        out.push_str(&lookup(name)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The value at a dotted `path` (object keys, array indexes) in `vars`, as text: strings as
/// they are, other values as JSON.
pub fn lookup_path(vars: &serde_json::Value, path: &str) -> Option<String> {
    let mut v = vars;
    for part in path.split('.') {
        v = match v {
            serde_json::Value::Object(m) => m.get(part)?,
            serde_json::Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_are_replaced_and_malformed_ones_located() {
        let vars = json!({"a": {"b": [10, "x"]}, "n": 2});
        let r = |t: &str| render_placeholders(t, |p| lookup_path(&vars, p).ok_or_else(|| format!("no {p}")));
        assert_eq!(r("{{ n }} and {{a.b.1}} and {{a.b.0}}").as_deref(), Ok("2 and x and 10"));
        assert_eq!(r("plain").as_deref(), Ok("plain"));
        assert_eq!(r("x {{missing}}"), Err("no missing".into()));
        assert_eq!(r("ab{{n"), Err("`{{` at byte 2 is never closed with `}}`".into()));
        assert_eq!(r("{{ }}"), Err("an empty `{{}}` placeholder at byte 0".into()));
    }
}
