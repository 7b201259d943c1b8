//! `com.objectos.jobs`: persistent background jobs, offered as the `jobs` service.
//!
//! A plugin registers named handlers ([`Jobs::handle`]) and enqueues jobs for them
//! ([`Jobs::enqueue`]) with a JSON payload, an optional delay, a retry policy and a timeout,
//! or declares a recurring job on a cron schedule ([`Jobs::schedule`]). A plugin reaches only
//! its own handlers and jobs: every call takes the caller's [`PluginContext`].
//!
//! ## Durability
//! Each job is one record (`job:<id>`) in this plugin's storage, the kernel's SQLite database.
//! Every change of a record is a compare-and-set ([`objectos_kernel::plugin::Storage::swap`]), so two
//! processes on one data directory (the console and an `objectos` command, say) never both
//! start a job. A running job carries a lease (this process's id and a deadline) that the
//! runner renews while the handler runs. When a process dies, its leases run out and the jobs
//! are retried: the lost attempt is recorded as `interrupted` and does not count against the
//! retry policy (up to [`MAX_INTERRUPTIONS`], so a job that kills its process cannot loop
//! forever). Handlers therefore run at least once per attempt and a job completes exactly
//! once; a handler with outside effects should be idempotent per job id.
//!
//! A recurring schedule (`schedule:<plugin>/<name>`) creates one job per occurrence with the
//! id `<plugin>/<name>@<time>`; creating it is idempotent, so an occurrence is never doubled.
//! Occurrences missed while no process ran are caught up by one run, not one per miss.
//!
//! ## Waiting
//! A job whose handler is not registered in this process (its plugin is disabled, or not yet
//! enabled after a restart) waits, queued, and starts when the handler comes back.
//!
//! Configuration: `{"concurrency": 4, "leaseMs": 30000, "pollMs": 1000, "retain": 1000}`.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::FutureExt;
use objectos_kernel::serde_json::{self, json, Value};
use objectos_kernel::util::now_ms;
use objectos_kernel::{HookResult, Kernel, KernelError, Plugin, PluginContext, Result, async_trait};
use objectos_metrics::{family, label, MetricSource};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};

/// The plugin's id.
pub const ID: &str = "com.objectos.jobs";
/// The service name.
pub const SERVICE: &str = "jobs";
/// The embedded manifest.
pub const MANIFEST: &str = include_str!("../plugin.json");
/// The plugin's translations (English and Simplified Chinese).
pub const TRANSLATIONS: &[(&str, &str)] = &[("translations/en.json", include_str!("../translations/en.json")), ("translations/zh-CN.json", include_str!("../translations/zh-CN.json"))];
/// Interrupted attempts (process died) after which a job fails instead of retrying.
pub const MAX_INTERRUPTIONS: u32 = 5;
/// The largest payload, as JSON.
pub const MAX_PAYLOAD_BYTES: usize = 256 << 10;
/// Deepest nesting accepted in a job's payload: the kernel's bound, less the levels of the job
/// record around it.
pub const MAX_PAYLOAD_DEPTH: usize = objectos_kernel::util::MAX_JSON_DEPTH - 4;
/// The most attempts a retry policy may ask for.
pub const MAX_ATTEMPTS: u32 = 100;
/// The furthest ahead a job may be queued.
pub const MAX_DELAY_MS: u64 = 366 * 86_400_000;
/// Most schedules engines keep for one package.
pub const MAX_SCHEDULES_PER_PACKAGE: usize = 100;

const JOB: &str = "job:";
const SCHEDULE: &str = "schedule:";

/// Register the plugin with a kernel (before `start`).
pub fn register(kernel: &Kernel) -> Result<()> {
    kernel.register_builtin_with_files(MANIFEST, Arc::new(JobsPlugin::default()), TRANSLATIONS)
}

fn err(message: impl Into<String>) -> KernelError {
    KernelError::service(SERVICE, message)
}

mod records;
mod runner;
mod service;

pub use records::*;
pub use service::*;
use runner::*;

// ---- the plugin ------------------------------------------------------------------------------

/// The plugin's code: the service and its runner live from enable to disable.
#[derive(Default)]
pub struct JobsPlugin {
    running: Mutex<Option<(Arc<Inner>, tokio::task::JoinHandle<()>)>>,
}

#[derive(Debug, Clone, Copy)]
struct Config {
    concurrency: usize,
    lease_ms: i64,
    poll_ms: i64,
    retain: usize,
}

impl Config {
    fn read(ctx: &PluginContext) -> std::result::Result<Config, String> {
        let num = |key: &str, default: u64, max: u64| ctx.config_u64(key, default, max);
        Ok(Config {
            concurrency: num("concurrency", 4, 256)? as usize,
            lease_ms: num("leaseMs", 30_000, 3_600_000)?.max(100) as i64,
            poll_ms: num("pollMs", 1_000, 60_000)? as i64,
            retain: num("retain", 1_000, 1_000_000)? as usize,
        })
    }
}

#[async_trait]
impl Plugin for JobsPlugin {
    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        let config = Config::read(ctx)?;
        let inner = Arc::new(Inner::new(ctx.clone(), config));
        let jobs = Arc::new(Jobs { inner: inner.clone() });
        ctx.services().register_arc(SERVICE, jobs.clone())?;
        ctx.services().expose(SERVICE, jobs)?;
        let source = inner.clone();
        ctx.services().register("metrics.jobs", MetricSource::new(move || source.render_metrics()))?;
        // A plugin leaving the enabled state takes its handlers with it: its jobs wait.
        let weak = Arc::downgrade(&inner);
        ctx.events().on_plugin_stopped(move |plugin, uninstalled| {
            if let Some(inner) = weak.upgrade() {
                inner.drop_handlers(plugin);
                if uninstalled {
                    inner.forget(plugin)?;
                }
            }
            Ok(())
        })?;
        inner.rescan()?;
        let runner = tokio::spawn(inner.clone().run());
        if ctx.is_runner() {
            ctx.logger().info(format!("jobs runner {} started: {} at a time, leases of {} ms", inner.instance, config.concurrency, config.lease_ms));
        }
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some((inner, runner));
        Ok(())
    }

    async fn on_disable(&self, ctx: &PluginContext) -> HookResult {
        let taken = self.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((inner, runner)) = taken {
            runner.abort();
            let released = inner.release_all();
            ctx.logger().info(format!("jobs runner stopped; {released} running job(s) handed back to the queue"));
        }
        Ok(())
    }
}
