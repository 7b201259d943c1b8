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

// ---- records ---------------------------------------------------------------------------------

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for its time, a free slot or its handler.
    Queued,
    /// A handler is running it under a lease.
    Running,
    /// Done.
    Completed,
    /// Out of attempts.
    Failed,
    /// Cancelled by its plugin.
    Cancelled,
}

impl Status {
    /// Completed, failed or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The handler returned `Ok`.
    Completed,
    /// The handler returned an error.
    Failed,
    /// The handler panicked.
    Panicked,
    /// The handler ran past the timeout.
    TimedOut,
    /// The process running it died (its lease ran out), or the jobs plugin was disabled.
    Interrupted,
    /// Cancelled while running.
    Cancelled,
}

/// One attempt of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1-based.
    pub attempt: u32,
    /// Start (ms since the epoch).
    pub started_at: i64,
    /// End (ms since the epoch).
    pub ended_at: i64,
    /// How it ended.
    pub outcome: Outcome,
    /// The error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The retry policy: up to `attempts` tries, waiting `backoff_ms * 2^(n-1)` (at most
/// `max_backoff_ms`) after the n-th failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// Tries in all, at least 1.
    pub attempts: u32,
    /// First wait after a failure.
    pub backoff_ms: u64,
    /// Longest wait.
    pub max_backoff_ms: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 3, backoff_ms: 1_000, max_backoff_ms: 300_000 }
    }
}

impl Retry {
    /// No retries.
    pub fn none() -> Self {
        Retry { attempts: 1, ..Default::default() }
    }
    /// `attempts` tries with exponential backoff starting at `first`.
    pub fn exponential(attempts: u32, first: Duration) -> Self {
        Retry { attempts, backoff_ms: first.as_millis() as u64, ..Default::default() }
    }
    fn delay_after(&self, failures: u32) -> u64 {
        let factor = 1u64.checked_shl(failures.saturating_sub(1)).unwrap_or(u64::MAX);
        self.backoff_ms.saturating_mul(factor).min(self.max_backoff_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Lease {
    owner: String,
    until: i64,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Unique id.
    pub id: String,
    /// The plugin that enqueued it and whose handler runs it.
    pub plugin: String,
    /// The handler's name.
    pub handler: String,
    /// The payload given to the handler.
    pub payload: Value,
    /// Where it is.
    pub status: Status,
    /// When it may run next (ms since the epoch).
    pub run_at: i64,
    /// Attempts counted against the retry policy.
    pub attempts: u32,
    /// Attempts lost to a dying process.
    pub interruptions: u32,
    /// The retry policy.
    pub retry: Retry,
    /// Per-attempt timeout.
    pub timeout_ms: u64,
    /// The schedule that created it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Every attempt so far.
    pub history: Vec<Attempt>,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
    /// The package an engine made it for (its owner for quotas, and what removes it: it goes
    /// when that package is uninstalled). `None`: the job is `plugin`'s own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made_for: Option<String>,
    /// How deep in a chain of events the job was made (the kernel's `Event::depth`): its handler
    /// and its lifecycle events continue that chain, so a loop through jobs is cut like any
    /// other (0: made outside any event's handling).
    #[serde(default)]
    pub depth: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<Lease>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started_at: Option<i64>,
}

impl Job {
    /// The error of the last failed attempt.
    pub fn last_error(&self) -> Option<&str> {
        self.history.iter().rev().find_map(|a| a.error.as_deref())
    }
    fn key(&self) -> String {
        format!("{JOB}{}", self.id)
    }
    fn attempt_number(&self) -> u32 {
        self.history.len() as u32 + 1
    }
}

/// What to run: a handler of the caller, its payload, when, and how hard to try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// The caller's handler name.
    pub handler: String,
    /// Given to the handler.
    #[serde(default)]
    pub payload: Value,
    /// Wait this long before the first attempt.
    #[serde(default)]
    pub delay_ms: u64,
    /// The retry policy.
    #[serde(default)]
    pub retry: Retry,
    /// Per-attempt timeout (default 5 minutes).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_timeout() -> u64 {
    300_000
}

impl JobSpec {
    /// Run `handler` with `payload` now, with the default retry policy and timeout.
    pub fn new(handler: &str, payload: Value) -> Self {
        JobSpec { handler: handler.into(), payload, delay_ms: 0, retry: Retry::default(), timeout_ms: default_timeout() }
    }
    /// Start no sooner than `d` from now.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay_ms = d.as_millis() as u64;
        self
    }
    /// Use this retry policy.
    pub fn retry(mut self, r: Retry) -> Self {
        self.retry = r;
        self
    }
    /// Give each attempt at most `d`.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout_ms = d.as_millis() as u64;
        self
    }

