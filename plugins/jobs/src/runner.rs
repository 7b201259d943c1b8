//! The runner: claims due jobs under a lease, runs their handlers within the concurrency and
//! the timeout, renews the lease while they run, and records each attempt and outcome.

use super::*;
use objectos_kernel::runtime::meter::Held;

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) enqueued: AtomicU64,
    pub(crate) started: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) interrupted: AtomicU64,
}

#[derive(Default)]
pub(crate) struct State {
    /// Queued and running jobs as last written or read.
    pub(crate) active: HashMap<String, Job>,
    /// The queued ones by (run at, id): the runner reads from the front, so a tick costs the
    /// jobs it starts plus those waiting for a handler, not the whole queue.
    pub(crate) queued: std::collections::BTreeSet<(i64, String)>,
    pub(crate) handlers: HashMap<(String, String), HandlerFn>,
    /// Jobs this process runs, with their task.
    pub(crate) local: HashMap<String, tokio::task::AbortHandle>,
    pub(crate) schedules: HashMap<String, Schedule>,
    pub(crate) seq: u64,
}

pub(crate) struct Inner {
    pub(crate) ctx: PluginContext,
    pub(crate) instance: String,
    pub(crate) config: Config,
    pub(crate) state: Mutex<State>,
    pub(crate) wake: Notify,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) counters: Counters,
}

/// An event to emit once the state lock is released.
/// Lifecycle events to emit once the state lock is released: topic, payload, chain depth.
pub(crate) type Pending = Vec<(&'static str, Value, u32)>;

pub(crate) fn event(job: &Job, extra: Value) -> Value {
    let mut v = json!({ "id": job.id, "plugin": job.plugin, "handler": job.handler, "attempt": job.history.len() });
    if let (Value::Object(a), Value::Object(b)) = (&mut v, extra) {
        a.extend(b);
    }
    v
}

impl State {
    pub(crate) fn put(&mut self, job: Job) {
        if let Some(old) = self.active.get(&job.id) {
            self.queued.remove(&(old.run_at, old.id.clone()));
        }
        if job.status == Status::Queued {
            self.queued.insert((job.run_at, job.id.clone()));
        }
        self.active.insert(job.id.clone(), job);
    }

    pub(crate) fn drop_job(&mut self, id: &str) {
        if let Some(old) = self.active.remove(id) {
            self.queued.remove(&(old.run_at, old.id));
        }
    }
}

impl Inner {
    pub(crate) fn new(ctx: PluginContext, config: Config) -> Self {
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

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn emit(&self, pending: Pending) {
        for (topic, payload, depth) in pending {
            if let Err(e) = self.ctx.events().emit_in_chain(topic, payload, depth) {
                self.ctx.logger().warn(format!("could not emit {topic}: {e}"));
            }
        }
    }

    pub(crate) fn new_id(&self) -> String {
        let seq = {
            let mut st = self.lock();
            st.seq += 1;
            st.seq
        };
        // Time first so ids sort by creation; the instance keeps two processes apart.
        format!("{:013}-{}-{seq:010}", now_ms(), self.instance)
    }

    pub(crate) fn new_job(&self, plugin: &str, id: String, spec: JobSpec, schedule: Option<String>) -> Job {
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

    pub(crate) fn to_value(job: &Job) -> Result<Value> {
        serde_json::to_value(job).map_err(|e| err(format!("job {}: {e}", job.id)))
    }

    /// Write a new job unless one with its id exists; true when written.
    pub(crate) fn insert(&self, job: Job) -> Result<bool> {
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
    pub(crate) fn replace(&self, st: &mut State, old: &Job, new: Job) -> Result<bool> {
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

    pub(crate) fn read(&self, id: &str) -> Result<Option<Job>> {
        match self.ctx.storage().get(&format!("{JOB}{id}"))? {
            Some(v) => serde_json::from_value(v).map(Some).map_err(|e| KernelError::Corrupt(format!("{ID}: job {id}: {e}"))),
            None => Ok(None),
        }
    }

    pub(crate) fn all(&self) -> Result<Vec<Job>> {
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
    pub(crate) fn rescan(&self) -> Result<()> {
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

    pub(crate) async fn run(self: Arc<Self>) {
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
            // Only the data directory's runner starts jobs and fires schedules; another
            // process (a command, a console beside a service) only queues them.
            let due = match if self.ctx.is_runner() { self.tick() } else { Ok(now + self.config.poll_ms) } {
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
    pub(crate) fn tick(self: &Arc<Self>) -> Result<i64> {
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
                self.queued_for(owner) >= Held::QueuedJobs.limit(&self.ctx.package_quotas())
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

    pub(crate) async fn execute(self: Arc<Self>, job: Job, handler: HandlerFn) {
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

    pub(crate) fn finish(&self, id: &str, outcome: Outcome, error: Option<String>) -> Result<()> {
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

    pub(crate) fn heartbeat(&self) {
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

    pub(crate) fn cancel(&self, plugin: &str, id: &str) -> Result<()> {
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
    pub(crate) fn queued_for(&self, owner: &str) -> u64 {
        self.lock().active.values().filter(|j| j.made_for.as_deref().unwrap_or(&j.plugin) == owner).count() as u64
    }

    /// Refuse a new job for `owner` (a package) that would take it past its `queuedJobs` quota.
    pub(crate) fn check_room(&self, owner: &PluginContext) -> Result<()> {
        if !owner.meter().metered() {
            return Ok(());
        }
        owner.make_room(Held::QueuedJobs, self.queued_for(owner.id()), || "a job".into(), |n| format!("the package has {n} jobs queued or running"))
    }

    pub(crate) fn forget(&self, plugin: &str) -> Result<()> {
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

    pub(crate) fn drop_handlers(&self, plugin: &str) {
        self.lock().handlers.retain(|(p, _), _| p != plugin);
    }

    /// Hand this process's running jobs back to the queue (the jobs plugin is stopping).
    pub(crate) fn release_all(&self) -> usize {
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

    pub(crate) fn stats(&self) -> JobStats {
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

    pub(crate) fn render_metrics(&self) -> String {
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

pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .map_or_else(|| "the handler panicked".to_string(), |s| format!("the handler panicked: {s}"))
}
