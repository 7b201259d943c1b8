//! Host bootstrap: how every ObjectOS host (the `objectos` command, the console) finds its
//! data directory, opens the kernel on it with the built-ins, and starts it. One
//! implementation, so the hosts cannot drift apart.
//!
//! A host calls, in order:
//!
//! 1. [`resolve_data_dir`]: `--data-dir`, else `$OBJECTOS_DATA_DIR`, else the OS data
//!    directory's `objectos` folder.
//! 2. [`open`]: the kernel on that directory's SQLite database, with the package runtime
//!    ([`crate::with_runtime`]) and every built-in registered ([`crate::register_all`]).
//! 3. Either [`start`], which restores every plugin's desired state (runs plugins), or
//!    [`sync`], which only records new and changed built-ins, for tools that must not run
//!    plugins (the `objectos` command's read-only commands).
//!
//! ```no_run
//! # async fn demo() -> objectos_kernel::Result<()> {
//! use objectos_builtins::host;
//! let kernel = host::open(host::resolve_data_dir(None))?;
//! host::start(&kernel).await?.print_warnings("objectos");
//! # Ok(()) }
//! ```

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use objectos_kernel::host::{StartReport, StorageKind};
use objectos_kernel::{Kernel, KernelConfig, Result};

/// The environment variable naming the data directory when no `--data-dir` is given.
pub const DATA_DIR_ENV: &str = "OBJECTOS_DATA_DIR";

/// Where the data lives: `arg` (a host's `--data-dir`), else `$OBJECTOS_DATA_DIR`, else
/// `objectos` in the OS data directory (`~/.local/share/objectos` on Linux), else
/// `./objectos` when the OS has none.
pub fn resolve_data_dir(arg: Option<PathBuf>) -> PathBuf {
    choose_data_dir(arg, std::env::var_os(DATA_DIR_ENV), dirs::data_dir())
}

/// [`resolve_data_dir`]'s rule, with the environment passed in (for tests).
fn choose_data_dir(arg: Option<PathBuf>, env: Option<OsString>, os_data_dir: Option<PathBuf>) -> PathBuf {
    arg.or_else(|| env.map(PathBuf::from)).unwrap_or_else(|| os_data_dir.unwrap_or_else(|| PathBuf::from(".")).join("objectos"))
}

/// The kernel's configuration for a host program: SQLite in `data_dir`, with the package
/// runtime (JavaScript componentized in a child process: the program's `main` calls
/// [`crate::componentize_child_main`] first).
pub fn config(data_dir: impl Into<PathBuf>) -> KernelConfig {
    crate::with_host_runtime(KernelConfig::new(data_dir).storage(StorageKind::Sqlite))
}

/// Open the kernel on `data_dir` (see [`config`]) and register every built-in. Nothing runs
/// yet: follow with [`start`] or [`sync`].
pub fn open(data_dir: impl Into<PathBuf>) -> Result<Kernel> {
    let kernel = Kernel::open(config(data_dir))?;
    crate::register_all(&kernel)?;
    Ok(kernel)
}

/// Record new built-ins, then restore every plugin's desired state in dependency order
/// ([`Kernel::start`]). A plugin that cannot be restored does not stop the others; it
/// becomes a [`Warning`].
pub async fn start(kernel: &Kernel) -> Result<Started> {
    Ok(kernel.start().await?.into())
}

/// Record new built-ins and upgrade changed ones (running their `onInstall`/`onUpgrade`
/// hooks), and run nothing else: no plugin is loaded or enabled ([`Kernel::sync_builtins`]).
/// For tools that only read, so that built-ins still show up in listings.
pub async fn sync(kernel: &Kernel) -> Result<Started> {
    Ok(kernel.sync_builtins().await?.into())
}

/// What [`start`] or [`sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    /// Plugins enabled (none after [`sync`]).
    pub enabled: Vec<String>,
    /// One for each plugin that could not be recorded or restored.
    pub warnings: Vec<Warning>,
}

impl From<StartReport> for Started {
    fn from(r: StartReport) -> Self {
        Started { enabled: r.enabled, warnings: r.failed.into_iter().map(|(plugin, reason)| Warning { plugin, reason }).collect() }
    }
}