    fn validate(&self, caller: &PluginContext) -> Result<()> {
        check_name("handler", &self.handler)?;
        if self.retry.attempts == 0 || self.retry.attempts > MAX_ATTEMPTS {
            return Err(err(format!("retry.attempts is {}; it must be 1 to {MAX_ATTEMPTS}", self.retry.attempts)));
        }
        if self.delay_ms > MAX_DELAY_MS {
            return Err(err(format!("delayMs is {}; a job may be queued at most 366 days ahead", self.delay_ms)));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 86_400_000 {
            return Err(err(format!("timeoutMs is {}; it must be 1 ms to 24 h", self.timeout_ms)));
        }
        // The job record holds the payload a few levels down: leave room so the record stays
        // within the kernel's storage bound and can always be read back.
        if let Err(bound) = objectos_kernel::util::check_json(&self.payload, MAX_PAYLOAD_DEPTH, MAX_PAYLOAD_BYTES) {
            return Err(caller.over_limit(format!("job for handler `{}`", self.handler), format!("its payload is {bound}")));
        }
        Ok(())
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(err(format!("{what} name {name:?} must be 1 to 128 characters of a-z, 0-9, '.', '_' or '-'")))
    }
}

/// A recurring job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// The owning plugin.
    pub plugin: String,
    /// Its name within the plugin.
    pub name: String,
    /// The cron expression (5 fields, or 6 with seconds first), in local time.
    pub cron: String,
    /// What each occurrence runs.
    pub spec: JobSpec,
    /// The next occurrence (ms).
    pub next_at: i64,
    /// The package an engine made it for: its occurrences are that package's jobs (its quota,
    /// and they go with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made_for: Option<String>,
}

impl Schedule {
    fn key(&self) -> String {
        format!("{SCHEDULE}{}/{}", self.plugin, self.name)
    }
}

fn parse_cron(expr: &str) -> Result<croner::Cron> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| err(format!("invalid cron expression {expr:?}: {e}")))
}

fn next_occurrence(cron: &croner::Cron, after_ms: i64) -> Result<i64> {
    let after = chrono::DateTime::from_timestamp_millis(after_ms).unwrap_or_default().with_timezone(&chrono::Local);
    cron.find_next_occurrence(&after, false).map(|t| t.timestamp_millis()).map_err(|e| err(format!("cron expression {:?} has no next occurrence: {e}", cron.pattern.to_string())))
}

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
        ctx.logger().info(format!("jobs runner {} started: {} at a time, leases of {} ms", inner.instance, config.concurrency, config.lease_ms));
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

// ---- the service -----------------------------------------------------------------------------

/// `jobs` for code in the sandbox. `handle {name, service}`: the caller's jobs for handler
/// `name` run by calling method `run` of `service`, one of the caller's own services, with
/// `{id, attempt, payload}` (an error it returns fails the attempt, retried by the job's
/// policy). `enqueue {handler, payload?, delayMs?, retry?, timeoutMs?}` answers the job's id;
/// `schedule {name, cron, handler, payload?, ...}` the first occurrence (ms); `unschedule
/// {name}`, `schedules`, `get {id}`, `cancel {id}`, `list`.
impl objectos_kernel::plugin::JsonService for Jobs {
    fn call(&self, caller: &PluginContext, method: &str, args: Value) -> Result<Value> {
        use objectos_kernel::plugin::str_arg;
        let spec = |args: &Value| -> Result<JobSpec> { serde_json::from_value(args.clone()).map_err(|e| err(format!("{method}: not a job ({e}); send {{\"handler\": ..., \"payload\": ...}}"))) };
        let out = |v: std::result::Result<Value, serde_json::Error>| v.map_err(|e| err(e.to_string()));
        match method {
            "handle" => {
                let name = str_arg(SERVICE, method, &args, "name")?;
                let service = str_arg(SERVICE, method, &args, "service")?.to_string();
                if !caller.services().provides(&service) {
                    return Err(err(format!("handle: `{service}` is not a service {} provides; register it first (its `run` method runs each job)", caller.id())));
                }
                let owner = caller.clone();
                self.handle(caller, name, move |run: JobRun| {
                    let (owner, service) = (owner.clone(), service.clone());
                    async move {
                        let args = json!({ "id": run.id, "attempt": run.attempt, "payload": run.payload });
                        // The service is the plugin's code, which blocks the thread calling it.
                        tokio::task::spawn_blocking(move || owner.services().call_own(&service, "run", args)).await??;
                        Ok(())
                    }
                })?;
                Ok(Value::Null)
            }
            "enqueue" => Ok(json!(self.enqueue(caller, spec(&args)?)?)),
            "schedule" => {
                let name = str_arg(SERVICE, method, &args, "name")?;
                let cron = str_arg(SERVICE, method, &args, "cron")?;
                Ok(json!(self.schedule(caller, name, cron, spec(&args)?)?))
            }
            "unschedule" => Ok(json!(self.unschedule(caller, str_arg(SERVICE, method, &args, "name")?)?)),
            "schedules" => out(serde_json::to_value(self.schedules(caller)?)),
            "get" => out(serde_json::to_value(self.get(caller, str_arg(SERVICE, method, &args, "id")?)?)),
            "cancel" => {
                self.cancel(caller, str_arg(SERVICE, method, &args, "id")?)?;
                Ok(Value::Null)
            }
            "list" => out(serde_json::to_value(self.list(caller)?)),
            _ => Err(objectos_kernel::plugin::no_method(SERVICE, method, &["handle", "enqueue", "schedule", "unschedule", "schedules", "get", "cancel", "list"])),
        }
    }
}

