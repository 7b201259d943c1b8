//! The records jobs and schedules are kept as: one storage record each, changed only by a
//! compare-and-set.

use super::*;

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
    pub(crate) fn delay_after(&self, failures: u32) -> u64 {
        let factor = 1u64.checked_shl(failures.saturating_sub(1)).unwrap_or(u64::MAX);
        self.backoff_ms.saturating_mul(factor).min(self.max_backoff_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lease {
    pub(crate) owner: String,
    pub(crate) until: i64,
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
    pub(crate) lease: Option<Lease>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) started_at: Option<i64>,
}

impl Job {
    /// The error of the last failed attempt.
    pub fn last_error(&self) -> Option<&str> {
        self.history.iter().rev().find_map(|a| a.error.as_deref())
    }
    pub(crate) fn key(&self) -> String {
        format!("{JOB}{}", self.id)
    }
    pub(crate) fn attempt_number(&self) -> u32 {
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

pub(crate) fn default_timeout() -> u64 {
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

    pub(crate) fn validate(&self, caller: &PluginContext) -> Result<()> {
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

pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
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
    pub(crate) fn key(&self) -> String {
        format!("{SCHEDULE}{}/{}", self.plugin, self.name)
    }
}

pub(crate) fn parse_cron(expr: &str) -> Result<croner::Cron> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| err(format!("invalid cron expression {expr:?}: {e}")))
}

pub(crate) fn next_occurrence(cron: &croner::Cron, after_ms: i64) -> Result<i64> {
    let after = chrono::DateTime::from_timestamp_millis(after_ms).unwrap_or_default().with_timezone(&chrono::Local);
    cron.find_next_occurrence(&after, false).map(|t| t.timestamp_millis()).map_err(|e| err(format!("cron expression {:?} has no next occurrence: {e}", cron.pattern.to_string())))
}
