//! The `jobs` service: handlers, enqueueing, schedules and their listings, for the calling
//! plugin's own jobs.

use super::*;

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
pub(crate) type HandlerFn = Arc<dyn Fn(JobRun) -> BoxFuture<'static, JobResult> + Send + Sync>;

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
    pub(crate) inner: Arc<Inner>,
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