/// What a handler receives.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// The job's id.
    pub id: String,
    /// 1-based attempt number, counting interrupted attempts.
    pub attempt: u32,
    /// The payload.
    pub payload: Value,
}

/// What a handler returns.
pub type JobResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;
type HandlerFn = Arc<dyn Fn(JobRun) -> BoxFuture<'static, JobResult> + Send + Sync>;

/// Counters since enable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobStats {
    /// Jobs enqueued (schedule occurrences included).
    pub enqueued: u64,
    /// Attempts started in this process.
    pub started: u64,
    /// Jobs completed in this process.
    pub completed: u64,
    /// Jobs that ran out of attempts in this process.
    pub failed: u64,
    /// Failed attempts queued again.
    pub retried: u64,
    /// Jobs cancelled.
    pub cancelled: u64,
    /// Attempts found interrupted (their process died).
    pub interrupted: u64,
    /// Jobs running in this process now.
    pub running: u64,
    /// Jobs queued now (as last seen).
    pub queued: u64,
}

/// The `jobs` service.
pub struct Jobs {
    inner: Arc<Inner>,
}

impl Jobs {
    /// Register (or replace) the caller's handler `name`.
    pub fn handle<F, Fut>(&self, caller: &PluginContext, name: &str, handler: F) -> Result<()>
    where
        F: Fn(JobRun) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        check_name("handler", name)?;
        let f: HandlerFn = Arc::new(move |run| handler(run).boxed());
        self.inner.lock().handlers.insert((caller.id().to_string(), name.to_string()), f);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Enqueue a job for one of the caller's handlers; returns its id. A package's jobs count
    /// against its `queuedJobs` quota.
    pub fn enqueue(&self, caller: &PluginContext, spec: JobSpec) -> Result<String> {
        spec.validate(caller)?;
        self.inner.check_room(caller)?;
        let id = self.inner.new_id();
        let job = self.inner.new_job(caller.id(), id.clone(), spec, None);
        self.inner.insert(job)?;
        Ok(id)
    }

    /// Enqueue a job for one of the caller's (an engine's) handlers, made for package `owner`:
    /// it counts against `owner`'s quota, a refusal is `owner`'s, and it goes when `owner` is
    /// uninstalled.
    pub fn enqueue_for(&self, caller: &PluginContext, owner: &PluginContext, spec: JobSpec) -> Result<String> {
        spec.validate(owner)?;
        self.inner.check_room(owner)?;
        let id = self.inner.new_id();
        let mut job = self.inner.new_job(caller.id(), id.clone(), spec, None);
        job.made_for = Some(owner.id().to_string());
        self.inner.insert(job)?;
        Ok(id)
    }

    /// Create or replace the caller's recurring job `name` on a cron schedule (5 fields, or 6
    /// with seconds first, local time). Returns the first occurrence (ms).
    pub fn schedule(&self, caller: &PluginContext, name: &str, cron: &str, spec: JobSpec) -> Result<i64> {
        check_name("schedule", name)?;
        spec.validate(caller)?;
        let parsed = parse_cron(cron)?;
        let next_at = next_occurrence(&parsed, now_ms())?;
        let schedule = Schedule { plugin: caller.id().into(), name: name.into(), cron: cron.into(), spec, next_at, made_for: None };
        let value = serde_json::to_value(&schedule).map_err(|e| err(e.to_string()))?;
        self.inner.ctx.storage().set(&schedule.key(), value)?;
        self.inner.lock().schedules.insert(schedule.key(), schedule);
        self.inner.wake.notify_one();
        Ok(next_at)
    }

    /// Like [`Jobs::schedule`], for an engine's handler on behalf of package `owner`: each
    /// occurrence is `owner`'s job (its `queuedJobs` quota: an occurrence past it is skipped and
    /// logged), and a package has at most [`MAX_SCHEDULES_PER_PACKAGE`] of them.
    pub fn schedule_for(&self, caller: &PluginContext, owner: &PluginContext, name: &str, cron: &str, spec: JobSpec) -> Result<i64> {
        if owner.quotas().is_some() {
            let held = self.inner.lock().schedules.values().filter(|s| s.made_for.as_deref() == Some(owner.id()) && s.name != name).count();
            if held >= MAX_SCHEDULES_PER_PACKAGE {
                return Err(owner.over_limit("a schedule".into(), format!("the package has {held} schedules; at most {MAX_SCHEDULES_PER_PACKAGE}")));
            }
        }
        spec.validate(owner)?;
        let parsed = parse_cron(cron)?;
        check_name("schedule", name)?;
        let next_at = next_occurrence(&parsed, now_ms())?;
        let schedule = Schedule { plugin: caller.id().into(), name: name.into(), cron: cron.into(), spec, next_at, made_for: Some(owner.id().into()) };
        let value = serde_json::to_value(&schedule).map_err(|e| err(e.to_string()))?;
        self.inner.ctx.storage().set(&schedule.key(), value)?;
        self.inner.lock().schedules.insert(schedule.key(), schedule);
        self.inner.wake.notify_one();
        Ok(next_at)
    }

