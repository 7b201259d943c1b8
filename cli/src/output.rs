//! What the command prints: failures (escaped on stderr, as they are in `--json`), JSON, and
//! its own tracing lines.

use super::*;

/// A failure with the exit code it maps to.
pub(crate) struct Failure {
    /// What stderr shows: text from a plugin or package in it is escaped ([`printable`]), so its
    /// only line breaks are the command's own.
    pub(crate) message: String,
    /// What `--json` prints, with that text as it is.
    pub(crate) json: Value,
}

impl From<KernelError> for Failure {
    fn from(e: KernelError) -> Self {
        let raw = e.to_string();
        let mut j = json!({ "error": e.kind(), "message": raw });
        let mut message = printable(&raw).into_owned();
        if let KernelError::Manifest(m) = &e {
            let located: Vec<Value> = m.problems.iter().map(|p| locate::problem(&m.file, &p.path, &p.message)).collect();
            // For people too: `file:line:column: path: message`, as compilers write it, each
            // part escaped on stderr (the line breaks are these alone), as it is in the JSON.
            let head = format!(": {} problem(s)", m.problems.len());
            let mut raw = format!("{}{head}", m.file);
            message = format!("{}{head}", printable(&m.file));
            for p in &located {
                let at = match (p["line"].as_u64(), p["column"].as_u64()) {
                    (Some(l), Some(c)) => format!("{}:{l}:{c}", p["file"].as_str().unwrap_or_default()),
                    _ => p["file"].as_str().unwrap_or_default().to_string(),
                };
                let (path, problem) = (p["path"].as_str().unwrap_or_default(), p["message"].as_str().unwrap_or_default());
                raw.push_str(&format!("\n  {at}: {path}: {problem}"));
                message.push_str(&format!("\n  {}: {}: {}", printable(&at), printable(path), printable(problem)));
            }
            j["problems"] = Value::Array(located);
            j["file"] = json!(m.file);
            j["message"] = json!(raw);
        }
        if let KernelError::Resolve(r) = &e {
            j["detail"] = serde_json::to_value(r).unwrap_or_default();
        }
        if let KernelError::NotFound { plugin } = &e {
            j["plugin"] = json!(plugin);
        }
        Failure { message, json: j }
    }
}

impl Failure {
    /// For an id no plugin has: the installed id it most likely meant, if one is close.
    pub(crate) fn suggest(mut self, kernel: &Kernel) -> Failure {
        let Some(asked) = self.json.get("plugin").and_then(Value::as_str).map(str::to_string) else { return self };
        let ids: Vec<String> = kernel.plugins().map(|ps| ps.into_iter().map(|p| p.manifest.id).collect()).unwrap_or_default();
        if let Some(near) = objectos_kernel::util::nearest_above(&asked, ids.iter().map(String::as_str), 0.9) {
            self.message = format!("{}; did you mean `{near}`?", self.message);
            self.json["didYouMean"] = json!(near);
        }
        self
    }
}


impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure { message: printable(&format!("{e:#}")).into_owned(), json: json!({ "error": "io", "message": format!("{e:#}") }) }
    }
}

pub(crate) type Out = Result<(), Failure>;

/// A failure's message for stderr, after `objectos: `: each line [`printable`] and every line
/// after the first indented, so that no line of it can pass for another line of the command's
/// own, even if a message was built without escaping what a plugin wrote (the lines a message
/// has on purpose, a manifest's problems, are indented already; escaped text is kept as it is).
pub(crate) fn message_lines(message: &str) -> String {
    message
        .split('\n')
        .enumerate()
        .map(|(i, line)| {
            let line = printable(line);
            if i == 0 || line.starts_with(' ') { line.into_owned() } else { format!("  {line}") }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// JSON text for stdout. serde_json escapes the C0 controls in strings; this also writes the
/// other characters [`printable`] escapes (DEL, C1 controls, bidi controls, U+2028 and U+2029)
/// as `\uXXXX`, which every JSON reader reads back as the same text, so pretty JSON shown on a
/// terminal cannot drive it either. They can only be inside strings (JSON's own syntax is
/// ASCII, its only C0 character the line breaks of pretty-printing, which are kept).
pub(crate) fn terminal_json(text: String) -> String {
    let escaped = |c: char| needs_escape(c) && !matches!(c, '\0'..='\u{1f}');
    if !text.contains(escaped) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escaped(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Machine text other than JSON (CSV, Prometheus, DOT) for stdout: as it is when stdout is a
/// file or a pipe, so an export keeps every byte that was stored; on a terminal, each line
/// [`printable`] (the format's own line breaks kept), so a value in it cannot drive the
/// terminal.
pub(crate) fn for_terminal(text: &str) -> Cow<'_, str> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return Cow::Borrowed(text);
    }
    let lines: Vec<Cow<'_, str>> = text.split('\n').map(printable).collect();
    if lines.iter().all(|l| matches!(l, Cow::Borrowed(_))) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(lines.join("\n"))
}

pub(crate) fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("OBJECTOS_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only on a terminal (and not under NO_COLOR): stderr sent to a file or a pipe holds
    // no escape sequence at all, and what a plugin wrote is escaped (PrintableFields).
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).fmt_fields(PrintableFields).with_filter(filter);
    let _ = tracing_subscriber::registry().with(objectos_kernel::host::PluginLogLayer::filtered()).with(fmt).try_init();
}

/// The fields of the lines `tracing` writes on stderr (a message, `name=value` pairs, a span's
/// fields), as tracing's default writes them but [`printable`]: a plugin's log line at warning
/// or above is one of them, and an error a plugin raised may be in another, so neither can
/// drive the terminal or forge a line of the command's own.
pub(crate) struct PrintableFields;

impl<'writer> tracing_subscriber::fmt::FormatFields<'writer> for PrintableFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(&self, mut writer: tracing_subscriber::fmt::format::Writer<'writer>, fields: R) -> std::fmt::Result {
        let mut text = FieldText::default();
        fields.record(&mut text);
        writer.write_str(&printable(&text.0))
    }
}

/// The fields of one event or span as text, before escaping.
#[derive(Default)]
pub(crate) struct FieldText(String);

impl tracing::field::Visit for FieldText {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let name = field.name();
        // The `log` crate's metadata, which the line shows already.
        if name.starts_with("log.") {
            return;
        }
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = match name {
            "message" => write!(self.0, "{value:?}"),
            name => write!(self.0, "{}={value:?}", name.strip_prefix("r#").unwrap_or(name)),
        };
    }
}
