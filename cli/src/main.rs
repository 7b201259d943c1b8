//! `objectos`: the ObjectOS kernel for scripts, servers and tests. No WebKit or GTK needed.
//!
//! Exit codes: 0 success, 1 invalid input or a refusal by the kernel (stderr says why and
//! what to do), 2 usage errors.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use objectos_builtins::host;
use objectos_kernel::{Kernel, KernelError};
use objectos_kernel::model::audit::{AuditDetail, AuditQuery, Verification, to_csv as audit_to_csv};
use objectos_kernel::model::log::{Level, LogQuery};
use objectos_kernel::model::manifest::{Manifest, Problem};
use objectos_kernel::model::views::{BuiltinPolicy, GrantRequest, PluginInfo};
use objectos_kernel::util::{needs_escape, printable};
use serde_json::{json, Value};

mod locate;
mod records;
mod render;
mod scaffold;

#[derive(Parser)]
#[command(name = "objectos", version, about = "ObjectOS headless kernel: manage plugins, permissions, logs and the audit trail")]
struct Cli {
    /// Data directory (default: $OBJECTOS_DATA_DIR, else the OS data directory for ObjectOS).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate plugin manifests.
    #[command(subcommand)]
    Manifest(ManifestCmd),
    /// Install, inspect and drive plugins.
    #[command(subcommand)]
    Plugins(PluginsCmd),
    /// Review, grant and revoke permissions.
    #[command(subcommand)]
    Permissions(PermissionsCmd),
    /// Show a plugin's log (or every plugin's).
    Logs {
        /// Plugin id (all plugins when omitted).
        id: Option<String>,
        /// Show the newest N lines.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only lines at or above this level.
        #[arg(long, value_parser = parse_level)]
        level: Option<Level>,
        /// Only lines containing this text.
        #[arg(long)]
        search: Option<String>,
        /// Keep printing new lines as they arrive (Ctrl-C to stop).
        #[arg(long)]
        follow: bool,
    },
    /// Print the JSON Schema of an author's file, for an editor: `plugin` (plugin.json),
    /// `object`, `workflow` or `automation` (the files in objects/, workflows/ and
    /// automations/); the same as docs/schema/NAME.schema.json.
    Schema {
        #[arg(value_parser = objectos_admin::author::schema_names())]
        name: String,
    },
    /// Query, verify and export the audit trail.
    Audit {
        #[command(subcommand)]
        command: Option<AuditCmd>,
        #[command(flatten)]
        filter: AuditFilter,
    },
    /// Show or change settings.
    #[command(subcommand)]
    Settings(SettingsCmd),
    /// The records packages' types hold, as the admin: list, show, create, update, delete,
    /// and drive them through their workflow.
    #[command(subcommand)]
    Records(records::RecordsCmd),
    /// Write a package folder as a `.zip` to share, refusing what install would refuse.
    Package {
        /// The package folder.
        dir: PathBuf,
        /// Where to write it (default: `<id>-<version>.zip` in the current folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Start something new: `objectos new package DIR --with records,workflow,automation,translations,code`.
    #[command(subcommand)]
    New(scaffold::NewCmd),
    /// Prometheus text from the metrics plugin (after starting the kernel).
    Metrics,
    /// Send a notification to the console's notification centre (and other channels), for
    /// scripts: `objectos notify "Backup finished" --level success`. Needs the Notifications
    /// plugin enabled; it is sent as that plugin.
    Notify {
        /// One line.
        title: String,
        /// More text.
        #[arg(long, default_value = "")]
        body: String,
        /// info, success, warning or error.
        #[arg(long, default_value = "info", value_parser = ["info", "success", "warning", "error"])]
        level: String,
        /// Channels (default: in-app). Repeat for several.
        #[arg(long = "channel")]
        channels: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ManifestCmd {
    /// Check a plugin.json, or a package folder or .zip.
    Check {
        /// Path to plugin.json, a package folder, or a .zip.
        path: PathBuf,
        /// Write into plugin.json the engine dependencies, permissions and provided events the
        /// package's files need and it lacks, then check (a folder or its plugin.json).
        #[arg(long)]
        fix: bool,
    },
}

#[derive(Subcommand)]
enum PluginsCmd {
    /// Every installed plugin.
    List,
    /// One plugin in detail.
    Show { id: String },
    /// Install (or upgrade) a package from a folder or .zip.
    Install {
        path: PathBuf,
        /// Allow installing an older version over a newer one.
        #[arg(long)]
        force: bool,
        /// Replace the installed package with the same version (while writing one): grants
        /// are kept unless its permissions changed, and it is enabled again if it was.
        #[arg(long, conflicts_with = "force")]
        reinstall: bool,
    },
    /// Load a plugin.
    Load { id: String },
    /// Enable a plugin (loading it first if needed).
    Enable {
        id: String,
        /// Enable its dependencies first, in order.
        #[arg(long)]
        with_deps: bool,
    },
    /// Disable a plugin.
    Disable {
        id: String,
        /// Disable enabled dependents first.
        #[arg(long)]
        cascade: bool,
    },
    /// Unload a plugin back to installed.
    Unload { id: String },
    /// Remove a package, its storage and grants. The records of its types are kept for a
    /// reinstall of the same id unless `--delete-records`.
    Uninstall {
        id: String,
        /// Delete the records of its types too.
        #[arg(long)]
        delete_records: bool,
    },
    /// The settings a plugin declares, with what is set (a secret only as set or not).
    Settings { id: String },
    /// Set a setting. Without VALUE, the value is read from standard input (one line), so a
    /// secret stays out of the shell's history: `printf %s "$TOKEN" | objectos plugins set ID token`.
    Set {
        id: String,
        key: String,
        value: Option<String>,
        /// Remove the value (the default applies again).
        #[arg(long, conflicts_with = "value")]
        unset: bool,
    },
    /// The dependency graph.
    Graph {
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Text,
    Json,
    Dot,
}

#[derive(Subcommand)]
enum PermissionsCmd {
    /// What a plugin requests, with risk and approval.
    List { id: String },
    /// Approve requested permissions.
    Grant {
        id: String,
        /// Permissions to grant.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        permissions: Vec<String>,
        /// Grant everything the plugin requests.
        #[arg(long)]
        all: bool,
    },
    /// Withdraw grants (disables the plugin when a required one goes).
    Revoke {
        id: String,
        #[arg(required = true)]
        permissions: Vec<String>,
        /// Disable enabled dependents too, when the plugin must be disabled.
        #[arg(long)]
        cascade: bool,
    },
}

#[derive(clap::Args, Default)]
struct AuditFilter {
    /// Only this plugin.
    #[arg(long)]
    plugin: Option<String>,
    /// Only this action (`plugin.enabled`), or a prefix ending in a dot (`permission.`).
    #[arg(long)]
    action: Option<String>,
    /// Only this actor (`admin`, `system`, `plugin:<id>`).
    #[arg(long)]
    actor: Option<String>,
    /// Only records since T: milliseconds since the epoch, or an age like 30m, 2h, 7d.
    #[arg(long, value_parser = parse_since)]
    since: Option<i64>,
    /// The newest N records.
    #[arg(long)]
    limit: Option<u32>,
    /// Keep printing new records (Ctrl-C to stop).
    #[arg(long)]
    follow: bool,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain; exit 1 at the first broken record.
    Verify,
    /// Write every record (or the filtered ones) as JSON or CSV.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Remove records older than id N, leaving an audited checkpoint.
    Trim {
        #[arg(long)]
        keep_from: i64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Json,
    Csv,
}

#[derive(Subcommand)]
enum SettingsCmd {
    /// Current settings.
    Show,
    /// Audit detail: `lifecycle` (default) or `full` (also every emission and storage write).
    AuditDetail {
        #[arg(value_parser = |s: &str| s.parse::<AuditDetail>())]
        level: AuditDetail,
    },
    /// Whether built-in plugins' permissions are granted at first start: `grant` or `ask`.
    BuiltinPolicy {
        #[arg(value_parser = ["grant", "ask"])]
        policy: String,
    },
    /// The quotas packages run under; change some with NAME=VALUE, e.g. `queuedJobs=500`
    /// (names: storageBytes, queuedJobs, eventsPerSecond, notificationsPerMinute, inboxItems,
    /// logLinesPerMinute).
    Quotas {
        /// `NAME=VALUE` pairs to change.
        set: Vec<String>,
    },
}

fn parse_level(s: &str) -> Result<Level, String> {
    s.parse()
}

fn parse_since(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num.parse().map_err(|_| format!("`{s}` is neither milliseconds since the epoch nor an age like 30m, 2h, 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("`{s}`: the unit must be s, m, h or d")),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Ok(now - secs * 1000)
}

/// A failure with the exit code it maps to.
struct Failure {
    /// What stderr shows: text from a plugin or package in it is escaped ([`printable`]), so its
    /// only line breaks are the command's own.
    message: String,
    /// What `--json` prints, with that text as it is.
    json: Value,
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
    fn suggest(mut self, kernel: &Kernel) -> Failure {
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

type Out = Result<(), Failure>;

fn main() -> ExitCode {
    // Started by this program itself to turn a package's JavaScript into a component.
    if let Some(code) = objectos_builtins::componentize_child_main() {
        return code;
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("objectos: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let json_out = cli.json;
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if json_out {
                println!("{}", terminal_json(f.json.to_string()));
            }
            eprintln!("objectos: {}", message_lines(&f.message));
            ExitCode::from(1)
        }
    }
}

/// A failure's message for stderr, after `objectos: `: each line [`printable`] and every line
/// after the first indented, so that no line of it can pass for another line of the command's
/// own, even if a message was built without escaping what a plugin wrote (the lines a message
/// has on purpose, a manifest's problems, are indented already; escaped text is kept as it is).
fn message_lines(message: &str) -> String {
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

fn init_tracing() {
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
struct PrintableFields;

impl<'writer> tracing_subscriber::fmt::FormatFields<'writer> for PrintableFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(&self, mut writer: tracing_subscriber::fmt::format::Writer<'writer>, fields: R) -> std::fmt::Result {
        let mut text = FieldText::default();
        fields.record(&mut text);
        writer.write_str(&printable(&text.0))
    }
}

/// The fields of one event or span as text, before escaping.
#[derive(Default)]
struct FieldText(String);

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

fn data_dir(cli: &Cli) -> PathBuf {
    host::resolve_data_dir(cli.data_dir.clone())
}

/// Open the kernel with the built-ins registered. `start` runs plugins (for commands that
/// change lifecycle state), warning on stderr about any that could not be restored;
/// otherwise only new built-ins are recorded, and nothing runs.
async fn open(cli: &Cli, start: bool) -> Result<Kernel, Failure> {
    let kernel = host::open(data_dir(cli))?;
    if start {
        host::start(&kernel).await?.print_warnings("objectos");
    } else {
        // Read-only commands stay quiet about built-ins that could not be recorded.
        host::sync(&kernel).await?;
    }
    Ok(kernel)
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", terminal_json(serde_json::to_string_pretty(v).unwrap_or_default()));
}

async fn run(cli: Cli) -> Out {
    match &cli.command {
        Command::Schema { name } => {
            let schema = objectos_admin::author::schema(name).ok_or_else(|| anyhow::anyhow!("no schema `{name}`; there are: {}", objectos_admin::author::schema_names().join(", ")))?;
            println!("{}", serde_json::to_string_pretty(&schema).unwrap_or_default());
            Ok(())
        }
        Command::Manifest(ManifestCmd::Check { path, fix }) => {
            let installed = installed_manifests(&cli).await;
            let fixed = if *fix { fix_manifest(&cli, path, installed.as_deref())? } else { Vec::new() };
            manifest_check(&cli, path, &fixed, installed.as_deref())
        }
        Command::Plugins(cmd) => plugins(&cli, cmd).await,
        Command::Records(cmd) => records::records(&cli, cmd).await,
        Command::Package { dir, out } => {
            let manifest = objectos_kernel::package::read_manifest(dir)?;
            let out = out.clone().unwrap_or_else(|| PathBuf::from(format!("{}-{}.zip", manifest.id, manifest.version)));
            let installed = installed_manifests(&cli).await;
            let packed = objectos_kernel::package::pack_package(dir, &host_runtime(&cli), installed.as_deref().unwrap_or_default(), &out)?;
            if cli.json {
                print_json(&json!({ "id": packed.manifest.id, "version": packed.manifest.version.to_string(), "path": out, "files": packed.files, "bytes": packed.bytes }));
            } else {
                println!("Wrote {} ({} {}): {} files, {} bytes", out.display(), packed.manifest.id, packed.manifest.version, packed.files.len(), packed.bytes);
            }
            Ok(())
        }
        Command::New(scaffold::NewCmd::Package { dir, id, with }) => {
            let made = scaffold::scaffold(dir, id.as_deref(), with).map_err(|e| Failure::from(anyhow::anyhow!(e)))?;
            scaffold::write(dir, &made).map_err(|e| Failure::from(anyhow::anyhow!(e)))?;
            if cli.json {
                print_json(&json!({ "id": made.id, "dir": dir, "files": made.files.iter().map(|(p, _)| p).collect::<Vec<_>>() }));
            } else {
                println!("Wrote {} ({}):", dir.display(), made.id);
                for (path, _) in &made.files {
                    println!("  {path}");
                }
                let d = dir.display();
                println!("\nNext:\n  objectos manifest check {d}\n  objectos plugins install {d}\n  objectos permissions grant {} --all\n  objectos plugins enable {} --with-deps", made.id, made.id);
            }
            Ok(())
        }
        Command::Permissions(cmd) => permissions(&cli, cmd).await,
        Command::Logs { id, limit, level, search, follow } => {
            let kernel = open(&cli, false).await?;
            if let Some(id) = id {
                kernel.plugin(id)?;
            }
            let base = LogQuery { plugin: id.clone(), min_level: *level, search: search.clone(), after_id: None, limit: Some(*limit) };
            tail(cli.json, *follow, |after_id, first| {
                Ok(kernel.logs(&LogQuery { after_id, limit: if first { base.limit } else { None }, ..base.clone() })?)
            }, |l| l.id, render::log_line)
            .await
        }
        Command::Audit { command, filter } => audit(&cli, command.as_ref(), filter).await,
        Command::Settings(cmd) => {
            let kernel = open(&cli, false).await?;
            match cmd {
                SettingsCmd::Show => {}
                SettingsCmd::AuditDetail { level } => kernel.set_audit_detail(*level)?,
                SettingsCmd::BuiltinPolicy { policy } => {
                    kernel.set_builtin_policy(if policy == "ask" { BuiltinPolicy::Ask } else { BuiltinPolicy::Grant })?
                }
                SettingsCmd::Quotas { set } if !set.is_empty() => {
                    let mut q = serde_json::to_value(kernel.quotas()).unwrap_or_default();
                    for pair in set {
                        let (name, value) = pair.split_once('=').ok_or_else(|| anyhow::anyhow!("`{pair}`: give NAME=VALUE, e.g. queuedJobs=500"))?;
                        let n: u64 = value.parse().map_err(|_| anyhow::anyhow!("`{pair}`: {value} is not a whole number"))?;
                        if q.get(name).is_none() {
                            let names: Vec<&str> = kernel.quotas().entries().iter().map(|(n, _)| *n).collect();
                            return Err(anyhow::anyhow!("`{name}` is not a quota; the quotas are {}", names.join(", ")).into());
                        }
                        q[name] = json!(n);
                    }
                    let q: objectos_kernel::model::quota::Quotas = serde_json::from_value(q).map_err(|e| anyhow::anyhow!("{e}"))?;
                    kernel.set_quotas(q)?;
                }
                SettingsCmd::Quotas { .. } => {}
            }
            let v = json!({
                "dataDir": data_dir(&cli),
                "auditDetail": kernel.audit_detail(),
                "builtinPolicy": kernel.builtin_policy()?,
                "quotas": kernel.quotas(),
                "kernelVersion": objectos_kernel::model::resolve::kernel_version().to_string(),
            });
            if cli.json {
                print_json(&v);
            } else {
                println!("data directory   {}", data_dir(&cli).display());
                println!("audit detail     {}", v["auditDetail"].as_str().unwrap_or(""));
                println!("built-in policy  {}", v["builtinPolicy"].as_str().unwrap_or(""));
                println!("kernel version   {}", v["kernelVersion"].as_str().unwrap_or(""));
                println!("quotas per package (built-ins are not metered):");
                for (name, value) in kernel.quotas().entries() {
                    println!("  {name:<24} {value}");
                }
            }
            kernel.flush();
            Ok(())
        }
        Command::Notify { title, body, level, channels } => {
            use objectos_admin::inbox;
            let level = inbox::level(level).map_err(Failure::from)?;
            let kernel = open(&cli, true).await?;
            let report = inbox::notify(&kernel, title, body, level, channels).await;
            kernel.shutdown().await;
            let report = report.map_err(|e| match e.code() {
                "unavailable" => Failure::from(anyhow::anyhow!("{e}; enable it with `objectos plugins enable {} --with-deps`", inbox::PLUGIN)),
                _ => Failure::from(e),
            })?;
            if cli.json {
                print_json(&report);
            } else {
                for (channel, d) in &report.deliveries {
                    let status = serde_json::to_value(d.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                    println!("{}: {status}{}", printable(channel), d.error.as_deref().map(|e| format!(" ({})", printable(e))).unwrap_or_default());
                }
            }
            Ok(())
        }
        Command::Metrics => {
            let kernel = open(&cli, true).await?;
            let text = objectos_admin::metrics::text(&kernel);
            kernel.shutdown().await;
            let text = text.map_err(|e| match e.code() {
                "unavailable" => Failure::from(anyhow::anyhow!("{e}; enable it with `objectos plugins enable {}`", objectos_admin::metrics::PLUGIN)),
                _ => Failure::from(e),
            })?;
            print!("{}", for_terminal(&text));
            Ok(())
        }
    }
}

/// The package runtime a check runs: what install would run, code included (compiled into the
/// data directory's cache, so installing it next starts at once; JavaScript componentized in a
/// child process of this program).
fn host_runtime(cli: &Cli) -> impl objectos_kernel::plugin::PackageRuntime {
    objectos_builtins::host_sandbox_runtime(Some(&data_dir(cli)))
}

/// Write what the package's files need into its `plugin.json` (`manifest check --fix`), and
/// say what was added.
fn fix_manifest(cli: &Cli, path: &Path, installed: Option<&[Manifest]>) -> Result<Vec<Problem>, Failure> {
    let (dir, file) = if path.is_dir() {
        (path.to_path_buf(), path.join("plugin.json"))
    } else if path.file_name().is_some_and(|n| n == "plugin.json") {
        (path.parent().map(Path::to_path_buf).unwrap_or_default(), path.to_path_buf())
    } else {
        return Err(anyhow::anyhow!("--fix writes a package's plugin.json: give its folder or its plugin.json, not {}", path.display()).into());
    };
    let shown = file.display().to_string();
    let added = objectos_admin::author::fix_manifest(&dir, &file, installed.unwrap_or_default())?;
    if added.is_empty() {
        if !cli.json {
            println!("{shown}: nothing to add");
        }
        return Ok(added);
    }
    if !cli.json {
        println!("{shown}: added");
        for p in &added {
            println!("  {}: {}", printable(&p.path), printable(&p.message));
        }
    }
    Ok(added)
}

/// The manifests of what is installed in the data folder (built-ins included), for a check
/// that says what a package's dependencies are here; `None` when nothing was ever installed
/// there (the check then does not create a data folder) or it cannot be read (said on
/// stderr: the check goes on without it). Nothing is written.
async fn installed_manifests(cli: &Cli) -> Option<Vec<Manifest>> {
    let dir = data_dir(cli);
    if !dir.join("objectos.db").is_file() {
        return None;
    }
    match host::open(&dir).and_then(|k| Ok(k.plugins()?)) {
        Ok(list) => Some(list.into_iter().map(|p| p.manifest).collect()),
        Err(e) => {
            eprintln!("objectos: warning: the plugins installed in {} could not be read ({}); dependencies are not checked against them", dir.display(), printable(&e.to_string()));
            None
        }
    }
}

/// What a package's dependencies are in this data folder: one that is missing, or installed at
/// a version its range refuses, is a warning (the package may be meant for another machine).
fn dependency_warnings(manifest: &Manifest, installed: &[Manifest]) -> Vec<String> {
    let find = |id: &str| installed.iter().find(|m| m.id == id);
    let mut warnings = Vec::new();
    for (id, range) in &manifest.dependencies {
        match find(id) {
            None => {
                let near = objectos_kernel::util::nearest_above(id, installed.iter().map(|m| m.id.as_str()), 0.9).map(|n| format!("; did you mean `{n}`?")).unwrap_or_default();
                warnings.push(format!("dependency `{id}` is not installed here: install it before this package{near}"));
            }
            Some(m) if !range.matches(&m.version) => warnings.push(format!("dependency `{id}` is installed here at {}, which `{range}` does not accept", m.version)),
            Some(_) => {}
        }
    }
    warnings
}

fn manifest_check(cli: &Cli, path: &Path, fixed: &[Problem], installed: Option<&[Manifest]>) -> Out {
    let is_manifest_file = path.is_file() && path.extension().is_some_and(|e| e == "json");
    let manifest = if is_manifest_file {
        let bytes = std::fs::read(path).map_err(|e| KernelError::Io { path: path.to_path_buf(), source: e })?;
        let m = Manifest::parse(&bytes, &path.display().to_string()).map_err(KernelError::from)?;
        let problems = m.package_problems();
        if !problems.is_empty() {
            return Err(KernelError::from(objectos_kernel::model::manifest::ManifestErrors { file: path.display().to_string(), problems }).into());
        }
        m
    } else {
        objectos_kernel::package::check_package_with(path, &host_runtime(cli), installed.unwrap_or_default())?
    };
    let mut warnings = if path.is_dir() { translation_gaps(path, &manifest) } else { Vec::new() };
    if let (true, Some(installed)) = (path.is_dir(), installed) {
        warnings.extend(dependency_warnings(&manifest, installed));
    }
    if cli.json {
        print_json(&json!({ "valid": true, "manifest": manifest, "fixed": fixed, "warnings": warnings }));
    } else {
        println!("{}: valid ({} {})", path.display(), manifest.id, manifest.version);
        for w in &warnings {
            println!("warning: {}", printable(w));
        }
    }
    Ok(())
}

/// Keys some of a package's locales translate and others lack: not an error (a lookup falls
/// back to the default locale, then to the key), but what a translator should see.
fn translation_gaps(dir: &Path, manifest: &Manifest) -> Vec<String> {
    // Each declared locale's file, where the declaration rule says it is.
    let found: Vec<(String, std::collections::BTreeSet<String>)> = manifest
        .provides
        .declared()
        .filter(|d| d.kind == objectos_kernel::model::manifest::DeclaredKind::Translation)
        .filter_map(|d| {
            let file = d.candidates().find(|c| dir.join(c).is_file())?;
            let text = std::fs::read_to_string(dir.join(&file)).ok()?;
            Some((file, serde_json::from_str::<serde_json::Map<String, Value>>(&text).ok()?.keys().cloned().collect()))
        })
        .collect();
    let all: std::collections::BTreeSet<&String> = found.iter().flat_map(|(_, k)| k.iter()).collect();
    found
        .iter()
        .filter_map(|(file, have)| {
            let lacks: Vec<&str> = all.iter().filter(|k| !have.contains(k.as_str())).map(|k| k.as_str()).collect();
            (!lacks.is_empty()).then(|| {
                let shown = if lacks.len() > 8 { format!("{}, and {} more", lacks[..8].join(", "), lacks.len() - 8) } else { lacks.join(", ") };
                format!("{file} lacks {} key(s) other locales have: {shown} (lookups of them fall back to another locale, or show the key)", lacks.len())
            })
        })
        .collect()
}

async fn plugins(cli: &Cli, cmd: &PluginsCmd) -> Out {
    let mutating = !matches!(cmd, PluginsCmd::List | PluginsCmd::Show { .. } | PluginsCmd::Graph { .. } | PluginsCmd::Settings { .. });
    let kernel = open(cli, mutating).await?;
    let result = plugins_in(cli, cmd, &kernel).await.map_err(|f| f.suggest(&kernel));
    if mutating {
        kernel.shutdown().await;
    } else {
        kernel.flush();
    }
    result
}

async fn plugins_in(cli: &Cli, cmd: &PluginsCmd, kernel: &Kernel) -> Out {
    let show = |id: &str, verb: &str| -> Out {
        let info = kernel.plugin(id)?;
        if cli.json {
            print_json(&info);
        } else {
            println!("{verb} {} {} (now {})", info.manifest.id, info.manifest.version, info.state);
        }
        Ok(())
    };
    match cmd {
        PluginsCmd::List => {
            let list = kernel.plugins()?;
            if cli.json {
                print_json(&list);
            } else if list.is_empty() {
                println!("No plugins installed. Install a package with `objectos plugins install PATH`.");
            } else {
                print!("{}", render::plugin_table(&list));
            }
        }
        PluginsCmd::Show { id } => {
            let info = kernel.plugin(id)?;
            if cli.json {
                print_json(&info);
            } else {
                print!("{}", render::plugin_detail(&info));
            }
        }
        PluginsCmd::Settings { id } => {
            let settings = kernel.settings(id)?;
            if cli.json {
                print_json(&settings);
            } else {
                print!("{}", render::settings(id, &settings));
            }
        }
        PluginsCmd::Set { id, key, value, unset } => {
            let declared = kernel.settings(id)?;
            let kind = declared.iter().find(|s| &s.key == key).map(|s| s.setting.kind);
            let value = if *unset {
                serde_json::Value::Null
            } else {
                let text = match value {
                    Some(v) => v.clone(),
                    None => {
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line).map_err(|e| anyhow::anyhow!("reading the value of `{key}` from standard input: {e}"))?;
                        line.trim_end_matches(['\n', '\r']).to_string()
                    }
                };
                match kind {
                    Some(objectos_kernel::model::manifest::SettingKind::String) | None => serde_json::Value::String(text),
                    // Typed values are JSON (`5`, `true`); what does not parse is refused by type.
                    Some(_) => serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
                }
            };
            let mut change = serde_json::Map::new();
            change.insert(key.clone(), value);
            kernel.set_settings(id, change)?;
            let secret = declared.iter().any(|s| &s.key == key && s.setting.secret);
            if !cli.json {
                println!("{} {key} of {id}{}", if *unset { "unset" } else { "set" }, if secret && !*unset { " (secret: it will not be shown again)" } else { "" });
            }
        }
        PluginsCmd::Install { path, force, reinstall } => {
            let out = if *reinstall { kernel.reinstall_package(path).await? } else { kernel.install_package(path, *force).await? };
            if cli.json {
                print_json(&out);
            } else {
                match &out.upgraded_from {
                    Some(from) if *from == out.version => println!("Reinstalled {} {} (now {})", out.id, out.version, out.state),
                    Some(from) => println!("Upgraded {} from {from} to {} (now {})", out.id, out.version, out.state),
                    None => println!("Installed {} {} (now {})", out.id, out.version, out.state),
                }
                if !out.pending.is_empty() {
                    println!("It needs approval before it can be enabled: {}", printable(&out.pending.join(", ")));
                    println!("Review with `objectos permissions list {}`, approve with `objectos permissions grant {} --all`.", out.id, out.id);
                }
            }
        }
        PluginsCmd::Load { id } => {
            kernel.load(id).await?;
            show(id, "Loaded")?;
        }
        PluginsCmd::Enable { id, with_deps } => {
            kernel.enable(id, *with_deps).await?;
            show(id, "Enabled")?;
        }
        PluginsCmd::Disable { id, cascade } => {
            kernel.disable(id, *cascade).await?;
            show(id, "Disabled")?;
        }
        PluginsCmd::Unload { id } => {
            kernel.unload(id).await?;
            show(id, "Unloaded")?;
        }
        PluginsCmd::Uninstall { id, delete_records } => {
            kernel.uninstall_with(id, objectos_kernel::host::Uninstall { keep_records: !*delete_records }).await?;
            if cli.json {
                print_json(&json!({ "uninstalled": id }));
            } else {
                println!("Uninstalled {id}");
            }
        }
        PluginsCmd::Graph { format } => {
            let g = kernel.graph();
            match format {
                GraphFormat::Json => print_json(&g),
                GraphFormat::Dot => print!("{}", for_terminal(&render::graph_dot(&g))),
                GraphFormat::Text if cli.json => print_json(&g),
                GraphFormat::Text => print!("{}", render::graph_text(&g)),
            }
        }
    }
    Ok(())
}

async fn permissions(cli: &Cli, cmd: &PermissionsCmd) -> Out {
    let start = matches!(cmd, PermissionsCmd::Revoke { .. });
    let kernel = open(cli, start).await?;
    let result: Out = async {
        match cmd {
            PermissionsCmd::List { id } => {
                let info = kernel.plugin(id)?;
                if cli.json {
                    print_json(&info.permissions);
                } else {
                    print!("{}", render::permissions(&info));
                }
            }
            PermissionsCmd::Grant { id, permissions, all } => {
                let req = if *all { GrantRequest::All } else { GrantRequest::Some(permissions.clone()) };
                let added = kernel.grant(id, req)?;
                let info = kernel.plugin(id)?;
                if cli.json {
                    print_json(&json!({ "granted": added, "pending": info.pending }));
                } else {
                    report_grants(&info, &added, "Granted");
                }
            }
            PermissionsCmd::Revoke { id, permissions, cascade } => {
                let removed = kernel.revoke(id, permissions, *cascade).await?;
                let info = kernel.plugin(id)?;
                if cli.json {
                    print_json(&json!({ "revoked": removed, "state": info.state }));
                } else {
                    report_grants(&info, &removed, "Revoked");
                }
            }
        }
        Ok(())
    }
    .await
    .map_err(|f: Failure| f.suggest(&kernel));
    if start {
        kernel.shutdown().await;
    } else {
        kernel.flush();
    }
    result
}

fn report_grants(info: &PluginInfo, changed: &[String], verb: &str) {
    if changed.is_empty() {
        println!("Nothing changed for {}.", info.manifest.id);
    } else {
        println!("{verb} for {}: {}", info.manifest.id, printable(&changed.join(", ")));
    }
    if info.pending.is_empty() {
        println!("{} is {}; no required permission is pending.", info.manifest.id, info.state);
    } else {
        println!("{} is {}; still pending: {}", info.manifest.id, info.state, printable(&info.pending.join(", ")));
    }
}

async fn audit(cli: &Cli, command: Option<&AuditCmd>, f: &AuditFilter) -> Out {
    let kernel = open(cli, false).await?;
    let q = AuditQuery { plugin: f.plugin.clone(), action: f.action.clone(), actor: f.actor.clone(), since: f.since, after_id: None, limit: f.limit };
    match command {
        Some(AuditCmd::Verify) => {
            let v = kernel.verify_audit()?;
            if cli.json {
                print_json(&v);
            }
            match v {
                Verification::Intact { records, first_id } => {
                    if !cli.json {
                        println!("Audit chain intact: {records} record(s) from #{first_id} verified.");
                    }
                    Ok(())
                }
                Verification::Broken { id, reason } => Err(Failure {
                    message: format!("audit chain broken at record #{id}: {}", printable(&reason)),
                    json: json!({ "error": "auditBroken", "id": id, "reason": reason }),
                }),
            }
        }
        Some(AuditCmd::Export { format, output }) => {
            let records = kernel.audit(&q)?;
            let text = match format {
                ExportFormat::Json => serde_json::to_string_pretty(&records).unwrap_or_default() + "\n",
                ExportFormat::Csv => audit_to_csv(&records),
            };
            match output {
                Some(p) => {
                    std::fs::write(p, text).map_err(|e| KernelError::Io { path: p.clone(), source: e })?;
                    eprintln!("Wrote {} record(s) to {}", records.len(), p.display());
                }
                None => match format {
                    ExportFormat::Json => print!("{}", terminal_json(text)),
                    ExportFormat::Csv => print!("{}", for_terminal(&text)),
                },
            }
            Ok(())
        }
        Some(AuditCmd::Trim { keep_from }) => {
            let n = kernel.trim_audit(*keep_from)?;
            if cli.json {
                print_json(&json!({ "removed": n }));
            } else {
                println!("Removed {n} record(s); a checkpoint records the trim.");
            }
            Ok(())
        }
        None => {
            tail(cli.json, f.follow, |after_id, first| {
                Ok(kernel.audit(&AuditQuery { after_id, limit: if first { q.limit } else { None }, ..q.clone() })?)
            }, |r| r.id, render::audit_line)
            .await
        }
    }
}

/// Print rows (oldest first); with `follow`, keep polling for newer ones until interrupted.
/// Polling suits a separate process: it sees rows written by any process on the directory.
async fn tail<T: serde::Serialize>(
    json: bool,
    follow: bool,
    mut fetch: impl FnMut(Option<i64>, bool) -> Result<Vec<T>, Failure>,
    id_of: fn(&T) -> i64,
    human: fn(&T) -> String,
) -> Out {
    let mut after = None;
    let mut first = true;
    loop {
        let rows = fetch(after, first)?;
        for r in &rows {
            if json {
                println!("{}", terminal_json(serde_json::to_string(r).unwrap_or_default()));
            } else {
                println!("{}", human(r));
            }
        }
        let _ = std::io::stdout().flush();
        if !follow {
            return Ok(());
        }
        after = rows.last().map(id_of).or(after).or(Some(0));
        first = false;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_for_a_terminal_reads_back_the_same_and_holds_nothing_that_acts() {
        let v = json!({ "name": "Evil \u{202e}gnp.exe", "csi": "\u{9b}31m\u{7f}", "esc": "\u{1b}]0;t\u{7}\r\n", "zh": "中文 é" });
        for text in [serde_json::to_string_pretty(&v).unwrap(), v.to_string()] {
            let shown = terminal_json(text);
            assert!(!shown.contains(|c: char| needs_escape(c) && c != '\n'), "{shown}");
            assert!(shown.contains(r"\u202e") && shown.contains(r"\u009b") && shown.contains(r"\u007f") && shown.contains("中文 é"), "{shown}");
            assert_eq!(serde_json::from_str::<Value>(&shown).unwrap(), v);
        }
        let plain = serde_json::to_string_pretty(&json!({ "a": [1, "b"] })).unwrap();
        assert_eq!(terminal_json(plain.clone()), plain);
    }

    #[test]
    fn a_message_on_stderr_keeps_only_indented_lines() {
        assert_eq!(message_lines("x: onEnable failed: boom\r\nobjectos: forged"), "x: onEnable failed: boom\\u{d}\n  objectos: forged");
        assert_eq!(message_lines("plugin.json: 1 problem(s)\n  plugin.json:1:2: name: bad"), "plugin.json: 1 problem(s)\n  plugin.json:1:2: name: bad");
        assert_eq!(message_lines("\u{1b}]0;t\u{7}"), "\\u{1b}]0;t\\u{7}");
    }
}