impl Started {
    /// Report every warning on stderr, one line each, as `<program>: warning: <warning>`:
    /// the way both hosts report them.
    pub fn print_warnings(&self, program: &str) {
        // The reasons are plugins' own words (a hook's error): escaped, so they cannot drive
        // the terminal or forge a line.
        for w in &self.warnings {
            eprintln!("{program}: warning: {}", objectos_kernel::util::printable(&w.to_string()));
        }
    }
}

/// A plugin that could not be recorded or restored, and why. Displayed as
/// `<plugin> could not be restored: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The plugin's id.
    pub plugin: String,
    /// The kernel's error, in words.
    pub reason: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} could not be restored: {}", self.plugin, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use objectos_kernel::{async_trait, HookResult, Plugin, PluginContext};
    use std::sync::Arc;

    #[test]
    fn the_data_directory_is_the_argument_then_the_environment_then_the_os_folder() {
        let os = Some(PathBuf::from("/home/u/.local/share"));
        let env = Some(OsString::from("/srv/env"));
        assert_eq!(choose_data_dir(Some("/arg".into()), env.clone(), os.clone()), PathBuf::from("/arg"));
        assert_eq!(choose_data_dir(None, env, os.clone()), PathBuf::from("/srv/env"));
        assert_eq!(choose_data_dir(None, None, os), PathBuf::from("/home/u/.local/share/objectos"));
        assert_eq!(choose_data_dir(None, None, None), PathBuf::from("./objectos"));
    }

    #[test]
    fn a_warning_names_the_plugin_and_why() {
        let started: Started = StartReport { enabled: vec!["a".into()], failed: vec![("b".into(), "onEnable failed: boom".into())] }.into();
        assert_eq!(started.enabled, ["a"]);
        assert_eq!(started.warnings.len(), 1);
        assert_eq!(started.warnings[0].to_string(), "b could not be restored: onEnable failed: boom");
    }

    #[tokio::test]
    async fn sync_records_the_builtins_without_running_them_and_start_restores_them() {
        use crate::metrics::{Metrics, ID, SERVICE};
        let dir = tempfile::tempdir().unwrap();
        let kernel = open(dir.path()).unwrap();
        assert_eq!(sync(&kernel).await.unwrap(), Started::default());
        assert!(kernel.plugins().unwrap().iter().any(|p| p.manifest.id == ID), "built-ins are listed after sync");
        kernel.enable(ID, true).await.unwrap();
        assert!(kernel.service::<Metrics>(SERVICE).is_ok());
        kernel.shutdown().await;
        drop(kernel);

        // Wanted enabled, but a sync runs nothing.
        let kernel = open(dir.path()).unwrap();
        assert_eq!(sync(&kernel).await.unwrap(), Started::default());
        assert!(kernel.service::<Metrics>(SERVICE).is_err(), "sync must not enable plugins");
        kernel.flush();
        drop(kernel);

        let kernel = open(dir.path()).unwrap();
        let started = start(&kernel).await.unwrap();
        assert_eq!(started.warnings, []);
        assert!(started.enabled.iter().any(|id| id == ID), "{started:?}");
        assert!(kernel.service::<Metrics>(SERVICE).is_ok());
        kernel.shutdown().await;
    }

    /// A built-in of an older build, which this build no longer has.
    struct Gone;
    #[async_trait]
    impl Plugin for Gone {
        async fn on_enable(&self, _ctx: &PluginContext) -> HookResult {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_plugin_that_cannot_be_restored_is_a_warning_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let old = Kernel::open(config(dir.path())).unwrap();
        old.register_builtin(r#"{"id": "com.example.gone", "name": "Gone", "version": "1.0.0"}"#, Arc::new(Gone)).unwrap();
        old.start().await.unwrap();
        old.enable("com.example.gone", false).await.unwrap();
        old.shutdown().await;
        drop(old);

        let kernel = open(dir.path()).unwrap();
        let started = start(&kernel).await.unwrap();
        assert_eq!(started.warnings.len(), 1, "{started:?}");
        assert_eq!(started.warnings[0].plugin, "com.example.gone");
        assert!(started.warnings[0].to_string().starts_with("com.example.gone could not be restored: "), "{}", started.warnings[0]);
        kernel.shutdown().await;
    }
}