    /// Remove the caller's schedule `name` (jobs it already created stay); true when it existed.
    pub fn unschedule(&self, caller: &PluginContext, name: &str) -> Result<bool> {
        let key = format!("{SCHEDULE}{}/{name}", caller.id());
        self.inner.lock().schedules.remove(&key);
        self.inner.ctx.storage().delete(&key)
    }

    /// The caller's schedules.
    pub fn schedules(&self, caller: &PluginContext) -> Result<Vec<Schedule>> {
        let prefix = format!("{SCHEDULE}{}/", caller.id());
        Ok(self.inner.ctx.storage().scan(&prefix)?.into_iter().filter_map(|(_, v)| serde_json::from_value(v).ok()).collect())
    }

    /// Cancel one of the caller's jobs that has not finished. A running attempt is stopped.
    pub fn cancel(&self, caller: &PluginContext, id: &str) -> Result<()> {
        self.inner.cancel(caller.id(), id)
    }

    /// One of the caller's jobs.
    pub fn get(&self, caller: &PluginContext, id: &str) -> Result<Option<Job>> {
        Ok(self.inner.read(id)?.filter(|j| j.plugin == caller.id()))
    }

    /// The caller's jobs (finished ones too, within the retention), oldest first.
    pub fn list(&self, caller: &PluginContext) -> Result<Vec<Job>> {
        Ok(self.inner.all()?.into_iter().filter(|j| j.plugin == caller.id()).collect())
    }

    /// Counters and gauges.
    pub fn stats(&self) -> JobStats {
        self.inner.stats()
    }
}

// ---- the runner ------------------------------------------------------------------------------

#[derive(Default)]
struct Counters {
    enqueued: AtomicU64,
    started: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    cancelled: AtomicU64,
    interrupted: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Queued and running jobs as last written or read.
    active: HashMap<String, Job>,
    /// The queued ones by (run at, id): the runner reads from the front, so a tick costs the
    /// jobs it starts plus those waiting for a handler, not the whole queue.
    queued: std::collections::BTreeSet<(i64, String)>,
    handlers: HashMap<(String, String), HandlerFn>,
    /// Jobs this process runs, with their task.
    local: HashMap<String, tokio::task::AbortHandle>,
    schedules: HashMap<String, Schedule>,
    seq: u64,
}

struct Inner {
    ctx: PluginContext,
    instance: String,
    config: Config,
    state: Mutex<State>,
    wake: Notify,
    slots: Arc<Semaphore>,
    counters: Counters,
}

