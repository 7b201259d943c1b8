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
use objectos_kernel::model::lifecycle::State;
use objectos_kernel::model::views::{BuiltinPolicy, GrantRequest, PluginInfo, RunnerInfo};
use objectos_kernel::util::{needs_escape, printable};
use serde_json::{json, Value};

mod audit;
mod author;
mod lease;
mod locate;
mod output;
mod plugins;
mod records;
mod render;
mod scaffold;
mod service;

use audit::*;
use author::*;
use output::*;
use lease::*;
use plugins::*;
use service::*;

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
    /// `objectos serve` on this data directory as a systemd user service.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Run the plugins on the data directory until stopped (SIGTERM, SIGINT): their schedules,
    /// jobs, automations and subscriptions keep going with no console open. One process runs
    /// plugins on a data directory at a time. The first line on stdout is
    /// `listening on http://ADDR:PORT`, which serves `/health` and Prometheus `/metrics`.
    Serve {
        /// Where to listen: a loopback address (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: std::net::SocketAddr,
        /// While another process runs the plugins here, wait and take over when it stops,
        /// rather than refuse.
        #[arg(long)]
        standby: bool,
    },
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
    let outcome = runtime.block_on(async {
        let out = run(cli).await;
        release_lease();
        out
    });
    match outcome {
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

fn data_dir(cli: &Cli) -> PathBuf {
    host::resolve_data_dir(cli.data_dir.clone())
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
            if !kernel.started() {
                // Another process runs the plugins: the notification engine alone comes up here
                // to send it (its built-in channels; a package's channel runs in the runner).
                kernel.start_quietly(&[inbox::PLUGIN]).await?;
            }
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
        Command::Service(cmd) => service(&cli, cmd).await,
        Command::Serve { listen, standby } => {
            let options = objectos_server::Options { listen: *listen, standby: *standby };
            let announce = |addr: std::net::SocketAddr| {
                println!("listening on http://{addr}");
                let _ = std::io::stdout().flush();
            };
            // The first signal stops it cleanly; a second one stops it now.
            let first = objectos_server::terminated();
            let stop = async move {
                first.await;
                let second = objectos_server::terminated();
                tokio::spawn(async move {
                    second.await;
                    eprintln!("objectos serve: stopping now (a second signal)");
                    std::process::exit(130);
                });
            };
            objectos_server::serve(data_dir(&cli), options, announce, stop).await.map_err(|e| match e {
                objectos_server::ServeError::Kernel(k) => Failure::from(k),
                other => Failure::from(anyhow::anyhow!("{other}")),
            })
        }
        Command::Metrics => {
            // A running service's figures are the ones that mean something: read them there,
            // without starting anything here.
            let kernel = host::open(data_dir(&cli))?;
            if let Some(address) = kernel.runner()?.and_then(|r| r.address) {
                print!("{}", for_terminal(&runner_metrics(&address)?));
                return Ok(());
            }
            // No runner: the metrics plugin alone comes up here, quietly (a command that reads
            // runs no job, schedule or package's code).
            host::sync(&kernel).await?;
            kernel.start_quietly(&[objectos_admin::metrics::PLUGIN]).await?;
            let text = objectos_admin::metrics::text(&kernel);
            kernel.flush();
            let text = text.map_err(|e| match e.code() {
                "unavailable" => Failure::from(anyhow::anyhow!("{e}; enable it with `objectos plugins enable {}`", objectos_admin::metrics::PLUGIN)),
                _ => Failure::from(e),
            })?;
            print!("{}", for_terminal(&text));
            Ok(())
        }
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
