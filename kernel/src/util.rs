//! Small helpers shared by the kernel and the plugin crates.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Text of a caught panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

/// The smallest string greater than every string starting with `prefix` (None when there is
/// none), for range scans by prefix.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Deepest nesting of arrays and objects accepted in a value a plugin hands the kernel (a
/// storage value, an event payload, a job's payload). serde_json reads at most 128 levels back,
/// so anything accepted here can always be read again.
pub const MAX_JSON_DEPTH: usize = 32;

/// Why a JSON value is over a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonBound {
    /// Arrays and objects nested deeper than the limit.
    TooDeep { limit: usize },
    /// Larger than the limit, in bytes of its JSON text (counted until over).
    TooLarge { limit: usize },
}

impl std::fmt::Display for JsonBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonBound::TooDeep { limit } => write!(f, "nested more than {limit} levels deep"),
            JsonBound::TooLarge { limit } => write!(f, "larger than {limit} bytes as JSON"),
        }
    }
}

/// Check that `v` nests at most `max_depth` levels and takes at most `max_bytes` as JSON text;
/// returns about its size in bytes (the compact form, escapes included, numbers as their
/// widest). Walks with its own stack, so a hostile value cannot overflow the thread's; a
/// value without containers inside costs no allocation.
pub fn check_json(v: &serde_json::Value, max_depth: usize, max_bytes: usize) -> Result<usize, JsonBound> {
    use serde_json::Value;
    // A string as JSON text: its bytes, the quotes, and what escaping adds.
    fn text(s: &str) -> usize {
        s.len() + 2 + s.bytes().map(|b| match b { b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1, 0..=0x1f => 5, _ => 0 }).sum::<usize>()
    }
    fn size(v: &Value) -> usize {
        match v {
            Value::Null | Value::Bool(true) => 4,
            Value::Bool(false) => 5,
            Value::Number(_) => 24,
            Value::String(s) => text(s),
            Value::Array(a) => 2 + a.len().saturating_sub(1),
            Value::Object(o) => 2 + o.len().saturating_sub(1) + o.keys().map(|k| text(k) + 1).sum::<usize>(),
        }
    }
    fn nested(v: &Value) -> bool {
        matches!(v, Value::Array(a) if !a.is_empty()) || matches!(v, Value::Object(o) if !o.is_empty())
    }
    let mut bytes = size(v);
    let mut stack: Vec<(&Value, usize)> = Vec::new();
    if nested(v) {
        stack.push((v, 1));
    }
    while let Some((v, depth)) = stack.pop() {
        if depth > max_depth {
            return Err(JsonBound::TooDeep { limit: max_depth });
        }
        let children: &mut dyn Iterator<Item = &Value> = match v {
            Value::Array(a) => &mut a.iter(),
            Value::Object(o) => &mut o.values(),
            _ => continue,
        };
        for c in children {
            bytes += size(c);
            if nested(c) {
                stack.push((c, depth + 1));
            }
        }
        if bytes > max_bytes {
            return Err(JsonBound::TooLarge { limit: max_bytes });
        }
    }
    if bytes > max_bytes {
        return Err(JsonBound::TooLarge { limit: max_bytes });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nest(levels: usize) -> serde_json::Value {
        (0..levels).fold(json!(1), |v, _| json!({ "payload": v }))
    }

    #[test]
    fn json_bounds_count_depth_and_size() {
        assert_eq!(check_json(&json!({"n": 1}), 32, 100), Ok(2 + 4 + 24));
        assert!(check_json(&nest(32), 32, 1 << 20).is_ok());
        assert_eq!(check_json(&nest(33), 32, 1 << 20), Err(JsonBound::TooDeep { limit: 32 }));
        assert_eq!(check_json(&json!(["x".repeat(100)]), 32, 50), Err(JsonBound::TooLarge { limit: 50 }));
        // Escapes count: 40 control characters are 240 bytes of JSON text.
        let escaped = json!("\u{1}\n\"".repeat(40));
        assert_eq!(check_json(&escaped, 32, usize::MAX), Ok(serde_json::to_string(&escaped).unwrap().len()));
        // A deep value is walked without recursion: 100,000 levels are refused, not a crash.
        let mut deep = json!(1);
        for _ in 0..100_000 {
            deep = serde_json::Value::Array(vec![deep]);
        }
        assert_eq!(check_json(&deep, 32, usize::MAX), Err(JsonBound::TooDeep { limit: 32 }));
        std::mem::forget(deep); // dropping it would recurse (serde_json's Drop); the test is the walk
    }

    #[test]
    fn printable_text_is_kept_as_it_is_without_allocating() {
        for s in ["Acme CRM", "", "中文 é ß ☃ 😀", "a\\u{1b}b (a backslash is kept)", "tab-free, line-free"] {
            assert!(matches!(printable(s), std::borrow::Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn printable_escapes_terminal_commands_forged_lines_and_reordering() {
        // An OSC sequence that sets the terminal's title, and a colour.
        assert_eq!(printable("\u{1b}]0;pwned\u{7}done"), "\\u{1b}]0;pwned\\u{7}done");
        assert_eq!(printable("\u{1b}[31mred"), "\\u{1b}[31mred");
        // A carriage return and a line feed cannot start a line that looks like the command's.
        let forged = printable("ok\r\nobjectos: forged line");
        assert_eq!(forged, "ok\\u{d}\\u{a}objectos: forged line");
        assert!(!forged.contains(['\r', '\n']));
        assert_eq!(printable("a\tb"), "a\\u{9}b");
        // DEL and C1 controls (U+009B is CSI on some terminals).
        assert_eq!(printable("\u{7f}\u{80}\u{9b}31m"), "\\u{7f}\\u{80}\\u{9b}31m");
        // Bidi controls: an override that shows `exe.txt` as `txt.exe`, and the others.
        assert_eq!(printable("invoice\u{202e}txt.exe"), "invoice\\u{202e}txt.exe");
        for c in ['\u{61c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{2028}', '\u{2029}'] {
            assert_eq!(printable(&format!("x{c}y")), format!("x\\u{{{:x}}}y", c as u32));
        }
        // Letters around an escape are kept.
        assert_eq!(printable("中文\u{1b}é"), "中文\\u{1b}é");
        // Escaping is idempotent: escaped text has nothing left to escape.
        assert!(matches!(printable(&printable("\u{1b}\r\n\u{202e}")), std::borrow::Cow::Borrowed(_)));
    }
}

/// Wait for `fut` from synchronous code: a [`crate::plugin::JsonService`] whose work is async
/// (a sandboxed plugin's thread calls it; so may a runtime worker, which this lets other tasks
/// run while it waits). Outside a tokio runtime, or on a current-thread one, it cannot wait
/// without stalling that runtime: that is an error naming `what`.
pub fn block_on<F: std::future::Future>(what: &str, fut: F) -> crate::Result<F::Output> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let handle = Handle::try_current().map_err(|_| crate::KernelError::service(what, "this call needs the kernel's runtime"))?;
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
        return Err(crate::KernelError::service(what, "this call cannot wait on a current-thread runtime"));
    }
    Ok(tokio::task::block_in_place(|| handle.block_on(fut)))
}

/// The candidate most likely meant by `asked` (a typo of it: Jaro-Winkler similarity above
/// 0.8), for "did you mean" in a message; `None` when none is close or `asked` is one.
pub fn nearest<'a>(asked: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nearest_above(asked, candidates, 0.8)
}

/// [`nearest`] with another bar: plugin ids share long prefixes (`com.acme.`), so for them
/// only a closer match (0.9) is a typo.
pub fn nearest_above<'a>(asked: &str, candidates: impl IntoIterator<Item = &'a str>, bar: f64) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|c| *c != asked)
        .map(|c| (strsim::jaro_winkler(asked, c), c))
        .filter(|(score, _)| *score > bar)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "; did you mean `x`?" for [`nearest`], or nothing.