/// An event to emit once the state lock is released.
/// Lifecycle events to emit once the state lock is released: topic, payload, chain depth.
type Pending = Vec<(&'static str, Value, u32)>;

fn event(job: &Job, extra: Value) -> Value {
    let mut v = json!({ "id": job.id, "plugin": job.plugin, "handler": job.handler, "attempt": job.history.len() });
    if let (Value::Object(a), Value::Object(b)) = (&mut v, extra) {
        a.extend(b);
    }
    v
}

impl State {
    fn put(&mut self, job: Job) {
        if let Some(old) = self.active.get(&job.id) {
            self.queued.remove(&(old.run_at, old.id.clone()));
        }
        if job.status == Status::Queued {
            self.queued.insert((job.run_at, job.id.clone()));
        }
        self.active.insert(job.id.clone(), job);
    }

    fn drop_job(&mut self, id: &str) {
        if let Some(old) = self.active.remove(id) {
            self.queued.remove(&(old.run_at, old.id));
        }
    }
}

impl Inner {
    fn new(ctx: PluginContext, config: Config) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        Inner {
            ctx,
            instance: format!("{}-{:x}", std::process::id(), nanos),
            config,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            slots: Arc::new(Semaphore::new(config.concurrency)),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, pending: Pending) {
        for (topic, payload, depth) in pending {
            if let Err(e) = self.ctx.events().emit_in_chain(topic, payload, depth) {
                self.ctx.logger().warn(format!("could not emit {topic}: {e}"));
            }
        }
    }

    fn new_id(&self) -> String {
        let seq = {
            let mut st = self.lock();
            st.seq += 1;
            st.seq
        };
        // Time first so ids sort by creation; the instance keeps two processes apart.
        format!("{:013}-{}-{seq:010}", now_ms(), self.instance)
    }

    fn new_job(&self, plugin: &str, id: String, spec: JobSpec, schedule: Option<String>) -> Job {
        let now = now_ms();
        Job {
            id,
            plugin: plugin.into(),
            handler: spec.handler,
            payload: spec.payload,
            status: Status::Queued,
            run_at: now + spec.delay_ms as i64,
            attempts: 0,
            interruptions: 0,
            retry: spec.retry,
            timeout_ms: spec.timeout_ms,
            schedule,
            history: Vec::new(),
            created_at: now,
            updated_at: now,
            made_for: None,
            depth: objectos_kernel::plugin::current_depth().map_or(0, |d| d.saturating_add(1)),
            lease: None,
            started_at: None,
        }
    }

    fn to_value(job: &Job) -> Result<Value> {
        serde_json::to_value(job).map_err(|e| err(format!("job {}: {e}", job.id)))
    }

    /// Write a new job unless one with its id exists; true when written.
    fn insert(&self, job: Job) -> Result<bool> {
        let written = self.ctx.storage().swap(&job.key(), None, Some(Self::to_value(&job)?))?;
        if written {
            self.counters.enqueued.fetch_add(1, Relaxed);
            let ev = event(&job, json!({ "runAt": job.run_at }));
            let depth = job.depth;
            self.lock().put(job);
            self.emit(vec![("jobs.enqueued", ev, depth)]);
            self.wake.notify_one();
        }
        Ok(written)
    }

    /// Replace `old` by `new` if storage still holds `old`; keeps `active` in step. On a lost
    /// race, `active` gets what storage holds and the result is false.
    fn replace(&self, st: &mut State, old: &Job, new: Job) -> Result<bool> {
        let swapped = self.ctx.storage().swap(&old.key(), Some(&Self::to_value(old)?), Some(Self::to_value(&new)?))?;
        if swapped {
            if new.status.is_terminal() {
                st.drop_job(&new.id);
            } else {
                st.put(new);
            }
        } else {
            match self.read(&old.id)? {
                Some(j) if !j.status.is_terminal() => st.put(j),
                _ => st.drop_job(&old.id),
            }
        }
        Ok(swapped)
    }

    fn read(&self, id: &str) -> Result<Option<Job>> {
        match self.ctx.storage().get(&format!("{JOB}{id}"))? {
            Some(v) => serde_json::from_value(v).map(Some).map_err(|e| KernelError::Corrupt(format!("{ID}: job {id}: {e}"))),
            None => Ok(None),
        }
    }

    fn all(&self) -> Result<Vec<Job>> {
        let mut jobs: Vec<Job> = Vec::new();
        for (key, v) in self.ctx.storage().scan(JOB)? {
            match serde_json::from_value(v) {
                Ok(j) => jobs.push(j),
                Err(e) => self.ctx.logger().error(format!("skipping unreadable job record {key}: {e}")),
            }
        }
        jobs.sort_by(|a: &Job, b: &Job| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(jobs)
    }

    /// Re-read every record: jobs and schedules other processes wrote, and prune finished
    /// jobs beyond the retention.
    fn rescan(&self) -> Result<()> {
        let jobs = self.all()?;
        let mut finished: Vec<&Job> = jobs.iter().filter(|j| j.status.is_terminal()).collect();
        if finished.len() > self.config.retain {
            finished.sort_by_key(|j| j.updated_at);
            for j in &finished[..finished.len() - self.config.retain] {
                // Only if unchanged since read: never delete a record another process revived.
                self.ctx.storage().swap(&j.key(), Some(&Self::to_value(j)?), None)?;
            }
        }
        let schedules: HashMap<String, Schedule> =
            self.ctx.storage().scan(SCHEDULE)?.into_iter().filter_map(|(k, v)| serde_json::from_value(v).ok().map(|s| (k, s))).collect();
        let mut st = self.lock();
        st.active.clear();
        st.queued.clear();
        for j in jobs.into_iter().filter(|j| !j.status.is_terminal()) {
            st.put(j);
        }
        st.schedules = schedules;
        Ok(())
    }

    async fn run(self: Arc<Self>) {
        let mut next_scan = now_ms() + self.config.poll_ms;
        let mut next_beat = now_ms() + self.config.lease_ms / 3;
        loop {
            let now = now_ms();
            if now >= next_scan {
                if let Err(e) = self.rescan() {
                    self.ctx.logger().error(format!("rescan failed: {e}"));
                }
                next_scan = now + self.config.poll_ms;
            }
            if now >= next_beat {
                self.heartbeat();
                next_beat = now + self.config.lease_ms / 3;
            }
            let due = match self.tick() {
                Ok(due) => due,
                Err(e) => {
                    self.ctx.logger().error(format!("scheduling failed: {e}"));
                    now + self.config.poll_ms
                }
            };
            let until = due.min(next_scan).min(next_beat);
            let wait = Duration::from_millis((until - now_ms()).clamp(1, 60_000) as u64);
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Fire due schedules, reclaim dead leases, start due jobs. Returns when to look again.
    fn tick(self: &Arc<Self>) -> Result<i64> {
        let now = now_ms();
        let mut pending = Pending::new();
        let mut next = i64::MAX;
        // Schedules: create the occurrence (idempotent), then advance the schedule.
        let due_schedules: Vec<Schedule> = self.lock().schedules.values().filter(|s| s.next_at <= now).cloned().collect();
        for s in due_schedules {
            let mut job = self.new_job(&s.plugin, format!("{}/{}@{}", s.plugin, s.name, s.next_at), s.spec.clone(), Some(s.name.clone()));
            job.made_for = s.made_for.clone();
            // An occurrence made for a package counts against its queue; past it, it is skipped.
            let full = s.made_for.as_deref().is_some_and(|owner| {
                self.queued_for(owner) >= self.ctx.package_quotas().queued_jobs
            });
            if full {
                self.ctx.logger().warn(format!("schedule {} of {}: occurrence skipped, {} has its quota of jobs queued", s.name, s.plugin, s.made_for.as_deref().unwrap_or_default()));
            } else {
                self.insert(job)?;
            }
            let mut advanced = s.clone();
            advanced.next_at = next_occurrence(&parse_cron(&s.cron)?, now)?;
            let (key, old, new) = (s.key(), serde_json::to_value(&s).map_err(|e| err(e.to_string()))?, serde_json::to_value(&advanced).map_err(|e| err(e.to_string()))?);
            if self.ctx.storage().swap(&key, Some(&old), Some(new))? {
                self.lock().schedules.insert(key, advanced);
            } else {
                self.lock().schedules.remove(&key); // changed elsewhere: the next rescan reads it
            }
        }
        let mut st = self.lock();
        for s in st.schedules.values() {
            next = next.min(s.next_at);
        }
        // Dead leases: the process running these died.
        let dead: Vec<Job> = st.active.values().filter(|j| j.status == Status::Running && j.lease.as_ref().is_some_and(|l| l.until < now && l.owner != self.instance)).cloned().collect();
        for job in dead {
            let mut new = job.clone();
            new.history.push(Attempt { attempt: job.attempt_number(), started_at: job.started_at.unwrap_or(now), ended_at: now, outcome: Outcome::Interrupted, error: Some("the process running it stopped".into()) });
            new.interruptions += 1;
            new.lease = None;
            new.started_at = None;
            new.updated_at = now;
            if new.interruptions >= MAX_INTERRUPTIONS {
                new.status = Status::Failed;
            } else {
                new.status = Status::Queued;
                new.run_at = now;
            }
            if self.replace(&mut st, &job, new.clone())? {
                self.counters.interrupted.fetch_add(1, Relaxed);
                let topic = if new.status == Status::Failed { "jobs.failed" } else { "jobs.retried" };
                pending.push((topic, event(&new, json!({ "outcome": "interrupted" })), new.depth));
            }
        }
        for j in st.active.values() {
            if let (Status::Running, Some(l)) = (j.status, &j.lease) {
                if l.owner != self.instance {
                    next = next.min(l.until + 1);
                }
            }
        }
        // Due jobs with a handler here, oldest first, while slots are free.
        let mut due: Vec<String> = Vec::new();
        for (run_at, id) in &st.queued {
            if *run_at > now {
                next = next.min(*run_at);
                break;
            }
            if due.len() >= self.slots.available_permits() {
                break;
            }
            if let Some(j) = st.active.get(id) {
                if st.handlers.contains_key(&(j.plugin.clone(), j.handler.clone())) {
                    due.push(id.clone());
                }
            }
        }
        for id in due {
            let Ok(permit) = self.slots.clone().try_acquire_owned() else { break };
            let Some(job) = st.active.get(&id).cloned() else { continue };
            let Some(handler) = st.handlers.get(&(job.plugin.clone(), job.handler.clone())).cloned() else { continue };
            let mut claimed = job.clone();
            claimed.status = Status::Running;
            claimed.lease = Some(Lease { owner: self.instance.clone(), until: now + self.config.lease_ms });
            claimed.started_at = Some(now);
            claimed.updated_at = now;
            if !self.replace(&mut st, &job, claimed.clone())? {
                continue; // another process took it, or it was cancelled
            }
            self.counters.started.fetch_add(1, Relaxed);
            pending.push(("jobs.started", event(&claimed, json!({ "attempt": claimed.attempt_number() })), claimed.depth));
            let me = self.clone();
            let task = tokio::spawn(async move {
                let _permit = permit;
                me.execute(claimed, handler).await;
            });
            st.local.insert(id, task.abort_handle());
        }
        drop(st);
        self.emit(pending);
        Ok(next)
    }

    async fn execute(self: Arc<Self>, job: Job, handler: HandlerFn) {
        let run = JobRun { id: job.id.clone(), attempt: job.attempt_number(), payload: job.payload.clone() };
        let limit = Duration::from_millis(job.timeout_ms);
        // What the handler emits continues the chain the job was made in.
        let attempt = objectos_kernel::plugin::caused_by(job.depth, AssertUnwindSafe(handler(run)).catch_unwind());
        let result = tokio::time::timeout(limit, attempt).await;
        let (outcome, error) = match result {
            Ok(Ok(Ok(()))) => (Outcome::Completed, None),
            Ok(Ok(Err(e))) => (Outcome::Failed, Some(e.to_string())),
            Ok(Err(panic)) => (Outcome::Panicked, Some(panic_text(&*panic))),
            Err(_) => (Outcome::TimedOut, Some(format!("did not finish within {} ms", job.timeout_ms))),
        };
        if let Err(e) = self.finish(&job.id, outcome, error) {
            self.ctx.logger().error(format!("could not record the end of job {}: {e}", job.id));
        }
        self.wake.notify_one();
    }

    fn finish(&self, id: &str, outcome: Outcome, error: Option<String>) -> Result<()> {
        let mut pending = Pending::new();
        {
            let mut st = self.lock();
            st.local.remove(id);
            // Two tries: a heartbeat may have renewed the lease between our read and write.
            for _ in 0..2 {
                let Some(current) = st.active.get(id).cloned() else { return Ok(()) };
                if current.status != Status::Running || current.lease.as_ref().is_none_or(|l| l.owner != self.instance) {
                    return Ok(()); // cancelled or taken over meanwhile
                }
                let now = now_ms();
                let mut new = current.clone();
                new.history.push(Attempt { attempt: current.attempt_number(), started_at: current.started_at.unwrap_or(now), ended_at: now, outcome, error: error.clone() });
                new.lease = None;
                new.started_at = None;
                new.updated_at = now;
                new.attempts += 1;
                let (topic, extra) = if outcome == Outcome::Completed {
                    new.status = Status::Completed;
                    ("jobs.completed", json!({ "outcome": outcome }))
                } else if new.attempts < new.retry.attempts {
                    new.status = Status::Queued;
                    new.run_at = now + new.retry.delay_after(new.attempts) as i64;
                    ("jobs.retried", json!({ "outcome": outcome, "error": error, "runAt": new.run_at }))
                } else {
                    new.status = Status::Failed;
                    ("jobs.failed", json!({ "outcome": outcome, "error": error }))
                };
                if self.replace(&mut st, &current, new.clone())? {
                    let counter = match topic {
                        "jobs.completed" => &self.counters.completed,
                        "jobs.retried" => &self.counters.retried,
                        _ => &self.counters.failed,
                    };
                    counter.fetch_add(1, Relaxed);
                    if topic != "jobs.completed" {
                        self.ctx.logger().warn(format!("job {} ({}/{}) attempt {}: {}", new.id, new.plugin, new.handler, current.attempt_number(), error.as_deref().unwrap_or("failed")));
                    }
                    pending.push((topic, event(&new, extra), new.depth));
                    break;
                }
            }
        }
        self.emit(pending);
        Ok(())
    }

    fn heartbeat(&self) {
        let mut st = self.lock();
        let until = now_ms() + self.config.lease_ms;
        let mine: Vec<Job> = st.local.keys().filter_map(|id| st.active.get(id).cloned()).collect();
        for job in mine {
            let mut renewed = job.clone();
            renewed.lease = Some(Lease { owner: self.instance.clone(), until });
            if let Err(e) = self.replace(&mut st, &job, renewed) {
                self.ctx.logger().error(format!("could not renew the lease of job {}: {e}", job.id));
            }
        }
    }

    fn cancel(&self, plugin: &str, id: &str) -> Result<()> {
        let mut pending = Pending::new();
        {
            let mut st = self.lock();
            for _ in 0..3 {
                let job = match self.read(id)? {
                    Some(j) if j.plugin == plugin => j,
                    _ => return Err(err(format!("{plugin} has no job {id:?}"))),
                };
                if job.status.is_terminal() {
                    return Err(err(format!("job {id} is already {}", serde_json::to_value(job.status).unwrap_or_default().as_str().unwrap_or("finished"))));
                }
                let now = now_ms();
                let mut new = job.clone();
                if job.status == Status::Running {
                    new.history.push(Attempt { attempt: job.attempt_number(), started_at: job.started_at.unwrap_or(now), ended_at: now, outcome: Outcome::Cancelled, error: None });
                }
                new.status = Status::Cancelled;
                new.lease = None;
                new.started_at = None;
                new.updated_at = now;
                if self.replace(&mut st, &job, new.clone())? {
                    if let Some(task) = st.local.remove(id) {
                        task.abort(); // its permit is released as the task drops
                    }
                    self.counters.cancelled.fetch_add(1, Relaxed);
                    pending.push(("jobs.cancelled", event(&new, json!({})), new.depth));
                    break;
                }
            }
        }
        if pending.is_empty() {
            return Err(err(format!("job {id} kept changing; try again")));
        }
        self.emit(pending);
        self.wake.notify_one();
        Ok(())
    }

    /// An uninstalled plugin's schedules go, and its unfinished jobs are cancelled.
    /// Jobs waiting or running for `owner`: its own, and those engines made for it.
    fn queued_for(&self, owner: &str) -> u64 {
        self.lock().active.values().filter(|j| j.made_for.as_deref().unwrap_or(&j.plugin) == owner).count() as u64
    }

    /// Refuse a new job for `owner` (a package) that would take it past its `queuedJobs` quota.
    fn check_room(&self, owner: &PluginContext) -> Result<()> {
        let Some(q) = owner.quotas() else { return Ok(()) };
        let queued = self.queued_for(owner.id());
        if queued >= q.queued_jobs {
            return Err(owner.over_limit("a job".into(), format!("the package has {queued} jobs queued or running; its quota is {}", q.queued_jobs)));
        }
        Ok(())
    }

    fn forget(&self, plugin: &str) -> Result<()> {
        for (key, _) in self.ctx.storage().scan(&format!("{SCHEDULE}{plugin}/"))? {
            self.ctx.storage().delete(&key)?;
            self.lock().schedules.remove(&key);
        }
        // Schedules engines kept for it.
        let made: Vec<String> = self.lock().schedules.iter().filter(|(_, s)| s.made_for.as_deref() == Some(plugin)).map(|(k, _)| k.clone()).collect();
        for key in made {
            self.ctx.storage().delete(&key)?;
            self.lock().schedules.remove(&key);
        }
        // Its own jobs and those engines made for it.
        let unfinished: Vec<(String, String)> = self
            .all()?
            .into_iter()
            .filter(|j| (j.plugin == plugin || j.made_for.as_deref() == Some(plugin)) && !j.status.is_terminal())
            .map(|j| (j.plugin, j.id))
            .collect();
        for (owner, id) in unfinished {
            // Lost races are fine here: a job that finished meanwhile needs no cancelling.
            let _ = self.cancel(&owner, &id);
        }
        Ok(())
    }

    fn drop_handlers(&self, plugin: &str) {
        self.lock().handlers.retain(|(p, _), _| p != plugin);
    }

    /// Hand this process's running jobs back to the queue (the jobs plugin is stopping).
    fn release_all(&self) -> usize {
        let mut st = self.lock();
        let mine: Vec<(String, tokio::task::AbortHandle)> = st.local.drain().collect();
        let mut released = 0;
        for (id, task) in mine {
            task.abort();
            let Some(job) = st.active.get(&id).cloned() else { continue };
            let now = now_ms();
            let mut new = job.clone();
            new.history.push(Attempt { attempt: job.attempt_number(), started_at: job.started_at.unwrap_or(now), ended_at: now, outcome: Outcome::Interrupted, error: Some("the jobs plugin was disabled".into()) });
            new.interruptions += 1;
            new.status = Status::Queued;
            new.run_at = now;
            new.lease = None;
            new.started_at = None;
            new.updated_at = now;
            if self.replace(&mut st, &job, new).unwrap_or(false) {
                released += 1;
            }
        }
        released
    }

    fn stats(&self) -> JobStats {
        let c = &self.counters;
        let (running, queued) = {
            let st = self.lock();
            (st.local.len() as u64, st.queued.len() as u64)
        };
        JobStats {
            enqueued: c.enqueued.load(Relaxed),
            started: c.started.load(Relaxed),
            completed: c.completed.load(Relaxed),
            failed: c.failed.load(Relaxed),
            retried: c.retried.load(Relaxed),
            cancelled: c.cancelled.load(Relaxed),
            interrupted: c.interrupted.load(Relaxed),
            running,
            queued,
        }
    }

    fn render_metrics(&self) -> String {
        let s = self.stats();
        let mut out = String::new();
        let plugin = format!("plugin=\"{}\"", label(ID));
        let one = |v: u64| vec![(plugin.clone(), v as f64)];
        for (name, kind, help, v) in [
            ("objectos_jobs_enqueued_total", "counter", "Jobs enqueued, schedule occurrences included.", s.enqueued),
            ("objectos_jobs_started_total", "counter", "Job attempts started by this process.", s.started),
            ("objectos_jobs_completed_total", "counter", "Jobs completed by this process.", s.completed),
            ("objectos_jobs_failed_total", "counter", "Jobs that ran out of attempts in this process.", s.failed),
            ("objectos_jobs_retried_total", "counter", "Failed attempts queued again.", s.retried),
            ("objectos_jobs_cancelled_total", "counter", "Jobs cancelled.", s.cancelled),
            ("objectos_jobs_interrupted_total", "counter", "Attempts lost to a process that stopped.", s.interrupted),
            ("objectos_jobs_running", "gauge", "Jobs running in this process.", s.running),
            ("objectos_jobs_queued", "gauge", "Jobs waiting.", s.queued),
        ] {
            family(&mut out, name, kind, help, &one(v));
        }
        out
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .map_or_else(|| "the handler panicked".to_string(), |s| format!("the handler panicked: {s}"))
}
