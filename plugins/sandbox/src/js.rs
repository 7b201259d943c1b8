//! JavaScript packages: the host's entry module, which gives the author's hooks a `ctx` like a
//! built-in plugin's (`ctx.storage.get`, `ctx.events.on`, `ctx.services.register`...) and adapts
//! them to the world's exports. It is snapshotted with the author's module at install.

/// The entry module (`entry.js`); the string literal `"__MAIN__"` becomes the author's module
/// path and `"__SPEC__"` the import specifier for it, each as a JSON string literal (which is a
/// JS one).
pub(crate) const SHIM: &str = include_str!("entry.js");

/// The entry module for a package whose module is `main`.
pub(crate) fn entry(main: &str) -> String {
    let literal = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let (spec, name) = (literal(&format!("./{main}")), literal(main));
    // One pass, so nothing inserted is read again as a placeholder.
    let mut out = String::with_capacity(SHIM.len() + spec.len() + name.len());
    let mut rest = SHIM;
    while let Some(at) = rest.find("\"__") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        if let Some(tail) = after.strip_prefix("\"__SPEC__\"") {
            out.push_str(&spec);
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("\"__MAIN__\"") {
            out.push_str(&name);
            rest = tail;
        } else {
            out.push_str("\"__");
            rest = &after[3..];
        }
    }
    out.push_str(rest);
    out
}

/// What componentizing `main` failing means, for the author.
pub(crate) fn explain(error: &str, main: &str) -> String {
    let error = error.trim_start_matches([':', ' ']);
    format!("{main} does not load as a plugin (a syntax error, an import that does not resolve, or code that fails when the module is first run): {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_imports_the_authors_module_and_nothing_inserted_is_read_again() {
        let e = entry("index.js");
        assert!(e.contains("import * as plugin from \"./index.js\";"), "{e}");
        assert!(e.contains("const MAIN = \"index.js\";"), "{e}");
        assert!(!e.contains("\"__SPEC__\"") && !e.contains("\"__MAIN__\""));
        let odd = entry("a\"__MAIN__\".js");
        assert!(odd.contains(r#"const MAIN = "a\"__MAIN__\".js";"#), "{odd}");
    }
}