pub fn did_you_mean<'a>(asked: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(asked, candidates).map(|n| format!("; did you mean `{n}`?")).unwrap_or_default()
}

/// The most of a name a plugin passed (a permission, a topic, what was over a limit) that
/// goes into an audit record or a refusal; the rest is cut ([`clip`]).
pub const MAX_AUDITED_NAME: usize = 256;

/// `text` cut to at most `max` bytes on a character boundary, marked when cut: for names a
/// plugin passed that end up in an audit record or a message.
pub fn clip(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let cut = (0..=max).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

/// Whether [`printable`] escapes `c`: a control character (C0, `\n` and `\t` included, DEL,
/// C1 U+0080–U+009F), a Unicode bidi control (U+061C, U+200E, U+200F, U+202A–U+202E,
/// U+2066–U+2069), or the line and paragraph separators U+2028 and U+2029.
pub fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` as one line that is safe to show on a terminal, for text a plugin or package wrote (a
/// name, a description, a log line, an error, a record's value): every character
/// [`needs_escape`] names is shown as Rust's `\u{..}` escape (lowercase hex: ESC is `\u{1b}`,
/// a line feed `\u{a}`, U+202E `\u{202e}`) instead of acting, so the text can neither send the
/// terminal a command (a title, a colour, a cursor move), nor forge a line of the command's own
/// output, nor reorder what is shown. Everything else, non-ASCII letters included, is kept;
/// text with nothing to escape is returned as it is, without allocating. A backslash is kept
/// as it is, so text that already reads `\u{1b}` looks the same as an escaped ESC (it does
/// nothing either way).
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let Some(first) = s.find(needs_escape) else { return std::borrow::Cow::Borrowed(s) };
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}
