//! What a plugin author needs: the [`Plugin`] trait, the [`PluginContext`] every hook gets
//! and its facades, and the seam where package code runtimes plug in ([`PackageRuntime`]).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use semver::Version;

use crate::model::manifest::Manifest;

pub use crate::context::{Events, PluginContext, ServiceHandle, Services, Storage, MAX_KEY_LEN};
pub use crate::model::log::Level;
pub use crate::runtime::bus::{caused_by, caused_by_sync, current_depth, Delivery, EmitReport, Event, HandlerError, SubscriptionId, MAX_EVENT_DEPTH};
pub use crate::runtime::log::PluginLogger;

/// What a hook returns. Any error type converts (`?` works on kernel errors, I/O errors...).
pub type HookResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A plugin's code. Every hook is optional and async; the kernel runs each inside a
/// `tracing` span carrying `plugin = <id>`, catches panics, and bounds it with a timeout.
///
/// Phase order: `on_install` (once) -> `on_load` -> `on_enable` <-> `on_disable` -> `on_unload`
/// -> `on_uninstall` (once); `on_upgrade` when a newer version replaces an installed one.
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// After the plugin is first recorded.
    async fn on_install(&self, _ctx: &PluginContext) -> HookResult {
        Ok(())
    }
    /// Prepare (read configuration, open resources). Nothing is offered to others yet.
    async fn on_load(&self, _ctx: &PluginContext) -> HookResult {
        Ok(())
    }
    /// Become active: register services, subscribe to events.
    async fn on_enable(&self, _ctx: &PluginContext) -> HookResult {
        Ok(())
    }
    /// Stop being active. The kernel removes the plugin's services and subscriptions after.
    async fn on_disable(&self, _ctx: &PluginContext) -> HookResult {
        Ok(())
    }
    /// Release what `on_load` took.
    async fn on_unload(&self, _ctx: &PluginContext) -> HookResult {
        Ok(())
    }
    /// Before removal; the plugin's storage is deleted after.
    async fn on_uninstall(&self, _ctx: &PluginContext) -> HookResult {
        Ok(())
    }
    /// A newer version replaced `from`; storage is kept. Runs on the new version's code.
    async fn on_upgrade(&self, _ctx: &PluginContext, _from: &Version, _to: &Version) -> HookResult {
        Ok(())
    }
}

/// Turns an installed package into plugin code. Packages carry no code today (they are
/// declarative), so the default runtime gives them no hooks; a sandboxed runtime replaces it.
pub trait PackageRuntime: Send + Sync + 'static {
    /// Instantiate the package found in `dir`.
    fn instantiate(&self, manifest: &Manifest, dir: &Path) -> crate::Result<Arc<dyn Plugin>>;

    /// Check the package's declared files before it is installed (the kernel has already
    /// checked the manifest, that declared files exist, and translations). Each problem's
    /// path names the file and the place in it. Any problem refuses the install. `installed`
    /// are the manifests of what is installed now, for what the package refers to in its
    /// dependencies (empty where nothing is known, as in a check without a data folder).
    fn check(&self, _manifest: &Manifest, _dir: &Path, _installed: &[Manifest]) -> Vec<crate::model::manifest::Problem> {
        Vec::new()
    }

    /// Folders of the host's own that this runtime keeps (a compiled-code cache): like the
    /// data directory, they are never reachable through a plugin's file grant.
    fn own_folders(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }

    /// What the package's code is and the bounds it runs under here (`None`: no code, or a
    /// runtime that runs none).
    fn code(&self, _manifest: &Manifest) -> Option<crate::model::views::CodeInfo> {
        None
    }
}

/// The runtime for declarative packages: their files are data, they have no hooks.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeclarativeRuntime;

struct Declarative;

#[async_trait]
impl Plugin for Declarative {}

impl PackageRuntime for DeclarativeRuntime {
    fn instantiate(&self, _manifest: &Manifest, _dir: &Path) -> crate::Result<Arc<dyn Plugin>> {
        Ok(Arc::new(Declarative))
    }

    fn check(&self, manifest: &Manifest, _dir: &Path, _installed: &[Manifest]) -> Vec<crate::model::manifest::Problem> {
        refuse_code(manifest).into_iter().collect()
    }
}

/// For a runtime that runs no code: the problem with a package that has some (it would
/// install and then silently do nothing).
pub fn refuse_code(manifest: &Manifest) -> Option<crate::model::manifest::Problem> {
    manifest.main.as_ref().map(|main| crate::model::manifest::Problem {
        path: "main".into(),
        message: format!("the package has code (`{main}`), and this host runs no package code; install it with the objectos command or the console"),
    })
}

pub use crate::context::JsonService;

/// Argument `key` of a JSON service call as text: an error naming the service and the key
/// when it is missing or not a string.
pub fn str_arg<'a>(service: &str, method: &str, args: &'a serde_json::Value, key: &str) -> crate::Result<&'a str> {
    match args.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s),
        None | Some(serde_json::Value::Null) => Err(crate::KernelError::service(service, format!("{method}: `{key}` is required"))),
        Some(other) => Err(crate::KernelError::service(service, format!("{method}: `{key}` must be a string, not {other}"))),
    }
}

/// The error for a JSON call of a method `service` does not have.
pub fn no_method(service: &str, method: &str, methods: &[&str]) -> crate::KernelError {
    crate::KernelError::service(service, format!("has no method `{method}`; its methods are {}", methods.join(", ")))
}
