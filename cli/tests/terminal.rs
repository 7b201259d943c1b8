//! What a package wrote reaches the terminal as text, never as a command: `objectos` escapes
//! control characters and bidi controls in it, on stdout as on stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Command;

use serde_json::{json, Value};

/// An OSC sequence setting the terminal's title, a carriage return and line feed starting a
/// line that looks like the command's own, and a right-to-left override.
const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\r\nobjectos: forged line \u{202e}gnp.exe";
/// [`HOSTILE`] as `objectos` shows it.
const SHOWN: &str = r"\u{1b}]0;pwned\u{7}\u{d}\u{a}objectos: forged line \u{202e}gnp.exe";

/// The package's code, with [`HOSTILE`] written as JavaScript escapes: a warning logged as it is
/// enabled (shown on stderr by `plugins enable`), and, once its `fail` setting is set, an
/// enable that fails with the same text.
const CODE: &str = r#"const HOSTILE = "\u001b]0;pwned\u0007\r\nobjectos: forged line \u202egnp.exe";
export function onEnable(ctx) {
  ctx.log.warn(`enabled ${HOSTILE}`, { note: HOSTILE });
  if (ctx.config().fail) throw `failed ${HOSTILE}`;
}
"#;

/// Run `objectos` on `data`, expect `code`, return (stdout, stderr), each checked to be inert.
fn run(data: &std::path::Path, code: i32, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_objectos"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    let (so, se) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    assert_eq!(out.status.code(), Some(code), "objectos {args:?}\nstdout: {so}\nstderr: {se}");
    inert(&format!("stdout of {args:?}"), &so);
    inert(&format!("stderr of {args:?}"), &se);
    (so, se)
}

/// No raw ESC, BEL, CR or bidi override in `text`, and no line of it starting as the forged one.
fn inert(what: &str, text: &str) {
    for (c, name) in [('\u{1b}', "ESC"), ('\u{7}', "BEL"), ('\r', "CR"), ('\u{202e}', "RIGHT-TO-LEFT OVERRIDE")] {
        assert!(!text.contains(c), "{what}: a raw {name} reached the terminal:\n{}", text.escape_debug());
    }
    assert!(!text.lines().any(|l| l.starts_with("objectos: forged line")), "{what}: a forged line:\n{text}");
}

#[test]
fn text_a_package_wrote_cannot_drive_the_terminal_or_forge_a_line() {
    let data = tempfile::tempdir().unwrap();
    let data = data.path();
    let dir = tempfile::tempdir().unwrap();
    // The manifest refuses control characters in a name, and line breaks but in a description;
    // a bidi override it takes, and a setting's title takes anything.
    let manifest = json!({
        "id": "com.evil.term",
        "name": "Evil \u{202e}gnp.exe",
        "version": "1.0.0",
        "description": "Does\nobjectos: forged line",
        "main": "index.js",
        "settings": { "fail": { "type": "boolean", "title": format!("Fail {HOSTILE}") } },
    });
    std::fs::write(dir.path().join("plugin.json"), manifest.to_string()).unwrap();
    std::fs::write(dir.path().join("index.js"), CODE).unwrap();
    run(data, 0, &["plugins", "install", dir.path().to_str().unwrap()]);

    // The reported case: the plugin's log line, on stderr as it is enabled.
    let (_, err) = run(data, 0, &["plugins", "enable", "com.evil.term"]);
    assert!(err.contains(&format!("enabled {SHOWN}")), "{err}");

    let (out, _) = run(data, 0, &["plugins", "list"]);
    assert!(out.contains(r"Evil \u{202e}gnp.exe"), "{out}");
    let (out, _) = run(data, 0, &["plugins", "show", "com.evil.term"]);
    assert!(out.contains(r"Evil \u{202e}gnp.exe") && out.contains(r"Does\u{a}objectos: forged line"), "{out}");
    let (out, _) = run(data, 0, &["plugins", "settings", "com.evil.term"]);
    assert!(out.contains(&format!("Fail {SHOWN}")), "{out}");
    let (out, _) = run(data, 0, &["logs", "com.evil.term"]);
    assert!(out.contains(&format!("enabled {SHOWN}")), "{out}");

    // A hook's error: on stderr, then in the plugin's detail and the audit trail.
    run(data, 0, &["plugins", "disable", "com.evil.term"]);
    run(data, 0, &["plugins", "set", "com.evil.term", "fail", "true"]);
    let (_, err) = run(data, 1, &["plugins", "enable", "com.evil.term"]);
    assert!(err.contains(&format!("failed {SHOWN}")), "{err}");
    let (out, _) = run(data, 0, &["plugins", "show", "com.evil.term"]);
    assert!(out.contains(&format!("failed {SHOWN}")), "{out}");
    let (out, _) = run(data, 0, &["audit", "--plugin", "com.evil.term"]);
    assert!(out.contains("pwned"), "{out}");

    // JSON keeps the text as it was written, with what could act on a terminal as escapes.
    let (out, _) = run(data, 0, &["--json", "plugins", "show", "com.evil.term"]);
    assert!(out.contains(r"\u202e"), "{out}");
    let info: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["manifest"]["name"], "Evil \u{202e}gnp.exe");
    assert_eq!(info["lastError"]["message"].as_str().map(|m| m.contains(HOSTILE)), Some(true), "{info}");
    let (out, _) = run(data, 0, &["--json", "logs", "com.evil.term"]);
    assert!(out.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()) && out.contains("pwned"), "{out}");
}
