//! Helpers for the integration tests: a scriptable test plugin, manifest builders, and
//! waiting on a condition with a deadline (never a bare sleep).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use objectos_kernel::{HookResult, Kernel, KernelConfig, Plugin, PluginContext, async_trait, semver::Version};

/// A hook body a test supplies.
pub type HookFn = Arc<dyn Fn(&PluginContext) -> HookResult + Send + Sync>;

/// A plugin whose hooks record their calls and run optional closures.
#[derive(Default, Clone)]
pub struct Probe {
    /// `"<id>:<hook>"` in call order, shared between probes of one test.
    pub calls: Arc<Mutex<Vec<String>>>,
    /// Body of onLoad.
    pub load: Option<HookFn>,
    /// Body of onEnable.
    pub enable: Option<HookFn>,
    /// Body of onDisable.
    pub disable: Option<HookFn>,
    /// Body of onInstall.
    pub install: Option<HookFn>,
    /// Makes onEnable sleep this long (for timeout tests).
    pub enable_delay: Option<Duration>,
    /// (from, to) seen by onUpgrade.
    pub upgraded: Arc<Mutex<Option<(Version, Version)>>>,
}

impl Probe {
    /// A probe sharing `calls`.
    pub fn with_calls(calls: &Arc<Mutex<Vec<String>>>) -> Self {
        Probe { calls: calls.clone(), ..Default::default() }
    }

    fn record(&self, ctx: &PluginContext, hook: &str) {
        self.calls.lock().unwrap().push(format!("{}:{hook}", ctx.id()));
    }

    fn run(&self, ctx: &PluginContext, hook: &str, f: &Option<HookFn>) -> HookResult {
        self.record(ctx, hook);
        match f {
            Some(f) => f(ctx),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Plugin for Probe {
    async fn on_install(&self, ctx: &PluginContext) -> HookResult {
        self.run(ctx, "onInstall", &self.install)
    }
    async fn on_load(&self, ctx: &PluginContext) -> HookResult {
        self.run(ctx, "onLoad", &self.load)
    }
    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        if let Some(d) = self.enable_delay {
            tokio::time::sleep(d).await;
        }
        self.run(ctx, "onEnable", &self.enable)
    }
    async fn on_disable(&self, ctx: &PluginContext) -> HookResult {
        self.run(ctx, "onDisable", &self.disable)
    }
    async fn on_unload(&self, ctx: &PluginContext) -> HookResult {
        self.run(ctx, "onUnload", &None)
    }
    async fn on_uninstall(&self, ctx: &PluginContext) -> HookResult {
        self.run(ctx, "onUninstall", &None)
    }
    async fn on_upgrade(&self, ctx: &PluginContext, from: &Version, to: &Version) -> HookResult {
        *self.upgraded.lock().unwrap() = Some((from.clone(), to.clone()));
        self.run(ctx, "onUpgrade", &None)
    }
}

/// A manifest with the given dependencies and required permissions.
pub fn manifest(id: &str, version: &str, deps: &[(&str, &str)], perms: &[&str]) -> String {
    let deps: serde_json::Map<String, serde_json::Value> = deps.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
    serde_json::json!({ "id": id, "name": id, "version": version, "dependencies": deps, "permissions": perms }).to_string()
}

/// A kernel in memory.
pub fn memory_kernel() -> Kernel {
    Kernel::open(KernelConfig::in_memory()).expect("in-memory kernel")
}

/// Wait until `cond` holds, failing the test after `secs` seconds.
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Write a package folder with `plugin.json` and extra files.
pub fn package_dir(root: &std::path::Path, name: &str, manifest: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plugin.json"), manifest).unwrap();
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}
