//! A package with code, as the kernel sees it: its hooks run the guest's (after, or around,
//! what its declarative files declare), and repeated failures quarantine it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use objectos_kernel::semver::Version;
use objectos_kernel::{async_trait, HookResult, Plugin, PluginContext};

use crate::engine::Cache;
use crate::guest::{Guest, Hook};
use crate::runner::Prepared;
use crate::limits::Bounds;

/// Failures of handlers and service calls within [`QUARANTINE_WINDOW`] that quarantine a plugin.
pub const QUARANTINE_FAILURES: usize = 5;
/// See [`QUARANTINE_FAILURES`].
pub const QUARANTINE_WINDOW: Duration = Duration::from_secs(600);

pub(crate) struct SandboxPlugin {
    pub(crate) dir: PathBuf,
    pub(crate) main: String,
    pub(crate) bounds: Bounds,
    pub(crate) cache: Cache,
    /// What the package's declarative files declare (record types, workflows, automations).
    pub(crate) declarative: Arc<dyn Plugin>,
    pub(crate) prepared: Mutex<Option<Arc<Prepared>>>,
    pub(crate) guest: Mutex<Option<Arc<Guest>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SandboxPlugin {
    /// The compiled component: from the host's cache after the first time.
    async fn prepared(&self, ctx: &PluginContext) -> Result<Arc<Prepared>, String> {
        if let Some(p) = lock(&self.prepared).clone() {
            return Ok(p);
        }
        let (cache, dir, main, ctx) = (self.cache.clone(), self.dir.clone(), self.main.clone(), ctx.clone());
        let made = tokio::task::spawn_blocking(move || -> Result<Prepared, String> {
            let bytes = cache.component_bytes(&dir, &main, &ctx)?;
            let component = cache.compile(&bytes, &ctx)?;
            Prepared::new(&component, &main)
        })
        .await
        .map_err(|e| format!("preparing the plugin's code failed: {e}"))??;
        let p = Arc::new(made);
        *lock(&self.prepared) = Some(p.clone());
        Ok(p)
    }

    /// The running guest, started if it is not.
    async fn guest(&self, ctx: &PluginContext) -> Result<Arc<Guest>, String> {
        if let Some(g) = lock(&self.guest).clone() {
            return Ok(g);
        }
        let prepared = self.prepared(ctx).await?;
        let guest = crate::runner::start(ctx.clone(), prepared, self.bounds, quarantine_after(ctx.clone()))?;
        let mut slot = lock(&self.guest);
        Ok(slot.get_or_insert(guest).clone())
    }

    fn stop(&self) {
        if let Some(g) = lock(&self.guest).take() {
            g.stop();
        }
    }

    async fn hook(&self, ctx: &PluginContext, hook: Hook) -> HookResult {
        let guest = self.guest(ctx).await?;
        Ok(guest.hook(hook).await?)
    }
}

/// Count failures, in the data directory's database so that every process's count: the
/// fifth within the window quarantines the plugin (once per instance).
fn quarantine_after(ctx: PluginContext) -> Box<dyn Fn(&str) + Send + Sync> {
    let done = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Handle::try_current().ok();
    Box::new(move |message: &str| {
        let count = match ctx.count_failure(message, QUARANTINE_WINDOW) {
            Ok(n) => n as usize,
            Err(e) => {
                ctx.logger().error(format!("recording a failure of the plugin's code failed: {e}"));
                return;
            }
        };
        if count < QUARANTINE_FAILURES || done.swap(true, Ordering::SeqCst) {
            return;
        }
        let reason = format!("its code failed {count} times within {} minutes; the last failure: {message}", QUARANTINE_WINDOW.as_secs() / 60);
        let ctx = ctx.clone();
        let Some(rt) = &runtime else { return };
        rt.spawn(async move {
            if let Err(e) = ctx.quarantine(reason).await {
                ctx.logger().error(format!("quarantining the plugin failed: {e}"));
            }
        });
    })
}

#[async_trait]
impl Plugin for SandboxPlugin {
    async fn on_install(&self, ctx: &PluginContext) -> HookResult {
        let out = self.hook(ctx, Hook::Install).await;
        self.stop();
        out
    }

    async fn on_load(&self, ctx: &PluginContext) -> HookResult {
        self.hook(ctx, Hook::Load).await
    }

    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        // The record types, workflows and automations exist before the code runs.
        self.declarative.on_enable(ctx).await?;
        self.hook(ctx, Hook::Enable).await
    }

    async fn on_disable(&self, ctx: &PluginContext) -> HookResult {
        let out = self.hook(ctx, Hook::Disable).await;
        self.declarative.on_disable(ctx).await?;
        out
    }

    async fn on_unload(&self, ctx: &PluginContext) -> HookResult {
        let out = self.hook(ctx, Hook::Unload).await;
        self.stop();
        out
    }

    async fn on_uninstall(&self, ctx: &PluginContext) -> HookResult {
        let out = self.hook(ctx, Hook::Uninstall).await;
        self.stop();
        out
    }

    async fn on_upgrade(&self, ctx: &PluginContext, from: &Version, _to: &Version) -> HookResult {
        let out = self.hook(ctx, Hook::Upgrade(from.to_string())).await;
        self.stop();
        out
    }
}
