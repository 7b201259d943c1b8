//! Plugin ids: what one may be. Below the manifest and the permissions, which both check ids.

/// The longest accepted plugin id.
pub const MAX_ID_LEN: usize = 128;

/// Check a plugin id; `Err` says why it is not one.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("an id cannot be empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("an id can be at most {MAX_ID_LEN} characters (this one has {})", id.len()));
    }
    let mut chars = id.chars();
    let first = chars.next().unwrap_or(' ');
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(format!("`{id}` must start with a lowercase letter or a digit"));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("`{id}` contains `{}`; ids use lowercase letters, digits, `.`, `_` and `-`", c.escape_debug()));
    }
    Ok(())
}
